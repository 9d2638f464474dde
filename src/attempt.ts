// One connect(), startServer() or accept(): its cancellation, its deadline, its phase and its error.

import { ConnectCancelledError, ConnectError } from "./errors.js";
import { type Abortable, type CallOptions, MAX_TIMER_DELAY, timeoutError } from "./util.js";

/** The phase of an attempt before its stream is open: a `ConnectError`'s message. */
export const CONNECTION_FAILED = "Failed to establish connection";
/** The phase once the stream is open (greeting, negotiation). */
export const SESSION_FAILED = "Failed to establish session";

/**
 * An attempt to reach `RUNNING` (or to listen). It aborts when
 * `disconnect()` cancels it (a {@link ConnectCancelledError}), when the
 * caller's `signal` fires, or at its `timeout`; `dispose()` it when over.
 *
 * It is itself the signal the engine waits on ({@link Abortable}): a plain
 * list of listeners, so that a connect costs no `AbortController` (with its
 * `EventTarget`) unless something needs a real `AbortSignal` ({@link signal}).
 */
export class Attempt implements Abortable {
  /** What failed if it fails now. */
  phase = CONNECTION_FAILED;
  /**
   * For a TLS stream once the session starts: tells whether an error is
   * really the TLS layer's (see `tlsSessionFailure`).
   */
  transportFailure: ((err: unknown) => unknown) | undefined;
  #aborted = false;
  #reason: unknown;
  #listeners: (() => void)[] | undefined;
  #controller: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  #userSignal: AbortSignal | undefined;
  #onUserAbort: (() => void) | undefined;

  /**
   * @param options checked already (`checkCallOptions`).
   * @param what names the operation in a `TimeoutError`'s message.
   */
  constructor(options: CallOptions, what: string) {
    const { signal, timeout } = options;
    if (signal !== undefined) {
      if (signal.aborted) {
        this.#abort(signal.reason);
        return;
      }
      this.#userSignal = signal;
      this.#onUserAbort = () => this.#abort(signal.reason);
      signal.addEventListener("abort", this.#onUserAbort, { once: true });
    }
    if (timeout !== undefined && timeout !== Infinity) {
      // setTimeout() turns a delay past 2^31 - 1 ms (~24.8 days) into 1 ms: cap it instead.
      this.#timer = setTimeout(
        () => this.#abort(timeoutError(what, timeout)),
        Math.min(timeout, MAX_TIMER_DELAY),
      );
    }
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): unknown {
    return this.#reason;
  }

  /** A real `AbortSignal` that follows this attempt, made on first use (retry, accept, …). */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** @throws the reason, once aborted. */
  throwIfAborted(): void {
    if (this.#aborted) throw this.#reason;
  }

  addEventListener(_type: "abort", listener: () => void): void {
    if (!this.#aborted) (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const listeners = this.#listeners;
    const i = listeners?.indexOf(listener) ?? -1;
    if (i !== -1) listeners!.splice(i, 1);
  }

  /** Cancel it (`disconnect()`, `destroy()`): it fails with a ConnectError caused by `reason`. */
  cancel(reason: ConnectCancelledError): void {
    this.#abort(reason);
  }

  /** Clear the timer and the listener on the caller's signal. */
  dispose(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#onUserAbort !== undefined) {
      this.#userSignal!.removeEventListener("abort", this.#onUserAbort);
      this.#onUserAbort = undefined;
    }
  }

  /**
   * Whether it has aborted, and why; read before the attempt's own
   * teardown (which cancels it too) to know what really stopped it.
   */
  fired(): { reason: unknown } | undefined {
    return this.#aborted ? { reason: this.#reason } : undefined;
  }

  /**
   * What to throw after `err` ended the attempt, given what {@link fired}
   * said before the teardown: the caller's abort or timeout reason as it
   * is; a ConnectError for a cancellation and for everything else.
   */
  errorFor(err: unknown, fired: { reason: unknown } | undefined): unknown {
    const reason = fired?.reason;
    if (reason instanceof ConnectCancelledError) return new ConnectError(this.phase, reason);
    // A subclass's own connect error (a guest agent's SyncError) says it all.
    if (err instanceof ConnectError) return err;
    if (fired !== undefined) return reason;
    // A TLS failure that shows only once the session starts is still the transport's.
    const tlsError = this.transportFailure?.(err);
    if (tlsError !== undefined) return new ConnectError(CONNECTION_FAILED, tlsError);
    return new ConnectError(this.phase, err);
  }

  #abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.dispose();
    this.#controller?.abort(reason);
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (listeners !== undefined) for (const l of listeners) l();
  }
}
