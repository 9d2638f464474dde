// The generic engine: runstate, connect/accept/disconnect, one reader and one writer per session.
//
// It knows nothing about QMP: a subclass gets each inbound JSON object in
// wire order (`handleMessage`), establishes its session (`establishSession`)
// and hears when the session ends (`sessionEnded`).

import { channel } from "node:diagnostics_channel";
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { inspect } from "node:util";
import { ConnectError, QMPError, SessionEndedError, StateError, describe } from "./errors.js";
import { fdPassingTarget, loadFdSender, sendFdsOn } from "./fd-passing.js";
import { DEFAULT_MAX_MESSAGE_SIZE, type Frame, JsonObjectScanner } from "./framing.js";
import { type RetryOptions, openWithRetry, retryPolicy } from "./retry.js";
import { Runstate } from "./runstate.js";
import {
  type InetAddress,
  Listener,
  type ListenOptions,
  type SocketAddress,
  type TlsConnectOptions,
  type UnixAddress,
  checkTlsAddress,
  formatAddress,
  openStream,
  tlsSessionFailure,
} from "./transport.js";
import {
  type CallOptions,
  type Logger,
  deadline,
  debugEnabled,
  debugLogger,
  deferred,
  raceSignal,
  traceText,
} from "./util.js";

/** `diagnostics_channel` for every message sent: `{ client, name, message }`. */
export const sendChannel = channel("qmp:message:send");
/** `diagnostics_channel` for every message received: `{ client, name, message }`. */
export const receiveChannel = channel("qmp:message:receive");
/** `diagnostics_channel` for runstate changes: `{ client, name, state, previous }`. */
export const runstateChannel = channel("qmp:runstate");

/** Options of the engine, shared by every client class. */
export interface ProtocolOptions {
  /** Name used in log lines, `inspect()` and diagnostics; default none. */
  name?: string | undefined;
  /** Where log lines go; default `util.debuglog('qmp')` (`NODE_DEBUG=qmp`). */
  logger?: Logger | undefined;
  /**
   * Trace every message in and out (`--> …`, `<-- …`, secrets redacted) at
   * debug level. Default: on when `NODE_DEBUG=qmp` is set.
   */
  trace?: boolean | undefined;
  /** Largest inbound message in bytes (default 10 MiB; `Infinity` for no limit). */
  maxMessageSize?: number | undefined;
  /**
   * Milliseconds `disconnect()` waits for queued messages to be flushed before
   * it cuts the connection (default 5000).
   */
  disconnectTimeout?: number | undefined;
}

/** Options of `connect()`. */
export interface ConnectOptions extends CallOptions {
  /**
   * Speak TLS (TCP `{ host, port }` only): `true`, or Node's
   * `tls.ConnectionOptions` (`ca`, `cert`/`key`, `servername`, …). The server
   * is verified (CA, host name) unless `rejectUnauthorized: false`.
   */
  tls?: TlsConnectOptions | undefined;
  /**
   * Try again, with back-off, while the socket does not exist yet or refuses
   * connections (QEMU still starting): `true` for the defaults, or
   * {@link RetryOptions} (`delay`, `maxDelay`, `attempts`, and the QEMU
   * `process` to watch). Bounded by `timeout` and `signal`; the runstate
   * stays `CONNECTING` throughout. Other failures end it at once.
   */
  retry?: true | RetryOptions | undefined;
}

/** Options of `accept()`. */
export interface AcceptOptions extends CallOptions {}

/** Options of `startServer()` and `startServerAndAccept()`. */
export interface StartServerOptions extends CallOptions, ListenOptions {}

/** The lifecycle events of a client. */
export interface ProtocolEvents {
  /** The runstate changed from `previous` to `state`. */
  runstate: [state: Runstate, previous: Runstate];
}

