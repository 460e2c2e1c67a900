/**
 * Execution outputs of the containers API as Jupyter mime bundles, so JupyterLab's own
 * renderers (rendermime) show them: images, HTML tables, plain text, tracebacks.
 */

/** One output of an execution (the API's `outputs` items). */
export interface IOutput {
  type: 'logs' | 'result' | 'display' | 'image' | 'error' | string;
  stream?: string;
  text?: string;
  data?: any;
  mime_type?: string;
  name?: string;
  value?: string;
  traceback?: string[];
}

/** One mime bundle to render. */
export interface IBundle {
  data: { [mime: string]: any };
  metadata: { [key: string]: any };
}

/** The mime bundle of one API output (null when there is nothing to render). */
export function toBundle(output: IOutput): IBundle | null {
  switch (output.type) {
    case 'logs': {
      const mime =
        output.stream === 'stderr'
          ? 'application/vnd.jupyter.stderr'
          : 'application/vnd.jupyter.stdout';
      return { data: { [mime]: output.text ?? '' }, metadata: {} };
    }
    case 'result':
    case 'display':
      if (!output.data || typeof output.data !== 'object') {
        return null;
      }
      return { data: { ...output.data }, metadata: {} };
    case 'image':
      return {
        data: { [output.mime_type ?? 'image/png']: output.data ?? '' },
        metadata: {}
      };
    case 'error': {
      const lines = output.traceback?.length
        ? output.traceback
        : [`${output.name ?? 'Error'}: ${output.value ?? ''}`];
      return {
        data: { 'application/vnd.jupyter.stderr': lines.join('\n') },
        metadata: {}
      };
    }
    default:
      return null;
  }
}

/** Shell outputs (`shell_output` items) as stdout/stderr bundles. */
export function shellBundles(
  items: {
    command: string;
    stdout?: string;
    stderr?: string;
    outcome?: { type: string; exit_code?: number | null };
  }[]
): IBundle[] {
  const out: IBundle[] = [];
  for (const item of items) {
    const exit =
      item.outcome?.type === 'timeout'
        ? ' (timed out)'
        : item.outcome?.exit_code
          ? ` (exit ${item.outcome.exit_code})`
          : '';
    out.push({
      data: { 'application/vnd.jupyter.stdout': `$ ${item.command}${exit}\n${item.stdout ?? ''}` },
      metadata: {}
    });
    if (item.stderr) {
      out.push({ data: { 'application/vnd.jupyter.stderr': item.stderr }, metadata: {} });
    }
  }
  return out;
}
