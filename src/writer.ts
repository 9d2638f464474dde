// The outbound half of a session: an ordered queue of messages and fd passes,
// serialized only when written, batched per tick, with backpressure.

import type { Duplex } from "node:stream";
import { QMPError, QueueFullError, SessionEndedError } from "./errors.js";
import { Fifo } from "./fifo.js";

/**
 * What an fd pass waits for before it goes out: the replies to earlier
 * commands that take fds (see `QMPClient`). `settled` is true once it may go.
 */
export interface Fence {
  readonly settled: boolean;
  readonly promise: Promise<void>;
}

/** One thing to send: a message, fds then a message, or fds alone. */
export interface OutboundRequest<T> {
  /** The message, serialized only when the writer gets to it. */
  readonly message: T | undefined;
  /** File descriptors to pass (SCM_RIGHTS) right before the message. */
  readonly fds: readonly number[] | undefined;
  /** What the fds wait for, besides the bytes queued before them. */
  readonly fence: Fence | undefined;
  /**
   * Called once, just before the message is serialized and handed to the
   * socket (after the fds went, if any). From here on the request is on the
   * wire: it can no longer be cancelled.
   */
  writing(): void;
  /** Called once, instead of or after `writing()`, when it was not (fully) written. */
  failed(err: unknown): void;
  /**
   * The writer's own mark (the request is its queue entry, so that queuing
   * allocates nothing): start it as `"new"` and leave it to the writer.
   * queued → passing (an fd pass under way) → done; or queued → done.
   */
  writeState: "new" | "queued" | "passing" | "done";
}

type Entry<T> = OutboundRequest<T>;

/** A request for `message` alone: no fds, nothing to wait for; `written` or `failed` is called. */
export function plainRequest<T>(
  message: T,
  written: () => void,
  failed: (err: unknown) => void,
): OutboundRequest<T> {
  return { message, fds: undefined, fence: undefined, writing: written, failed, writeState: "new" };
}

/** What a {@link MessageWriter} needs besides its stream (a session implements it). */
export interface WriterSink<T> {
  /** The message as a string for the wire. */
  serialize(message: T): string;
  /** Called with each message as it is written (tracing, diagnostics). */
  onWrite(message: T | undefined, fds: readonly number[] | undefined): void;
  /** Passes fds on the stream's socket; resolves once the kernel has them (see `sendFdsOn`). */
  passFds(fds: readonly number[], stillOpen: () => boolean): Promise<void>;
  /** The connection failed while passing fds: the session must end with `err`. */
  onError(err: unknown): void;
}

/** Bytes of serialized messages gathered before one `write()`. */
const BATCH_BYTES = 64 * 1024;
/** Messages queued in one tick past which the writer writes at once rather than at the tick's end. */
const BATCH_MESSAGES = 1024;

/**
 * Writes requests in the order they were queued. Messages stay objects until
 * the writer reaches them: everything queued in one tick goes out in one
 * `write()`, and while the socket's buffer is full (`write()` returned
 * false) nothing more is serialized until `'drain'`, so memory stays bounded
 * by the socket's high-water mark and one batch, not by the queue.
 *
 * An fd pass holds everything behind it until it is done: its fence settles,
 * every byte before it reaches the kernel, the fds go out with `sendmsg`,
 * then its message is written.
 */
export class MessageWriter<T> {
  readonly #stream: Duplex;
  readonly #sink: WriterSink<T>;
  readonly #maxQueued: number;
  readonly #queue = new Fifo<Entry<T>>();
  /** Cancelled requests still in the queue (dropped when reached, or in bulk). */
  #dead = 0;
  /** Requests waiting (queued and not cancelled). */
  #waiting = 0;
  #scheduled = false;
  /** `write()` returned false: wait for `'drain'`. */
  #blocked = false;
  /** An fd pass is in progress; it holds the queue behind it. */
  #passing = false;
  /** Set by `abort()`: nothing more is written. */
  #closed: { error: unknown } | undefined;
  /** `flush()` is under way: fences are no longer waited for. */
  #ending = false;
  /** Wakes the waits of an fd pass on abort (and fence waits on flush). */
  #wake: (() => void) | undefined;
  /** Resolves when `flush()` has written the queue out. */
  #flushed: (() => void) | undefined;

