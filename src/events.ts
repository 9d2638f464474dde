// EventListener: a bounded queue of QMP events with filtering, history and async iteration.

import { ListenerError, SessionEndedError } from "./errors.js";
import { Fifo } from "./fifo.js";
import type { QMPEvent } from "./message.js";
import { type CallOptions, checkCallOptions, deadline, raceSignal } from "./util.js";

/** What a full listener does with one more event. */
export type OverflowPolicy = "drop-oldest" | "drop-newest" | "error";

/** What every event has: its name. (A typed client's events have typed `data`.) */
export interface NamedEvent {
  readonly event: string;
}

/**
 * Decides whether a listener takes an event (after the name check). `E` is
 * the listener's event type ({@link QMPEvent}, or a typed client's events).
 */
// A method's type, so that a listener of typed events still counts as a listener of any event.
export type EventFilter<E = QMPEvent> = { check(event: E): boolean }["check"];

/** Options of {@link EventListener}. */
export interface EventListenerOptions<E extends NamedEvent = QMPEvent> {
  /** Event names to take; a string, a list, or empty/absent for all. */
  names?: E["event"] | Iterable<E["event"]> | undefined;
  /** Further test, applied after `names`. */
  filter?: EventFilter<E> | undefined;
  /**
   * Most events held unconsumed (default 10 000). A consumer that keeps up
   * never reaches it: events are handed over between socket reads.
   */
  maxPending?: number | undefined;
  /**
   * When full: `drop-oldest` (default) makes room, `drop-newest` discards the
   * arrival, `error` discards it and makes the next `get()` (or iteration
   * step) throw a {@link ListenerError}. All three count {@link dropped}.
   */
  overflow?: OverflowPolicy | undefined;
  /** How many recent events {@link history} keeps (default 100; 0 for none). */
  historySize?: number | undefined;
  /**
   * What async iteration does when the session ends and the queue is empty:
   * `return` (default) ends the loop, `throw` throws a {@link SessionEndedError}.
   */
  onSessionEnd?: "return" | "throw" | undefined;
}

/** Default of {@link EventListenerOptions.maxPending}. */
export const DEFAULT_MAX_PENDING = 10_000;

const END = Symbol("end");
// A method's type (bivariant), as EventFilter: see there.
type Waiter<E> = { wake(value: E | typeof END): void }["wake"];

// Hooks the client uses; not exported from the package.
/** @internal */
export const kPush: unique symbol = Symbol("push");
/** @internal */
export const kSessionEnded: unique symbol = Symbol("sessionEnded");
/** @internal */
export const kSessionStarted: unique symbol = Symbol("sessionStarted");
/** @internal */
export const kAttach: unique symbol = Symbol("attach");

/**
 * A queue of events, filtered by name and by a predicate. Register it with a
 * client (`registerListener`, `listen`, or make one with `client.listener()`).
 *
 * Each registered listener gets its own copy of each event it takes; within
 * one listener each event goes to exactly one consumer (`get()` or an
 * iterator). Iterating ends when the client's session ends, once the queued
 * events are consumed.
 *
 * `E` is the type of its events: {@link QMPEvent} by default; on a typed
 * client (`QMPClient<QAPI>`), `client.listener("JOB_STATUS_CHANGE")` gives
 * a listener of that event with its typed `data`.
 */
