/**
 * The panel's state logic: listings, container objects and feed events folded into rows.
 */
import {
  IContainer,
  IEvent,
  IPanelState,
  MAX_DELETED_ROWS,
  formatDuration,
  initialState,
  origin,
  parseSSE,
  recentlyReused,
  reduce,
  times,
  visibleRows
} from '../state';

function container(id: string, extra: Partial<IContainer> = {}): IContainer {
  return {
    id,
    name: `name-${id}`,
    status: 'running',
    created_at: 1000,
    last_active_at: 1000,
    expires_after: { anchor: 'last_active_at', minutes: 20 },
    exec_sessions: {
      kernel_id: `k-${id}`,
      executions: 0,
      sessions: 0,
      turns: 0,
      state_resets: 0,
      busy: false
    },
    ...extra
  };
}

let n = 0;
function event(type: string, cid: string, data: any = {}, at = 1000): IEvent {
  n += 1;
  return { id: `ev-${n}`, seq: n, type, created_at: at, container_id: cid, data };
}

function fold(state: IPanelState, ...events: IEvent[]): IPanelState {
  return events.reduce((s, e) => reduce(s, { type: 'event', event: e }), state);
}

describe('the panel state', () => {
  it('shows every listed container with its server counters', () => {
    const c = container('a', {
      exec_sessions: { kernel_id: 'k1', executions: 3, sessions: 2, turns: 5, busy: true }
    });
    const s = reduce(initialState(), { type: 'listing', containers: [c], now: 1000 });
    expect(s.listed).toBe(true);
    expect(s.rows.a).toMatchObject({
      name: 'name-a',
      kernel_id: 'k1',
      executions: 3,
      sessions: 2,
      turns: 5,
      busy: true,
      expires_minutes: 20
    });
  });

  it('adds a container created after the listing from its event, with pool or cold start', () => {
    let s = reduce(initialState(), { type: 'listing', containers: [], now: 0 });
    s = fold(s, event('container.created', 'b', { name: 'new', from_pool: true, latency_ms: 3.2 }));
    expect(s.rows.b.name).toBe('new');
    expect(origin(s.rows.b)).toBe('pool');
    expect(s.rows.b.create_latency_ms).toBe(3.2);
    s = fold(s, event('container.created', 'c', { name: 'cold', from_pool: false }));
    expect(origin(s.rows.c)).toBe('cold');
  });

  it('ignores an event it has already seen (a replay after resuming)', () => {
    let s = reduce(initialState(), { type: 'listing', containers: [container('a')], now: 0 });
    const ev = event('container.resolved', 'a', { origin: 'history', session_id: 's1' });
    s = fold(s, ev, ev);
    expect(s.rows.a.reuses).toBe(1);
    expect(s.duplicates).toBe(1);
    expect(s.received).toBe(1);
    expect(s.lastSeq).toBe(ev.seq);
  });

  it('counts reuses and keeps the resolution history newest first', () => {
    let s = reduce(initialState(), { type: 'listing', containers: [container('a')], now: 0 });
    s = fold(
      s,
      event('container.resolved', 'a', { origin: 'created', session_id: 's1' }, 1000),
      event('container.resolved', 'a', { origin: 'history', session_id: 's1' }, 1010),
      event('container.resolved', 'a', { origin: 'explicit', session_id: 's2' }, 1020)
    );
    const row = s.rows.a;
    expect(row.reuses).toBe(2);
    expect(row.resolutions.map(r => r.origin)).toEqual(['explicit', 'history', 'created']);
    expect(row.resolutions[2].reused).toBe(false);
    expect(recentlyReused(row, 1025)).toBe(true);
    expect(recentlyReused(row, 1100)).toBe(false);
    expect(row.last_session_id).toBe('s2');
  });

  it('marks a container busy while it executes and idle after', () => {
    let s = reduce(initialState(), { type: 'listing', containers: [container('a')], now: 0 });
    s = fold(s, event('execution.started', 'a', { execution_id: 'e1' }, 1100));
    expect(s.rows.a.busy).toBe(true);
    expect(times(s.rows.a, 1105).idle).toBe('busy');
    s = fold(s, event('execution.completed', 'a', { status: 'completed' }, 1200));
    expect(s.rows.a.busy).toBe(false);
    expect(s.rows.a.last_active_at).toBe(1200);
  });

  it('takes exact counters from a re-read container object', () => {
    let s = reduce(initialState(), { type: 'listing', containers: [container('a')], now: 0 });
    s = reduce(s, {
      type: 'container',
      container: container('a', { exec_sessions: { executions: 7, sessions: 1, turns: 2 } })
    });
    expect(s.rows.a.executions).toBe(7);
    expect(s.rows.a.turns).toBe(2);
  });

  it('keeps a deleted container deleted even when a late container object arrives', () => {
    let s = reduce(initialState(), { type: 'listing', containers: [container('a')], now: 0 });
    s = fold(s, event('container.deleted', 'a', {}, 1300));
    expect(s.rows.a.status).toBe('deleted');
    s = reduce(s, { type: 'container', container: container('a') });
    expect(s.rows.a.status).toBe('deleted');
    expect(s.rows.a.ended_at).toBe(1300);
  });

  it('marks containers missing from a new listing as deleted', () => {
    let s = reduce(initialState(), {
      type: 'listing',
      containers: [container('a'), container('b')],
      now: 0
    });
    s = reduce(s, { type: 'listing', containers: [container('b')], now: 50 });
    expect(s.rows.a.status).toBe('deleted');
    expect(s.rows.b.status).toBe('running');
  });

  it('drops replayed events of containers deleted before the listing', () => {
    let s = reduce(initialState(), { type: 'listing', containers: [], now: 0 });
    s = fold(s, event('execution.completed', 'old', {}));
    expect(s.rows.old).toBeUndefined();
  });

  it('shows expiry as a countdown, then expired', () => {
    let s = reduce(initialState(), { type: 'listing', containers: [container('a')], now: 0 });
    expect(times(s.rows.a, 1000 + 60).expiry).toBe('19m 00s');
    s = fold(s, event('container.expired', 'a', {}, 2200));
    expect(s.rows.a.status).toBe('expired');
    expect(times(s.rows.a, 3000).expiry).toBe('expired');
    expect(times(s.rows.a, 3000).age).toBe('20m 00s');
  });

  it('counts kernel restarts', () => {
    let s = reduce(initialState(), { type: 'listing', containers: [container('a')], now: 0 });
    s = fold(s, event('kernel.restarted', 'a', { reason: 'timeout' }));
    expect(s.rows.a.restarts).toBe(1);
  });

  it('keeps at most a bounded number of deleted rows', () => {
    const many = Array.from({ length: MAX_DELETED_ROWS + 10 }, (_, i) => container(`c${i}`));
    let s = reduce(initialState(), { type: 'listing', containers: many, now: 0 });
    s = reduce(s, { type: 'listing', containers: [], now: 10 });
    expect(Object.keys(s.rows)).toHaveLength(MAX_DELETED_ROWS);
  });

  it('filters by name and status and sorts live, most recently active first', () => {
    const s = reduce(initialState(), {
      type: 'listing',
      containers: [
        container('a', { name: 'alpha', last_active_at: 10 }),
        container('b', { name: 'beta', last_active_at: 30 }),
        container('c', { name: 'gamma', status: 'expired', last_active_at: 50 })
      ],
      now: 0
    });
    expect(visibleRows(s, { text: '', status: 'all' }).map(r => r.id)).toEqual(['b', 'a', 'c']);
    expect(visibleRows(s, { text: 'ALP', status: 'all' }).map(r => r.id)).toEqual(['a']);
    expect(visibleRows(s, { text: '', status: 'expired' }).map(r => r.id)).toEqual(['c']);
    const gone = reduce(s, { type: 'gone', id: 'a', now: 60 });
    expect(visibleRows(gone, { text: '', status: 'live' }).map(r => r.id)).toEqual(['b', 'c']);
    expect(visibleRows(gone, { text: '', status: 'deleted' }).map(r => r.id)).toEqual(['a']);
  });

  it('returns the same state object when a container object changes nothing', () => {
    const s = reduce(initialState(), { type: 'listing', containers: [container('a')], now: 0 });
    const again = reduce(s, { type: 'container', container: container('a') });
    expect(again.rows).toBe(s.rows);
  });

  it('records connection changes with their error', () => {
    const s = reduce(initialState(), {
      type: 'connection',
      connection: 'unauthorized',
      error: 'bad token'
    });
    expect(s.connection).toBe('unauthorized');
    expect(s.error).toBe('bad token');
  });
});

describe('parseSSE', () => {
  it('splits complete events and keeps the partial rest, skipping comments', () => {
    const { events, rest } = parseSSE(
      ': connected\n\nid: 3\nevent: container.created\ndata: {"a":1}\n\nid: 4\ndata: {"b"'
    );
    expect(events).toEqual([{ id: '3', event: 'container.created', data: '{"a":1}' }]);
    expect(rest).toBe('id: 4\ndata: {"b"');
  });

  it('joins multi-line data and accepts CRLF', () => {
    const { events } = parseSSE('data: a\r\ndata: b\r\n\r\n');
    expect(events[0].data).toBe('a\nb');
  });
});

describe('formatDuration', () => {
  it('prints compact durations', () => {
    expect(formatDuration(null)).toBe('–');
    expect(formatDuration(4.7)).toBe('4s');
    expect(formatDuration(185)).toBe('3m 05s');
    expect(formatDuration(7800)).toBe('2h 10m');
    expect(formatDuration(3 * 86400 + 4 * 3600)).toBe('3d 4h');
    expect(formatDuration(-5)).toBe('0s');
  });
});
