// The generic engine: runstate, connect/accept/disconnect, one reader and one writer per session.
//
// It knows nothing about QMP: a subclass gets each inbound JSON object in
// wire order (`handleMessage`), establishes its session (`establishSession`)
// and hears when the session ends (`sessionEnded`).

import { Attempt, SESSION_FAILED } from "./attempt.js";
import { ProtocolHooks } from "./protocol-hooks.js";
import type { Duplex } from "node:stream";
import { inspect } from "node:util";
import {
  ConnectCancelledError,
  SessionEndedError,
  StateError,
  describe,
  toError,
} from "./errors.js";
import { fdPassingTarget } from "./fd-passing.js";
import { DEFAULT_MAX_MESSAGE_SIZE, type Frame } from "./framing.js";
import {
  type AcceptOptions,
  type ConnectOptions,
  DEFAULT_MAX_QUEUED_MESSAGES,
  type ProtocolOptions,
  type StartServerOptions,
  checkAddress,
  checkProtocolOptions,
} from "./protocol-options.js";
import { openWithRetry, retryPolicy } from "./retry.js";
import { Runstate, RunstateCell, stateErrorMessage } from "./runstate.js";
import { Listener, type ListenOptions } from "./listener.js";
import { Observer } from "./observe.js";
import {
  Session,
  type SessionHooks,
  kEnded,
  kFrame,
  kMayVanish,
  kOnWrite,
  kSerialize,
} from "./session.js";
import {
  type InetAddress,
  type SocketAddress,
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
  raceSignal,
} from "./util.js";
import { type OutboundRequest, plainRequest } from "./writer.js";

/**
 * Base class of the protocol clients: owns the runstate and the current
 * {@link Session} (its stream, reader and writer), and orchestrates connect,
 * accept and teardown. Generic over the message type it sends.
 */
