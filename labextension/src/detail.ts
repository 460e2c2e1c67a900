import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

import { SessionsModel } from './model';
import { IBundle, IOutput, shellBundles, toBundle } from './outputs';
import { APIError, rawRequest, requestAPI } from './request';
import { IEvent, IRow, formatMs, origin, times } from './state';

/** One entry of `GET /containers/{id}/executions`. */
export interface IExecutionRecord {
  id: string;
  container_id: string;
  type: 'python' | 'shell';
  status: string;
  code?: string | null;
  commands?: string[] | null;
  preview_truncated?: boolean;
  created_at: number;
  started_at?: number | null;
  completed_at?: number | null;
  duration_ms?: number | null;
  session_id?: string | null;
  turn_id?: string | null;
  state_reset?: boolean;
  truncated?: boolean;
  execution_count?: number | null;
  outputs?: IOutput[] | null;
  shell_output?: any[] | null;
  full_output_file?: string | null;
}

interface IPage<T> {
  data: T[];
  has_more: boolean;
  last_id: string | null;
}

interface IFile {
  id: string;
  path: string;
  bytes: number;
  source: string;
  created_at: number;
}

/** What the detail view asks the plugin to do. */
export interface IDetailActions {
  /** Open a console attached to this kernel. */
  openConsole(kernelId: string, name: string): Promise<void>;
}

const PAGE = 20;

function clock(t: number | null | undefined): string {
  if (!t) {
    return '–';
  }
  return new Date(t * 1000).toLocaleTimeString();
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: { [k: string]: string } = {},
  ...children: (Node | string | null)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') {
      node.className = v;
    } else {
      node.setAttribute(k, v);
    }
  }
  for (const c of children) {
    if (c !== null) {
      node.append(c);
    }
  }
  return node;
}

/**
 * A container's detail view (main area): summary and actions, the executions timeline
 * (outputs rendered by JupyterLab's rendermime), the files with download, and the reuse /
 * resolution history. Live: a completed execution of this container adds itself on top.
 */
export class ContainerDetail extends Widget {
  constructor(
    readonly containerId: string,
    private model: SessionsModel,
    private rendermime: IRenderMimeRegistry,
    private actions: IDetailActions
  ) {
    super();
    this.addClass('jes-detail');
    this.id = `jes-detail-${containerId}`;
    this.title.label = containerId;
    this.title.closable = true;
    this.node.tabIndex = -1;
    this._summary = el('div', { class: 'jes-summary' });
    this._buttons = el('div', { class: 'jes-actions', role: 'toolbar' });
    this._timeline = el('ol', { class: 'jes-timeline', 'aria-label': 'Executions' });
    this._more = el(
      'button',
      { class: 'jp-mod-styled jes-more', type: 'button', hidden: '' },
      'Load older executions'
    );
    this._timelineStatus = el('div', { class: 'jes-section-status', role: 'status' });
    this._files = el('ul', { class: 'jes-files', 'aria-label': 'Files' });
    this._resolutions = el('ul', { class: 'jes-resolutions', 'aria-label': 'Reuse history' });
    this._message = el('div', { class: 'jes-message', role: 'alert', hidden: '' });
    this.node.append(
      el('div', { class: 'jes-detail-header' }, this._summary, this._buttons),
      this._message,
      el(
        'section',
        { class: 'jes-section' },
        el('h3', {}, 'Executions'),
        this._timelineStatus,
        this._timeline,
        this._more
      ),
      el(
        'div',
        { class: 'jes-section-row' },
        el('section', { class: 'jes-section' }, el('h3', {}, 'Files'), this._files),
        el(
          'section',
          { class: 'jes-section' },
          el('h3', {}, 'Reuse history'),
          this._resolutions
        )
      )
    );
    this._buildButtons();
    this._more.addEventListener('click', () => void this.loadTimeline(false));
    model.changed.connect(this._renderSummary, this);
    model.event.connect(this._onEvent, this);
    this._renderSummary();
    void this.loadTimeline(true);
    void this.loadFiles();
    this._ticker = setInterval(() => this._renderSummary(), 1000);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    clearInterval(this._ticker);
    if (this._reload !== null) {
      clearTimeout(this._reload);
    }
    this.model.changed.disconnect(this._renderSummary, this);
    this.model.event.disconnect(this._onEvent, this);
    super.dispose();
  }

