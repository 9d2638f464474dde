// The event listeners of a client: registration, delivery (a copy each), and the sessions' ends.

import { ListenerError } from "./errors.js";
import {
  type EventListener,
  type NamedEvent,
  kAttach,
  kPush,
  kSessionEnded,
  kSessionStarted,
} from "./events.js";
import type { QMPEvent } from "./message.js";
import type { Logger } from "./util.js";

/** Any listener, whatever its events' type: what a client registers. */
export type AnyListener = EventListener<NamedEvent>;

/**
 * A client's listeners: the default one, which takes every event and stays,
 * and any others. Each listener that takes an event gets its own copy.
 */
export class Listeners {
  readonly #default: AnyListener;
  readonly #logger: Logger;
  readonly #tag: string;
  /** The listeners registered besides the default one (made on the first: most clients have none). */
  #others: Set<AnyListener> | undefined;
  /** How each registered listener forgets this client (made on the first registration). */
  #forgetters: Map<AnyListener, () => void> | undefined;
  /** Set when a session ended and no new one started: what listeners registered now must see. */
  #ended: { cause: unknown } | undefined;

  constructor(defaultListener: AnyListener, logger: Logger, tag: string) {
    this.#default = defaultListener;
    this.#logger = logger;
    this.#tag = tag;
  }

  /** Whether `listener` is registered here (the default one included). */
  has(listener: AnyListener): boolean {
    return listener === this.#default || (this.#others?.has(listener) ?? false);
  }

  /**
   * @throws {ListenerError} when it is already registered.
   */
  register(listener: AnyListener): void {
    if (this.has(listener)) {
      throw new ListenerError("This listener is already registered with this client");
    }
    (this.#others ??= new Set()).add(listener);
    // A listener joining between sessions must know the last one is over
    // (or it would wait forever); one joining a live session must not think so.
    if (this.#ended !== undefined) listener[kSessionEnded](this.#ended.cause);
    else listener[kSessionStarted]();
    const forget = listener[kAttach](() => {
      if (this.#others?.has(listener)) this.unregister(listener);
    });
    (this.#forgetters ??= new Map()).set(listener, forget);
  }

  /**
   * @throws {ListenerError} for the default listener, or one not registered.
   */
  unregister(listener: AnyListener): void {
    if (listener === this.#default) {
      throw new ListenerError("The default listener 'events' cannot be unregistered");
    }
    if (!this.#others?.delete(listener)) {
      throw new ListenerError("This listener is not registered with this client");
    }
    this.#forgetters?.get(listener)?.();
    this.#forgetters?.delete(listener);
  }

  /**
   * Register `listeners` for a scope: all or none (a failure undoes the
   * ones done); disposing unregisters those still registered.
   *
   * @throws {ListenerError} when one is already registered.
   */
  listen(listeners: readonly AnyListener[]): Disposable {
    const done: AnyListener[] = [];
    try {
      for (const l of listeners) {
        this.register(l);
        done.push(l);
      }
    } catch (err) {
      for (const l of done) this.unregister(l);
      throw err;
    }
    return {
      [Symbol.dispose]: () => {
        for (const l of done) if (this.#others?.has(l)) this.unregister(l);
      },
    };
  }

  /** A session started: waiting for events makes sense again. */
  sessionStarted(): void {
    this.#ended = undefined;
    this.#default[kSessionStarted]();
    if (this.#others !== undefined) for (const l of this.#others) l[kSessionStarted]();
  }

  /** The session ended with `reason`: wake every waiter. */
  sessionEnded(reason: Error): void {
    this.#ended = { cause: reason };
    this.#default[kSessionEnded](reason);
    if (this.#others !== undefined) for (const l of this.#others) l[kSessionEnded](reason);
  }

  /**
   * Give `event` to every listener that takes it. The first taker gets the
   * parsed object; others get copies, so no consumer sees another's changes.
   */
  deliver(event: QMPEvent): void {
    let taken = this.#offer(this.#default, event, false);
    const others = this.#others;
    if (others !== undefined) for (const l of others) taken = this.#offer(l, event, taken) || taken;
  }

  /** Give `event` (a copy if `taken` already) to `listener` if it accepts it; whether it did. */
  #offer(listener: AnyListener, event: QMPEvent, taken: boolean): boolean {
    let takes: boolean;
    try {
      takes = listener.accepts(event);
    } catch (err) {
      this.#logger.error(`${this.#tag}An event filter threw: ${String(err)}`);
      return false;
    }
    if (takes) listener[kPush](taken ? structuredClone(event) : event);
    return takes;
  }
}
