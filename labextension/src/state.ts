/**
 * What the Exec sessions panel shows: a pure reducer from container listings and
 * events-feed events to rows. No I/O, no DOM, no timers: everything here is unit-tested
 * with jest (src/__tests__/state.spec.ts).
 */

/** `container.resolved` origins meaning "a conversation was given an existing container". */
export const REUSE_ORIGINS = new Set(['history', 'explicit']);

/** How many resolutions per container the panel remembers. */
export const MAX_RESOLUTIONS = 50;

/** How many deleted rows stay visible (greyed) before being dropped. */
export const MAX_DELETED_ROWS = 50;

/** The container object of the containers API (the fields the panel reads). */
export interface IContainer {
  id: string;
  name: string;
  status: string;
  created_at: number;
  last_active_at: number;
  expires_after?: { anchor?: string; minutes: number } | null;
  memory_limit?: string | null;
  exec_sessions?: {
    kernel_id?: string | null;
    executions?: number;
    sessions?: number;
    turns?: number;
    state_resets?: number;
    busy?: boolean;
  } | null;
}

/** One event of the events feed. */
export interface IEvent {
  id: string;
  seq: number;
  type: string;
  created_at: number;
  container_id?: string | null;
  data?: { [key: string]: any };
  [key: string]: any;
}

/** One resolution (reuse history entry) of a container. */
export interface IResolution {
  seq: number;
  created_at: number;
  origin: string;
  session_id: string | null;
  previous_id: string | null;
  reused: boolean;
}

/** One row of the panel's list. */
export interface IRow {
  id: string;
  name: string;
  status: 'running' | 'expired' | 'deleted' | string;
  created_at: number | null;
  last_active_at: number | null;
  expires_minutes: number | null;
  kernel_id: string | null;
  executions: number;
  sessions: number;
  turns: number;
  state_resets: number;
  busy: boolean;
  /** true: taken from the warm pool; false: cold start; null: unknown. */
  from_pool: boolean | null;
  create_latency_ms: number | null;
  reuses: number;
  last_origin: string | null;
  last_reused_at: number | null;
  last_session_id: string | null;
  restarts: number;
  ended_at: number | null;
  resolutions: IResolution[];
  /** Bumped on every change; the view re-renders a row only when it changed. */
  version: number;
}

/** Connection state of the feed as the panel shows it. */
export type Connection =
  | 'connecting'
  | 'live'
  | 'reconnecting'
  | 'unauthorized'
  | 'error';

/** The whole panel state. */
export interface IPanelState {
  rows: { [id: string]: IRow };
  lastSeq: number | null;
  received: number;
  duplicates: number;
  listed: boolean;
  connection: Connection;
  error: string | null;
  recentIds: string[];
}

/** Everything that changes the state. */
export type Action =
  | { type: 'listing'; containers: IContainer[]; now: number }
  | { type: 'container'; container: IContainer }
  | { type: 'gone'; id: string; now: number }
  | { type: 'event'; event: IEvent }
  | { type: 'connection'; connection: Connection; error?: string | null };

const RECENT_IDS = 2000;

/** A fresh, empty state. */
export function initialState(): IPanelState {
  return {
    rows: {},
    lastSeq: null,
    received: 0,
    duplicates: 0,
    listed: false,
    connection: 'connecting',
    error: null,
    recentIds: []
  };
}

function newRow(id: string): IRow {
  return {
    id,
    name: '',
    status: 'running',
    created_at: null,
    last_active_at: null,
    expires_minutes: null,
    kernel_id: null,
    executions: 0,
    sessions: 0,
    turns: 0,
    state_resets: 0,
    busy: false,
    from_pool: null,
    create_latency_ms: null,
    reuses: 0,
    last_origin: null,
    last_reused_at: null,
    last_session_id: null,
    restarts: 0,
    ended_at: null,
    resolutions: [],
    version: 0
  };
}

function update(
  rows: { [id: string]: IRow },
  id: string,
  patch: Partial<IRow>
): { [id: string]: IRow } {
  const old = rows[id] ?? newRow(id);
  return { ...rows, [id]: { ...old, ...patch, version: old.version + 1 } };
}

function applyContainer(
  rows: { [id: string]: IRow },
  c: IContainer
): { [id: string]: IRow } {
  const old = rows[c.id];
  if (old && old.status === 'deleted') {
    return rows; // a late answer from before the deletion; ids are never reused
  }
  const info = c.exec_sessions ?? {};
  const patch: Partial<IRow> = {
    name: c.name,
    status: c.status,
    created_at: c.created_at,
    last_active_at: c.last_active_at,
    expires_minutes: c.expires_after?.minutes ?? null,
    kernel_id: info.kernel_id ?? null,
    executions: info.executions ?? 0,
    sessions: info.sessions ?? 0,
    turns: info.turns ?? 0,
    state_resets: info.state_resets ?? 0,
    busy: Boolean(info.busy) && c.status === 'running'
  };
  if (same(old, patch)) {
    return rows;
  }
  return update(rows, c.id, patch);
}

