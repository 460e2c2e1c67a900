import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { Feed } from './feed';
import { Action, IEvent, IPanelState, initialState, reduce } from './state';

/**
 * The live model behind the panel and the detail views: the reducer's state, fed by one
 * {@link Feed}; `changed` fires after every action, `event` for every new feed event.
 */
export class SessionsModel {
  constructor(readonly settings: ServerConnection.ISettings) {
    this.feed = new Feed(settings, action => this.dispatch(action));
  }

  /** The feed that keeps the model live. */
  readonly feed: Feed;

  /** The current state (never mutated; replaced on each action). */
  get state(): IPanelState {
    return this._state;
  }

  /** Fires after each state change. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Fires for each new (not replayed) event of the feed. */
  get event(): ISignal<this, IEvent> {
    return this._event;
  }

  /** Apply one action. */
  dispatch(action: Action): void {
    const before = this._state;
    this._state = reduce(this._state, action);
    if (this._state === before) {
      return;
    }
    if (
      action.type === 'event' &&
      this._state.received !== before.received
    ) {
      this._event.emit(action.event);
    }
    this._changed.emit();
  }

  /** Start following the server. */
  start(): void {
    this.feed.start();
  }

  /** Stop following the server. */
  dispose(): void {
    this.feed.stop();
    Signal.clearData(this);
  }

  private _state: IPanelState = initialState();
  private _changed = new Signal<this, void>(this);
  private _event = new Signal<this, IEvent>(this);
}
