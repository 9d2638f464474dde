// The inbound half of a session: bytes → JSON frames in wire order, and what the end of the stream means.

import type { Duplex } from "node:stream";
import { TransportError } from "./errors.js";
import { type Frame, JsonObjectScanner } from "./framing.js";

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
  readonly #scanner: JsonObjectScanner;
  #stopped = false;

  constructor(stream: Duplex, maxMessageSize: number, sink: ReaderSink) {
    this.#stream = stream;
    this.#sink = sink;
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

  readonly #emit = (frame: Frame): void => {
    if (!this.#stopped) this.#sink.frame(frame);
  };

  readonly #onData = (chunk: Buffer): void => {
    try {
      this.#scanner.push(chunk, this.#emit);
    } catch (err) {
      this.#finish(err);
    }
  };

  /** End of stream, or a close without one: clean only at a message boundary. */
  readonly #onEnd = (): void => {
    let error: unknown;
    try {
      this.#scanner.end(this.#emit);
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
