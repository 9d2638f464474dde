// The generic engine: runstate, connect/accept/disconnect, one reader and one writer per session.
//
// It knows nothing about QMP: a subclass gets each inbound JSON object in
// wire order (`handleMessage`), establishes its session (`establishSession`)
// and hears when the session ends (`sessionEnded`).

import { channel } from "node:diagnostics_channel";
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { inspect } from "node:util";
import {
  ConnectCancelledError,
  ConnectError,
  QueueFullError,
  SessionEndedError,
  StateError,
  describe,
} from "./errors.js";
import { fdPassingTarget } from "./fd-passing.js";
import { DEFAULT_MAX_MESSAGE_SIZE, type Frame } from "./framing.js";
import { type RetryOptions, openWithRetry, retryPolicy } from "./retry.js";
import { Runstate, checkTransition } from "./runstate.js";
import { Session } from "./session.js";
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
  checkCallOptions,
  checkTimeout,
  deferred,
  raceSignal,
  timeoutError,
  traceText,
  typeName,
} from "./util.js";
import type { OutboundRequest, Ticket } from "./writer.js";

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
   * Milliseconds `disconnect()` may spend writing out queued messages and
   * closing before it cuts the connection (default 5000). One deadline for
   * the whole graceful teardown.
   */
  disconnectTimeout?: number | undefined;
  /**
   * Default timeout in milliseconds of every call that gives none:
   * `connect`, `accept`, `startServer`, and the client's calls (`execute`,
   * `raw`, `waitEvent`, …). Default: none.
   */
  timeout?: number | undefined;
  /**
   * Most messages queued for the socket and not yet taken by it (default
   * 65 536). Past it, a call is refused with a `QueueFullError` before
   * anything is sent. Queued messages stay objects until written, so the
   * bytes in memory are bounded by the socket's buffer, not by this.
   */
  maxQueuedMessages?: number | undefined;
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

/** Default of {@link ProtocolOptions.maxQueuedMessages}. */
export const DEFAULT_MAX_QUEUED_MESSAGES = 65_536;

/**
 * Base class of the protocol clients: owns the runstate and the current
 * {@link Session} (its stream, reader and writer), and orchestrates connect,
 * accept and teardown. Generic over the message type it sends.
 */
export abstract class Protocol<TMessage extends object> extends EventEmitter<ProtocolEvents> {
  /** The name given in the options, if any. */
  readonly name: string | undefined;
  /** The logger in use. */
  readonly logger: Logger;
  /** The default `timeout` of every call that gives none (`undefined`: none). */
  protected readonly defaultTimeout: number | undefined;
  readonly #trace: boolean;
  readonly #limits: { maxMessageSize: number; maxQueuedMessages: number };
  readonly #disconnectTimeout: number;

  #runstate: Runstate = Runstate.IDLE;
  #runstateWaiter = deferred<Runstate>();
  #session: Session<TMessage> | undefined;
  #listener: Listener | undefined;
  /** The connect/accept/startServer attempt in progress; `disconnect()` cancels it. */
  #attempt: AbortController | undefined;
  /** The teardown in progress (`disconnect()`, `destroy()`, a failed attempt). */
  #teardown: Promise<void> | undefined;
  /** Cuts a graceful teardown short (`destroy()`). */
  #stopFlush: AbortController | undefined;

