/**
 * API outputs become the mime bundles JupyterLab's renderers expect.
 */
import { shellBundles, toBundle } from '../outputs';

describe('toBundle', () => {
  it('maps streams, results, images and errors to mime bundles', () => {
    expect(toBundle({ type: 'logs', stream: 'stdout', text: 'hi\n' })?.data).toEqual({
      'application/vnd.jupyter.stdout': 'hi\n'
    });
    expect(toBundle({ type: 'logs', stream: 'stderr', text: 'oops' })?.data).toEqual({
      'application/vnd.jupyter.stderr': 'oops'
    });
    expect(
      toBundle({ type: 'result', data: { 'text/plain': '42', 'text/html': '<b>42</b>' } })?.data
    ).toEqual({ 'text/plain': '42', 'text/html': '<b>42</b>' });
    expect(toBundle({ type: 'display', data: { 'text/html': '<table></table>' } })?.data).toEqual({
      'text/html': '<table></table>'
    });
    expect(toBundle({ type: 'image', mime_type: 'image/png', data: 'iVBO' })?.data).toEqual({
      'image/png': 'iVBO'
    });
    expect(
      toBundle({ type: 'error', name: 'ZeroDivisionError', value: 'division by zero', traceback: [] })
        ?.data
    ).toEqual({ 'application/vnd.jupyter.stderr': 'ZeroDivisionError: division by zero' });
    expect(toBundle({ type: 'unknown' })).toBeNull();
  });

  it('shows each shell command with its exit code and stderr', () => {
    const out = shellBundles([
      { command: 'ls', stdout: 'a\n', stderr: '', outcome: { type: 'exit', exit_code: 0 } },
      { command: 'false', stdout: '', stderr: 'bad', outcome: { type: 'exit', exit_code: 1 } }
    ]);
    expect(out[0].data['application/vnd.jupyter.stdout']).toBe('$ ls\na\n');
    expect(out[1].data['application/vnd.jupyter.stdout']).toBe('$ false (exit 1)\n');
    expect(out[2].data['application/vnd.jupyter.stderr']).toBe('bad');
  });
});