function same(row: IRow | undefined, patch: Partial<IRow>): boolean {
  if (!row) {
    return false;
  }
  return Object.entries(patch).every(
    ([k, v]) => (row as any)[k] === v
  );
}

function pruneDeleted(rows: { [id: string]: IRow }): { [id: string]: IRow } {
  const deleted = Object.values(rows).filter(r => r.status === 'deleted');
  if (deleted.length <= MAX_DELETED_ROWS) {
    return rows;
  }
  deleted.sort((a, b) => (a.ended_at ?? 0) - (b.ended_at ?? 0));
  const out = { ...rows };
  for (const r of deleted.slice(0, deleted.length - MAX_DELETED_ROWS)) {
    delete out[r.id];
  }
  return out;
}

function markDeleted(
  rows: { [id: string]: IRow },
  id: string,
  when: number
): { [id: string]: IRow } {
  const old = rows[id];
  if (old && old.status === 'deleted') {
    return rows;
  }
  return pruneDeleted(
    update(rows, id, {
      status: 'deleted',
      busy: false,
      ended_at: old?.ended_at ?? when
    })
  );
}

function foldEvent(
  state: IPanelState,
  ev: IEvent
): { [id: string]: IRow } {
  const rows = state.rows;
  const cid = ev.container_id;
  if (!cid) {
    return rows;
  }
  if (!(cid in rows) && ev.type !== 'container.created' && state.listed) {
    return rows; // neither listed nor created since: deleted long ago (a replay)
  }
  const row = rows[cid] ?? newRow(cid);
  const d = ev.data ?? {};
  switch (ev.type) {
    case 'container.created':
      return update(rows, cid, {
        name: row.name || d.name || '',
        created_at: row.created_at ?? ev.created_at,
        last_active_at: row.last_active_at ?? ev.created_at,
        from_pool: typeof d.from_pool === 'boolean' ? d.from_pool : null,
        create_latency_ms:
          typeof d.latency_ms === 'number' ? d.latency_ms : null
      });
    case 'container.resolved': {
      const origin = String(d.origin ?? '?');
      const reused = REUSE_ORIGINS.has(origin);
      const resolution: IResolution = {
        seq: ev.seq,
        created_at: ev.created_at,
        origin,
        session_id: d.session_id ?? null,
        previous_id: d.previous_id ?? null,
        reused
      };
      return update(rows, cid, {
        last_origin: origin,
        last_session_id: d.session_id ?? null,
        reuses: row.reuses + (reused ? 1 : 0),
        last_reused_at: reused ? ev.created_at : row.last_reused_at,
        resolutions: [resolution, ...row.resolutions].slice(0, MAX_RESOLUTIONS)
      });
    }
    case 'execution.started':
      if (row.status !== 'running') {
        return rows;
      }
      return update(rows, cid, { busy: true });
    case 'execution.completed':
      if (row.status === 'deleted') {
        return rows;
      }
      return update(rows, cid, {
        busy: false,
        last_active_at: Math.max(row.last_active_at ?? 0, ev.created_at)
      });
    case 'container.expired':
      if (row.status === 'deleted') {
        return rows;
      }
      return update(rows, cid, {
        status: 'expired',
        busy: false,
        ended_at: ev.created_at
      });
    case 'container.deleted':
      return markDeleted(rows, cid, ev.created_at);
    case 'kernel.restarted':
      return update(rows, cid, { restarts: row.restarts + 1 });
    default:
      return rows;
  }
}

/**
 * The reducer: returns a new state (the old one is never mutated).
 *
 * Counters of a row come exactly from container objects (`listing`, `container`); events
 * move them forward in between, so the list is live without polling. An event already seen
 * (a replay after resuming with Last-Event-ID) is ignored.
 */
