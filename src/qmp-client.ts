// The QMP client: greeting, negotiation, command ids, reply routing, execute, events.

export type {
  ExecuteAndWaitOptions,
  ExecuteOptions,
  QMPClientOptions,
  RawOptions,
  WaitEventOptions,
} from "./qmp-options.js";

import type { Attempt } from "./attempt.js";
import type {
  AnyEvent,
  CommandArgsParam,
  CommandName,
  CommandParams,
  CommandResult,
  EventName,
  EventNames,
  EventOf,
  QAPIShape,
  Untyped,
} from "./qapi/typing.js";
import { TLSSocket } from "node:tls";
import { type Call, CallTable, type Reply, copyChecked, unwrap } from "./calls.js";
import { GreetingError, MessageTooLargeError } from "./errors.js";
import {
  type EventFilter,
  EventListener,
  type NamedEvent,
  type EventListenerOptions,
} from "./events.js";
import {
  type CommandMessage,
  type Greeting,
  type JsonValue,
  isEvent,
  isGreeting,
} from "./message.js";
import { checkFds } from "./fd-passing.js";
import { type JobInfo, type RunJobOptions, executeAndWait, runJob } from "./jobs.js";
import { type MigrateOptions, type MigrationInfo, migrate } from "./migration.js";
import { negotiate } from "./negotiation.js";
import { type AnyListener, Listeners } from "./listeners.js";
import { type CommandInfo, LiveSchema, commandInfo } from "./qapi/live.js";
import type { Schema } from "./qapi/schema.js";
import { Protocol } from "./protocol.js";
import {
  type ExecuteAndWaitOptions,
  type ExecuteOptions,
  NO_OPTIONS,
  type QMPClientOptions,
  type RawOptions,
  type WaitEventOptions,
  checkClientOptions,
  checkExecute,
  isEmptyObject,
  tlsStallWarning,
} from "./qmp-options.js";
import {
  type CallOptions,
  type Deferred,
  checkCallOptions,
  deadline,
  deferred,
  raceSignal,
  typeName,
} from "./util.js";

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
 *
 * Typed: `new QMPClient<QAPI>()` with `QAPI` from a generated module
 * (`qmp/qapi`, `qmp/qapi/qemu-7.2`, …, or `qmp codegen` for your QEMU)
 * checks command names, arguments and event names at compile time and
 * types what they return; {@link untyped} sends what the schema lacks.
 * Untyped (`new QMPClient()`), any name goes and `execute<T>()` takes the
 * result's type.
 */
export class QMPClient<Q extends QAPIShape = Untyped> extends Protocol<CommandMessage> {
  /**
   * The greeting of the current (or last) session, once received; with
   * `awaitGreeting: false`, the first greeting that arrives anyway.
   */
  get greeting(): Greeting | undefined {
    return this.#greeting;
  }
  #greeting: Greeting | undefined;
  /** The default listener: takes every event; cannot be unregistered. */
  readonly events: EventListener<AnyEvent<Q>>;
  readonly #awaitGreeting: boolean;
  readonly #negotiate: boolean;
  readonly #validate: boolean;
  /** The connected QEMU's schema (made on first use: validate, hasCommand, …). */
  #liveSchema: LiveSchema | undefined;
  readonly #calls: CallTable;
  /** `events` and the other listeners. */
  readonly #listeners: Listeners;
  #greetingWaiter: Deferred<Greeting> | undefined;

  /**
   * @throws {TypeError} {RangeError} for options of the wrong type or range.
   */
  constructor(options: QMPClientOptions = {}) {
    super(options);
    checkClientOptions(options);
    this.#awaitGreeting = options.awaitGreeting ?? true;
    this.#negotiate = options.negotiate ?? true;
    this.#validate = options.validate ?? false;
    this.events = new EventListener<AnyEvent<Q>>(options.events ?? {});
    this.#listeners = new Listeners(this.events, this.logger, this.#tag);
    this.#calls = new CallTable(this.logger);
  }

