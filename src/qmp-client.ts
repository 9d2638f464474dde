// The QMP client: greeting, negotiation, command ids, reply routing, execute, events.

import { TLSSocket } from "node:tls";
import {
  BadReplyError,
  DuplicateIdError,
  ExecInterruptedError,
  ExecuteError,
  FdPassingError,
  GreetingError,
  ListenerError,
  MessageTooLargeError,
  NegotiationError,
  ProtocolError,
  ServerParseError,
  SessionEndedError,
} from "./errors.js";
import {
  type EventFilter,
  EventListener,
  type EventListenerOptions,
  kAttach,
  kPush,
  kSessionEnded,
  kSessionStarted,
} from "./events.js";
import {
  type CommandMessage,
  type Greeting,
  type JsonValue,
  type QMPEvent,
  isErrorReply,
  isEvent,
  isGreeting,
} from "./message.js";
import { checkFds } from "./fd-passing.js";
import { Protocol, type ProtocolOptions } from "./protocol.js";
import { type CallOptions, type Deferred, deadline, deferred, raceSignal } from "./util.js";

/** Options of {@link QMPClient}. */
export interface QMPClientOptions extends ProtocolOptions {
  /**
   * Wait for QEMU's greeting before `RUNNING` (default true). `false` with
   * `negotiate: false` is guest-agent mode: nothing is read or sent first.
   */
  awaitGreeting?: boolean | undefined;
  /** Send `qmp_capabilities` before `RUNNING` (default true). */
  negotiate?: boolean | undefined;
  /** Default per-call timeout in milliseconds for `execute`, `raw`… (default none). */
  timeout?: number | undefined;
  /** Options of the default listener {@link QMPClient.events}. */
  events?: Omit<EventListenerOptions, "names" | "filter"> | undefined;
}

/** Options of {@link QMPClient.execute}. */
export interface ExecuteOptions extends CallOptions {
  /** Send as `exec-oob` (out-of-band; needs the `oob` capability, negotiated when offered). */
  oob?: boolean | undefined;
  /**
   * File descriptors to pass with the command (SCM_RIGHTS, UNIX sockets
   * only): they go in one message on a single space byte right before the
   * command. QEMU keeps only the first fd of a message, so give QEMU one fd
   * per command (`getfd`, `add-fd`). The fds stay open on our side: close
   * them yourself once QEMU has them.
   */
  fds?: readonly number[] | undefined;
}

/** Options of {@link QMPClient.raw}. */
export interface RawOptions extends CallOptions {
  /** Give the message a fresh id when it has none (default true). */
  assignId?: boolean | undefined;
}

/** Options of {@link QMPClient.executeAndWait}. */
export interface ExecuteAndWaitOptions extends ExecuteOptions {
  /** Name(s) of the event to wait for. */
  event: string | Iterable<string>;
  /** Which of those events is the one (e.g. the right `device`). */
  filter?: EventFilter | undefined;
}

/** Options of {@link QMPClient.waitEvent}. */
export interface WaitEventOptions extends CallOptions {}

interface Pending {
  sent: Record<string, unknown>;
  reply: Deferred<Record<string, unknown>>;
  quit: boolean;
  /** Resolves when the call is over: answered, failed, or abandoned. */
  over: Deferred<void>;
}

/** How many ids of abandoned (timed out, aborted) calls we remember, to drop late replies quietly. */
const ABANDONED_MEMORY = 4096;

/**
 * How long `qmp_capabilities` may take on a TLS session with a QEMU before
 * 8.0 before we call it the known stall rather than wait for the caller's
 * timeout (a QEMU with the fix backported answers at once).
 */
const TLS_STALL_TIMEOUT = 3000;

/**
 * QEMU before 8.0 stalls on a TLS monitor: commands go unanswered (QEMU 7.2
 * answers not even `qmp_capabilities`); a bug of its TLS channel, fixed in
 * QEMU 8.0. What to warn about, for the greeting of a TLS session.
 */
function tlsStallWarning(greeting: Greeting): string | undefined {
  const { major, minor, micro } = greeting.QMP.version.qemu;
  if (major >= 8) return undefined;
  return (
    `QEMU ${major}.${minor}.${micro} over TLS: QEMU before 8.0 stalls on a TLS monitor and ` +
    "leaves commands unanswered (a QEMU bug, fixed in QEMU 8.0); use QEMU >= 8.0, or a UNIX socket"
  );
}

