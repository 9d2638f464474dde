// A supervisor that keeps a QMPClient connected: it re-establishes a dropped session with back-off.

import { EventEmitter } from "node:events";
import { ConnectError, QMPError, SessionEndedError, describe } from "./errors.js";
import type { ConnectOptions } from "./protocol-options.js";
import type { QMPClient } from "./qmp-client.js";
import { Backoff, type RetryOptions, type RetryPolicy, retryPolicy, sleep } from "./retry.js";
import { Runstate } from "./runstate.js";
import type { InetAddress, UnixAddress } from "./transport.js";
import { type CallOptions, checkCallOptions, deadline } from "./util.js";

/** Options of {@link QMPSupervisor}: those of `connect()` for each connection, and the back-off. */
export interface SupervisorOptions extends Omit<ConnectOptions, "retry" | "signal"> {
  /**
   * The back-off of each (re)connection, as `connect()`'s `retry` (default
   * `true`: 50 ms doubling up to 1 s, with no limit on attempts). There is
   * no `process` to watch: the point is to outlive a QEMU process and reach
   * the next one on the same address.
   */
  retry?: true | Omit<RetryOptions, "process"> | undefined;
  /** Milliseconds each connect (its retries included) may take; default none. */
  timeout?: number | undefined;
}

/** The events of a {@link QMPSupervisor}. */
export interface SupervisorEvents {
  /**
   * The session dropped (the supervisor has already called `disconnect()`).
   * `cause` is the error `disconnect()` reported, or `undefined` when the peer
   * closed the connection cleanly (as when QEMU exits, or is killed).
   */
  disconnected: [cause: unknown];
  /** A new session is up (`RUNNING`) on the same client. */
  reconnected: [];
  /**
   * Reconnecting was given up: `retry.attempts` ran out, or a failure that
   * waiting does not cure (e.g. `EACCES`, a bad greeting). The client is
   * `IDLE` and the supervisor stopped.
   */
  reconnectFailed: [error: unknown];
}

/**
 * Keeps a {@link QMPClient} connected: when its session drops (QEMU killed,
 * restarted, the connection reset), it calls `disconnect()`, then connects
 * again with back-off, until it succeeds, `retry.attempts` run out or
 * {@link stop} is called.
 *
 * It is the same client object throughout: event listeners stay registered
 * and command ids keep increasing. Commands are never replayed (QMP commands
 * are not idempotent): calls pending when the session dropped fail with
 * `ExecInterruptedError`, and calls made while it is down get `StateError`.
 *
 * Every drop is reconnected, also the end of a session after `quit`: the
 * supervisor then keeps trying until QEMU is back, {@link stop} is called, or
 * `retry.attempts` run out. So is a `disconnect()` or `destroy()` called on
 * the client directly: end a supervised session with {@link stop}.
 *
 * ```ts
 * const qmp = new QMPClient({ name: "vm1" });
 * await using supervisor = new QMPSupervisor(qmp, "/run/vm1.qmp");
 * supervisor.on("reconnected", () => console.log("back"));
 * await supervisor.start();
 * ```
 */