export class EventListener<E extends NamedEvent = QMPEvent>
  implements AsyncIterable<E>, Disposable
{
  /** Names taken, or `undefined` for all. */
  readonly names: ReadonlySet<string> | undefined;
  /** The extra predicate, if any. */
  readonly filter: EventFilter<E> | undefined;
  /** The bound on unconsumed events. */
  readonly maxPending: number;
  /** The overflow policy. */
  readonly overflow: OverflowPolicy;
  readonly #historySize: number;
  readonly #throwOnEnd: boolean;
  /** Events not consumed yet. */
  // The queue, the history and the waiters are made when first needed:
  // most listeners of most clients never hold an event.
  #queue: Fifo<E> | undefined;
  #history: E[] | undefined;
  #historyHead = 0;
  #waiters: Waiter<E>[] | undefined;
  #dropped = 0;
  #overflowed = false;
  #ended: unknown = undefined;
  #isEnded = false;
  /** How to unregister from each client (made on first registration). */
  #detachers: Set<() => void> | undefined;

  /**
   * @throws {RangeError} when `maxPending` is below 1 or `historySize` below 0.
   */
  constructor(options: EventListenerOptions<E> = {}) {
    const names = options.names;
    const set: Set<string> =
      typeof names === "string" ? new Set([names]) : new Set<string>(names ?? []);
    this.names = set.size > 0 ? set : undefined;
    this.filter = options.filter;
    this.maxPending = options.maxPending ?? DEFAULT_MAX_PENDING;
    if (!(this.maxPending >= 1)) throw new RangeError("maxPending must be at least 1");
    this.overflow = options.overflow ?? "drop-oldest";
    this.#historySize = options.historySize ?? 100;
    if (!(this.#historySize >= 0)) throw new RangeError("historySize must be 0 or more");
    this.#throwOnEnd = options.onSessionEnd === "throw";
  }

  /** Events lost to the overflow policy since the listener was made. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Number of events waiting to be consumed. */
  get pending(): number {
    return this.#queue?.length ?? 0;
  }

  /** The last `historySize` events taken, oldest first (consumed or not). */
  get history(): E[] {
    const h = this.#history ?? [];
    return [...h.slice(this.#historyHead), ...h.slice(0, this.#historyHead)];
  }

  /** Whether the name check and the filter let `event` in. */
  accepts(event: E): boolean {
    if (this.names !== undefined && !this.names.has(event.event)) return false;
    return this.filter === undefined || this.filter(event);
  }

  /** Whether no event is waiting. */
  empty(): boolean {
    return this.pending === 0;
  }

  /** Remove and return every waiting event; an overflow not yet reported by `get()` is forgotten. */
  clear(): E[] {
    const events = this.#queue?.takeAll() ?? [];
    // What overflowed is gone with the rest: the next get() has nothing to report.
    this.#overflowed = false;
    return events;
  }

  /**
   * The next event: a waiting one at once, else the next to arrive.
   *
   * @throws {SessionEndedError} when nothing is waiting and the session has
   *   ended (at once, or when it ends while waiting).
   * @throws {ListenerError} once after events were lost with `overflow: "error"`.
   * @throws the `signal`'s reason on abort or timeout.
   */
  async get(options: CallOptions = {}): Promise<E> {
    const event = await this.#next(options);
    if (event === END) throw this.#endError();
    return event;
  }

  /** Iterate over events until the session ends (see `onSessionEnd`). */
  async *[Symbol.asyncIterator](): AsyncIterator<E> {
    for (;;) {
      const event = await this.#next({});
      if (event === END) {
        if (this.#throwOnEnd) throw this.#endError();
        return;
      }
      yield event;
    }
  }

  /** Unregister from every client this listener is registered with. */
  [Symbol.dispose](): void {
    for (const detach of [...(this.#detachers ?? [])]) detach();
  }

  #endError(): SessionEndedError {
    return new SessionEndedError("The session ended while waiting for an event", {
      cause: this.#ended,
    });
  }

  #next(options: CallOptions): Promise<E | typeof END> {
    checkCallOptions(options);
    if (this.#overflowed) {
      this.#overflowed = false;
      return Promise.reject(
        new ListenerError(`Event listener overflowed: ${this.#dropped} event(s) dropped so far`),
      );
    }
    const queued = this.#queue?.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#isEnded) return Promise.resolve(END);
    const { signal, timeout } = options;
    let waiter!: Waiter<E>;
    const promise = new Promise<E | typeof END>((resolve) => {
      waiter = resolve;
      (this.#waiters ??= []).push(waiter);
    });
    if (signal === undefined && timeout === undefined) return promise;
    const names = this.names;
    const what =
      names === undefined ? "waiting for an event" : `waiting for ${[...names].join(" or ")}`;
    const d = deadline(options, what);
    return raceSignal(promise, d.signal, () => {
      const i = this.#waiters?.indexOf(waiter) ?? -1;
      if (i !== -1) this.#waiters!.splice(i, 1);
    }).finally(d.dispose);
  }

  /** @internal A new event for this listener (already checked with {@link accepts}). */
  [kPush](event: E): void {
    if (this.#historySize > 0) {
      const history = (this.#history ??= []);
      if (history.length < this.#historySize) history.push(event);
      else {
        history[this.#historyHead] = event;
        this.#historyHead = (this.#historyHead + 1) % this.#historySize;
      }
    }
    const waiter = this.#waiters?.shift();
    if (waiter !== undefined) {
      waiter(event);
      return;
    }
    if (this.pending >= this.maxPending) {
      this.#dropped++;
      if (this.overflow === "drop-oldest") this.#queue?.shift();
      else {
        if (this.overflow === "error") this.#overflowed = true;
        return;
      }
    }
    (this.#queue ??= new Fifo<E>()).push(event);
  }

  /** @internal The session ended: wake every waiter. */
  [kSessionEnded](cause: unknown): void {
    this.#isEnded = true;
    this.#ended = cause;
    const waiters = this.#waiters;
    this.#waiters = undefined;
    if (waiters !== undefined) for (const waiter of waiters) waiter(END);
  }

  /** @internal A session started: waiting makes sense again. */
  [kSessionStarted](): void {
    this.#isEnded = false;
    this.#ended = undefined;
  }

  /** @internal Remember how to unregister from a client; returns the forgetter. */
  [kAttach](detach: () => void): () => void {
    const detachers = (this.#detachers ??= new Set());
    detachers.add(detach);
    return () => detachers.delete(detach);
  }
}