  /** `maxQueued`: most requests waiting at once (not yet handed to the socket). */
  constructor(stream: Duplex, sink: WriterSink<T>, maxQueued: number) {
    this.#stream = stream;
    this.#sink = sink;
    this.#maxQueued = maxQueued;
  }

  /** Requests the queue holds: those waiting, and those taken back but not dropped yet. */
  get held(): number {
    return this.#queue.length;
  }

  /** @throws {QueueFullError} when `enqueue()` would refuse the next request. */
  checkRoom(): void {
    if (this.#waiting >= this.#maxQueued) {
      throw new QueueFullError(
        `${this.#waiting} messages are waiting for the socket (the peer reads slower than ` +
          "we send): wait for replies, or raise maxQueuedMessages",
      );
    }
  }

  /**
   * Queue `request`. It is written in a later tick, together with everything
   * else queued by then.
   *
   * @throws {QueueFullError} when `maxQueued` requests are already waiting.
   * @throws {SessionEndedError} after `abort()` or `flush()`.
   */
  enqueue(request: OutboundRequest<T>): void {
    if (this.#closed !== undefined || this.#ending) {
      throw new SessionEndedError("The session is over");
    }
    this.checkRoom();
    request.writeState = "queued";
    this.#queue.push(request);
    this.#waiting++;
    if (this.#blocked || this.#passing) return;
    // A long burst in one tick is written as it grows, so the queue bound
    // only trips when the socket really is full.
    if (this.#waiting >= BATCH_MESSAGES) this.#pump();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      process.nextTick(MessageWriter.#tick, this);
    }
  }

  /**
   * Take a request out of the queue if it is still waiting: it will never be
   * written, and neither `writing()` nor `failed()` is called. False when it
   * is already (being) written.
   */
  cancel(entry: OutboundRequest<T>): boolean {
    if (entry.writeState !== "queued") return false;
    entry.writeState = "done";
    this.#waiting--;
    // Behind a full socket, taken-back requests would pile up unbounded
    // (the bound counts only the waiting): drop them once they outnumber those.
    if (++this.#dead > 1024 && this.#dead > this.#waiting) {
      this.#queue.retain((e) => e.writeState !== "done");
      this.#dead = 0;
    }
    // An fd pass waiting for its fence need not wait any longer.
    this.#wake?.();
    return true;
  }

  /** The socket's buffer has room again. */
  drained(): void {
    if (!this.#blocked) return;
    this.#blocked = false;
    this.#pump();
  }

  /**
   * Write out what is queued, then end the stream (half-close). Fds whose
   * fence has not settled are not passed (their requests fail with a
   * {@link SessionEndedError}): the replies they wait for will not be read.
   * Resolves when the stream has finished, or when `signal` aborts (then
   * everything still waiting fails with the signal's reason).
   */
  async flush(signal: AbortSignal): Promise<void> {
    if (this.#closed !== undefined) return;
    this.#ending = true;
    this.#wake?.();
    const stream = this.#stream;
    const done = new Promise<void>((resolve) => {
      this.#flushed = resolve;
      if (!this.#passing && !this.#blocked) this.#pump();
    });
    try {
      await untilAborted(done, signal);
      if (stream.destroyed || !stream.writable) return;
      await untilAborted(
        new Promise<void>((resolve) => {
          stream.once("close", resolve);
          stream.end(resolve);
        }),
        signal,
      );
    } catch (err) {
      this.abort(err);
    }
  }

  /**
   * Stop for good: every request still waiting (and an fd pass under way)
   * fails with `error`. Nothing more is written.
   */
  abort(error: unknown): void {
    if (this.#closed !== undefined) return;
    this.#closed = { error };
    const queue = this.#queue.takeAll();
    this.#waiting = 0;
    this.#dead = 0;
    this.#wake?.();
    this.#flushed?.();
    for (const entry of queue) {
      if (entry.writeState === "done") continue;
      entry.writeState = "done";
      entry.failed(error);
    }
  }

  /** The end of the tick in which messages were queued (a static: no closure per writer). */
  static #tick(this: void, writer: MessageWriter<unknown>): void {
    writer.#scheduled = false;
    writer.#pump();
  }

  /** Write queued messages until the queue is empty, the socket is full, or fds are next. */
  #pump(): void {
    if (this.#closed !== undefined || this.#passing) return;
    const stream = this.#stream;
    const sink = this.#sink;
    const queue = this.#queue;
    let batch = "";
    for (let entry = queue.peek(); entry !== undefined; entry = queue.peek()) {
      if (entry.writeState === "done") {
        queue.shift();
        if (this.#dead > 0) this.#dead--;
        continue;
      }
      if (entry.fds !== undefined) {
        if (batch !== "" && !stream.write(batch)) this.#blocked = true;
        void this.#pass(entry);
        return;
      }
      queue.shift();
      entry.writeState = "done";
      this.#waiting--;
      const text = this.#serialize(entry);
      if (text === undefined) continue;
      sink.onWrite(entry.message, undefined);
      batch += text;
      if (batch.length >= BATCH_BYTES) {
        const ok = stream.write(batch);
        batch = "";
        if (!ok) {
          this.#blocked = true;
          break;
        }
      }
    }
    if (batch !== "" && !stream.write(batch)) this.#blocked = true;
    if (queue.length === 0 && !this.#blocked) this.#flushed?.();
  }

  /** `writing()` then the message's text; `undefined` (request failed) when it cannot be serialized. */
  #serialize(request: OutboundRequest<T>): string | undefined {
    if (request.message === undefined) {
      request.writing();
      return "";
    }
    request.writing();
    try {
      return this.#sink.serialize(request.message);
    } catch (err) {
      request.failed(new TypeError(`The message cannot be serialized as JSON: ${String(err)}`));
      return undefined;
    }
  }

  /**
   * Wait for `promise`, unless first the writer is aborted, `entry` cancelled,
   * or (for a fence) the writer is ending. Resolves whether to go on.
   */
  #until(promise: Promise<void>, entry: Entry<T>, fence: boolean): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const stop = (): boolean =>
        this.#closed !== undefined ||
        entry.writeState === "done" ||
        (fence && this.#ending) ||
        this.#stream.destroyed;
      if (stop()) {
        resolve(false);
        return;
      }
      this.#wake = () => {
        if (stop()) resolve(false);
      };
      promise.then(
        () => resolve(!stop()),
        () => resolve(false),
      );
    }).finally(() => (this.#wake = undefined));
  }

  /** Pass the fds of `entry`, then write its message; then go on with the queue. */
  async #pass(entry: Entry<T>): Promise<void> {
    this.#passing = true;
    const request = entry;
    const stream = this.#stream;
    let error: unknown;
    try {
      const fence = request.fence;
      if (
        fence !== undefined &&
        !fence.settled &&
        !(await this.#until(fence.promise, entry, true))
      ) {
        error = this.#closed?.error ?? ended("its fds were passed");
      } else if (
        stream.writableLength > 0 &&
        // An empty write's callback runs once every byte before it has reached the kernel.
        !(await this.#until(new Promise<void>((r) => stream.write("", () => r())), entry, false))
      ) {
        error = this.#closed?.error ?? ended("its fds were passed");
      } else if (entry.writeState === "queued") {
        // From here on the fds are on their way: no cancelling.
        entry.writeState = "passing";
        this.#waiting--;
        await this.#sink.passFds(
          request.fds!,
          () => this.#closed === undefined && !stream.destroyed,
        );
        if (this.#closed === undefined) {
          entry.writeState = "done";
          const text = this.#serialize(request);
          if (text !== undefined) {
            this.#sink.onWrite(request.message, request.fds);
            if (text !== "" && !stream.write(text)) this.#blocked = true;
          }
        }
      }
    } catch (err) {
      error = err;
      // A failure that is not ours (EPIPE, ECONNRESET) means the connection is gone.
      if (!(err instanceof QMPError)) this.#sink.onError(err);
    } finally {
      this.#passing = false;
    }
    if (entry.writeState !== "done") {
      if (entry.writeState === "queued") this.#waiting--;
      entry.writeState = "done";
      request.failed(error ?? this.#closed?.error);
    }
    if (this.#queue.peek() === entry) this.#queue.shift();
    if (!this.#blocked) this.#pump();
  }
}

function ended(what: string): SessionEndedError {
  return new SessionEndedError(`The session ended before ${what}`);
}

/** `promise`, or the signal's reason once it aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