  /**
   * @throws {TypeError} {RangeError} for options of the wrong type or range.
   */
  constructor(options: ProtocolOptions = {}) {
    super();
    checkProtocolOptions(options);
    this.name = options.name;
    this.logger = options.logger ?? debugLogger;
    this.#trace = options.trace ?? debugEnabled();
    this.defaultTimeout = options.timeout;
    this.#limits = {
      maxMessageSize: options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      maxQueuedMessages: options.maxQueuedMessages ?? DEFAULT_MAX_QUEUED_MESSAGES,
    };
    this.#disconnectTimeout = options.disconnectTimeout ?? 5000;
    // Nobody awaits this between transitions; never let it be unhandled.
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
    return this.#session?.stream;
  }

  // ---------------------------------------------------------------- public API

  /**
   * Connect to a server and establish a session. Requires `IDLE`; ends in
   * `RUNNING`. On any failure the runstate is back to `IDLE`. Without a
   * `timeout`, the client's `timeout` option applies.
   *
   * @param address a UNIX socket path, `{ path }`, `{ host, port }`, or an
   *   already-connected socket or `Duplex`.
   * @throws {StateError} when not `IDLE`.
   * @throws {TypeError} for an address or options of the wrong type, `tls`
   *   on anything but a TCP address, `retry` with a stream, or a bad
   *   `retry.process`. Nothing has changed then.
   * @throws {RangeError} for a negative `timeout` or bad `retry` numbers.
   * @throws {ConnectError} "Failed to establish connection" (transport, TLS
   *   included) or "Failed to establish session" (greeting, negotiation);
   *   `cause` is the root error (for TLS, Node's error with its `code`, e.g.
   *   `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `ERR_TLS_CERT_ALTNAME_INVALID`).
   *   With `retry`, the last attempt's error, or a `ProcessExitedError` once
   *   the watched process has exited. A {@link ConnectCancelledError} cause
   *   when `disconnect()` or `destroy()` cut it short.
   * @throws the `signal`'s reason, unwrapped, on abort; a `TimeoutError`
   *   `DOMException` on timeout.
   */
  async connect(address: SocketAddress, options: ConnectOptions = {}): Promise<void> {
    // Prepare: check everything before anything changes.
    this.#require(Runstate.IDLE);
    checkAddress(address);
    checkCallOptions(options);
    const tlsOptions = options.tls || undefined;
    if (tlsOptions !== undefined) checkTlsAddress(address);
    const retry = options.retry ? retryPolicy(options.retry, address) : undefined;
    // Commit.
    const attempt = this.#beginAttempt();
    const { signal, dispose } = deadline(this.#timed(options), "connect()", attempt.signal);
    try {
      this.#setState(Runstate.CONNECTING);
      this.logger.debug(`${this.#tag}Connecting to ${formatAddress(address)} ...`);
      const open = (s: AbortSignal): Promise<Duplex> => openStream(address, s, tlsOptions);
      const stream = await this.#guard(attempt, "Failed to establish connection", signal, () =>
        retry === undefined
          ? open(signal)
          : openWithRetry(retry, signal, open, (m) => this.logger.debug(`${this.#tag}${m}`)),
      );
      await this.#establish(attempt, stream, signal);
    } finally {
      dispose();
      this.#endAttempt(attempt);
    }
  }

  /**
   * Listen on `address` for exactly one peer. Requires `IDLE`; ends in
   * `CONNECTING`. Call {@link accept} next. A UNIX socket gets mode 0600 (see
   * `mode`) with no window in which others can connect.
   *
   * @throws {StateError} when not `IDLE`.
   * @throws {TypeError} for `tls` on anything but a TCP address, or options
   *   of the wrong type (nothing has changed then).
   * @throws {ConnectError} "Failed to establish connection" when the address
   *   cannot be bound (in use, a non-socket file in the way, …) or the TLS
   *   options are unusable.
   */
  async startServer(
    address: string | UnixAddress | InetAddress,
    options: StartServerOptions = {},
  ): Promise<void> {
    this.#require(Runstate.IDLE);
    checkAddress(address);
    checkCallOptions(options);
    if (options.tls !== undefined) checkTlsAddress(address);
    const attempt = this.#beginAttempt();
    const { signal, dispose } = deadline(this.#timed(options), "startServer()", attempt.signal);
    try {
      this.#setState(Runstate.CONNECTING);
      this.logger.debug(`${this.#tag}Listening on ${formatAddress(address)} ...`);
      const listenOptions: ListenOptions = options.mode !== undefined ? { mode: options.mode } : {};
      if (options.tls !== undefined) listenOptions.tls = options.tls;
      const listening = Listener.listen(address, listenOptions);
      const listener = await this.#guard(attempt, "Failed to establish connection", signal, () =>
        raceSignal(listening, signal),
      ).catch(async (err: unknown) => {
        // Cut short while binding: let the bind settle and undo it, so that
        // nothing is left listening (or on disk) once this rejects.
        (await listening.catch(() => undefined))?.close();
        throw err;
      });
      this.#listener = listener;
    } finally {
      dispose();
      this.#endAttempt(attempt);
    }
  }

  /**
   * Wait for the peer announced by {@link startServer} and establish the
   * session. Requires `CONNECTING` after `startServer()`; ends in `RUNNING`.
   * The listener stops after the first peer; any other connection is closed.
   *
   * @throws {StateError} when not `CONNECTING`, when `startServer()` was not
   *   called first (a `connect()` is in progress), or when another
   *   `accept()` is in progress.
   * @throws {TypeError} {RangeError} for options of the wrong type or range
   *   (nothing has changed then).
   * @throws {ConnectError} as for {@link connect}.
   * @throws the `signal`'s reason, unwrapped, on abort or timeout (back to `IDLE`).
   */
  async accept(options: AcceptOptions = {}): Promise<void> {
    this.#require(Runstate.CONNECTING);
    const listener = this.#listener;
    const cls = this.constructor.name;
    if (listener === undefined) {
      throw new StateError(
        `${cls} is connecting with connect(): accept() needs startServer() first.`,
        Runstate.CONNECTING,
        Runstate.CONNECTING,
      );
    }
    if (this.#attempt !== undefined) {
      throw new StateError(
        `${cls} is already accepting: accept() is in progress.`,
        Runstate.CONNECTING,
        Runstate.CONNECTING,
      );
    }
    checkCallOptions(options);
    const attempt = this.#beginAttempt();
    const { signal, dispose } = deadline(this.#timed(options), "accept()", attempt.signal);
    try {
      this.logger.debug(`${this.#tag}Awaiting connection ...`);
      const stream = await this.#guard(attempt, "Failed to establish connection", signal, () =>
        listener.accept(signal),
      );
      listener.close({ keepPeer: true });
      if (this.#listener === listener) this.#listener = undefined;
      this.logger.debug(`${this.#tag}Connection accepted.`);
      await this.#establish(attempt, stream, signal);
    } finally {
      dispose();
      this.#endAttempt(attempt);
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
    checkCallOptions(options);
    const { signal, dispose } = deadline(this.#timed(options), "startServerAndAccept()");
    try {
      const { timeout: _t, signal: _s, ...rest } = options;
      await this.startServer(address, { ...rest, signal, timeout: Infinity });
      await this.accept({ signal, timeout: Infinity });
    } finally {
      dispose();
    }
  }

  /**
   * End the session and return to `IDLE`, from any state. Pending calls
   * reject with `ExecInterruptedError` at once; then, on a healthy session,
   * queued messages are written out and the connection half-closed, all
   * within `disconnectTimeout` (then it is cut). A connect or accept in
   * progress is cancelled. Calling it again, or while idle, is harmless.
   *
   * @throws the first error that broke the session in the background (the
   *   root cause: a reset, a protocol error, …), once; the runstate is `IDLE`
   *   all the same.
   */
  disconnect(): Promise<void> {
    if (this.#teardown !== undefined) return this.#teardown;
    if (this.#runstate === Runstate.IDLE) return Promise.resolve();
    return this.#startTeardown(true);
  }

  /**
   * Tear the connection down at once, without flushing, and return to `IDLE`;
   * a `disconnect()` under way stops waiting too. Never rejects; a
   * background error is logged and forgotten.
   */
  async destroy(): Promise<void> {
    this.#stopFlush?.abort(new SessionEndedError("destroy() was called"));
    this.#session?.destroy();
    try {
      await (this.#teardown ?? this.#startTeardown(false));
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
   * The session is over (called once per session, after the runstate left
   * `RUNNING`). `cause` is the error that ended it, or undefined for a
   * clean end; `reason` is what to fail waiting calls with.
   */
  protected abstract sessionEnded(cause: unknown, reason: Error): void;

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
   * @throws {SessionEndedError} when there is no session to send on.
   * @throws {QueueFullError} when `maxQueuedMessages` messages wait already.
   */
  protected checkSend(): void {
    const session = this.#session;
    if (session === undefined || !session.open) {
      throw new SessionEndedError("The session is over");
    }
    if (session.writer.full) {
      throw new QueueFullError(
        `${this.#limits.maxQueuedMessages} messages are waiting for the socket ` +
          "(the peer reads slower than we send); raise maxQueuedMessages, or wait for replies",
      );
    }
  }

  /**
   * Queue `request` for the writer: messages (and fds) go out in call order,
   * serialized only when the writer gets to them; `request.writing()` is
   * called as that happens, `request.failed()` if it never does. With fds,
   * the writer passes them (SCM_RIGHTS, one `sendmsg` on a single space
   * byte) once `fence` has settled and every byte before them has reached
   * the kernel, holding what comes after.
   *
   * @throws as {@link checkSend}.
   */
  protected send(request: OutboundRequest<TMessage>): Ticket {
    this.checkSend();
    return this.#session!.writer.enqueue(request);
  }

  /**
   * Queue `message` alone (no fds, no reply expected) and resolve once the
   * writer writes it. For subclasses that need no more than that.
   *
   * @throws as {@link checkSend} (as a rejection).
   */
  protected sendMessage(message: TMessage): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.send({ message, fds: undefined, fence: undefined, writing: resolve, failed: reject });
    });
  }

  /** Take a request out of the writer's queue if it was not written yet. */
  protected cancelSend(ticket: Ticket): boolean {
    return this.#session?.writer.cancel(ticket) ?? false;
  }

  /**
   * @throws {FdPassingError} when this session cannot pass fds: not a UNIX
   *   socket (TCP, TLS, another stream) or an unsupported platform. Whether
   *   the native module loads is only known when the writer gets to the fds.
   */
  protected checkFdPassing(): void {
    fdPassingTarget(this.#session?.stream);
  }

  /**
   * `promise`, unless the session ends first: then reject with the error
   * that ended it (a `SessionEndedError` on a clean end of stream).
   */
  protected untilSessionEnd<T>(promise: Promise<T>): Promise<T> {
    const session = this.#session;
    if (session === undefined) return Promise.reject(new SessionEndedError("The session is over"));
    return Promise.race([promise, session.ended]);
  }

  /** End the session because of `err` (a fatal protocol error found by the subclass). */
  protected fail(err: unknown): void {
    this.#session?.end(err);
  }

  /** @throws {StateError} unless `RUNNING`. For subclasses' public methods. */
  protected requireRunning(): void {
    this.#require(Runstate.RUNNING);
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

  /** The call's options, with the client's default timeout when it gives none. */
  #timed<O extends CallOptions>(options: O): CallOptions {
    const timeout = options.timeout ?? this.defaultTimeout;
    return timeout === undefined ? options : { signal: options.signal, timeout };
  }

  #beginAttempt(): AbortController {
    const attempt = new AbortController();
    this.#attempt = attempt;
    return attempt;
  }

  #endAttempt(attempt: AbortController): void {
    if (this.#attempt === attempt) this.#attempt = undefined;
  }

  /** The one place the runstate changes; the transition table is enforced here. */
  #setState(state: Runstate): void {
    const previous = this.#runstate;
    if (state === previous) return;
    checkTransition(previous, state);
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
   * Run one step of an attempt. On failure: back to IDLE (unless a newer
   * attempt runs by now), then reject with the caller's abort or timeout
   * reason if their signal fired, else a ConnectError.
   */
  async #guard<T>(
    attempt: AbortController,
    phase: string,
    signal: AbortSignal,
    step: () => Promise<T>,
    transportFailure?: (err: unknown) => unknown,
  ): Promise<T> {
    try {
      return await step();
    } catch (err) {
      this.logger.debug(`${this.#tag}${phase}: ${describe(err)}`);
      // Read before our own teardown, which cancels the attempt too.
      const aborted = signal.aborted;
      const reason: unknown = signal.reason;
      if (this.#attempt === attempt) {
        await (this.#teardown ?? this.#startTeardown(false)).catch(() => {});
      }
      if (aborted) {
        // Ours (disconnect() during connect) is a ConnectError; the caller's surfaces unwrapped.
        if (reason instanceof ConnectCancelledError) throw new ConnectError(phase, reason);
        throw reason as Error;
      }
      // A TLS failure that shows only once the session starts is still the transport's.
      const tlsError = transportFailure?.(err);
      if (tlsError !== undefined) {
        throw new ConnectError("Failed to establish connection", tlsError);
      }
      throw new ConnectError(phase, err);
    }
  }

  async #establish(attempt: AbortController, stream: Duplex, signal: AbortSignal): Promise<void> {
    const session = this.#attach(stream);
    await this.#guard(
      attempt,
      "Failed to establish session",
      signal,
      async () => {
        await raceSignal(Promise.race([this.establishSession(signal), session.ended]), signal);
        // Whatever came between the session being set up and now (a
        // disconnect(), the peer leaving) wins over RUNNING.
        signal.throwIfAborted();
        if (!session.open) throw toError(session.error ?? new SessionEndedError("The peer left"));
        this.#setState(Runstate.RUNNING);
      },
      tlsSessionFailure(stream),
    );
  }

  #attach(stream: Duplex): Session<TMessage> {
    const session = new Session<TMessage>(stream, this.#limits, {
      frame: (frame) => this.#dispatch(frame),
      ended: (error, reason) => {
        if (error !== undefined)
          this.logger.error(`${this.#tag}Session failed: ${describe(error)}`);
        if (this.#runstate === Runstate.RUNNING) this.#setState(Runstate.DISCONNECTING);
        this.sessionEnded(error, reason);
      },
      mayVanish: () => {
        const vanish = this.peerMayVanish();
        if (vanish) this.logger.debug(`${this.#tag}The peer went away as expected.`);
        return vanish;
      },
      serialize: (message) => this.serialize(message),
      onWrite: (message, fds) => this.#traceWrite(message, fds),
    });
    this.#session = session;
    return session;
  }

  #traceWrite(message: TMessage | undefined, fds: readonly number[] | undefined): void {
    if (this.#trace) {
      const withFds = fds !== undefined ? ` (with fds ${fds.join(", ")})` : "";
      const text = message !== undefined ? traceText(message) : "(fds only)";
      this.logger.debug(`${this.#tag}--> ${text}${withFds}`);
    }
    if (message !== undefined && sendChannel.hasSubscribers) {
      sendChannel.publish({ client: this, name: this.name, message });
    }
  }

  #dispatch(frame: Frame): void {
    if (frame.kind === "oversize") {
      const limit = this.#limits.maxMessageSize;
      this.logger.warn(
        `${this.#tag}Skipped a message of ${frame.size} bytes (maxMessageSize ${limit})`,
      );
      this.handleOversize(frame.size, limit, frame.id);
      return;
    }
    const message = frame.value;
    if (this.#trace) this.logger.debug(`${this.#tag}<-- ${traceText(message)}`);
    if (receiveChannel.hasSubscribers) {
      receiveChannel.publish({ client: this, name: this.name, message });
    }
    this.handleMessage(message);
  }

  #startTeardown(graceful: boolean): Promise<void> {
    const teardown = this.#tearDown(graceful).finally(() => {
      if (this.#teardown === teardown) this.#teardown = undefined;
    });
    this.#teardown = teardown;
    return teardown;
  }

  /**
   * Back to IDLE: cancel an attempt, end the session (gracefully: flush
   * within one deadline), stop listening. Rejects with the root cause.
   */
  async #tearDown(graceful: boolean): Promise<void> {
    const cls = this.constructor.name;
    this.#attempt?.abort(
      new ConnectCancelledError(`${cls}: disconnect() was called before the session was up`),
    );
    if (this.#runstate === Runstate.CONNECTING || this.#runstate === Runstate.RUNNING) {
      this.#setState(Runstate.DISCONNECTING);
    }
    const session = this.#session;
    if (session !== undefined) {
      if (graceful && session.open) {
        const stop = new AbortController();
        this.#stopFlush = stop;
        const ms = this.#disconnectTimeout;
        const timer = setTimeout(() => stop.abort(timeoutError("disconnect()", ms)), ms);
        try {
          await session.close(stop.signal);
        } finally {
          clearTimeout(timer);
          this.#stopFlush = undefined;
        }
      } else {
        session.destroy();
      }
    }
    if (this.#session === session) this.#session = undefined;
    this.#listener?.close();
    this.#listener = undefined;
    this.#setState(Runstate.IDLE);
    this.logger.debug(`${this.#tag}Disconnected.`);
    const error = session?.error;
    if (error !== undefined) throw toError(error);
  }
}