/**
 * A QMP client for QEMU (and `qemu-storage-daemon`).
 *
 * ```ts
 * const qmp = new QMPClient({ name: "vm1" });
 * await qmp.connect("/run/vm1.qmp");
 * console.log(await qmp.execute("query-status"));
 * await qmp.disconnect();
 * ```
 *
 * Commands may be issued concurrently; replies are matched by id. Events go
 * to {@link events} and to every registered {@link EventListener}.
 */
export class QMPClient extends Protocol<CommandMessage> {
  /**
   * The greeting of the current (or last) session, once received; with
   * `awaitGreeting: false`, the first greeting that arrives anyway.
   */
  greeting: Greeting | undefined;
  /** The default listener: takes every event; cannot be unregistered. */
  readonly events: EventListener;
  readonly #awaitGreeting: boolean;
  readonly #negotiate: boolean;
  readonly #timeout: number | undefined;
  /** Next command id. Never reset, so a late reply from an old session can't match a new call. */
  #nextId = 1;
  readonly #pending = new Map<string | number, Pending>();
  #idless: Pending | undefined;
  readonly #abandoned = new Set<unknown>();
  readonly #listeners = new Set<EventListener>();
  #greetingWaiter: Deferred<Greeting> | undefined;
  /** Set when a session ended and no new one started: what listeners registered now must see. */
  #ended: { cause: unknown } | undefined;
  /** A `quit` went out this session: QEMU will close (or reset) the connection. */
  #quitSent = false;

  constructor(options: QMPClientOptions = {}) {
    super(options);
    this.#awaitGreeting = options.awaitGreeting ?? true;
    this.#negotiate = options.negotiate ?? true;
    this.#timeout = options.timeout;
    this.events = new EventListener(options.events ?? {});
    this.#listeners.add(this.events);
  }

  // ------------------------------------------------------------- commands

  /**
   * Run a command and resolve to its `return` value. Requires `RUNNING`.
   *
   * QMP has no way to cancel a command: after an abort or timeout, QEMU may
   * still run it; its late reply is dropped.
   *
   * @throws {ExecuteError} when QEMU answers with an error (the client stays usable).
   * @throws {BadReplyError} on a malformed reply.
   * @throws {MessageTooLargeError} when the reply exceeds `maxMessageSize`.
   * @throws {ExecInterruptedError} when the session ends first (`quit` resolves instead).
   * @throws {StateError} when not `RUNNING`.
   * @throws {FdPassingError} when `fds` cannot be passed (not a UNIX socket,
   *   `koffi` not installed, unsupported platform, refused by the kernel);
   *   the command is then not sent.
   * @throws {TypeError} when `fds` is not a non-empty array of fd numbers.
   * @throws the `signal`'s reason (`AbortError`, `TimeoutError`) on abort or timeout.
   */
  async execute(command: string, args?: object, options: ExecuteOptions = {}): Promise<JsonValue> {
    const message: CommandMessage = options.oob ? { "exec-oob": command } : { execute: command };
    if (args !== undefined && !isEmptyObject(args)) message.arguments = args;
    const fds = options.fds;
    if (fds !== undefined) {
      checkFds(fds);
      this.requireRunning();
      this.checkFdPassing();
    }
    const reply = await this.#call(message, true, options, false, fds);
    return unwrap(message, reply);
  }

