// The calls of a QMP client in flight: ids, reply routing, abandoned calls and fd fences.

import {
  BadReplyError,
  DuplicateIdError,
  ExecuteError,
  ExecInterruptedError,
  FdPassingError,
  ServerParseError,
} from "./errors.js";
import { type CommandMessage, type JsonValue, isErrorReply } from "./message.js";
import type { Logger } from "./util.js";
import type { Fence, OutboundRequest } from "./writer.js";

/** How many ids of abandoned (timed out, aborted) calls we remember, to drop late replies quietly. */
const ABANDONED_MEMORY = 4096;

/** A reply as received: an object with `return` or `error` (or something malformed). */
export type Reply = Record<string, unknown>;

/**
 * One command (or fd pass) from the moment it is committed until it is
 * over: answered, failed, or abandoned. It is also the writer's request.
 */
export class Call implements OutboundRequest<CommandMessage> {
  readonly message: CommandMessage | undefined;
  readonly fds: readonly number[] | undefined;
  readonly fence: Fence | undefined;
  /** Whether this is `quit`: the end of the session that follows is its success. */
  readonly quit: boolean;
  /** queued (not on the wire yet) → sent → over. */
  state: "queued" | "sent" | "over" = "queued";
  writeState: OutboundRequest<CommandMessage>["writeState"] = "new";
  /** Fences that wait for this call to be over. */
  fences: FdFence[] | undefined;
  readonly reply: Promise<Reply>;
  #resolve!: (reply: Reply) => void;
  #reject!: (err: unknown) => void;
  readonly #table: CallTable;
  readonly #assignId: boolean;

  constructor(
    table: CallTable,
    message: CommandMessage | undefined,
    assignId: boolean,
    fds: readonly number[] | undefined,
    fence: Fence | undefined,
  ) {
    this.#table = table;
    this.message = message;
    this.#assignId = assignId;
    this.fds = fds;
    this.fence = fence;
    const command = message?.execute ?? message?.["exec-oob"];
    this.quit = command === "quit";
    this.reply = new Promise<Reply>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /** The command's name for messages: `"query-status"`. */
  get what(): string {
    const m = this.message;
    return JSON.stringify(m?.execute ?? m?.["exec-oob"] ?? (m === undefined ? "fds" : "message"));
  }

  /** The writer is about to write it: a numeric id is taken now, so ids on the wire have no gaps. */
  writing(): void {
    const message = this.message;
    if (message !== undefined && message.id === undefined && this.#assignId) {
      message.id = this.#table.nextId();
    }
    this.#table.sent(this);
  }

  /** The writer could not write it: fds refused, or the session ended first. */
  failed(err: unknown): void {
    if (this.state === "over") return;
    this.#table.forget(this);
    if (err instanceof FdPassingError || err instanceof TypeError) this.settle(undefined, err);
    else this.settle(undefined, interrupted(this, "was sent", err));
  }

  /** Resolve with `reply`, or reject with `err`; then it is over. */
  settle(reply: Reply | undefined, err?: unknown): void {
    if (this.state === "over") return;
    this.state = "over";
    this.#table.over(this);
    if (reply !== undefined) this.#resolve(reply);
    else this.#reject(err);
  }
}

/** Settles once every call it waits for is over. */
class FdFence implements Fence {
  settled = false;
  readonly promise: Promise<void>;
  #resolve!: () => void;
  #remaining: number;