  private get row(): IRow | undefined {
    return this.model.state.rows[this.containerId];
  }

  private _buildButtons(): void {
    const button = (label: string, cls: string, title: string, fn: () => Promise<void>) => {
      const b = el(
        'button',
        { class: `jp-mod-styled jes-action ${cls}`, type: 'button', title },
        label
      );
      b.addEventListener('click', () => {
        b.disabled = true;
        fn()
          .catch(e => this._showError(e))
          .finally(() => {
            b.disabled = false;
            this._renderSummary();
          });
      });
      this._buttons.append(b);
    };
    button('Open console', 'jes-open-console', "Open a console on this container's kernel", () =>
      this._openConsole()
    );
    button('Interrupt', 'jes-interrupt', 'Interrupt the running execution', () =>
      this._interrupt()
    );
    button('Refresh', 'jes-refresh', 'Reload executions and files', async () => {
      await Promise.all([this.loadTimeline(true), this.loadFiles()]);
    });
    button('Delete', 'jp-mod-warn jes-delete', 'Delete this container', () => this._delete());
  }

  private _renderSummary(): void {
    const row = this.row;
    if (!row) {
      this._summary.textContent = this.containerId;
      return;
    }
    const t = times(row, Date.now() / 1000);
    this.title.label = row.name || row.id;
    this.node.dataset.status = row.status;
    this.node.dataset.busy = String(row.busy);
    const fields: [string, string][] = [
      ['Status', row.status + (row.busy ? ' (busy)' : '')],
      ['Kernel', row.kernel_id ?? '–'],
      ['Start', origin(row) + (row.create_latency_ms !== null ? `, ${formatMs(row.create_latency_ms)}` : '')],
      ['Age', t.age],
      ['Idle', t.idle],
      ['Expires in', t.expiry],
      ['Executions', String(row.executions)],
      ['Sessions / turns', `${row.sessions} / ${row.turns}`],
      ['State resets', String(row.state_resets)]
    ];
    const key = JSON.stringify([row.name, row.id, fields]);
    if (key !== this._summaryKey) {
      this._summaryKey = key;
      this._summary.replaceChildren(
        el('h2', { class: 'jes-detail-name' }, row.name || row.id),
        el('code', { class: 'jes-detail-id' }, row.id),
        el(
          'dl',
          { class: 'jes-fields' },
          ...fields.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { 'data-field': k }, v)])
        )
      );
    }
    const live = row.status === 'running';
    for (const b of this._buttons.querySelectorAll<HTMLButtonElement>('button')) {
      if (b.classList.contains('jes-open-console') || b.classList.contains('jes-interrupt')) {
        b.hidden = !live;
      } else if (b.classList.contains('jes-delete')) {
        b.hidden = row.status === 'deleted';
      }
    }
    this._renderResolutions(row);
  }

  private _renderResolutions(row: IRow): void {
    const key = row.resolutions.map(r => r.seq).join(',');
    if (key === this._resolutionsKey) {
      return;
    }
    this._resolutionsKey = key;
    if (!row.resolutions.length) {
      this._resolutions.replaceChildren(
        el('li', { class: 'jes-empty-item' }, 'No conversation has resolved this container yet.')
      );
      return;
    }
    this._resolutions.replaceChildren(
      ...row.resolutions.map(r =>
        el(
          'li',
          { class: r.reused ? 'jes-resolution jes-resolution-reused' : 'jes-resolution' },
          `${clock(r.created_at)} · ${r.reused ? 'reused' : r.origin}` +
            (r.reused ? ` (via ${r.origin})` : '') +
            (r.session_id ? ` · session ${r.session_id}` : '') +
            (r.previous_id ? ` · replaced ${r.previous_id}` : '')
        )
      )
    );
  }

  private _onEvent(_: SessionsModel, ev: IEvent): void {
    if (ev.container_id !== this.containerId) {
      return;
    }
    if (ev.type === 'execution.completed' || ev.type === 'execution.started') {
      // a burst of events reloads once
      if (this._reload !== null) {
        clearTimeout(this._reload);
      }
      const files = ev.type === 'execution.completed' || this._reloadFiles;
      this._reloadFiles = files;
      this._reload = setTimeout(() => {
        this._reload = null;
        this._reloadFiles = false;
        void this.loadTimeline(true);
        if (files) {
          void this.loadFiles();
        }
      }, 50);
    }
  }

  /** Load the newest page of the timeline (`fresh`), or the next older page. */
  async loadTimeline(fresh: boolean): Promise<void> {
    const seq = ++this._timelineSeq;
    let query = `containers/${this.containerId}/executions?limit=${PAGE}`;
    if (!fresh && this._after) {
      query += `&after=${encodeURIComponent(this._after)}`;
    }
    try {
      const page = await requestAPI<IPage<IExecutionRecord>>(query, this.model.settings);
      if (seq !== this._timelineSeq) {
        return; // a newer load superseded this one
      }
      if (fresh) {
        this._timeline.replaceChildren();
        this._entries.clear();
      }
      for (const rec of page.data) {
        this._addEntry(rec);
      }
      this._after = page.last_id;
      this._more.hidden = !page.has_more;
      this._timelineStatus.textContent = this._entries.size ? '' : 'No executions yet.';
    } catch (e) {
      if (seq === this._timelineSeq) {
        this._timelineStatus.textContent = `Cannot load executions: ${(e as Error).message}`;
      }
    }
  }

  private _addEntry(rec: IExecutionRecord): void {
    if (this._entries.has(rec.id)) {
      return;
    }
    const source =
      rec.type === 'shell' ? (rec.commands ?? []).map(c => `$ ${c}`).join('\n') : (rec.code ?? '');
    const flags: string[] = [];
    if (rec.state_reset) {
      flags.push('state reset');
    }
    if (rec.truncated) {
      flags.push('output truncated');
    }
    const conv = [
      rec.session_id ? `session ${rec.session_id}` : '',
      rec.turn_id ? `turn ${rec.turn_id}` : ''
    ]
      .filter(Boolean)
      .join(' · ');
    const outputs = el('div', { class: 'jes-outputs' });
    const whole = el(
      'button',
      { class: 'jp-mod-styled jes-show-whole', type: 'button' },
      rec.outputs ? 'Show whole' : 'Show outputs'
    );
    whole.addEventListener('click', () => {
      whole.disabled = true;
      requestAPI<IExecutionRecord>(
        `containers/${this.containerId}/executions/${rec.id}`,
        this.model.settings
      )
        .then(full => {
          code.textContent =
            full.type === 'shell'
              ? (full.commands ?? []).map(c => `$ ${c}`).join('\n')
              : (full.code ?? '');
          this._renderOutputs(outputs, full);
          whole.remove();
        })
        .catch(e => {
          whole.disabled = false;
          this._showError(e);
        });
    });
    const code = el('pre', { class: 'jes-code' }, source);
    const li = el(
      'li',
      {
        class: `jes-entry jes-entry-${rec.status}`,
        'data-id': rec.id,
        'data-status': rec.status,
        'data-session': rec.session_id ?? '',
        'data-turn': rec.turn_id ?? ''
      },
      el(
        'div',
        { class: 'jes-entry-head' },
        el('span', { class: `jes-badge jes-badge-${rec.status}` }, rec.status),
        el('span', { class: 'jes-entry-type' }, rec.type),
        el('span', { class: 'jes-entry-time', title: `created ${clock(rec.created_at)}` },
          `${clock(rec.started_at ?? rec.created_at)} → ${clock(rec.completed_at)}`),
        el('span', { class: 'jes-entry-duration' }, formatMs(rec.duration_ms)),
        el('span', { class: 'jes-entry-conv' }, conv),
        flags.length ? el('span', { class: 'jes-entry-flags' }, flags.join(', ')) : null
      ),
      code,
      outputs,
      rec.preview_truncated || !rec.outputs ? whole : null
    );
    if (rec.outputs || rec.shell_output) {
      this._renderOutputs(outputs, rec);
    }
    this._entries.set(rec.id, li);
    // keep newest first: insert before the first older entry
    const older = [...this._timeline.children].find(
      c => Number((c as HTMLElement).dataset.created ?? 0) < rec.created_at
    );
    li.dataset.created = String(rec.created_at);
    this._timeline.insertBefore(li, older ?? null);
  }

  private _renderOutputs(host: HTMLElement, rec: IExecutionRecord): void {
    host.replaceChildren();
    const bundles: IBundle[] = [];
    if (rec.type === 'shell' && rec.shell_output) {
      bundles.push(...shellBundles(rec.shell_output));
    }
    for (const o of rec.outputs ?? []) {
      const b = toBundle(o);
      if (b) {
        bundles.push(b);
      }
    }
    for (const bundle of bundles) {
      const mime = this.rendermime.preferredMimeType(bundle.data, 'any');
      if (!mime) {
        continue;
      }
      const renderer = this.rendermime.createRenderer(mime);
      renderer.addClass('jes-output');
      // Outputs were written by a model's code: untrusted (HTML is sanitized).
      void renderer.renderModel(
        new MimeModel({ data: bundle.data, metadata: bundle.metadata, trusted: false })
      );
      // Plain DOM: the view may not be attached yet (Widget.attach needs an attached host).
      host.appendChild(renderer.node);
    }
  }

  /** Load the container's files. */
  async loadFiles(): Promise<void> {
    try {
      const page = await requestAPI<IPage<IFile>>(
        `containers/${this.containerId}/files?limit=100`,
        this.model.settings
      );
      if (!page.data.length) {
        this._files.replaceChildren(el('li', { class: 'jes-empty-item' }, 'No files.'));
        return;
      }
      this._files.replaceChildren(
        ...page.data.map(f => {
          const link = el(
            'button',
            { class: 'jes-link jes-download', type: 'button', title: `Download ${f.path}` },
            f.path
          );
          link.addEventListener('click', () => void this._download(f).catch(e => this._showError(e)));
          return el(
            'li',
            { class: 'jes-file', 'data-id': f.id },
            link,
            el('span', { class: 'jes-file-meta' }, ` ${f.bytes} B · ${f.source}`)
          );
        })
      );
    } catch (e) {
      const status = (e as APIError).status;
      this._files.replaceChildren(
        el(
          'li',
          { class: 'jes-empty-item' },
          status === 400 ? 'Files are not readable: the container expired.' : `Cannot list files: ${(e as Error).message}`
        )
      );
    }
  }

  private async _download(f: IFile): Promise<void> {
    const response = await rawRequest(
      `containers/${this.containerId}/files/${f.id}/content`,
      this.model.settings
    );
    if (!response.ok) {
      throw new APIError(`Download failed (${response.status})`, response.status);
    }
    const url = URL.createObjectURL(await response.blob());
    const a = el('a', { href: url, download: f.path.split('/').pop() ?? 'file' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  private async _openConsole(): Promise<void> {
    const row = this.row;
    if (!row?.kernel_id) {
      // An idle container whose kernel was replaced: the container object has the new one.
      const c = await requestAPI<any>(`containers/${this.containerId}`, this.model.settings);
      this.model.dispatch({ type: 'container', container: c });
    }
    const kernelId = this.row?.kernel_id;
    if (!kernelId) {
      throw new Error('This container has no running kernel.');
    }
    await this.actions.openConsole(kernelId, this.row?.name || this.containerId);
  }

  private async _interrupt(): Promise<void> {
    await requestAPI<any>(`containers/${this.containerId}/interrupt`, this.model.settings, {
      method: 'POST',
      body: '{}'
    });
    this.model.feed.refresh(this.containerId);
  }

  private async _delete(): Promise<void> {
    const name = this.row?.name || this.containerId;
    const answer = await showDialog({
      title: 'Delete container',
      body: `Delete "${name}"? Its kernel is shut down, running executions are cancelled and its files are removed.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!answer.button.accept) {
      return;
    }
    await requestAPI<any>(`containers/${this.containerId}`, this.model.settings, {
      method: 'DELETE'
    });
    this.model.dispatch({ type: 'gone', id: this.containerId, now: Date.now() / 1000 });
    this.dispose();
  }

  private _showError(e: unknown): void {
    void showErrorMessage('Exec sessions', (e as Error).message ?? String(e));
  }

  private _summary: HTMLElement;
  private _buttons: HTMLElement;
  private _timeline: HTMLOListElement;
  private _timelineStatus: HTMLElement;
  private _more: HTMLButtonElement;
  private _files: HTMLUListElement;
  private _resolutions: HTMLUListElement;
  private _message: HTMLElement;
  private _entries = new Map<string, HTMLElement>();
  private _after: string | null = null;
  private _timelineSeq = 0;
  private _summaryKey = '';
  private _resolutionsKey = '-';
  private _ticker: ReturnType<typeof setInterval>;
  private _reload: ReturnType<typeof setTimeout> | null = null;
  private _reloadFiles = false;
}