  // ------------------------------------------------------------- commands

  /**
   * Run a command and resolve to its `return` value. Requires `RUNNING`.
   *
   * QMP has no way to cancel a command: after an abort or timeout, QEMU may
   * still run it; its late reply is dropped. A call aborted before the
   * writer got to it is never sent. Without `timeout`, the client's
   * `timeout` option applies.
   *
   * @throws {ExecuteError} when QEMU answers with an error (the client stays usable).
   * @throws {BadReplyError} on a malformed reply.
   * @throws {MessageTooLargeError} when the reply exceeds `maxMessageSize`.
   * @throws {ExecInterruptedError} when the session ends first (`quit` resolves instead).
   * @throws {StateError} when not `RUNNING`.
   * @throws {FdPassingError} when `fds` cannot be passed (not a UNIX socket,
   *   `koffi` not installed, unsupported platform, refused by the kernel);
   *   the command is then not sent.
   * @throws {TypeError} when `command` is not a non-empty string, `args` not
   *   an object, an option of the wrong type, or `fds` not a non-empty array
   *   of fd numbers; {RangeError} for a negative `timeout`. Nothing is sent.
   * @throws {QueueFullError} when `maxQueuedMessages` messages wait for the
   *   socket; nothing is sent.
   * @throws the `signal`'s reason on abort; a `TimeoutError` `DOMException`
   *   naming the command and the milliseconds on timeout.
   */
  execute<T = JsonValue, K extends CommandName<Q> = CommandName<Q>>(
    command: K,
    ...params: CommandParams<Q, K, ExecuteOptions>
  ): Promise<CommandResult<Q, K, T>>;
  async execute(command: string, args?: unknown, options?: unknown): Promise<unknown> {
    const checked = checkExecute(command, args, options);
    const { oob, fds } = checked;
    if (fds !== undefined) {
      this.requireRunning();
      this.checkFdPassing();
    }
    this.#validateArgs(command, args);
    const message: CommandMessage = oob === true ? { "exec-oob": command } : { execute: command };
    if (args !== undefined && !isEmptyObject(args as object)) message.arguments = args as object;
    const reply = await this.#call(message, true, checked, "execute", fds);
    return unwrap(message, reply);
  }