  constructor(calls: Iterable<Call>) {
    this.promise = new Promise<void>((r) => (this.#resolve = r));
    this.#remaining = 0;
    for (const call of calls) {
      (call.fences ??= []).push(this);
      this.#remaining++;
    }
    if (this.#remaining === 0) this.#settle();
  }

  /** One of the calls is over. */
  release(): void {
    if (--this.#remaining === 0) this.#settle();
  }

  #settle(): void {
    this.settled = true;
    this.#resolve();
  }
}

/** `before`: "was sent" (it never went out) or "replied" (it did; QEMU may have run it). */
function interrupted(call: Call, before: string, cause: unknown): ExecInterruptedError {
  const what = before === "replied" ? `QEMU replied to ${call.what}` : `${call.what} ${before}`;
  return new ExecInterruptedError(`The session ended before ${what}`, { cause });
}

/**
 * The bookkeeping behind `execute()`: numbers commands, matches replies to
 * calls by id, remembers abandoned calls so their late replies are dropped
 * quietly, and builds the fences of fd passes.
 */
export class CallTable {
  #nextId = 1;
  /** Calls by id: user ids from commit on, numeric ids once written. */
  readonly #byId = new Map<string | number, Call>();
  /** The one call without an id, queued or sent. */
  #idless: Call | undefined;
  /** An abandoned id-less call's reply is still due: the id-less slot stays taken. */
  #idlessAbandoned = false;
  /** Ids of abandoned calls whose late reply may still come. */
  // Made on first use (most sessions never need them): a client is cheap to keep.
  #abandoned: Set<unknown> | undefined;
  /** Calls that take fds QEMU holds for them, not over yet. */
  #fdCalls: Set<Call> | undefined;
  /** A lone fd pass went out: the next command is the one that takes its fds. */
  #fdsForNextCommand = false;
  /** A `quit` was written this session: QEMU will close (or reset) the connection. */
  quitSent = false;
  /**
   * Whether fds must wait for earlier fd commands: with `oob` negotiated,
   * QEMU reads ahead of the command it runs, and fds that arrive early
   * replace (and close) those an earlier command has not taken yet.
   */
  fencing = false;
  /** Set when the session ended: what a call written after that (a flush) fails with. */
  #ended: Error | undefined;

  constructor(private readonly logger: Logger) {}

  /** The next numeric id (never reset, so a late reply from an old session can't match). */
  nextId(): number {
    return this.#nextId++;
  }

  /**
   * Check that `message` can be committed, without changing anything.
   *
   * @throws {DuplicateIdError} when its id (or the id-less slot) is taken.
   */
  check(message: CommandMessage, assignId: boolean): void {
    const id = message.id;
    if (id === undefined) {
      if (assignId) return;
      if (this.#idless !== undefined) {
        throw new DuplicateIdError("Another call without an id is already waiting for its reply");
      }
      if (this.#idlessAbandoned) {
        throw new DuplicateIdError(
          "An abandoned call without an id may still get its late reply: " +
            "no other call without an id can be told apart from it",
        );
      }
      return;
    }
    const key = id as string | number;
    if (this.#byId.has(key)) throw new DuplicateIdError(`The id ${JSON.stringify(id)} is in use`);
    if (this.#abandoned?.has(key)) {
      throw new DuplicateIdError(
        `The id ${JSON.stringify(id)} belongs to an abandoned call whose late reply may still come`,
      );
    }
  }

  /** Commit a checked call (`message` undefined: fds alone). */
  open(
    message: CommandMessage | undefined,
    assignId: boolean,
    fds: readonly number[] | undefined,
  ): Call {
    const fence = fds !== undefined && this.fencing ? new FdFence(this.#fdCalls ?? []) : undefined;
    const call = new Call(this, message, assignId, fds, fence);
    if (message === undefined) {
      this.#fdsForNextCommand = true;
      return call;
    }
    if (fds !== undefined || this.#fdsForNextCommand) {
      this.#fdsForNextCommand = false;
      if (this.fencing) (this.#fdCalls ??= new Set()).add(call);
    }
    if (message.id !== undefined) this.#byId.set(message.id as string | number, call);
    else if (!assignId) this.#idless = call;
    return call;
  }

  /** A session starts: calls can be answered again. */
  startSession(fencing: boolean): void {
    this.#ended = undefined;
    this.fencing = fencing;
    this.quitSent = false;
  }

  /** `call` is on the wire. */
  sent(call: Call): void {
    if (call.quit) this.quitSent = true;
    const ended = this.#ended;
    if (ended !== undefined) {
      // Written by disconnect()'s flush: nobody reads the reply any more.
      if (call.quit) call.settle({ return: {} });
      else call.settle(undefined, interrupted(call, "replied", ended));
      return;
    }
    const id = call.message?.id;
    if (call.state === "over") {
      // Abandoned while its fds were being passed: its reply will come late.
      if (id !== undefined) this.#abandon(id);
      return;
    }
    call.state = "sent";
    if (call.message === undefined) call.settle({ return: {} });
    else if (typeof id === "number") this.#byId.set(id, call);
  }

  /** `call` never made it to the wire: forget it. */
  forget(call: Call): void {
    const id = call.message?.id;
    if (id !== undefined && this.#byId.get(id as string | number) === call) {
      this.#byId.delete(id as string | number);
    }
    if (this.#idless === call) this.#idless = undefined;
  }

  /** `call` is over: release the fences that wait for it. */
  over(call: Call): void {
    this.#fdCalls?.delete(call);
    const fences = call.fences;
    call.fences = undefined;
    if (fences !== undefined) for (const f of fences) f.release();
  }

  /**
   * The caller gave up on `call` (abort, timeout). `cancelled`: the writer
   * took it back unwritten, so it never existed on the wire. Else, if it is
   * on the wire, its late reply is expected and will be dropped quietly; if
   * its fds are being passed, `sent()` sees to that.
   */
  abandon(call: Call, cancelled: boolean): void {
    this.forget(call);
    if (!cancelled && call.state === "sent") {
      const id = call.message?.id;
      if (id !== undefined) this.#abandon(id);
      else if (call.message !== undefined) this.#idlessAbandoned = true;
    }
    call.state = "over";
    this.over(call);
  }

  #abandon(id: unknown): void {
    const abandoned = (this.#abandoned ??= new Set());
    abandoned.add(id);
    if (abandoned.size > ABANDONED_MEMORY) {
      abandoned.delete(abandoned.values().next().value);
    }
  }

  /**
   * Route a reply (a message that is neither event nor greeting) to its call.
   *
   * @throws {ServerParseError} for an id-less error no call can own: QEMU
   *   could not parse something we sent. Fatal to the session.
   */
  route(message: Reply, tag: string): void {
    if (!("id" in message)) {
      const idless = this.#idless;
      if (idless !== undefined && idless.state === "sent") {
        this.#idless = undefined;
        idless.settle(message);
      } else if (this.#idlessAbandoned) {
        this.#idlessAbandoned = false;
        this.logger.debug(`${tag}Dropping the late reply to an abandoned call without id`);
      } else if ("error" in message) {
        throw new ServerParseError(
          `QEMU could not parse a message: ${describeError(message)}`,
          message,
        );
      } else {
        this.logger.warn(`${tag}Dropping a reply without id: ${preview(message)}`);
      }
      return;
    }
    const id = message["id"];
    const call = this.#callFor(id);
    if (call === undefined) {
      if (this.#abandoned?.delete(id)) {
        this.logger.debug(`${tag}Dropping the late reply to abandoned call ${JSON.stringify(id)}`);
      } else {
        this.logger.warn(`${tag}Dropping a reply with unknown id ${JSON.stringify(id)}`);
      }
      return;
    }
    this.#byId.delete(id as string | number);
    call.settle(message);
  }

  /**
   * A reply was too large to read: fail the call it answers with `err`.
   * Returns false when it answers no call.
   */
  oversize(id: unknown, err: Error): boolean {
    const call = this.#callFor(id);
    if (call === undefined) {
      this.#abandoned?.delete(id);
      return false;
    }
    this.#byId.delete(id as string | number);
    call.settle(undefined, err);
    return true;
  }

  #callFor(id: unknown): Call | undefined {
    if (typeof id !== "number" && typeof id !== "string") return undefined;
    const call = this.#byId.get(id);
    return call?.state === "sent" ? call : undefined;
  }

  /**
   * The session ended with `reason`: a sent `quit` succeeds, every other
   * call in the table fails with an {@link ExecInterruptedError}. (Calls
   * still queued are failed by the writer.) Forgets everything of the session.
   */
  endSession(reason: Error): void {
    this.#ended = reason;
    this.fencing = false;
    const calls = [...this.#byId.values()];
    if (this.#idless !== undefined) calls.push(this.#idless);
    this.#byId.clear();
    this.#idless = undefined;
    this.#idlessAbandoned = false;
    this.#abandoned = undefined;
    this.#fdsForNextCommand = false;
    this.quitSent = false;
    for (const call of calls) {
      if (call.quit && call.state === "sent") call.settle({ return: {} });
      else if (call.state === "sent") call.settle(undefined, interrupted(call, "replied", reason));
      else call.settle(undefined, interrupted(call, "was sent", reason));
    }
    this.#fdCalls = undefined;
  }
}

function preview(message: Reply): string {
  return JSON.stringify(message).slice(0, 200);
}

function describeError(message: Reply): string {
  return isErrorReply(message) ? `${message.error.class}: ${message.error.desc}` : preview(message);
}

/**
 * A shallow copy of a caller's message, so the caller's object is never
 * changed.
 *
 * @throws {TypeError} when it has an `id` that is not a string.
 */
export function copyChecked(message: CommandMessage): CommandMessage {
  if (message.id !== undefined && typeof message.id !== "string") {
    throw new TypeError(
      `A caller-chosen id must be a string (numbers are the client's own), got ${JSON.stringify(message.id)}`,
    );
  }
  return { ...message };
}

/** The `return` of a reply, or the error it stands for. Runs in the caller's frame. */
export function unwrap(sent: CommandMessage, reply: Record<string, unknown>): JsonValue {
  if ("return" in reply) return reply["return"] as JsonValue;
  if (isErrorReply(reply)) throw new ExecuteError(sent, reply);
  const what = "error" in reply ? "a malformed 'error'" : "neither 'return' nor 'error'";
  throw new BadReplyError(`The reply has ${what}`, sent, reply);
}
