import { ServerConnection } from '@jupyterlab/services';

import { APIError, rawRequest, requestAPI } from './request';
import { Action, IContainer, IEvent, parseSSE } from './state';

const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 5000;
const REFRESH_DELAY_MS = 100;

/**
 * Follows the caller's containers: `GET /events` (server-sent events, read with fetch so
 * the request carries JupyterLab's own credentials and `Last-Event-ID`) plus a full
 * `GET /containers` listing after each (re)connection, so a container created in between
 * is in the listing or in the stream, never in neither. Containers touched by an event are
 * re-read (debounced) so counters are the server's exact ones.
 */
export class Feed {
  constructor(
    private settings: ServerConnection.ISettings,
    private dispatch: (action: Action) => void
  ) {}

  /** The last event seq processed; sent as Last-Event-ID on reconnect. */
  lastSeq: number | null = null;

  /** Number of (re)connections made. */
  connections = 0;

  /** Start following (idempotent). */
  start(): void {
    if (this._running) {
      return;
    }
    this._running = true;
    void this._loop();
  }

  /** Stop following. */
  stop(): void {
    this._running = false;
    this._abort?.abort();
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  /** Re-read one container now (after an action of the panel itself). */
  refresh(id: string): void {
    this._pending.add(id);
    this._scheduleRefresh();
  }

  private async _loop(): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    while (this._running) {
      this._abort = new AbortController();
      try {
        await this._connect(this._abort.signal, () => {
          backoff = BACKOFF_MIN_MS;
        });
        if (this._running) {
          this.dispatch({ type: 'connection', connection: 'reconnecting' });
        }
      } catch (error) {
        if (!this._running) {
          return;
        }
        const err = error as APIError;
        if (err.status === 401 || err.status === 403) {
          this.dispatch({
            type: 'connection',
            connection: 'unauthorized',
            error: `Not authorized (${err.status}): ${err.message}`
          });
        } else {
          this.dispatch({
            type: 'connection',
            connection: 'reconnecting',
            error: err.message ?? String(error)
          });
        }
      }
      if (!this._running) {
        return;
      }
      await new Promise(resolve => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  private async _connect(
    signal: AbortSignal,
    onOpen: () => void
  ): Promise<void> {
    const headers: { [k: string]: string } = { Accept: 'text/event-stream' };
    if (this.lastSeq !== null) {
      headers['Last-Event-ID'] = String(this.lastSeq);
    }
    const response = await rawRequest('events', this.settings, {
      headers,
      signal,
      cache: 'no-store'
    });
    if (!response.ok || !response.body) {
      let message = response.statusText;
      try {
        message = (await response.json()).error.message;
      } catch {
        // keep statusText
      }
      throw new APIError(message, response.status);
    }
    this.connections += 1;
    await this._list();
    onOpen();
    this.dispatch({ type: 'connection', connection: 'live' });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        return;
      }
      buffer += decoder.decode(value, { stream: true });
      const parsed = parseSSE(buffer);
      buffer = parsed.rest;
      for (const raw of parsed.events) {
        let event: IEvent;
        try {
          event = JSON.parse(raw.data);
        } catch {
          continue;
        }
        this.lastSeq = event.seq;
        this.dispatch({ type: 'event', event });
        if (event.container_id && event.type !== 'container.deleted') {
          this._pending.add(event.container_id);
          this._scheduleRefresh();
        }
      }
    }
  }

  private async _list(): Promise<void> {
    const found: IContainer[] = [];
    let after: string | null = null;
    for (let page = 0; page < 1000; page++) {
      const query: string =
        'containers?limit=100&order=asc' + (after ? `&after=${encodeURIComponent(after)}` : '');
      const answer: any = await requestAPI<any>(query, this.settings);
      found.push(...answer.data);
      if (!answer.has_more || !answer.last_id) {
        break;
      }
      after = answer.last_id;
    }
    this.dispatch({ type: 'listing', containers: found, now: Date.now() / 1000 });
  }

  private _scheduleRefresh(): void {
    if (this._timer !== null) {
      return;
    }
    this._timer = setTimeout(() => {
      this._timer = null;
      const ids = [...this._pending];
      this._pending.clear();
      for (const id of ids) {
        requestAPI<IContainer>(`containers/${id}`, this.settings)
          .then(c => this.dispatch({ type: 'container', container: c }))
          .catch((e: APIError) => {
            if (e.status === 404) {
              this.dispatch({ type: 'gone', id, now: Date.now() / 1000 });
            }
          });
      }
    }, REFRESH_DELAY_MS);
  }

  private _running = false;
  private _abort: AbortController | null = null;
  private _pending = new Set<string>();
  private _timer: ReturnType<typeof setTimeout> | null = null;
}