export class QMPSupervisor extends EventEmitter<SupervisorEvents> {
  /** The supervised client. */
  readonly client: QMPClient;
  /** Where it connects (a UNIX socket path, `{ path }` or `{ host, port }`). */
  readonly address: string | UnixAddress | InetAddress;
  readonly #connectOptions: Omit<ConnectOptions, "retry" | "signal">;
  readonly #policy: RetryPolicy;
  /** Set while supervising; aborted by stop(). */
  #stop: AbortController | undefined;
  /** A recovery in progress (never rejects). */
  #task: Promise<void> | undefined;
  readonly #onRunstate = (state: Runstate, previous: Runstate): void => {
    if (state !== Runstate.DISCONNECTING || previous !== Runstate.RUNNING) return;
    const stop = this.#stop;
    if (stop === undefined || stop.signal.aborted || this.#task !== undefined) return;
    this.#task = this.#recover(stop).finally(() => {
      this.#task = undefined;
      // A drop while this recovery was finishing was ignored above: handle it now.
      if (this.#stop === stop && this.client.runstate === Runstate.DISCONNECTING) {
        this.#onRunstate(Runstate.DISCONNECTING, Runstate.RUNNING);
      }
    });
  };

  /**
   * @throws {TypeError} for a `retry.process` (not supported here) or a bad `retry`.
   * @throws {RangeError} for bad `retry` numbers.
   */
  constructor(
    client: QMPClient,
    address: string | UnixAddress | InetAddress,
    options: SupervisorOptions = {},
  ) {
    super();
    const { retry = true, ...connectOptions } = options;
    if (retry !== true && (retry as RetryOptions).process !== undefined) {
      throw new TypeError("QMPSupervisor takes no retry.process: it outlives QEMU processes");
    }
    this.#policy = retryPolicy(retry, address);
    this.client = client;
    this.address = address;
    this.#connectOptions = connectOptions;
  }

  /** Whether it is supervising (between {@link start} and {@link stop}, or giving up). */
  get active(): boolean {
    return this.#stop !== undefined;
  }

  /**
   * Connect the client (it must be `IDLE`), with the back-off, and supervise
   * it from then on. `options` bound this first connection only.
   *
   * @throws {QMPError} when already started.
   * @throws {ConnectError} when connecting was given up (as for `reconnectFailed`).
   * @throws {StateError} when the client is not `IDLE`.
   * @throws the `signal`'s reason on abort or timeout; an `AbortError` when
   *   {@link stop} is called meanwhile. The supervisor is then stopped.
   */
  async start(options: CallOptions = {}): Promise<void> {
    if (this.#stop !== undefined) throw new QMPError("The supervisor is already started");
    checkCallOptions(options);
    const stop = new AbortController();
    this.#stop = stop;
    this.client.on("runstate", this.#onRunstate);
    const { signal, dispose } = deadline(options, "QMPSupervisor.start()", stop.signal);
    try {
      await this.#connect(signal);
    } catch (err) {
      this.#end(stop);
      throw err;
    } finally {
      dispose();
    }
  }

  /**
   * Stop supervising: cut short a reconnection in progress, then disconnect
   * the client. Resolves when the client is `IDLE`; never rejects (an error
   * `disconnect()` reports is logged at debug level). Harmless when not started.
   */
  async stop(): Promise<void> {
    const stop = this.#stop;
    if (stop !== undefined) {
      stop.abort(new DOMException("The supervisor was stopped", "AbortError"));
      this.#end(stop);
    }
    await this.#task;
    try {
      await this.client.disconnect();
    } catch (err) {
      this.#log(`stop(): disconnect() reported ${describe(err)}`);
    }
  }

  /** `await using supervisor = new QMPSupervisor(…)` stops it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** After a drop: disconnect, report, connect again. Never rejects. */
  async #recover(stop: AbortController): Promise<void> {
    // The client fails the pending calls right after this state change, in
    // the same tick: let it finish before disconnect() takes it to IDLE.
    await Promise.resolve();
    let cause: unknown;
    try {
      await this.client.disconnect();
    } catch (err) {
      cause = err;
    }
    this.#log(`The session dropped${cause !== undefined ? `: ${describe(cause)}` : ""}`);
    this.#emit("disconnected", cause);
    if (stop.signal.aborted) return;
    try {
      await this.#connect(stop.signal);
    } catch (err) {
      if (stop.signal.aborted) return;
      this.#log(`Giving up reconnecting: ${describe(err)}`);
      this.#end(stop);
      this.#emit("reconnectFailed", err);
      return;
    }
    this.#log("Reconnected");
    this.#emit("reconnected");
  }

  /**
   * Connect with the back-off. The client's own retry covers a socket that
   * is missing or refuses; on top of that, a session cut while being
   * established (QEMU going away again, or an attempt's `timeout`) is tried
   * again, up to `attempts` times.
   */
  async #connect(signal: AbortSignal): Promise<void> {
    const policy = this.#policy;
    const retry = {
      delay: policy.delay,
      maxDelay: policy.maxDelay,
      attempts: policy.attempts,
      onRetry: policy.onRetry,
    };
    const backoff = new Backoff(policy);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.connect(this.address, { ...this.#connectOptions, retry, signal });
        return;
      } catch (err) {
        if (signal.aborted || !cutShort(err) || attempt >= policy.attempts) throw err;
        const wait = backoff.next();
        this.#log(`Connecting failed (${describe(err)}); trying again in ${wait} ms`);
        await sleep(wait, signal);
      }
    }
  }

  /** Stop watching `stop`'s run (idempotent). */
  #end(stop: AbortController): void {
    if (this.#stop !== stop) return;
    this.#stop = undefined;
    this.client.off("runstate", this.#onRunstate);
  }

  #emit<K extends keyof SupervisorEvents>(event: K, ...args: SupervisorEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: SupervisorEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.client.logger.error(`${this.#tag}A '${event}' listener threw: ${describe(err)}`);
    }
  }

  #log(message: string): void {
    this.client.logger.debug(`${this.#tag}Supervisor: ${message}`);
  }

  get #tag(): string {
    return this.client.name !== undefined ? `[${this.client.name}] ` : "";
  }
}

/**
 * Whether a failed connect was a session cut short while being established
 * (worth another try once QEMU is back), rather than a refusal that waiting
 * does not cure or a retry budget already spent.
 */
function cutShort(err: unknown): boolean {
  // The connect's own timeout (the supervisor's signal did not fire).
  if (err instanceof DOMException && err.name === "TimeoutError") return true;
  if (!(err instanceof ConnectError)) return false;
  const cause = err.cause;
  if (cause instanceof SessionEndedError) return true;
  const code = (cause as { code?: unknown } | null)?.code;
  return code === "ECONNRESET" || code === "EPIPE";
}