export function reduce(state: IPanelState, action: Action): IPanelState {
  switch (action.type) {
    case 'listing': {
      let rows = state.rows;
      const listed = new Set(action.containers.map(c => c.id));
      for (const c of action.containers) {
        rows = applyContainer(rows, c);
      }
      for (const [id, row] of Object.entries(rows)) {
        if (!listed.has(id) && row.status !== 'deleted') {
          rows = markDeleted(rows, id, action.now);
        }
      }
      return { ...state, rows, listed: true };
    }
    case 'container':
      return { ...state, rows: applyContainer(state.rows, action.container) };
    case 'gone':
      return { ...state, rows: markDeleted(state.rows, action.id, action.now) };
    case 'connection':
      return {
        ...state,
        connection: action.connection,
        error: action.error ?? null
      };
    case 'event': {
      const ev = action.event;
      if (state.recentIds.includes(ev.id)) {
        return { ...state, duplicates: state.duplicates + 1 };
      }
      const recentIds = [...state.recentIds, ev.id].slice(-RECENT_IDS);
      return {
        ...state,
        rows: foldEvent(state, ev),
        lastSeq: ev.seq,
        received: state.received + 1,
        recentIds
      };
    }
  }
}

/** The filter the panel's search box and status menu set. */
export interface IFilter {
  text: string;
  /** `live` = running and expired (deleted containers hidden), the default. */
  status: 'live' | 'all' | 'running' | 'expired' | 'deleted';
}

/** Rows to show: filtered, live first, then most recently active first. */
export function visibleRows(state: IPanelState, filter: IFilter): IRow[] {
  const text = filter.text.trim().toLowerCase();
  const rank: { [s: string]: number } = { running: 0, expired: 1 };
  return Object.values(state.rows)
    .filter(
      r =>
        filter.status === 'all' ||
        (filter.status === 'live' ? r.status !== 'deleted' : r.status === filter.status)
    )
    .filter(
      r =>
        !text ||
        r.name.toLowerCase().includes(text) ||
        r.id.toLowerCase().includes(text) ||
        (r.last_session_id ?? '').toLowerCase().includes(text)
    )
    .sort(
      (a, b) =>
        (rank[a.status] ?? 2) - (rank[b.status] ?? 2) ||
        (b.last_active_at ?? b.created_at ?? 0) -
          (a.last_active_at ?? a.created_at ?? 0) ||
        a.id.localeCompare(b.id)
    );
}

/** Whether a row was reused by a conversation within the last `windowS` seconds. */
export function recentlyReused(row: IRow, now: number, windowS = 10): boolean {
  return row.last_reused_at !== null && now - row.last_reused_at < windowS;
}

/** A duration in seconds as a compact human string: 4s, 3m 05s, 2h 10m, 3d 4h. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !isFinite(seconds)) {
    return '–';
  }
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  }
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** Milliseconds as "4.1 ms" / "120 ms" / "3.2 s". */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !isFinite(ms)) {
    return '–';
  }
  if (ms >= 1000) {
    return `${(ms / 1000).toFixed(1)} s`;
  }
  return ms >= 10 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
}

/** Time columns of a row at `now` (unix seconds): age, idle, time to expiry. */
export function times(
  row: IRow,
  now: number
): { age: string; idle: string; expiry: string } {
  const end = row.status === 'running' ? now : (row.ended_at ?? now);
  const age = row.created_at === null ? null : end - row.created_at;
  const idle =
    row.status !== 'running' || row.busy || row.last_active_at === null
      ? null
      : now - row.last_active_at;
  let expiry: string;
  if (row.status === 'expired') {
    expiry = 'expired';
  } else if (row.status === 'deleted') {
    expiry = 'deleted';
  } else if (row.last_active_at === null || row.expires_minutes === null) {
    expiry = '–';
  } else {
    expiry = formatDuration(
      row.last_active_at + row.expires_minutes * 60 - now
    );
  }
  return {
    age: formatDuration(age),
    idle: row.busy ? 'busy' : formatDuration(idle),
    expiry
  };
}

/** "pool" / "cold" / "–" for a row's creation. */
export function origin(row: IRow): string {
  if (row.from_pool === null) {
    return '–';
  }
  return row.from_pool ? 'pool' : 'cold';
}

/** Parse a chunk of a text/event-stream; returns complete events and the unparsed rest. */
export function parseSSE(buffer: string): {
  events: { id: string | null; event: string; data: string }[];
  rest: string;
} {
  const events: { id: string | null; event: string; data: string }[] = [];
  const normalized = buffer.replace(/\r\n?/g, '\n');
  const blocks = normalized.split('\n\n');
  const rest = blocks.pop() ?? '';
  for (const block of blocks) {
    let id: string | null = null;
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) {
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) {
        value = value.slice(1);
      }
      if (field === 'id') {
        id = value;
      } else if (field === 'event') {
        event = value;
      } else if (field === 'data') {
        data.push(value);
      }
    }
    if (data.length) {
      events.push({ id, event, data: data.join('\n') });
    }
  }
  return { events, rest };
}
