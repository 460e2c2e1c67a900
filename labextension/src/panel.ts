import { Widget } from '@lumino/widgets';

import { SessionsModel } from './model';
import {
  IFilter,
  IRow,
  formatMs,
  origin,
  recentlyReused,
  times,
  visibleRows
} from './state';

/** Columns of the list: header text, class, title. */
const COLUMNS: [string, string, string][] = [
  ['Name', 'name', 'Container name (id on hover)'],
  ['Status', 'status', 'running / expired / deleted'],
  ['Kernel', 'kernel', 'Kernel id'],
  ['Start', 'origin', 'Taken from the warm pool, or a cold start'],
  ['Age', 'age', 'Time since creation'],
  ['Idle', 'idle', 'Time since last activity'],
  ['Expires', 'expiry', 'Time left before idle expiry'],
  ['Execs', 'executions', 'Executions run'],
  ['Sess/turns', 'conv', 'Distinct conversation sessions / turns'],
  ['Busy', 'busy', 'An execution is running']
];

/** Callbacks from the list to the plugin. */
export interface IPanelActions {
  /** Open the detail view of a container. */
  open(id: string): void;
  /** Create a container (asks for a name). */
  create(): Promise<void>;
}

/**
 * The left-sidebar panel: every container of the user, live, filterable by name and status.
 * Rows are keyed by container id and updated in place (fixed column widths, tabular digits),
 * so updates never shift the layout.
 */
export class ExecSessionsPanel extends Widget {
  constructor(
    private model: SessionsModel,
    private actions: IPanelActions
  ) {
    super();
    this.id = 'jupyter-exec-sessions-panel';
    this.addClass('jes-panel');
    this.title.caption = 'Exec sessions';
    this.node.innerHTML = `
      <div class="jes-header">
        <span class="jes-title">Exec sessions</span>
        <span class="jes-connection" role="status" aria-live="polite"></span>
        <button class="jp-mod-styled jp-mod-accept jes-create" type="button"
          title="Create a container" aria-label="Create a container">New</button>
      </div>
      <div class="jes-filters">
        <input class="jp-mod-styled jes-filter" type="search"
          placeholder="Filter by name, id or session" aria-label="Filter containers" />
        <select class="jp-mod-styled jes-status-filter" aria-label="Filter by status">
          <option value="live">Live</option>
          <option value="running">Running</option>
          <option value="expired">Expired</option>
          <option value="deleted">Deleted</option>
          <option value="all">All</option>
        </select>
      </div>
      <div class="jes-message" role="alert"></div>
      <div class="jes-table-wrap">
        <table class="jes-table" role="grid" aria-label="Containers">
          <thead><tr>${COLUMNS.map(
            ([h, c, t]) => `<th class="jes-col-${c}" title="${t}" scope="col">${h}</th>`
          ).join('')}</tr></thead>
          <tbody></tbody>
        </table>
        <div class="jes-empty">No containers yet. Create one here, or from the containers
          API or an MCP client.</div>
      </div>`;
    this._tbody = this.node.querySelector('tbody')!;
    this._connection = this.node.querySelector('.jes-connection')!;
    this._message = this.node.querySelector('.jes-message')!;
    this._empty = this.node.querySelector('.jes-empty')!;
    const text = this.node.querySelector('.jes-filter') as HTMLInputElement;
    const status = this.node.querySelector(
      '.jes-status-filter'
    ) as HTMLSelectElement;
    text.addEventListener('input', () => {
      this._filter = { ...this._filter, text: text.value };
      this.render();
    });
    status.addEventListener('change', () => {
      this._filter = {
        ...this._filter,
        status: status.value as IFilter['status']
      };
      this.render();
    });
    this.node
      .querySelector('.jes-create')!
      .addEventListener('click', () => void this.actions.create());
    this._tbody.addEventListener('click', ev => {
      const tr = (ev.target as HTMLElement).closest('tr');
      if (tr?.dataset.id) {
        this.actions.open(tr.dataset.id);
      }
    });
    this._tbody.addEventListener('keydown', ev => this._onKey(ev));
    model.changed.connect(this._schedule, this);
  }

  /** The current filter (for tests and the plugin). */
  get filter(): IFilter {
    return this._filter;
  }

  protected onAfterAttach(): void {
    this.model.start();
    this.render();
    this._ticker = setInterval(() => this.render(), 1000);
  }