export abstract class Protocol<TMessage extends object>
  extends ProtocolHooks<TMessage>
  implements SessionHooks<TMessage>
{
  /** The name given in the options, if any. */
  readonly name: string | undefined;
  /** The logger in use. */
  readonly logger: Logger;
  /** The default `timeout` of every call that gives none (`undefined`: none). */
  protected readonly defaultTimeout: number | undefined;
  readonly #observe: Observer;
  readonly #limits: { maxMessageSize: number; maxQueuedMessages: number };
  readonly #disconnectTimeout: number;

  readonly #runstate = new RunstateCell((state, previous) => this.#announce(state, previous));
  #session: Session<TMessage> | undefined;
  #listener: Listener | undefined;
  /** The connect/accept/startServer attempt in progress; `disconnect()` cancels it. */
  #attempt: Attempt | undefined;
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
    const trace = options.trace ?? debugEnabled();
    this.#observe = new Observer(this, this.name, this.logger, trace, options.record);
    this.defaultTimeout = options.timeout;
    this.#limits = {
      maxMessageSize: options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      maxQueuedMessages: options.maxQueuedMessages ?? DEFAULT_MAX_QUEUED_MESSAGES,
    };
    this.#disconnectTimeout = options.disconnectTimeout ?? 5000;
  }

  /** The current {@link Runstate}. */
  get runstate(): Runstate {
    return this.#runstate.state;
  }

  /**
   * Resolve with the new state at the next runstate transition. A watcher
   * that starts late sees only later transitions.
   */
  runstateChanged(): Promise<Runstate> {
    return this.#runstate.next;
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
    const attempt = this.#beginAttempt(options, "connect()");
    // One try for both phases (no closure or extra frame per phase: a connect stays cheap).
    try {
      this.#runstate.set(Runstate.CONNECTING);
      if (this.#observe.debugOn) this.#observe.debug(`Connecting to ${formatAddress(address)} ...`);
      const stream = await (retry === undefined
        ? openStream(address, attempt, tlsOptions)
        : openWithRetry(
            retry,
            attempt.signal,
            (s) => openStream(address, s, tlsOptions),
            (m) => this.#observe.debug(m),
          ));
      await this.#establish(attempt, stream);
    } catch (err) {
      throw await this.#attemptFailed(attempt, err);
    } finally {
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
    const attempt = this.#beginAttempt(options, "startServer()");
    const listenOptions: ListenOptions = options.mode !== undefined ? { mode: options.mode } : {};
    if (options.tls !== undefined) listenOptions.tls = options.tls;
    let listening: Promise<Listener> | undefined;
    try {
      this.#runstate.set(Runstate.CONNECTING);
      this.#observe.debug(`Listening on ${formatAddress(address)} ...`);
      listening = Listener.listen(address, listenOptions);
      this.#listener = await raceSignal(listening, attempt);
    } catch (err) {
      // Cut short while binding: let the bind settle and undo it, so that
      // nothing is left listening (or on disk) once this rejects.
      const failure = this.#attemptFailed(attempt, err);
      (await listening?.catch(() => undefined))?.close();
      throw await failure;
    } finally {
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
    const attempt = this.#beginAttempt(options, "accept()");
    try {
      this.#observe.debug(`Awaiting connection ...`);
      const stream = await listener.accept(attempt.signal);
      listener.close({ keepPeer: true });
      if (this.#listener === listener) this.#listener = undefined;
      this.#observe.debug(`Connection accepted.`);
      await this.#establish(attempt, stream);
    } catch (err) {
      throw await this.#attemptFailed(attempt, err);
    } finally {
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
    if (this.#runstate.state === Runstate.IDLE) return Promise.resolve();
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
      this.#observe.debug(`destroy(): dropping error ${describe(err)}`);
    }
  }

  /** `await using client = new QMPClient()` destroys it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }

  /** `<QMPClient name='vm1' runstate=RUNNING>` (the name only when one was given). */
  override toString(): string {
    const tokens = this.name !== undefined ? [`name='${this.name}'`] : [];
    tokens.push(`runstate=${this.#runstate.state}`);
    return `<${this.constructor.name} ${tokens.join(" ")}>`;
  }

  /** @internal */
  [inspect.custom](): string {
    return this.toString();
  }

  // ------------------------------------------------------- for subclasses

  /**
   * Skip all input up to the next `byte`, including what is held of an
   * unfinished message, and read afresh after it (a guest agent's 0xFF
   * delimiter). From then on input is read a line at a time.
   */
  protected discardInputUntil(byte: number): void {
    this.#session?.discardInputUntil(byte);
  }

  /**
   * Once {@link discardInputUntil} was used, while {@link handleMessage}
   * runs: the text of the line the message came from.
   */
  protected get inboundLine(): string {
    return this.#session?.line ?? "";
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
    session.writer.checkRoom();
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
  protected send(request: OutboundRequest<TMessage>): void {
    this.checkSend();
    this.#session!.writer.enqueue(request);
  }

  /**
   * Queue `message` alone (no fds, no reply expected) and resolve once the
   * writer writes it. For subclasses that need no more than that.
   *
   * @throws as {@link checkSend} (as a rejection).
   */
  protected sendMessage(message: TMessage): Promise<void> {
    return new Promise<void>((resolve, reject) =>
      this.send(plainRequest(message, resolve, reject)),
    );
  }

  /** Take a request out of the writer's queue if it was not written yet. */
  protected cancelSend(request: OutboundRequest<TMessage>): boolean {
    return this.#session?.writer.cancel(request) ?? false;
  }

  /**
   * @throws {FdPassingError} when this session cannot pass fds: not a UNIX
   *   socket (TCP, TLS, another stream) or an unsupported platform. Whether
   *   the native module loads is only known when the writer gets to the fds.
   */
  protected checkFdPassing(): void {
    fdPassingTarget(this.#session?.stream);
  }

  /** End the session because of `err` (a fatal protocol error found by the subclass). */
  protected fail(err: unknown): void {
    this.#session?.end(err);
  }

  /** @throws {StateError} unless `RUNNING`. For subclasses' public methods. */
  protected requireRunning(): void {
    this.#require(Runstate.RUNNING);
  }

  // ------------------------------------------------------------- machinery

  #require(required: Runstate): void {
    const state = this.#runstate.state;
    if (state === required) return;
    throw new StateError(stateErrorMessage(this.constructor.name, state), state, required);
  }

  /** The call's options, with the client's default timeout when it gives none. */
  #timed<O extends CallOptions>(options: O): CallOptions {
    const timeout = options.timeout ?? this.defaultTimeout;
    return timeout === undefined ? options : { signal: options.signal, timeout };
  }

  /** Start an attempt with the call's options (the client's timeout when it gives none). */
  #beginAttempt(options: CallOptions, what: string): Attempt {
    const attempt = new Attempt(this.#timed(options), what);
    this.#attempt = attempt;
    return attempt;
  }

  #endAttempt(attempt: Attempt): void {
    attempt.dispose();
    if (this.#attempt === attempt) this.#attempt = undefined;
  }

  /** A transition happened: log it, publish it, emit it. */
  #announce(state: Runstate, previous: Runstate): void {
    this.#observe.runstate(state, previous);
    try {
      this.emit("runstate", state, previous);
    } catch (err) {
      this.#observe.error("A 'runstate' listener threw", err);
    }
  }

  /**
   * `attempt` failed with `err`: back to IDLE (unless a newer attempt runs
   * by now), then give the error to throw (see {@link Attempt.errorFor}).
   */
  async #attemptFailed(attempt: Attempt, err: unknown): Promise<unknown> {
    this.#observe.debug(`${attempt.phase}: ${describe(err)}`);
    // Read before our own teardown, which cancels the attempt too.
    const fired = attempt.fired();
    if (this.#attempt === attempt) {
      await (this.#teardown ?? this.#startTeardown(false)).catch(() => {});
    }
    return attempt.errorFor(err, fired);
  }

  /** Set the session up on `stream` and run the subclass's part; RUNNING on success. */
  async #establish(attempt: Attempt, stream: Duplex): Promise<void> {
    attempt.phase = SESSION_FAILED;
    attempt.transportFailure = tlsSessionFailure(stream);
    const session = this.#attach(stream);
    attempt.throwIfAborted();
    // An abort (timeout, the caller's signal) ends the session, which makes
    // establishSession() settle: one listener, no race of promises.
    const stop = (): void => session.destroy();
    attempt.addEventListener("abort", stop);
    try {
      await this.establishSession(attempt);
    } finally {
      attempt.removeEventListener("abort", stop);
    }
    // Whatever came between the session being set up and now (a
    // disconnect(), the peer leaving) wins over RUNNING.
    attempt.throwIfAborted();
    if (!session.open) throw toError(session.error ?? new SessionEndedError("The peer left"));
    this.#runstate.set(Runstate.RUNNING);
  }

  #attach(stream: Duplex): Session<TMessage> {
    // The client is the session's hooks itself: nothing more to allocate per session.
    const session = new Session<TMessage>(stream, this.#limits, this);
    this.#session = session;
    this.#observe.sessionStarted();
    return session;
  }

  // The session's hooks (see SessionHooks).

  /** @internal */
  [kFrame](frame: Frame): void {
    this.#dispatch(frame);
  }

  /** @internal */
  [kEnded](error: unknown, reason: Error): void {
    if (error !== undefined) this.#observe.error("Session failed", error);
    if (this.#runstate.state === Runstate.RUNNING) this.#runstate.set(Runstate.DISCONNECTING);
    this.sessionEnded(error, reason);
  }

  /** @internal */
  [kMayVanish](): boolean {
    const vanish = this.peerMayVanish();
    if (vanish) this.#observe.debug(`The peer went away as expected.`);
    return vanish;
  }

  /** @internal */
  [kSerialize](message: TMessage): string {
    return this.serialize(message);
  }

  /** @internal */
  [kOnWrite](message: TMessage | undefined, fds: readonly number[] | undefined): void {
    this.#observe.sent(message, fds);
  }

  #dispatch(frame: Frame): void {
    if (frame.kind === "oversize") {
      const limit = this.#limits.maxMessageSize;
      this.logger.warn(
        `${this.#observe.tag}Skipped a message of ${frame.size} bytes (maxMessageSize ${limit})`,
      );
      this.handleOversize(frame.size, limit, frame.id);
      return;
    }
    const message = frame.value;
    this.#observe.received(message);
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
    this.#attempt?.cancel(
      new ConnectCancelledError(`${cls}: disconnect() was called before the session was up`),
    );
    if (this.#runstate.state === Runstate.CONNECTING || this.#runstate.state === Runstate.RUNNING) {
      this.#runstate.set(Runstate.DISCONNECTING);
    }
    const session = this.#session;
    if (session !== undefined) {
      if (graceful && session.open) {
        const stop = new AbortController();
        this.#stopFlush = stop;
        // One deadline for the whole graceful part (Infinity: none); destroy() cuts it.
        const d = deadline({ timeout: this.#disconnectTimeout }, "disconnect()", stop.signal);
        try {
          await session.close(d.signal, this.drainOnClose);
        } finally {
          d.dispose();
          this.#stopFlush = undefined;
        }
      } else {
        session.destroy();
      }
    }
    if (this.#session === session) this.#session = undefined;
    this.#listener?.close();
    this.#listener = undefined;
    this.#runstate.set(Runstate.IDLE);
    this.#observe.debug(`Disconnected.`);
    const error = session?.error;
    if (error !== undefined) throw toError(error);
  }
}