  /**
   * Like {@link execute}, for a whole message (`{ execute | exec-oob,
   * arguments?, id? }`). The message is not changed. A caller-chosen `id`
   * must be a string not in use; without one, a fresh id is used.
   *
   * @throws {TypeError} when the message has no `execute`/`exec-oob` string,
   *   or an `id` that is not a string.
   * @throws {DuplicateIdError} when its `id` is in use, or was used by a call
   *   abandoned (timeout, abort) whose late reply has not come yet.
   * @throws as {@link execute} does.
   */
  async executeMsg(message: CommandMessage, options: CallOptions = {}): Promise<JsonValue> {
    if (typeof message.execute !== "string" && typeof message["exec-oob"] !== "string") {
      throw new TypeError("executeMsg() needs a message with an 'execute' or 'exec-oob' string");
    }
    const sent = copyChecked(message);
    return unwrap(sent, await this.#call(sent, true, options));
  }

  /**
   * Send any message and resolve to the whole reply, error replies included
   * (nothing is thrown for them). With `assignId: false` and no `id`, the
   * message goes without one (at most one such call may be pending).
   *
   * @throws {TypeError} when `id` is present and not a string.
   * @throws {DuplicateIdError} when its `id` (or id-less slot) is in use.
   * @throws {ExecInterruptedError}, {@link StateError}, the signal's reason, as {@link execute}.
   */
  async raw(message: CommandMessage, options: RawOptions = {}): Promise<Record<string, unknown>> {
    return this.#call(copyChecked(message), options.assignId ?? true, options);
  }

  /**
   * Run a command and wait for the event it causes, race-free: the listener
   * is in place before the command is sent. One `timeout` covers both.
   * E.g. `executeAndWait("device_del", { id: "nic0" }, { event: "DEVICE_DELETED",
   * filter: (e) => e.data?.device === "nic0" })`.
   *
   * @throws as {@link execute}, and {@link SessionEndedError} if the session
   *   ends before the event.
   */
  async executeAndWait(
    command: string,
    args: object | undefined,
    options: ExecuteAndWaitOptions,
  ): Promise<{ return: JsonValue; event: QMPEvent }> {
    const { signal, dispose } = deadline(options);
    using listener = this.listener(options.event, options.filter);
    try {
      const result = await this.execute(command, args, {
        oob: options.oob,
        fds: options.fds,
        signal,
      });
      const event = await listener.get({ signal });
      return { return: result, event };
    } finally {
      dispose();
    }
  }

  /**
   * Pass one file descriptor to QEMU (SCM_RIGHTS on a single space byte),
   * in order with the commands sent before and after it; for `getfd`
   * (`{ fdname }`) or `add-fd` to take next. Resolves once the kernel has
   * it. Prefer `execute(cmd, args, { fds: [fd] })`, which ties the fd to its
   * command. Requires `RUNNING` on a UNIX socket, and the optional
   * dependency `koffi`. The fd stays open on our side.
   *
   * @throws {FdPassingError} when it cannot be passed (TCP/TLS, no `koffi`,
   *   unsupported platform, refused by the kernel).
   * @throws {TypeError} when `fd` is not an integer ≥ 0.
   * @throws {StateError} when not `RUNNING`.
   */
  async sendFdScm(fd: number): Promise<void> {
    checkFds([fd]);
    this.requireRunning();
    this.checkFdPassing();
    await this.sendFds([fd], this.#fdFence());
  }

  // --------------------------------------------------------------- events

  /**
   * Register a listener: from now on it takes the events it accepts.
   *
   * @throws {ListenerError} when it is already registered.
   */
  registerListener(listener: EventListener): void {
    if (this.#listeners.has(listener)) {
      throw new ListenerError("This listener is already registered with this client");
    }
    this.#listeners.add(listener);
    // A listener joining between sessions must know the last one is over
    // (or it would wait forever); one joining a live session must not think so.
    if (this.#ended !== undefined) listener[kSessionEnded](this.#ended.cause);
    else listener[kSessionStarted]();
    const forget = listener[kAttach](() => {
      if (this.#listeners.has(listener)) this.unregisterListener(listener);
    });
    this.#forgetters.set(listener, forget);
  }

  readonly #forgetters = new Map<EventListener, () => void>();

  /**
   * Unregister a listener; its queued events stay in it.
   *
   * @throws {ListenerError} for the default listener {@link events}, or one not registered.
   */
  unregisterListener(listener: EventListener): void {
    if (listener === this.events) {
      throw new ListenerError("The default listener 'events' cannot be unregistered");
    }
    if (!this.#listeners.delete(listener)) {
      throw new ListenerError("This listener is not registered with this client");
    }
    this.#forgetters.get(listener)?.();
    this.#forgetters.delete(listener);
  }

  /**
   * Register listeners for a scope: `using _ = client.listen(a, b);`
   * unregisters them when the scope ends.
   *
   * @throws {ListenerError} when one is already registered (none is then registered).
   */
  listen(...listeners: EventListener[]): Disposable {
    const done: EventListener[] = [];
    try {
      for (const l of listeners) {
        this.registerListener(l);
        done.push(l);
      }
    } catch (err) {
      for (const l of done) this.unregisterListener(l);
      throw err;
    }
    return {
      [Symbol.dispose]: () => {
        for (const l of done) if (this.#listeners.has(l)) this.unregisterListener(l);
      },
    };
  }

  /**
   * Make and register a listener for `names` (empty: all) and `filter`:
   * `using l = client.listener("STOP");` unregisters it at the end of the scope.
   */
  listener(
    names?: string | Iterable<string>,
    filter?: EventFilter,
    options: Omit<EventListenerOptions, "names" | "filter"> = {},
  ): EventListener {
    const listener = new EventListener({ ...options, names, filter });
    this.registerListener(listener);
    return listener;
  }

  /**
   * Wait for the next event named `names` (empty: any) that passes `filter`.
   * Only events arriving after the call count.
   *
   * @throws {SessionEndedError} when the session ends first.
   * @throws the `signal`'s reason on abort or timeout.
   */
  async waitEvent(
    names?: string | Iterable<string>,
    filter?: EventFilter,
    options: WaitEventOptions = {},
  ): Promise<QMPEvent> {
    using listener = this.listener(names, filter);
    return await listener.get(options);
  }

  // ---------------------------------------------------------- the engine's hooks

  protected override async establishSession(signal: AbortSignal): Promise<void> {
    let stall: string | undefined;
    this.#ended = undefined;
    for (const l of this.#listeners) l[kSessionStarted]();
    this.greeting = undefined;
    if (this.#awaitGreeting) {
      this.#greetingWaiter = deferred<Greeting>();
      this.#greetingWaiter.promise.catch(() => {});
      this.greeting = await this.#greetingWaiter.promise;
      stall = this.stream instanceof TLSSocket ? tlsStallWarning(this.greeting) : undefined;
      if (stall !== undefined) this.logger.warn(`${this.#tag}${stall}`);
    }
    if (!this.#negotiate) return;
    const offersOob = this.greeting?.QMP.capabilities.includes("oob") ?? false;
    const message: CommandMessage = { execute: "qmp_capabilities" };
    if (offersOob) message.arguments = { enable: ["oob"] };
    let reply: Record<string, unknown>;
    if (stall === undefined) {
      reply = await this.#call(message, true, { signal }, true);
    } else {
      // A known stall must not hang the connect until the caller's timeout
      // (or forever, without one): give it a few seconds, then say why.
      const bounded = deadline({ signal, timeout: TLS_STALL_TIMEOUT });
      try {
        reply = await this.#call(message, true, { signal: bounded.signal }, true);
      } catch (err) {
        if (!signal.aborted && bounded.signal.aborted) {
          throw new ProtocolError(
            `No reply to qmp_capabilities within ${TLS_STALL_TIMEOUT} ms: ${stall}`,
            { cause: err },
          );
        }
        throw err;
      } finally {
        bounded.dispose();
      }
    }
    if (!("return" in reply)) {
      const what = isErrorReply(reply)
        ? `${reply.error.class}: ${reply.error.desc}`
        : "a malformed reply";
      throw new NegotiationError(`qmp_capabilities failed with ${what}`, reply);
    }
  }

  protected override handleMessage(message: Record<string, unknown>): void {
    if (isEvent(message)) {
      this.#deliver(message);
      return;
    }
    if ("QMP" in message) {
      const waiter = this.#greetingWaiter;
      if (waiter === undefined && !this.#awaitGreeting && this.greeting === undefined) {
        // Not waited for (awaitGreeting: false), yet it is QEMU's, not a guest agent's.
        if (isGreeting(message)) {
          this.greeting = message;
          this.logger.debug(`${this.#tag}Greeting received (not awaited)`);
          return;
        }
      }
      if (waiter === undefined) {
        // QEMU 7.2 may send a stale greeting to a client that connects right
        // after a short-lived one; it means nothing to this session.
        this.logger.warn(`${this.#tag}Ignoring an unexpected greeting`);
        return;
      }
      this.#greetingWaiter = undefined;
      if (!isGreeting(message)) {
        throw new GreetingError(
          "Malformed greeting: expected { QMP: { version, capabilities } }",
          message,
        );
      }
      waiter.resolve(message);
      return;
    }
    if (this.#greetingWaiter !== undefined) {
      throw new GreetingError(
        `Expected a greeting, got ${JSON.stringify(message).slice(0, 200)}`,
        message,
      );
    }
    if (!("id" in message)) {
      const idless = this.#idless;
      if (idless !== undefined) {
        this.#idless = undefined;
        idless.reply.resolve(message);
      } else if ("error" in message) {
        throw new ServerParseError(
          `QEMU could not parse a message: ${describeError(message)}`,
          message,
        );
      } else {
        this.logger.warn(
          `${this.#tag}Dropping a reply without id: ${JSON.stringify(message).slice(0, 200)}`,
        );
      }
      return;
    }
    const id = message["id"];
    const pending =
      typeof id === "number" || typeof id === "string" ? this.#pending.get(id) : undefined;
    if (pending === undefined) {
      if (this.#abandoned.delete(id)) {
        this.logger.debug(
          `${this.#tag}Dropping the late reply to abandoned call ${JSON.stringify(id)}`,
        );
      } else {
        this.logger.warn(`${this.#tag}Dropping a reply with unknown id ${JSON.stringify(id)}`);
      }
      return;
    }
    this.#pending.delete(id as string | number);
    pending.reply.resolve(message);
  }

  protected override handleOversize(size: number, limit: number, id: unknown): void {
    const pending =
      typeof id === "number" || typeof id === "string" ? this.#pending.get(id) : undefined;
    if (pending === undefined) {
      this.#abandoned.delete(id);
      this.logger.warn(
        `${this.#tag}Skipped a message of ${size} bytes over maxMessageSize (${limit}) that answers no pending call`,
      );
      return;
    }
    this.#pending.delete(id as string | number);
    pending.reply.reject(new MessageTooLargeError(size, limit));
  }

  protected override peerMayVanish(): boolean {
    return this.#quitSent;
  }

  protected override sessionEnded(cause: unknown): void {
    this.#quitSent = false;
    const root = cause ?? new SessionEndedError("The peer closed the connection");
    this.#greetingWaiter?.reject(root);
    this.#greetingWaiter = undefined;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    if (this.#idless !== undefined) pending.push(this.#idless);
    this.#idless = undefined;
    this.#abandoned.clear();
    for (const p of pending) {
      if (p.quit) {
        // The disconnect that follows a quit is its success.
        p.reply.resolve({ return: {} });
        continue;
      }
      const name = JSON.stringify(p.sent["execute"] ?? p.sent["exec-oob"] ?? "message");
      p.reply.reject(
        new ExecInterruptedError(`The session ended before the reply to ${name} arrived`, {
          cause: root,
        }),
      );
    }
    this.#ended = { cause: root };
    for (const l of this.#listeners) l[kSessionEnded](root);
  }

  // ------------------------------------------------------------- machinery

  get #tag(): string {
    return this.name !== undefined ? `[${this.name}] ` : "";
  }

  #deliver(event: QMPEvent): void {
    // The first taker gets the parsed object; others get copies, so no
    // consumer sees another's changes.
    let first = true;
    for (const listener of this.#listeners) {
      let takes: boolean;
      try {
        takes = listener.accepts(event);
      } catch (err) {
        this.logger.error(`${this.#tag}An event filter threw: ${String(err)}`);
        continue;
      }
      if (!takes) continue;
      listener[kPush](first ? event : structuredClone(event));
      first = false;
    }
  }

  /**
   * Send `message` (ours to change: the callers pass a fresh object) and wait
   * for its reply. A numeric id is only taken once the call is sure to go
   * out, so the ids on the wire have no gaps.
   */
  async #call(
    message: CommandMessage,
    assignId: boolean,
    options: CallOptions,
    negotiating = false,
    fds?: readonly number[],
  ): Promise<Record<string, unknown>> {
    if (!negotiating) this.requireRunning();
    const timeout = options.timeout ?? this.#timeout;
    options.signal?.throwIfAborted();
    if (message.id === undefined && assignId) message.id = this.#nextId++;
    const id = message.id;
    // fds wait until QEMU has answered every command sent before them (see #fdFence).
    const fence = fds !== undefined ? this.#fdFence() : undefined;
    const pending: Pending = {
      sent: message,
      reply: deferred(),
      quit: message.execute === "quit" || message["exec-oob"] === "quit",
      over: deferred(),
    };
    const over = (): void => pending.over.resolve();
    pending.reply.promise.then(over, over);
    if (pending.quit) this.#quitSent = true;
    if (id === undefined) {
      if (this.#idless !== undefined) {
        throw new DuplicateIdError("Another call without an id is already waiting for its reply");
      }
      this.#idless = pending;
    } else {
      const key = id as string | number;
      if (this.#pending.has(key)) {
        throw new DuplicateIdError(`The id ${JSON.stringify(id)} is in use`);
      }
      if (this.#abandoned.has(key)) {
        throw new DuplicateIdError(
          `The id ${JSON.stringify(id)} belongs to an abandoned call whose late reply may still come`,
        );
      }
      this.#pending.set(key, pending);
    }
    // A failed send ends the session, which fails the call; nothing to do
    // here, except when fds could not be passed: then the command was not
    // written and only this call fails.
    this.send(message, fds, fence).catch((err: unknown) => {
      if (err instanceof FdPassingError) this.#refuse(pending, id, err);
    });
    if (options.signal === undefined && timeout === undefined) return pending.reply.promise;
    const d = deadline({ signal: options.signal, timeout });
    try {
      return await raceSignal(pending.reply.promise, d.signal, () => this.#abandon(pending, id));
    } finally {
      d.dispose();
    }
  }

  /** `pending` was never sent: forget it and fail it with `err`. */
  #refuse(pending: Pending, id: JsonValue | undefined, err: unknown): void {
    if (id === undefined) {
      if (this.#idless === pending) this.#idless = undefined;
    } else if (this.#pending.get(id as string | number) === pending) {
      this.#pending.delete(id as string | number);
    }
    pending.reply.reject(err);
  }

  /**
   * Settles once every call now pending is over. QEMU holds at most one
   * received fd set per connection, and with `oob` negotiated its monitor
   * reads ahead of the commands it runs: fds sent while an earlier command
   * is still unanswered could replace the fd that command is about to take
   * (QEMU closes the one it held). So fds wait for this fence.
   */
  #fdFence(): Promise<unknown> {
    const calls = [...this.#pending.values()];
    if (this.#idless !== undefined) calls.push(this.#idless);
    return calls.length === 0 ? Promise.resolve() : Promise.all(calls.map((p) => p.over.promise));
  }

  #abandon(pending: Pending, id: JsonValue | undefined): void {
    pending.over.resolve();
    pending.reply.promise.catch(() => {});
    if (id === undefined) {
      if (this.#idless === pending) this.#idless = undefined;
      return;
    }
    if (this.#pending.get(id as string | number) !== pending) return;
    this.#pending.delete(id as string | number);
    this.#abandoned.add(id);
    if (this.#abandoned.size > ABANDONED_MEMORY) {
      const oldest = this.#abandoned.values().next().value;
      this.#abandoned.delete(oldest);
    }
  }
}

/**
 * A shallow copy of a caller's message, so the caller's object is never
 * changed.
 *
 * @throws {TypeError} when it has an `id` that is not a string.
 */
function copyChecked(message: CommandMessage): CommandMessage {
  if (message.id !== undefined && typeof message.id !== "string") {
    throw new TypeError(
      `A caller-chosen id must be a string (numbers are the client's own), got ${JSON.stringify(message.id)}`,
    );
  }
  return { ...message };
}

function isEmptyObject(value: object): boolean {
  for (const _ in value) return false;
  return !Array.isArray(value);
}

function describeError(message: Record<string, unknown>): string {
  return isErrorReply(message)
    ? `${message.error.class}: ${message.error.desc}`
    : JSON.stringify(message);
}

/** The `return` of a reply, or the error it stands for. Runs in the caller's frame. */
function unwrap(sent: CommandMessage, reply: Record<string, unknown>): JsonValue {
  if ("return" in reply) return reply["return"] as JsonValue;
  if (isErrorReply(reply)) throw new ExecuteError(sent, reply);
  const what = "error" in reply ? "a malformed 'error'" : "neither 'return' nor 'error'";
  throw new BadReplyError(`The reply has ${what}`, sent, reply);
}