/**
 * @throws {TypeError} unless `address` is a non-empty path, `{ path }`,
 *   `{ host, port }` with a port from 0 to 65535, or a stream.
 */
function checkAddress(address: unknown): void {
  if (typeof address === "string") {
    if (address === "") throw new TypeError("The address is an empty path");
    return;
  }
  if (typeof address === "object" && address !== null) {
    const a = address as Record<string, unknown>;
    if (typeof a["path"] === "string" && a["path"] !== "") return;
    if (typeof a["host"] === "string" && "port" in a) {
      const port = a["port"];
      if (typeof port === "number" && Number.isInteger(port) && port >= 0 && port <= 65535) return;
      throw new TypeError(`The port must be an integer from 0 to 65535, got ${typeName(port)}`);
    }
    if (typeof a["pipe"] === "function" && typeof a["write"] === "function") return;
  }
  throw new TypeError(
    `The address must be a UNIX socket path, { path }, { host, port } or a stream, got ${typeName(address)}`,
  );
}

/** @throws {TypeError} {RangeError} for options of the wrong type or range. */
function checkProtocolOptions(options: ProtocolOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${typeName(options)}`);
  }
  if (options.name !== undefined && typeof options.name !== "string") {
    throw new TypeError(`name must be a string, got ${typeName(options.name)}`);
  }
  checkTimeout(options.timeout, "timeout");
  checkTimeout(options.disconnectTimeout, "disconnectTimeout");
  const size = options.maxMessageSize;
  checkTimeout(size, "maxMessageSize");
  if (size !== undefined && size < 1) throw new RangeError("maxMessageSize must be at least 1");
  const queued = options.maxQueuedMessages;
  if (queued !== undefined && !(Number.isInteger(queued) && queued >= 1)) {
    throw new RangeError(`maxQueuedMessages must be a whole number from 1, got ${queued}`);
  }
}

/** What `disconnect()` rejects with: the root cause as it was thrown, if it is an Error. */
function toError(value: unknown): Error {
  return value instanceof Error
    ? value
    : new SessionEndedError(`The session failed: ${String(value)}`);
}
