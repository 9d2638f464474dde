// One connect(), startServer() or accept(): its cancellation, its deadline, its phase and its error.

import { ConnectCancelledError, ConnectError } from "./errors.js";
import { type CallOptions, deadline } from "./util.js";

/** The phase of an attempt before its stream is open: a `ConnectError`'s message. */
export const CONNECTION_FAILED = "Failed to establish connection";
/** The phase once the stream is open (greeting, negotiation). */
export const SESSION_FAILED = "Failed to establish session";

/**
 * An attempt to reach `RUNNING` (or to listen): `disconnect()` cancels it
 * with a {@link ConnectCancelledError}; the caller's `signal` and `timeout`
 * end it too. One signal covers the whole attempt; `dispose()` when over.
 */
export class Attempt {
  /** Fires on cancellation, the caller's abort, or the timeout. */
  readonly signal: AbortSignal;
  /** Clears the timer and the listeners of {@link signal}. */
  readonly dispose: () => void;
  /** What failed if it fails now. */
  phase = CONNECTION_FAILED;
  /**
   * For a TLS stream once the session starts: tells whether an error is
   * really the TLS layer's (see `tlsSessionFailure`).
   */
  transportFailure: ((err: unknown) => unknown) | undefined;
  readonly #cancel = new AbortController();

  /**
   * @param what names the operation in a `TimeoutError`'s message.
   * @throws {TypeError} {RangeError} for options of the wrong type or range.
   */
  constructor(options: CallOptions, what: string) {
    const d = deadline(options, what, this.#cancel.signal);
    this.signal = d.signal;
    this.dispose = d.dispose;
  }

  /** Cancel it (`disconnect()`, `destroy()`): it fails with a ConnectError caused by `reason`. */
  cancel(reason: ConnectCancelledError): void {
    this.#cancel.abort(reason);
  }

  /**
   * Whether its signal has fired, and why; read before the attempt's own
   * teardown (which cancels it too) to know what really stopped it.
   */
  fired(): { reason: unknown } | undefined {
    return this.signal.aborted ? { reason: this.signal.reason as unknown } : undefined;
  }

  /**
   * What to throw after `err` ended the attempt, given what {@link fired}
   * said before the teardown: the caller's abort or timeout reason as it
   * is; a ConnectError for a cancellation and for everything else.
   */
  errorFor(err: unknown, fired: { reason: unknown } | undefined): unknown {
    if (fired !== undefined) {
      const reason = fired.reason;
      return reason instanceof ConnectCancelledError
        ? new ConnectError(this.phase, reason)
        : reason;
    }
    // A TLS failure that shows only once the session starts is still the transport's.
    const tlsError = this.transportFailure?.(err);
    if (tlsError !== undefined) return new ConnectError(CONNECTION_FAILED, tlsError);
    return new ConnectError(this.phase, err);
  }
}
