// The inbound half of a session: bytes → JSON frames in wire order, and what the end of the stream means.

import type { Duplex } from "node:stream";
import { TransportError } from "./errors.js";
import { type Frame, JsonObjectScanner } from "./framing.js";

const NEWLINE = 0x0a;

/** What a {@link MessageReader} reports to its session. */
export interface ReaderSink {
  /** One inbound frame (a message, or a skipped oversized one), in wire order. */
  frame(frame: Frame): void;
  /**
   * The stream is over: `undefined` for a clean end at a message boundary,
   * else the error (a reset, a cut inside a message, invalid JSON, …).
   * Called at most once.
   */
  end(error: unknown): void;
}

/**
 * Reads one stream until it ends or `stop()` is called. A frame is handed
 * to the sink before the next one is parsed, so a handler sees messages
 * strictly in order and can stop the reader between two of them.
 */
export class MessageReader {
  readonly #stream: Duplex;
  readonly #sink: ReaderSink;
  #scanner: JsonObjectScanner;
  readonly #maxMessageSize: number;
  /** A byte to skip all input up to (and including), then read afresh; -1: none. */
  #discardUntil = -1;
  /** Read a line at a time (guest-agent mode, see {@link discardUntil}). */
  #byLine = false;
  /** In that mode, the bytes of the line being read. */
  #lineParts: Buffer[] = [];
  #stopped = false;

  constructor(stream: Duplex, maxMessageSize: number, sink: ReaderSink) {
    this.#stream = stream;
    this.#sink = sink;
    this.#maxMessageSize = maxMessageSize;
    this.#scanner = new JsonObjectScanner({ maxMessageSize });
    stream.on("data", this.#onData);
    stream.on("end", this.#onEnd);
    stream.on("close", this.#onEnd);
    stream.on("error", this.#onError);
    // A stream that died before we got it: nothing will be emitted any more.
    if (stream.destroyed) {
      const error: unknown =
        stream.errored ?? new TransportError("The connection closed before the session started");
      queueMicrotask(() => this.#finish(error));
    }
  }

  /**
   * Stop reading: no frame and no end is reported after this. An `'error'`
   * handler stays on the stream, so that a late error can never crash the
   * process.
   */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    const stream = this.#stream;
    stream.off("data", this.#onData);
    stream.off("end", this.#onEnd);
    stream.off("close", this.#onEnd);
    stream.off("error", this.#onError);
    stream.on("error", ignore);
  }

  /**
   * In guest-agent mode, the text of the line being read: while a frame is
   * handed over, the line it came from (for a parse of its own, e.g. with
   * exact big integers).
   */
  get line(): string {
    return Buffer.concat(this.#lineParts).toString("utf8");
  }

  readonly #emit = (frame: Frame): void => {
    if (!this.#stopped) this.#sink.frame(frame);
  };

  /**
   * Skip all input up to the next `byte` (0xFF: a guest agent's delimiter),
   * including what is held of an unfinished message, and read what follows
   * it afresh.
   */
  discardUntil(byte: number): void {
    this.#discardUntil = byte;
    this.#byLine = true;
  }

  readonly #onData = (chunk: Buffer): void => {
    try {
      if (this.#byLine) this.#pushByLine(chunk);
      else this.#scanner.push(chunk, this.#emit);
    } catch (err) {
      this.#finish(err);
    }
  };

  /**
   * Guest-agent mode (once {@link discardUntil} was used): a line at a time,
   * so that a discard asked for while one line is read holds for the next.
   */
  #pushByLine(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length && !this.#stopped) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl === -1 ? chunk.length : nl + 1;
      let piece = chunk.subarray(start, end);
      start = end;
      if (this.#discardUntil !== -1) {
        const at = piece.indexOf(this.#discardUntil);
        if (at === -1) continue;
        this.#discardUntil = -1;
        this.#scanner = new JsonObjectScanner({ maxMessageSize: this.#maxMessageSize });
        this.#lineParts = [];
        piece = piece.subarray(at + 1);
      }
      this.#lineParts.push(piece);
      this.#scanner.push(piece, this.#emit);
      if (nl !== -1) this.#lineParts = [];
    }
  }

  /** End of stream, or a close without one: clean only at a message boundary. */
  readonly #onEnd = (): void => {
    let error: unknown;
    try {
      // Input being skipped is no unfinished message.
      if (this.#discardUntil === -1) this.#scanner.end(this.#emit);
    } catch (err) {
      error = err;
    }
    this.#finish(error);
  };

  readonly #onError = (err: Error): void => this.#finish(err);

  #finish(error: unknown): void {
    if (this.#stopped) return;
    this.stop();
    this.#sink.end(error);
  }
}

function ignore(): void {}
