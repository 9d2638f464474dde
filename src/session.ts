// One connection's session: its stream, reader and writer, and how and why it ended.

import type { Duplex } from "node:stream";
import { SessionEndedError } from "./errors.js";
import { fdPassingTarget, loadFdSender, sendFdsOn } from "./fd-passing.js";
import type { Frame } from "./framing.js";
import { MessageReader, type ReaderSink } from "./reader.js";
import { MessageWriter, type WriterSink } from "./writer.js";

/** Keys of the {@link SessionHooks}: symbols, so the protocol implements them itself (no closures per session). */
export const kFrame: unique symbol = Symbol("frame");
export const kEnded: unique symbol = Symbol("ended");
export const kMayVanish: unique symbol = Symbol("mayVanish");
export const kSerialize: unique symbol = Symbol("serialize");
export const kOnWrite: unique symbol = Symbol("onWrite");

/** What a {@link Session} asks of the protocol that runs it. */
export interface SessionHooks<T> {
  /** One inbound frame, in wire order. Throwing ends the session with that error. */
  [kFrame](frame: Frame): void;
  /**
   * The session is over, called once: `error` is what broke it (undefined
   * for a clean end), `reason` the error to hand to everything still waiting.
   */
  [kEnded](error: unknown, reason: Error): void;
  /** Whether a reset is expected now (after `quit`): then it is a clean end. */
  [kMayVanish](): boolean;
  /** The message as a string for the wire. */
  [kSerialize](message: T): string;
  /** Each message (or fd pass) as it is written: tracing and diagnostics. */
  [kOnWrite](message: T | undefined, fds: readonly number[] | undefined): void;
}

/** Limits of a {@link Session}. */
export interface SessionLimits {
  maxMessageSize: number;
  maxQueuedMessages: number;
}

/**
 * Owns a connected stream from the moment it is handed over: reads it,
 * writes it, and ends exactly once — by the peer (end of stream, reset), by
 * a protocol error, or locally (`close()`, `destroy()`). The first error is
 * kept as the root cause.
 */
export class Session<T> implements ReaderSink, WriterSink<T> {
  readonly stream: Duplex;
  readonly writer: MessageWriter<T>;
  readonly #reader: MessageReader;
  readonly #hooks: SessionHooks<T>;
  #open = true;
  #error: unknown;

  constructor(stream: Duplex, limits: SessionLimits, hooks: SessionHooks<T>) {
    this.stream = stream;
    this.#hooks = hooks;
    // The session is the reader's and the writer's sink itself: no closures per session.
    this.writer = new MessageWriter<T>(stream, this, limits.maxQueuedMessages);
    stream.on("drain", () => this.writer.drained());
    this.#reader = new MessageReader(stream, limits.maxMessageSize, this);
  }

  /** For the reader: one inbound frame. A hook that throws ends the session. */
  frame(frame: Frame): void {
    try {
      this.#hooks[kFrame](frame);
    } catch (err) {
      this.end(err);
    }
  }

  /** For the writer. */
  serialize(message: T): string {
    return this.#hooks[kSerialize](message);
  }

  /** For the writer. */
  onWrite(message: T | undefined, fds: readonly number[] | undefined): void {
    this.#hooks[kOnWrite](message, fds);
  }

  /** For the writer: fds over SCM_RIGHTS on this session's socket. */
  async passFds(fds: readonly number[], stillOpen: () => boolean): Promise<void> {
    const sender = await loadFdSender();
    await sendFdsOn(sender, fdPassingTarget(this.stream), fds, stillOpen);
  }

  /** For the writer: the connection failed while passing fds. */
  onError(err: unknown): void {
    this.end(err);
  }

  /** Whether the session still runs (neither ended nor closing). */
  get open(): boolean {
    return this.#open;
  }

  /** The error that broke the session, if one did. */
  get error(): unknown {
    return this.#error;
  }

  /**
   * End the session because of `err` (`undefined`: a clean end by the peer).
   * A reset while the peer may vanish (after `quit`) counts as clean. Later
   * calls are ignored.
   */
  end(err: unknown): void {
    if (!this.#open) return;
    if (err !== undefined && isConnectionLoss(err) && this.#hooks[kMayVanish]()) err = undefined;
    const reason =
      err instanceof Error ? err : new SessionEndedError("The peer closed the connection");
    this.#finish(err, reason);
    this.writer.abort(reason);
    // After an error the stream is done for; after a clean end, close our side too.
    if (err !== undefined) this.stream.destroy();
    else this.stream.end();
  }

  /**
   * End the session from our side, gracefully: stop reading, fail what
   * waits for replies, write out what is queued and half-close, all within
   * `signal` (then the rest is dropped). With `drain`, then wait for the
   * peer to close its side, reading (and dropping) what it still sends: a
   * peer that cannot bear a reset with unread data (qemu-ga exits) sees a
   * clean close. The stream is destroyed after.
   */
  async close(signal: AbortSignal, drain = false): Promise<void> {
    if (this.#open) {
      this.#finish(undefined, new SessionEndedError("The session was closed by disconnect()"));
      await this.writer.flush(signal);
      if (drain) await peerClosed(this.stream, signal);
    }
    this.destroy();
  }

  /** In guest-agent mode, the text of the line the frame being handled came from. */
  get line(): string {
    return this.#reader.line;
  }

  /** Skip all input up to the next `byte` and read afresh after it (see `MessageReader`). */
  discardInputUntil(byte: number): void {
    this.#reader.discardUntil(byte);
  }

  /** Tear down at once: nothing more is written or read. */
  destroy(): void {
    if (this.#open) this.#finish(undefined, new SessionEndedError("The session was destroyed"));
    this.writer.abort(new SessionEndedError("The session was destroyed"));
    this.stream.destroy();
  }

  #finish(err: unknown, reason: Error): void {
    this.#open = false;
    this.#error = err;
    this.#reader.stop();
    this.#hooks[kEnded](err, reason);
  }
}

/** A reset or broken pipe: the peer is gone, rather than a protocol problem. */
function isConnectionLoss(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "ECONNRESET" || code === "EPIPE" || code === "ECONNABORTED";
}

/** Resolves when the peer has closed its side of `stream` (or `signal` aborts): what it sends is dropped. */
function peerClosed(stream: Duplex, signal: AbortSignal): Promise<void> {
  if (stream.destroyed || stream.readableEnded || signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = (): void => {
      stream.off("end", done);
      stream.off("close", done);
      stream.off("data", drop);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const drop = (): void => {};
    stream.on("end", done);
    stream.on("close", done);
    stream.on("data", drop);
    signal.addEventListener("abort", done, { once: true });
  });
}