interface QueuedWrite {
  data: string;
  /** File descriptors to pass (SCM_RIGHTS) right before `data`. */
  fds?: readonly number[] | undefined;
  /** What the fds wait for besides the bytes before them (see {@link Protocol.send}). */
  fence?: Promise<unknown> | undefined;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** The reason a connect attempt was cut short by `disconnect()` or `destroy()`. */
class AttemptCancelled extends QMPError {}

/**
 * Base class of the protocol clients: owns the connection, its runstate, the
 * framing and the single reader and writer. Generic over the message type it
 * sends.
 */
export abstract class Protocol<TMessage extends object> extends EventEmitter<ProtocolEvents> {
  /** The name given in the options, if any. */
  readonly name: string | undefined;
  /** The logger in use. */
  readonly logger: Logger;
  readonly #trace: boolean;
  readonly #maxMessageSize: number;
  readonly #disconnectTimeout: number;

  #runstate: Runstate = Runstate.IDLE;
  #runstateWaiter = deferred<Runstate>();
  #stream: Duplex | undefined;
  #listener: Listener | undefined;
  /** Stops reading the current stream (keeps a no-op error handler on it). */
  #detachReader: (() => void) | undefined;
  /** Set while a connect/accept attempt is in progress; aborted by disconnect(). */
  #attempt: AbortController | undefined;
  /** Rejects when the current session ends: with the root cause, or SessionEndedError. */
  #sessionEnd = deferred<never>();
  #sessionOpen = false;
  /** The first error from the reader or writer: the root cause `disconnect()` reports. */
  #error: unknown;
  #teardown: Promise<void> | undefined;
  #queue: QueuedWrite[] = [];
  #blocked = false;
  /** The fd-carrying write in progress: the writer holds everything behind it until it is done. */
  #fdWrite: { item: QueuedWrite; done: Promise<void> } | undefined;
  /** Set while waiting for the stream to hand every byte to the kernel (writableLength 0). */
  #flushWaiter: (() => void) | undefined;
  /** `disconnect()` is writing the queue out itself: the pump stays out of its way. */
  #flushing = false;
  /** Write callback: wakes an fd write waiting for the bytes before it to leave. */
  readonly #afterWrite = (): void => {
    if (this.#flushWaiter !== undefined && (this.#stream?.writableLength ?? 0) === 0) {
      const wake = this.#flushWaiter;
      this.#flushWaiter = undefined;
      wake();
    }
  };

  constructor(options: ProtocolOptions = {}) {
    super();
    this.name = options.name;
    this.logger = options.logger ?? debugLogger;
    this.#trace = options.trace ?? debugEnabled();
    this.#maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.#disconnectTimeout = options.disconnectTimeout ?? 5000;
    // Nobody awaits this between sessions; never let it be unhandled.
    this.#sessionEnd.promise.catch(() => {});
    this.#runstateWaiter.promise.catch(() => {});
  }

  /** The current {@link Runstate}. */
  get runstate(): Runstate {
    return this.#runstate;
  }

  /**
   * Resolve with the new state at the next runstate transition. A watcher
   * that starts late sees only later transitions.
   */
  runstateChanged(): Promise<Runstate> {
    return this.#runstateWaiter.promise;
  }

  /** Address we listen on after `startServer()` (with the real port), else `undefined`. */
  get serverAddress(): string | InetAddress | undefined {
    return this.#listener?.address;
  }

  /** The byte stream of the current session, if any. */
  protected get stream(): Duplex | undefined {
    return this.#stream;
  }

  // ---------------------------------------------------------------- public API