  /**
   * This client, untyped: for a command or event its schema does not have
   * (a newer QEMU's, an `x-` one left out), e.g.
   * `await qmp.untyped.execute("x-new-command", { … })`. The same client,
   * not a copy.
   */
  get untyped(): QMPClient {
    return this as unknown as QMPClient;
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
  async executeMsg(message: CommandMessage, options: CallOptions = NO_OPTIONS): Promise<JsonValue> {
    const sent = copyChecked(message);
    const command = sent.execute ?? sent["exec-oob"];
    if (typeof command !== "string") {
      throw new TypeError("executeMsg() needs a message with an 'execute' or 'exec-oob' string");
    }
    checkCallOptions(options);
    this.#validateArgs(command, sent.arguments);
    return unwrap(sent, await this.#call(sent, true, options, "executeMsg"));
  }

  /**
   * Send any message and resolve to the whole reply, error replies included
   * (nothing is thrown for them). With `assignId: false` and no `id`, the
   * message goes without one (at most one such call may be pending, and
   * none while the late reply of an abandoned one may still come).
   *
   * @throws {TypeError} when the message is not an object, or its `id` is
   *   present and not a string.
   * @throws {DuplicateIdError} when its `id` (or id-less slot) is in use.
   * @throws {ExecInterruptedError}, {@link StateError}, the signal's reason, as {@link execute}.
   */
  async raw(
    message: CommandMessage,
    options: RawOptions = NO_OPTIONS,
  ): Promise<Record<string, unknown>> {
    const sent = copyChecked(message);
    checkCallOptions(options);
    const { assignId } = options;
    if (assignId !== undefined && typeof assignId !== "boolean") {
      throw new TypeError(`assignId must be a boolean, got ${typeName(assignId)}`);
    }
    return this.#call(sent, assignId ?? true, options, "raw");
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
  executeAndWait<K extends CommandName<Q>, N extends EventName<Q>>(
    command: K,
    args: CommandArgsParam<Q, K>,
    options: ExecuteAndWaitOptions<N, EventOf<Q, N>>,
  ): Promise<{ return: CommandResult<Q, K, JsonValue>; event: EventOf<Q, N> }>;
  async executeAndWait(
    command: string,
    args: unknown,
    options: ExecuteAndWaitOptions<string, NamedEvent>,
  ): Promise<{ return: unknown; event: NamedEvent }> {
    checkCallOptions(options);
    const timeout = options.timeout ?? this.defaultTimeout;
    return executeAndWait(this.untyped, command, args, { ...options, timeout });
  }

  /**
   * Run a job-starting command (`blockdev-backup`, `blockdev-create`, …) to
   * its end, with progress; resolves with the job as `query-jobs` last showed
   * it (see {@link RunJobOptions} and the README's "Jobs").
   *
   * @throws {JobError} when the job fails; what {@link execute} throws when
   *   the command is refused; the signal's reason or a `TimeoutError` once
   *   the job is cancelled.
   */
  runJob<K extends CommandName<Q>>(
    command: K,
    args?: CommandArgsParam<Q, K>,
    options?: RunJobOptions,
  ): Promise<JobInfo>;
  async runJob(command: string, args?: unknown, options: RunJobOptions = {}): Promise<JobInfo> {
    const timeout = options.timeout ?? this.defaultTimeout;
    return runJob(this.untyped, command, args as Record<string, unknown> | undefined, {
      ...options,
      timeout,
    });
  }

  /**
   * Migrate to `target` (a URI, or `channels` on QEMU 8.2+) and follow it to
   * `completed`, with progress (see {@link MigrateOptions}).
   *
   * @throws {MigrationError} when it fails; what {@link execute} throws when
   *   `migrate` is refused; the signal's reason or a `TimeoutError` once the
   *   migration is cancelled (`migrate_cancel`).
   */
  async migrate(
    target: string | readonly object[],
    options: MigrateOptions = {},
  ): Promise<MigrationInfo> {
    const timeout = options.timeout ?? this.defaultTimeout;
    return migrate(this.untyped, target, { ...options, timeout });
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
    this.checkSend();
    const call = this.#calls.open(undefined, false, [fd]);
    this.send(call);
    await call.reply;
  }

  // ------------------------------------------------------- the live schema

  /**
   * Whether the connected QEMU has the command `name` (feature detection
   * across versions). Fetches `query-qmp-schema` once per session, shared
   * with {@link hasEvent}, {@link commandInfo} and `validate`.
   *
   * @throws {StateError} when not `RUNNING`; what `execute()` throws for
   *   `query-qmp-schema` (a peer without it: {@link ExecuteError}).
   */
  async hasCommand(name: string): Promise<boolean> {
    return (await this.#schemaNow()).command(name) !== undefined;
  }

  /**
   * Whether the connected QEMU has the event `name`.
   *
   * @throws as {@link hasCommand}.
   */
  async hasEvent(name: string): Promise<boolean> {
    return (await this.#schemaNow()).event(name) !== undefined;
  }

  /**
   * What the connected QEMU's command `name` takes: its argument members
   * (names, readable types, optional or not, features), whether it allows
   * `exec-oob`; `undefined` when QEMU has no such command.
   *
   * @throws as {@link hasCommand}.
   */
  async commandInfo(name: string): Promise<CommandInfo | undefined> {
    return commandInfo(await this.#schemaNow(), name);
  }

  // --------------------------------------------------------------- events

  /**
   * Register a listener: from now on it takes the events it accepts.
   *
   * @throws {ListenerError} when it is already registered.
   */
  registerListener(listener: AnyListener): void {
    this.#listeners.register(listener);
  }

  /**
   * Unregister a listener; its queued events stay in it.
   *
   * @throws {ListenerError} for the default listener {@link events}, or one not registered.
   */
  unregisterListener(listener: AnyListener): void {
    this.#listeners.unregister(listener);
  }

  /**
   * Register listeners for a scope: `using _ = client.listen(a, b);`
   * unregisters them when the scope ends.
   *
   * @throws {ListenerError} when one is already registered (none is then registered).
   */
  listen(...listeners: AnyListener[]): Disposable {
    return this.#listeners.listen(listeners);
  }

  /**
   * Make and register a listener for `names` (empty: all) and `filter`:
   * `using l = client.listener("STOP");` unregisters it at the end of the scope.
   */
  listener<N extends EventName<Q> = EventName<Q>>(
    names?: EventNames<N>,
    filter?: EventFilter<EventOf<Q, N>>,
    options: Omit<EventListenerOptions, "names" | "filter"> = {},
  ): EventListener<EventOf<Q, N>> {
    const listener = new EventListener<EventOf<Q, N>>({ ...options, names, filter });
    this.registerListener(listener);
    return listener;
  }

  /**
   * Wait for the next event named `names` (empty: any) that passes `filter`.
   * Only events arriving after the call count.
   *
   * Without `timeout`, the client's `timeout` option applies.
   *
   * @throws {SessionEndedError} when the session ends first.
   * @throws the `signal`'s reason on abort; a `TimeoutError` naming the event on timeout.
   */
  waitEvent<N extends EventName<Q> = EventName<Q>>(
    names?: EventNames<N>,
    filter?: EventFilter<EventOf<Q, N>>,
    options?: WaitEventOptions,
  ): Promise<EventOf<Q, N>>;
  async waitEvent(names?: unknown, filter?: unknown, options: unknown = {}): Promise<unknown> {
    checkCallOptions(options);
    using listener = this.untyped.listener(
      names as Iterable<string> | string | undefined,
      filter as EventFilter | undefined,
    );
    return await listener.get({
      signal: options.signal,
      timeout: options.timeout ?? this.defaultTimeout,
    });
  }

  // ---------------------------------------------------------- the engine's hooks

  protected override async establishSession(attempt: Attempt): Promise<void> {
    let stall: string | undefined;
    this.#listeners.sessionStarted();
    this.#greeting = undefined;
    this.#calls.startSession(false);
    if (this.#awaitGreeting) {
      // Awaited at once, so a rejection (the session ended) is always handled.
      this.#greetingWaiter = deferred<Greeting>();
      this.#greeting = await this.#greetingWaiter.promise;
      stall = this.stream instanceof TLSSocket ? tlsStallWarning(this.#greeting) : undefined;
      if (stall !== undefined) this.logger.warn(`${this.#tag}${stall}`);
    }
    if (!this.#negotiate) return;
    const oob = await negotiate(this.#greeting, stall, attempt, (message, options) =>
      this.#call(message, true, options, "execute", undefined, true),
    );
    this.#calls.startSession(oob);
    // Fetched now, so that every call can be checked before it is sent, in order.
    if (this.#validate) await this.#live.get(() => this.#fetchSchema(true));
  }

  protected override handleMessage(message: Record<string, unknown>): void {
    if (isEvent(message)) {
      this.#listeners.deliver(message);
      return;
    }
    if ("QMP" in message) {
      this.#handleGreeting(message);
      return;
    }
    if (this.#greetingWaiter !== undefined) {
      throw new GreetingError(
        `Expected a greeting, got ${JSON.stringify(message).slice(0, 200)}`,
        message,
      );
    }
    this.#calls.route(message, this.#tag);
  }

  #handleGreeting(message: Record<string, unknown>): void {
    const waiter = this.#greetingWaiter;
    if (waiter === undefined && !this.#awaitGreeting && this.#greeting === undefined) {
      // Not waited for (awaitGreeting: false), yet it is QEMU's, not a guest agent's.
      if (isGreeting(message)) {
        this.#greeting = message;
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
    if (!isGreeting(message)) {
      // Fatal: the session ends with it, and sessionEnded() fails the waiter.
      throw new GreetingError(
        "Malformed greeting: expected { QMP: { version, capabilities } }",
        message,
      );
    }
    this.#greetingWaiter = undefined;
    waiter.resolve(message);
  }

  protected override handleOversize(size: number, limit: number, id: unknown): void {
    if (!this.#calls.oversize(id, new MessageTooLargeError(size, limit))) {
      this.logger.warn(
        `${this.#tag}Skipped a message of ${size} bytes over maxMessageSize (${limit}) that answers no pending call`,
      );
    }
  }

  protected override peerMayVanish(): boolean {
    return this.#calls.quitSent;
  }

  protected override sessionEnded(_cause: unknown, reason: Error): void {
    this.#liveSchema?.reset();
    this.#greetingWaiter?.reject(reason);
    this.#greetingWaiter = undefined;
    this.#calls.endSession(reason);
    this.#listeners.sessionEnded(reason);
  }

  // ------------------------------------------------------------- machinery

  get #live(): LiveSchema {
    return (this.#liveSchema ??= new LiveSchema(this.logger, this.#tag));
  }

  /** `query-qmp-schema`'s return (during negotiation: under connect()'s deadline). */
  async #fetchSchema(negotiating = false): Promise<unknown> {
    const message: CommandMessage = { execute: "query-qmp-schema" };
    const reply = await this.#call(message, true, NO_OPTIONS, "execute", undefined, negotiating);
    return unwrap(message, reply);
  }

  #schemaNow(): Promise<Schema> {
    this.requireRunning();
    return this.#live.get(() => this.#fetchSchema());
  }

  /**
   * With `validate`, check a call's arguments against the session's schema.
   *
   * @throws {ValidationError} for arguments that do not fit (nothing is sent).
   */
  #validateArgs(command: string, args: unknown): void {
    if (!this.#validate) return;
    this.requireRunning();
    const schema = this.#liveSchema?.current;
    if (schema !== undefined) this.#live.validate(schema, command, args);
  }

  get #tag(): string {
    return this.name !== undefined ? `[${this.name}] ` : "";
  }

  /**
   * Send `message` (ours to change: the callers pass a fresh object) and wait
   * for its reply. Every check comes first; nothing changes unless the call
   * goes to the writer. A numeric id is taken only when the writer writes
   * the message, so the ids on the wire have no gaps; a call aborted or
   * timed out before that is taken out of the queue and never sent.
   */
  #call(
    message: CommandMessage,
    assignId: boolean,
    options: CallOptions,
    method: string,
    fds?: readonly number[],
    negotiating = false,
  ): Promise<Reply> {
    // Prepare.
    if (!negotiating) this.requireRunning();
    this.#calls.check(message, assignId);
    this.checkSend();
    const { signal } = options;
    signal?.throwIfAborted();
    // Negotiation runs under connect()'s deadline, not the default timeout.
    const timeout = negotiating ? options.timeout : (options.timeout ?? this.defaultTimeout);
    // Commit.
    const call = this.#calls.open(message, assignId, fds);
    this.send(call);
    if (signal === undefined && (timeout === undefined || timeout === Infinity)) return call.reply;
    // Named only now: a call without a deadline builds no text for one.
    const command = message.execute ?? message["exec-oob"];
    const what = typeof command === "string" ? `${method}('${command}')` : `${method}()`;
    const d = deadline({ signal, timeout }, what);
    return raceSignal(call.reply, d.signal, () => this.#abandon(call)).finally(d.dispose);
  }

  /** The caller gave up on `call`: take it back if it was not written yet, else expect a late reply. */
  #abandon(call: Call): void {
    if (call.state === "over") return;
    const cancelled = this.cancelSend(call);
    this.#calls.abandon(call, cancelled);
  }
}