  protected onBeforeDetach(): void {
    if (this._ticker !== null) {
      clearInterval(this._ticker);
      this._ticker = null;
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.changed.disconnect(this._schedule, this);
    if (this._ticker !== null) {
      clearInterval(this._ticker);
    }
    super.dispose();
  }

  private _schedule(): void {
    if (this._frame) {
      return;
    }
    this._frame = true;
    requestAnimationFrame(() => {
      this._frame = false;
      this.render();
    });
  }

  /** Render the list from the model's state (rows reused by id). */
  render(): void {
    const state = this.model.state;
    const now = Date.now() / 1000;
    this.node.dataset.connection = state.connection;
    const labels: { [k: string]: string } = {
      connecting: 'connecting…',
      live: 'live',
      reconnecting: 'reconnecting…',
      unauthorized: 'not authorized',
      error: 'error'
    };
    this._connection.textContent = labels[state.connection] ?? state.connection;
    this._connection.className = `jes-connection jes-connection-${state.connection}`;
    let message = '';
    if (state.connection === 'unauthorized') {
      message = `${state.error ?? 'Not authorized.'} Reload JupyterLab with a valid token.`;
    } else if (state.connection === 'reconnecting') {
      message = `Connection to the server lost${state.error ? ` (${state.error})` : ''}; reconnecting…`;
    }
    this._message.textContent = message;
    this._message.hidden = !message;

    const rows = visibleRows(state, this._filter);
    this._empty.hidden = rows.length > 0 || !state.listed;
    if (rows.length === 0 && state.listed && Object.keys(state.rows).length) {
      this._empty.textContent = 'No container matches the filter.';
    } else {
      this._empty.textContent =
        'No containers yet. Create one here, or from the containers API or an MCP client.';
    }
    const wanted = new Set(rows.map(r => r.id));
    for (const [id, tr] of this._trs) {
      if (!wanted.has(id)) {
        tr.remove();
        this._trs.delete(id);
      }
    }
    let previous: HTMLTableRowElement | null = null;
    for (const row of rows) {
      let tr = this._trs.get(row.id);
      if (!tr) {
        tr = this._newRow(row.id);
        this._trs.set(row.id, tr);
      }
      this._fill(tr, row, now);
      const expectedNext: ChildNode | null = previous
        ? previous.nextSibling
        : this._tbody.firstChild;
      if (expectedNext !== tr) {
        this._tbody.insertBefore(tr, expectedNext);
      }
      previous = tr;
    }
  }

  private _newRow(id: string): HTMLTableRowElement {
    const tr = document.createElement('tr');
    tr.className = 'jes-row';
    tr.dataset.id = id;
    tr.tabIndex = 0;
    tr.setAttribute('role', 'row');
    for (const [, cls] of COLUMNS) {
      const td = document.createElement('td');
      td.className = `jes-col-${cls}`;
      td.setAttribute('role', 'gridcell');
      tr.appendChild(td);
    }
    return tr;
  }

  private _fill(tr: HTMLTableRowElement, row: IRow, now: number): void {
    const t = times(row, now);
    const cells = tr.children;
    const set = (i: number, text: string, title?: string): void => {
      const td = cells[i] as HTMLElement;
      if (td.textContent !== text) {
        td.textContent = text;
      }
      if (title !== undefined && td.title !== title) {
        td.title = title;
      }
    };
    set(0, row.name || row.id, `${row.name}\n${row.id}`);
    set(1, row.status);
    set(2, row.kernel_id ? row.kernel_id.slice(0, 8) : '–', row.kernel_id ?? '');
    set(
      3,
      origin(row),
      row.create_latency_ms !== null ? `created in ${formatMs(row.create_latency_ms)}` : ''
    );
    set(4, t.age);
    set(5, t.idle);
    set(6, t.expiry);
    set(7, String(row.executions));
    set(8, `${row.sessions}/${row.turns}`);
    set(9, row.busy ? '●' : '');
    tr.dataset.status = row.status;
    tr.dataset.busy = String(row.busy);
    const reused = recentlyReused(row, now);
    tr.classList.toggle('jes-reused', reused);
    const cell = cells[0] as HTMLElement;
    cell.dataset.reuses = row.reuses ? `↻ ${row.reuses}` : '';
    if (reused) {
      tr.title = `Reused via ${row.last_origin}${
        row.last_session_id ? ` for session ${row.last_session_id}` : ''
      }`;
    } else if (tr.title) {
      tr.title = '';
    }
    tr.setAttribute(
      'aria-label',
      `${row.name || row.id}, ${row.status}${row.busy ? ', busy' : ''}`
    );
  }

  private _onKey(ev: KeyboardEvent): void {
    const tr = (ev.target as HTMLElement).closest('tr');
    if (!tr) {
      return;
    }
    if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      if (tr.dataset.id) {
        this.actions.open(tr.dataset.id);
      }
    } else if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      const next = (
        ev.key === 'ArrowDown' ? tr.nextElementSibling : tr.previousElementSibling
      ) as HTMLElement | null;
      next?.focus();
    }
  }

  private _tbody: HTMLTableSectionElement;
  private _connection: HTMLElement;
  private _message: HTMLElement;
  private _empty: HTMLElement;
  private _trs = new Map<string, HTMLTableRowElement>();
  private _filter: IFilter = { text: '', status: 'live' };
  private _frame = false;
  private _ticker: ReturnType<typeof setInterval> | null = null;
}