  /**
   * Connect to a server and establish a session. Requires `IDLE`; ends in
   * `RUNNING`. On any failure the runstate is back to `IDLE`.
   *
   * @param address a UNIX socket path, `{ path }`, `{ host, port }`, or an
   *   already-connected socket or `Duplex`.
   * @throws {StateError} when not `IDLE`.
   * @throws {TypeError} for `tls` on anything but a TCP address, `retry` with
   *   a stream, or a bad `retry.process`.
   * @throws {RangeError} for bad `retry` numbers.
   * @throws {ConnectError} "Failed to establish connection" (transport, TLS
   *   included) or "Failed to establish session" (greeting, negotiation);
   *   `cause` is the root error (for TLS, Node's error with its `code`, e.g.
   *   `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `ERR_TLS_CERT_ALTNAME_INVALID`).
   *   With `retry`, the last attempt's error, or a `ProcessExitedError` once
   *   the watched process has exited.
   * @throws the `signal`'s reason, unwrapped, on abort or timeout.
   */
  async connect(address: SocketAddress, options: ConnectOptions = {}): Promise<void> {
    this.#require(Runstate.IDLE);
    const tlsOptions = options.tls || undefined;
    if (tlsOptions !== undefined) checkTlsAddress(address);
    const retry = options.retry ? retryPolicy(options.retry, address) : undefined;
    const attempt = this.#beginAttempt();
    const { signal, dispose } = deadline(options, attempt.signal);
    try {
      this.#setState(Runstate.CONNECTING);
      this.logger.debug(`${this.#tag}Connecting to ${formatAddress(address)} ...`);
      const open = (s: AbortSignal): Promise<Duplex> => openStream(address, s, tlsOptions);
      const stream = await this.#guard("Failed to establish connection", signal, () =>
        retry === undefined
          ? open(signal)
          : openWithRetry(retry, signal, open, (m) => this.logger.debug(`${this.#tag}${m}`)),
      );
      await this.#establish(stream, signal);
    } finally {
      dispose();
      this.#attempt = undefined;
    }
  }

  /**
   * Listen on `address` for exactly one peer. Requires `IDLE`; ends in
   * `CONNECTING`. Call {@link accept} next. A UNIX socket gets mode 0600 (see
   * `mode`) with no window in which others can connect.
   *
   * @throws {StateError} when not `IDLE`.
   * @throws {TypeError} for `tls` on anything but a TCP address.
   * @throws {ConnectError} "Failed to establish connection" when the address
   *   cannot be bound (in use, a non-socket file in the way, …) or the TLS
   *   options are unusable.
   */
  async startServer(
    address: string | UnixAddress | InetAddress,
    options: StartServerOptions = {},
  ): Promise<void> {
    this.#require(Runstate.IDLE);
    if (options.tls !== undefined) checkTlsAddress(address);
    const attempt = this.#beginAttempt();
    const { signal, dispose } = deadline(options, attempt.signal);
    try {
      this.#setState(Runstate.CONNECTING);
      this.logger.debug(`${this.#tag}Listening on ${formatAddress(address)} ...`);
      const listenOptions: ListenOptions = options.mode !== undefined ? { mode: options.mode } : {};
      if (options.tls !== undefined) listenOptions.tls = options.tls;
      const listening = Listener.listen(address, listenOptions);
      this.#listener = await this.#guard("Failed to establish connection", signal, async () => {
        try {
          return await raceSignal(listening, signal);
        } catch (err) {
          // Cut short while binding: let the bind settle and undo it, so that
          // nothing is left listening (or on disk) once this rejects.
          if (signal.aborted) (await listening.catch(() => undefined))?.close();
          throw err;
        }
      });
    } finally {
      dispose();
      this.#attempt = undefined;
    }
  }

  /**
   * Wait for the peer announced by {@link startServer} and establish the
   * session. Requires `CONNECTING`; ends in `RUNNING`. The listener stops after
   * the first peer; any other connection is closed.
   *
   * @throws {StateError} when not `CONNECTING`.
   * @throws {QMPError} when `startServer()` was not called first.
   * @throws {ConnectError} as for {@link connect}.
   * @throws the `signal`'s reason, unwrapped, on abort or timeout (back to `IDLE`).
   */
  async accept(options: AcceptOptions = {}): Promise<void> {
    this.#require(Runstate.CONNECTING);
    const listener = this.#listener;
    if (listener === undefined) throw new QMPError("Cannot call accept() before startServer().");
    if (this.#attempt !== undefined) throw new QMPError("accept() is already in progress.");
    const attempt = this.#beginAttempt();
    const { signal, dispose } = deadline(options, attempt.signal);
    try {
      this.logger.debug(`${this.#tag}Awaiting connection ...`);
      const stream = await this.#guard("Failed to establish connection", signal, () =>
        listener.accept(signal),
      );
      listener.close({ keepPeer: true });
      this.#listener = undefined;
      this.logger.debug(`${this.#tag}Connection accepted.`);
      await this.#establish(stream, signal);
    } finally {
      dispose();
      this.#attempt = undefined;
    }
  }

  /**
   * {@link startServer} then {@link accept}; one timeout covers both.
   *
   * @throws as those two do.
   */
  async startServerAndAccept(
    address: string | UnixAddress | InetAddress,
    options: StartServerOptions = {},
  ): Promise<void> {
    const { signal, dispose } = deadline(options);
    try {
      const { timeout: _t, signal: _s, ...rest } = options;
      await this.startServer(address, { ...rest, signal });
      await this.accept({ signal });
    } finally {
      dispose();
    }
  }

  /**
   * End the session and return to `IDLE`, from any state. On a healthy
   * session, queued messages are flushed first. Pending calls reject with
   * `ExecInterruptedError`. Calling it again, or while idle, is harmless.
   *
   * @throws the first error that broke the session in the background (the
   *   root cause: a reset, a protocol error, …), once; the runstate is `IDLE`
   *   all the same.
   */
  disconnect(): Promise<void> {
    if (this.#teardown !== undefined) return this.#teardown;
    if (this.#runstate === Runstate.IDLE) return Promise.resolve();
    this.#teardown = this.#disconnect(true).finally(() => {
      this.#teardown = undefined;
    });
    return this.#teardown;
  }

  /**
   * Tear the connection down at once, without flushing, and return to `IDLE`.
   * Never rejects; a background error is logged and forgotten.
   */
  async destroy(): Promise<void> {
    this.#stream?.destroy();
    try {
      await (this.#teardown ?? this.#disconnect(false));
    } catch (err) {
      this.logger.debug(`${this.#tag}destroy(): dropping error ${describe(err)}`);
    }
  }

  /** `await using client = new QMPClient()` destroys it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }

  /** `<QMPClient name='vm1' runstate=RUNNING>` (the name only when one was given). */
  override toString(): string {
    const tokens = this.name !== undefined ? [`name='${this.name}'`] : [];
    tokens.push(`runstate=${this.#runstate}`);
    return `<${this.constructor.name} ${tokens.join(" ")}>`;
  }

  /** @internal */
  [inspect.custom](): string {
    return this.toString();
  }

  // ------------------------------------------------------- for subclasses

  /**
   * Do what the session needs before `RUNNING` (greeting, negotiation).
   * Inbound messages already flow to {@link handleMessage}. Throwing fails
   * the connect with "Failed to establish session".
   */
  protected abstract establishSession(signal: AbortSignal): Promise<void>;

  /** One inbound message, in wire order. Throwing ends the session with that error. */
  protected abstract handleMessage(message: Record<string, unknown>): void;

  /** An inbound message larger than `maxMessageSize` was skipped. */
  protected abstract handleOversize(size: number, limit: number, id: unknown): void;

  /**
   * The session is over (called once per session, before the runstate
   * leaves `RUNNING`/`CONNECTING`). `cause` is the error that ended it, or
   * undefined for a clean end.
   */
  protected abstract sessionEnded(cause: unknown): void;

  /**
   * Whether the peer is expected to go away now (e.g. after `quit`), so that
   * a connection reset is a normal end of session, not an error.
   */
  protected peerMayVanish(): boolean {
    return false;
  }

  /** The message as a string for the wire. */
  protected serialize(message: TMessage): string {
    return JSON.stringify(message);
  }

  /**
   * Queue `message` for the writer. Resolves when the socket has taken it;
   * while the socket's buffer is full, senders wait (backpressure).
   * Messages are written in call order.
   *
   * With `fds`, the writer passes them (SCM_RIGHTS) right before the
   * message: once `fence` has settled and every byte queued before them has
   * been handed to the kernel, in one `sendmsg` on a single space byte.
   * Everything queued after waits meanwhile, so nothing overtakes. When
   * they cannot be passed, this rejects with an `FdPassingError` and the
   * message is not written; the session goes on.
   *
   * @throws the error that ended the session, if it ends first.
   */
  protected send(
    message: TMessage,
    fds?: readonly number[],
    fence?: Promise<unknown>,
  ): Promise<void> {
    if (!this.#sessionOpen) return Promise.reject(new SessionEndedError("The session is over"));
    const data = this.serialize(message);
    if (this.#trace) {
      const with_ = fds !== undefined ? ` (with fds ${fds.join(", ")})` : "";
      this.logger.debug(`${this.#tag}--> ${traceText(message)}${with_}`);
    }
    if (sendChannel.hasSubscribers) sendChannel.publish({ client: this, name: this.name, message });
    return this.#enqueue(data, fds, fence);
  }

  /**
   * Queue `fds` for the writer alone (no message after them). They go out in
   * order with the messages, as {@link send} describes.
   *
   * @throws {FdPassingError} (rejects) when they cannot be passed.
   */
  protected sendFds(fds: readonly number[], fence?: Promise<unknown>): Promise<void> {
    if (!this.#sessionOpen) return Promise.reject(new SessionEndedError("The session is over"));
    if (this.#trace) this.logger.debug(`${this.#tag}--> (fds ${fds.join(", ")})`);
    return this.#enqueue("", fds, fence);
  }

  /**
   * @throws {FdPassingError} when this session cannot pass fds: not a UNIX
   *   socket (TCP, TLS, another stream) or an unsupported platform. Whether
   *   the native module loads is only known when the writer gets to the fds.
   */
  protected checkFdPassing(): void {
    fdPassingTarget(this.#stream);
  }

  #enqueue(
    data: string,
    fds: readonly number[] | undefined,
    fence: Promise<unknown> | undefined,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ data, fds, fence, resolve, reject });
      if (!this.#blocked) this.#pump();
    });
  }

  /**
   * `promise`, unless the session ends first: then reject with the error
   * that ended it (a `SessionEndedError` on a clean end of stream).
   */
  protected untilSessionEnd<T>(promise: Promise<T>): Promise<T> {
    return Promise.race([promise, this.#sessionEnd.promise]);
  }

  /** End the session because of `err` (a fatal protocol error found by the subclass). */
  protected fail(err: unknown): void {
    this.#endSession(err);
  }

  /** Prefix of log lines. */
  get #tag(): string {
    return this.name !== undefined ? `[${this.name}] ` : "";
  }

  // ------------------------------------------------------------- machinery

  #require(required: Runstate): void {
    const state = this.#runstate;
    if (state === required) return;
    const cls = this.constructor.name;
    const message = {
      [Runstate.CONNECTING]: `${cls} is currently connecting.`,
      [Runstate.DISCONNECTING]: `${cls} is disconnecting. Call disconnect() to return to IDLE state.`,
      [Runstate.RUNNING]: `${cls} is already connected and running.`,
      [Runstate.IDLE]: `${cls} is disconnected and idle.`,
    }[state];
    throw new StateError(message, state, required);
  }

  /** @throws {StateError} unless `RUNNING`. For subclasses' public methods. */
  protected requireRunning(): void {
    this.#require(Runstate.RUNNING);
  }

  #beginAttempt(): AbortController {
    const attempt = new AbortController();
    this.#attempt = attempt;
    return attempt;
  }

  #setState(state: Runstate): void {
    const previous = this.#runstate;
    if (state === previous) return;
    this.logger.debug(`${this.#tag}Transitioning from '${previous}' to '${state}'.`);
    this.#runstate = state;
    const waiter = this.#runstateWaiter;
    this.#runstateWaiter = deferred<Runstate>();
    this.#runstateWaiter.promise.catch(() => {});
    waiter.resolve(state);
    if (runstateChannel.hasSubscribers) {
      runstateChannel.publish({ client: this, name: this.name, state, previous });
    }
    try {
      this.emit("runstate", state, previous);
    } catch (err) {
      this.logger.error(`${this.#tag}A 'runstate' listener threw: ${describe(err)}`);
    }
  }

  /**
   * Run one step of connecting. On failure: back to IDLE, then reject with the
   * user's abort reason if their signal fired, else a ConnectError.
   */
  async #guard<T>(
    phase: string,
    signal: AbortSignal,
    step: () => Promise<T>,
    transportFailure?: (err: unknown) => unknown,
  ): Promise<T> {
    try {
      return await step();
    } catch (err) {
      this.logger.debug(`${this.#tag}${phase}: ${describe(err)}`);
      await this.#disconnect(false).catch(() => {});
      // An abort or timeout from the caller surfaces unwrapped; ours
      // (disconnect() during connect) and real failures are ConnectErrors.
      if (signal.aborted && !(signal.reason instanceof AttemptCancelled)) {
        throw signal.reason as Error;
      }
      // A TLS failure that shows only once the session starts is still the transport's.
      const tlsError = transportFailure?.(err);
      if (tlsError !== undefined) {
        throw new ConnectError("Failed to establish connection", tlsError);
      }
      throw new ConnectError(phase, err);
    }
  }

  async #establish(stream: Duplex, signal: AbortSignal): Promise<void> {
    this.#attach(stream);
    await this.#guard(
      "Failed to establish session",
      signal,
      () => raceSignal(this.untilSessionEnd(this.establishSession(signal)), signal),
      tlsSessionFailure(stream),
    );
    this.#setState(Runstate.RUNNING);
  }

  #attach(stream: Duplex): void {
    this.#stream = stream;
    this.#sessionEnd = deferred<never>();
    this.#sessionEnd.promise.catch(() => {});
    this.#sessionOpen = true;
    this.#error = undefined;
    const scanner = new JsonObjectScanner({ maxMessageSize: this.#maxMessageSize });
    const sink = (frame: Frame): void => this.#dispatch(frame);
    const onData = (chunk: Buffer): void => {
      try {
        scanner.push(chunk, sink);
      } catch (err) {
        this.#endSession(err);
      }
    };
    // A clean end of stream is one at a message boundary.
    const onEnd = (): void => {
      try {
        scanner.end(sink);
        this.#endSession(undefined);
      } catch (err) {
        this.#endSession(err);
      }
    };
    const onError = (err: Error): void => this.#endSession(err);
    const onClose = onEnd;
    const onDrain = (): void => {
      this.#blocked = false;
      this.#pump();
    };
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onError);
    stream.on("close", onClose);
    stream.on("drain", onDrain);
    this.#detachReader = () => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("close", onClose);
      stream.off("drain", onDrain);
      // Keep an error handler: a late 'error' must never crash the process.
      stream.off("error", onError);
      stream.on("error", () => {});
    };
  }

  #dispatch(frame: Frame): void {
    if (!this.#sessionOpen) return;
    if (frame.kind === "oversize") {
      this.logger.warn(
        `${this.#tag}Skipped a message of ${frame.size} bytes (maxMessageSize ${this.#maxMessageSize})`,
      );
      this.handleOversize(frame.size, this.#maxMessageSize, frame.id);
      return;
    }
    const message = frame.value;
    if (this.#trace) this.logger.debug(`${this.#tag}<-- ${traceText(message)}`);
    if (receiveChannel.hasSubscribers) {
      receiveChannel.publish({ client: this, name: this.name, message });
    }
    try {
      this.handleMessage(message);
    } catch (err) {
      this.#endSession(err);
    }
  }

  #pump(): void {
    const stream = this.#stream;
    if (stream === undefined || this.#fdWrite !== undefined || this.#flushing) return;
    // Write everything queued in one go, corked into as few syscalls as the
    // socket allows, until the socket's buffer is full or fds are next.
    const many = this.#queue.length > 1;
    if (many) stream.cork();
    let fdItem: QueuedWrite | undefined;
    while (this.#queue.length > 0) {
      const item = this.#queue.shift()!;
      if (item.fds !== undefined) {
        fdItem = item;
        break;
      }
      const ok = stream.write(item.data, this.#afterWrite);
      item.resolve();
      if (!ok) {
        this.#blocked = true;
        break;
      }
    }
    if (fdItem === undefined) {
      if (many) process.nextTick(() => stream.uncork());
      return;
    }
    // Let the bytes before the fds go now; the fds wait for them.
    if (many) stream.uncork();
    const done = this.#writeWithFds(stream, fdItem).finally(() => {
      this.#fdWrite = undefined;
      if (!this.#blocked) this.#pump();
    });
    this.#fdWrite = { item: fdItem, done };
  }

  /**
   * Pass `item.fds` in order with the byte stream: wait until every byte
   * queued before them has been handed to the kernel, send them with
   * `sendmsg` on a single space byte, then write `item.data`. Never rejects:
   * an fd problem fails this item only (its message is not written); a lost
   * connection ends the session.
   */
  async #writeWithFds(stream: Duplex, item: QueuedWrite): Promise<void> {
    const current = (): boolean => this.#stream === stream && !stream.destroyed;
    try {
      const sender = await loadFdSender();
      await item.fence;
      if (current() && stream.writableLength > 0) {
        await new Promise<void>((resolve) => (this.#flushWaiter = resolve));
      }
      if (!current() || (!this.#sessionOpen && !this.#flushing)) {
        throw new SessionEndedError("The session ended before the fds were sent");
      }
      await sendFdsOn(sender, fdPassingTarget(stream), item.fds!, current);
    } catch (err) {
      item.reject(err);
      if (!(err instanceof QMPError)) this.#endSession(err);
      return;
    }
    if (item.data !== "") stream.write(item.data, this.#afterWrite);
    item.resolve();
  }

  /**
   * The session is over: stop reading, fail the queue, tell the subclass.
   * Idempotent per session; the first error is the one reported.
   */
  #endSession(err: unknown): void {
    if (!this.#sessionOpen) return;
    if (err !== undefined && isConnectionLoss(err) && this.peerMayVanish()) {
      this.logger.debug(`${this.#tag}The peer went away as expected: ${describe(err)}`);
      err = undefined;
    }
    if (err !== undefined && this.#error === undefined) {
      this.#error = err;
      this.logger.error(`${this.#tag}Session failed: ${describe(err)}`);
    }
    this.#sessionOpen = false;
    this.#detachReader?.();
    this.#detachReader = undefined;
    // On an error the stream is done for; on a clean end of stream, close
    // our side too (a socket does it by itself, a plain Duplex may not).
    if (err !== undefined) this.#stream?.destroy();
    else this.#stream?.end();
    const queued = this.#queue;
    this.#queue = [];
    this.#blocked = false;
    if (this.#fdWrite !== undefined) queued.unshift(this.#fdWrite.item);
    this.#flushWaiter?.();
    this.#flushWaiter = undefined;
    for (const q of queued) q.reject(err ?? new SessionEndedError("The session ended"));
    if (this.#runstate === Runstate.RUNNING) this.#setState(Runstate.DISCONNECTING);
    try {
      this.sessionEnded(err);
    } finally {
      this.#sessionEnd.reject(err ?? new SessionEndedError("The peer closed the connection"));
    }
  }

  /** Write out the queue and half-close, bounded by `disconnectTimeout`. */
  async #flush(stream: Duplex): Promise<void> {
    if (stream.destroyed || !stream.writable) return;
    // Backpressure no longer matters: hand everything to the stream at once,
    // except that fds still wait for the bytes before them.
    this.#flushing = true;
    try {
      await this.#fdWrite?.done;
      for (let item = this.#queue.shift(); item !== undefined; item = this.#queue.shift()) {
        if (item.fds !== undefined) {
          await this.#writeWithFds(stream, item);
        } else {
          stream.write(item.data, this.#afterWrite);
          item.resolve();
        }
      }
    } finally {
      this.#flushing = false;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.#disconnectTimeout);
      function done(): void {
        clearTimeout(timer);
        stream.off("close", done);
        stream.off("error", done);
        resolve();
      }
      stream.once("close", done);
      stream.once("error", done);
      stream.end(done);
    });
  }

  async #disconnect(graceful: boolean): Promise<void> {
    this.#attempt?.abort(new AttemptCancelled("disconnect() was called"));
    if (this.#runstate !== Runstate.IDLE) this.#setState(Runstate.DISCONNECTING);
    const stream = this.#stream;
    const wasOpen = this.#sessionOpen;
    if (graceful && wasOpen && stream !== undefined) {
      // Stop reading, but write out what is queued before closing.
      this.#detachReader?.();
      this.#detachReader = undefined;
      await this.#flush(stream);
    }
    this.#endSession(undefined);
    stream?.destroy();
    this.#stream = undefined;
    this.#listener?.close();
    this.#listener = undefined;
    const error: unknown = this.#error;
    this.#error = undefined;
    this.#setState(Runstate.IDLE);
    this.logger.debug(`${this.#tag}Disconnected.`);
    if (error !== undefined) throw error as unknown;
  }
}

/** A reset or broken pipe: the peer is gone, rather than a protocol problem. */
function isConnectionLoss(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "ECONNRESET" || code === "EPIPE" || code === "ECONNABORTED";
}
