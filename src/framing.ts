// Bytes to JSON objects: one incremental scanner for compact and pretty-printed streams.
//
// QEMU writes one JSON object per line, but a monitor with `pretty=on` spreads
// one object over many lines, so we cannot frame by newlines. Instead the
// scanner follows the JSON structure byte by byte (string, escape and nesting
// state survive across chunks), so every byte is looked at exactly once and a
// message ends at the brace that closes it, wherever the chunk boundaries fall.
// Braces, quotes and backslashes are ASCII, which UTF-8 never uses inside a
// multi-byte sequence, so the scan works on raw bytes; text is decoded only
// once a whole message is known, so a split UTF-8 sequence is never a problem.
//
// Past `maxMessageSize` the scanner stops keeping the message's bytes but
// keeps following its structure, so the session survives. It also watches the
// top-level keys for `id` and keeps that value (a few bytes), so that the one
// command whose reply was too large can be told.

import { isAscii } from "node:buffer";
import { DeserializationError, UnexpectedTypeError } from "./errors.js";

/** A complete inbound message, or the notice that one was too large to keep. */
export type Frame =
  | { readonly kind: "message"; readonly value: Record<string, unknown>; readonly size: number }
  | { readonly kind: "oversize"; readonly size: number; readonly id: unknown };

/** Options of {@link JsonObjectScanner}. */
export interface ScannerOptions {
  /** Largest message kept, in bytes; larger ones become `oversize` frames. */
  maxMessageSize?: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;
const NEWLINE = 0x0a;
/** Longest `id` value we keep while skipping an oversized message. */
const MAX_ID_BYTES = 1024;
/** How much of a bad message an error carries. */
const MAX_ERROR_SNIPPET = 1024;

/** Held bytes up to which a part ending in `}` is tried as a whole object. */
const MAX_HELD_RETRY = 64 * 1024;
/** After this many lines that were not one whole object, stop trying the line fast path. */
const MAX_LINE_MISSES = 8;

/** Default `maxMessageSize`: 10 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 10 * 1024 * 1024;

/**
 * Incremental scanner of a stream of JSON objects.
 *
 * Feed it chunks with {@link push}; it calls `sink` for each message in wire
 * order, synchronously, before it looks at the next one. Time is linear in
 * the bytes fed, whatever the chunking.
 */
export class JsonObjectScanner {
  readonly #max: number;
  /** Nesting depth inside the current top-level value; 0 between messages. */
  #depth = 0;
  /** Inside a top-level scalar (garbage or a non-object value), up to the next newline. */
  #scalar = false;
  #inString = false;
  /** The first byte of the next chunk is escaped by a backslash at the end of the last one. */
  #skipFirst = false;
  /** Whether the top-level value is an object (whose keys we watch for `id`). */
  #isObject = false;
  /** The next string at depth 1 is a key. */
  #expectKey = false;
  /** Start offset of the key being read, in the current chunk, or -1. */
  #keyStart = -1;
  /** Bytes of a key split across chunks. */
  #keyHead: Buffer | undefined;
  /** The key just read at depth 1 is `"id"`. */
  #keyIsId = false;
  /** Capturing the top-level `id` value: its parts so far, or undefined. */
  #idParts: Buffer[] | undefined;
  #idBytes = 0;
  #idStart = -1;
  /** The raw bytes of the last top-level `id` value of this message. */
  #idRaw: Buffer | undefined;
  /** Bytes of the current message held from earlier chunks. */
  #parts: Buffer[] = [];
  /** Size of the current message so far, counting bytes of earlier chunks. */
  #size = 0;
  #oversize = false;
  /** Lines that were not a whole object; past MAX_LINE_MISSES the line fast path is off. */
  #lineMisses = 0;
  /** The next message is being re-scanned after a line fast-path miss. */
  #noLineFastPath = false;
  /** Inside {@link #replay}: the line fast path is off. */
  #replaying = false;
  /**
   * The peer ends its messages with a newline (seen once, on the fast path):
   * a held message then waits for its newline and is never tried or
   * scanned before (a peer that sends none is tried at each `}`).
   */
  #newlineFramed = false;
  /** Chunks of a message held by the line fast path until its newline comes. */
  #lineParts: Buffer[] | undefined;
  #lineSize = 0;

  constructor(options: ScannerOptions = {}) {
    const max = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    if (!(max > 0)) throw new RangeError(`maxMessageSize must be positive, got ${max}`);
    this.#max = max;
  }

  /**
   * Whether the one-line fast path is still in use: it goes off for good
   * after a few lines that were not one whole object (`pretty=on` output),
   * never because of how compact output was cut into chunks.
   */
  get lineFastPath(): boolean {
    return this.#lineMisses < MAX_LINE_MISSES;
  }

  /** Bytes of an unfinished message held in memory. */
  get buffered(): number {
    return this.#lineSize + (this.#oversize ? 0 : this.#size);
  }

  /** Whether the scanner is between messages (nothing unfinished). */
  get idle(): boolean {
    return this.#depth === 0 && !this.#scalar && this.#lineParts === undefined;
  }

  /**
   * Scan one chunk, calling `sink` for every message it completes.
   *
   * @throws {DeserializationError} on bytes that are not JSON.
   * @throws {UnexpectedTypeError} on a JSON value that is not an object.
   * After either, the scanner's state is undefined: drop it.
   */
  push(chunk: Uint8Array, sink: (frame: Frame) => void): void {
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (buf.length === 0) return;
    if (this.#lineParts === undefined) {
      this.#scan(buf, sink);
      return;
    }
    // A message is held by the line fast path: look for its newline only.
    const nl = buf.indexOf(NEWLINE);
    if (nl === -1) {
      if (this.#lineSize + buf.length <= this.#max) this.#hold(buf, sink);
      else this.#replay(buf, sink, false); // too large for the fast path: not a miss
      return;
    }
    const size = this.#lineSize + nl;
    if (size <= this.#max) {
      const parts = this.#lineParts;
      parts.push(buf.subarray(0, nl));
      const trimmed = trimmedPartsSize(parts, size);
      // Join and decode (once), letting the chunks and the joined bytes go
      // before the parse: only the text is alive then.
      const text = joinedText(parts, size);
      const held = this.#lineSize;
      this.#lineParts = undefined;
      parts.length = 0;
      const value = parseObject(text);
      // Not one object after all (pretty=on, two on a line): the scanner
      // takes the held bytes again (decoding was lossless unless they were
      // not UTF-8, and then they fail as JSON anyway).
      if (value === undefined) this.#lineParts = [Buffer.from(text, "utf8").subarray(0, held)];
      else {
        this.#lineSize = 0;
        this.#newlineFramed = true;
        sink({ kind: "message", value, size: trimmed });
        this.#scan(buf.subarray(nl + 1), sink);
        return;
      }
    }
    this.#replay(buf, sink, size <= this.#max);
  }

  /**
   * Hold `part` of a message on the line fast path. A peer that sends no
   * newline must not leave a message hanging: when a part ends in `}` the
   * message may be complete, so a small one is tried as a whole object at
   * once (if it is not one yet, the scanner takes it over, which is no
   * miss), and a large one goes to the scanner (trying it would cost a parse of everything held,
   * each time a chunk happens to end in `}`).
   */
  #hold(part: Buffer, sink: (frame: Frame) => void): void {
    if (this.#lineParts === undefined) this.#lineParts = [part];
    else this.#lineParts.push(part);
    this.#lineSize += part.length;
    // A peer that ends its messages with a newline (QEMU, qemu-ga) will send
    // this one's too: nothing to try before it comes.
    if (this.#newlineFramed) return;
    let last = part.length - 1;
    while (last >= 0 && isSpace(part[last]!)) last--;
    if (last < 0 || part[last] !== RBRACE) return;
    if (this.#lineSize > MAX_HELD_RETRY) {
      this.#replay(Buffer.alloc(0), sink, false);
      return;
    }
    const value = tryParseObject(Buffer.concat(this.#lineParts, this.#lineSize), 0, this.#lineSize);
    if (value === undefined) {
      // Most often the chunk just ended after a nested `}` and the rest is to
      // come; or two objects share no newline. The scanner takes this one
      // message, but it is no miss: the fast path stays on for the next.
      this.#replay(Buffer.alloc(0), sink, false);
      return;
    }
    const size = this.#lineSize - (part.length - 1 - last);
    this.#lineParts = undefined;
    this.#lineSize = 0;
    sink({ kind: "message", value, size });
  }

  /**
   * The held bytes were not one object on one line after all (pretty=on, two
   * objects on a line, bad JSON, too large): scan them for real from their
   * first byte, then `rest`. Each byte is still looked at a bounded number of
   * times, and after a few misses the fast path is off for good.
   */
  #replay(rest: Buffer, sink: (frame: Frame) => void, miss = true): void {
    const parts = this.#lineParts ?? [];
    this.#lineParts = undefined;
    this.#lineSize = 0;
    if (miss) this.#lineMisses++;
    this.#noLineFastPath = true;
    // No fast path while replaying: holding a line again here would skip the
    // bytes that follow it (they are scanned below, not pushed).
    this.#replaying = true;
    try {
      for (const part of parts) this.#scan(part, sink);
      this.#scan(rest, sink);
    } finally {
      this.#replaying = false;
    }
  }

  #scan(buf: Buffer, sink: (frame: Frame) => void): void {
    const n = buf.length;
    if (n === 0) return;
    let i = 0;
    // Start of the current message within this chunk (0 if it began earlier).
    let start = 0;
    if (this.#skipFirst) {
      this.#skipFirst = false;
      i = 1;
    }
    if (this.#keyStart !== -1) this.#keyStart = 0;
    if (this.#idParts !== undefined) this.#idStart = 0;
    // Next quote and backslash found by the string fast path (-1: not searched yet).
    let qt = -1;
    let bs = -1;
    /** The chunk as text when it is all ASCII (null: it is not; undefined: not looked yet). */
    let ascii: string | null | undefined;

    while (i < n) {
      if (this.#depth === 0) {
        if (!this.#scalar) {
          // Between messages: skip whitespace, then see what starts.
          const c = buf[i]!;
          if (c === 0x20 || c === NEWLINE || c === 0x0d || c === 0x09) {
            i++;
            continue;
          }
          start = i;
          this.#size = 0;
          this.#idRaw = undefined;
          if (
            c === LBRACE &&
            this.#lineMisses < MAX_LINE_MISSES &&
            !this.#noLineFastPath &&
            !this.#replaying
          ) {
            // Fast path for QEMU's usual one-object-per-line output: if the
            // line parses as an object, that is the message (found with a
            // native newline search and one JSON.parse). A line that does
            // not (pretty=on, two objects on a line, bad JSON) goes through
            // the scanner below; after a few such lines we stop trying.
            const nl = buf.indexOf(NEWLINE, i);
            if (nl === -1 && n - i <= this.#max) {
              // The line goes on in the next chunks: hold it (see push()).
              this.#hold(buf.subarray(i), sink);
              return;
            }
            if (nl !== -1 && nl - i <= this.#max) {
              // QEMU escapes non-ASCII, so a chunk is usually ASCII: then
              // decode it once and slice, instead of decoding each line.
              if (ascii === undefined) {
                ascii = isAscii(buf) ? buf.toString("latin1") : null;
              }
              const value =
                ascii !== null ? parseObject(ascii.slice(i, nl)) : tryParseObject(buf, i, nl);
              if (value !== undefined) {
                this.#newlineFramed = true;
                sink({ kind: "message", value, size: trimmedSize(buf, nl, nl - i) });
                i = nl + 1;
                continue;
              }
              this.#lineMisses++;
            }
          }
          this.#noLineFastPath = false;
          if (c === LBRACE || c === LBRACKET) {
            this.#depth = 1;
            this.#isObject = c === LBRACE;
            this.#expectKey = this.#isObject;
            i++;
            continue;
          }
          this.#scalar = true;
        }
        // A top-level non-container: take the rest of the line, then complain.
        const nl = buf.indexOf(NEWLINE, i);
        if (nl === -1) break;
        this.#scalar = false;
        this.#rejectValue(this.#take(buf, start, nl));
        return;
      }

      if (this.#inString) {
        // Jump through string contents with native searches: only `"` and
        // `\` matter. `qt` and `bs` cache the next quote and backslash (n:
        // none left in this chunk), so each search covers new bytes only.
        for (;;) {
          if (qt < i) {
            qt = buf.indexOf(QUOTE, i);
            if (qt === -1) qt = n;
          }
          if (bs < i) {
            bs = buf.indexOf(BACKSLASH, i);
            if (bs === -1) bs = n;
          }
          if (bs < qt) {
            // An escape comes first: skip it and the byte it escapes.
            i = bs + 2;
            if (i >= n) break;
            continue;
          }
          i = qt;
          break;
        }
        if (i >= n) {
          this.#skipFirst = i > n;
          break;
        }
        this.#inString = false;
        if (this.#keyStart !== -1) this.#endKey(buf, i);
        i++;
        continue;
      }

      const c = buf[i]!;
      if (c === QUOTE) {
        this.#inString = true;
        if (this.#depth === 1 && this.#expectKey) {
          this.#keyStart = i + 1;
          this.#keyHead = undefined;
        }
      } else if (c === LBRACE || c === LBRACKET) {
        this.#depth++;
      } else if (c === RBRACE || c === RBRACKET) {
        if (this.#depth === 1) {
          if (this.#idParts !== undefined) this.#endId(buf, i);
          this.#depth = 0;
          const end = i + 1;
          this.#size += end - start;
          if (this.#size > this.#max || this.#oversize) {
            if (!this.#isObject) {
              // Skipped, but a top-level array is never a message: as fatal as a small one.
              throw new UnexpectedTypeError(
                `Received a JSON array of ${this.#size} bytes where an object was expected`,
                undefined,
              );
            }
            const size = this.#size;
            const id = this.#recoveredId();
            this.#parts = [];
            this.#oversize = false;
            this.#size = 0;
            sink({ kind: "oversize", size, id });
          } else {
            const size = this.#size;
            const text = this.#take(buf, start, end);
            this.#size = 0;
            sink({ kind: "message", value: this.#parse(text), size });
          }
          i = end;
          continue;
        }
        this.#depth--;
      } else if (this.#depth === 1) {
        if (c === COMMA) {
          if (this.#idParts !== undefined) this.#endId(buf, i);
          this.#expectKey = this.#isObject;
        } else if (c === COLON) {
          this.#expectKey = false;
          if (this.#keyIsId) {
            this.#keyIsId = false;
            this.#idParts = [];
            this.#idBytes = 0;
            this.#idStart = i + 1;
          }
        }
      }
      i++;
    }

    // The chunk ended inside a message: keep what we need of it.
    if (this.#depth === 0 && !this.#scalar) return;
    this.#size += n - start;
    if (this.#keyStart !== -1) {
      const head = buf.subarray(this.#keyStart);
      this.#keyHead =
        this.#keyHead === undefined ? Buffer.from(head) : Buffer.concat([this.#keyHead, head]);
      if (this.#keyHead.length > 8) this.#keyHead = this.#keyHead.subarray(0, 8);
    }
    if (this.#idParts !== undefined) this.#keepId(buf.subarray(this.#idStart));
    if (this.#oversize) return;
    if (this.#size > this.#max) {
      if (this.#scalar) {
        throw new DeserializationError(
          `Received ${this.#size} bytes of non-JSON text without a newline`,
          Buffer.concat([...this.#parts, buf.subarray(start)])
            .subarray(0, MAX_ERROR_SNIPPET)
            .toString("utf8"),
        );
      }
      // Stop buffering; from here on the message is only followed.
      this.#oversize = true;
      this.#parts = [];
      return;
    }
    this.#parts.push(buf.subarray(start));
  }

  /**
   * Declare the end of the stream. Messages still held (a last line with no
   * newline) go to `sink` first.
   *
   * @throws {DeserializationError} if the stream ended inside a message.
   * @throws {UnexpectedTypeError} if it ended on a top-level non-object value.
   */
  end(sink: (frame: Frame) => void = () => {}): void {
    if (this.#lineParts !== undefined) this.#replay(Buffer.alloc(0), sink);
    if (this.#scalar) {
      this.#scalar = false;
      this.#rejectValue(this.#take(Buffer.alloc(0), 0, 0));
    }
    if (this.#depth !== 0) {
      const held = this.#oversize ? "" : Buffer.concat(this.#parts).toString("utf8");
      throw new DeserializationError(
        `Connection closed inside a message (${this.#size} bytes received)`,
        held.slice(0, MAX_ERROR_SNIPPET),
      );
    }
  }

  /** Text of the current message: held parts plus `buf[start, end)`. */
  #take(buf: Buffer, start: number, end: number): string {
    if (this.#parts.length === 0) return buf.toString("utf8", start, end);
    const parts = this.#parts;
    parts.push(buf.subarray(start, end));
    this.#parts = [];
    return Buffer.concat(parts).toString("utf8");
  }

  #parse(text: string): Record<string, unknown> {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new DeserializationError(
        `Received invalid JSON: ${(err as Error).message}`,
        text.slice(0, MAX_ERROR_SNIPPET),
        { cause: err },
      );
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new UnexpectedTypeError(
        `Received a JSON ${jsonType(value)} where an object was expected`,
        value,
      );
    }
    return value as Record<string, unknown>;
  }

  /** A top-level value that is not an object is always an error; say which. */
  #rejectValue(text: string): never {
    this.#parse(text.trim());
    throw new UnexpectedTypeError("Received a top-level value that is not an object", text);
  }

  /** A key string ended at `buf[end]` (the closing quote); is it `"id"`? */
  #endKey(buf: Buffer, end: number): void {
    let key: Buffer = buf.subarray(this.#keyStart, end);
    if (this.#keyHead !== undefined) key = Buffer.concat([this.#keyHead, key]);
    this.#keyIsId = key.length === 2 && key[0] === 0x69 && key[1] === 0x64;
    this.#keyStart = -1;
    this.#keyHead = undefined;
  }

  #keepId(part: Buffer): void {
    this.#idBytes += part.length;
    if (this.#idBytes > MAX_ID_BYTES) {
      // Not an id we could have sent; give up on it.
      this.#idParts = undefined;
      this.#idRaw = undefined;
      return;
    }
    this.#idParts!.push(Buffer.from(part));
  }

  /** The `id` value ended just before `buf[end]`. */
  #endId(buf: Buffer, end: number): void {
    this.#keepId(buf.subarray(this.#idStart, end));
    if (this.#idParts !== undefined) this.#idRaw = Buffer.concat(this.#idParts);
    this.#idParts = undefined;
    this.#idStart = -1;
  }

  #recoveredId(): unknown {
    const raw = this.#idRaw;
    this.#idRaw = undefined;
    if (raw === undefined) return undefined;
    try {
      return JSON.parse(raw.toString("utf8")) as unknown;
    } catch {
      return undefined;
    }
  }
}

/**
 * `parts` (`size` bytes) as one text. QEMU escapes non-ASCII, and then the
 * bytes are the text: copied, not decoded. The joined bytes die with this
 * call, before the caller parses the text.
 */
function joinedText(parts: Buffer[], size: number): string {
  const joined = Buffer.concat(parts, size);
  return isAscii(joined) ? joined.toString("latin1") : joined.toString("utf8");
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === NEWLINE || c === 0x0d || c === 0x09;
}

/** Size of a line of `size` bytes ending before `buf[nl]`, without the whitespace before the newline. */
function trimmedSize(buf: Buffer, nl: number, size: number): number {
  let end = nl;
  while (end > 0 && isSpace(buf[end - 1]!)) end--;
  return size - (nl - end);
}

/** `size` bytes held in `parts`, less the whitespace at their end (a `\r` before the newline). */
function trimmedPartsSize(parts: readonly Buffer[], size: number): number {
  for (let p = parts.length - 1; p >= 0; p--) {
    const part = parts[p]!;
    for (let i = part.length - 1; i >= 0; i--) {
      if (!isSpace(part[i]!)) return size;
      size--;
    }
  }
  return size;
}

/** `buf[start, end)` parsed, if it is exactly one JSON object; else undefined. */
function tryParseObject(
  buf: Buffer,
  start: number,
  end: number,
): Record<string, unknown> | undefined {
  return parseObject(buf.toString("utf8", start, end));
}

/** `text` parsed, if it is exactly one JSON object; else undefined. */
function parseObject(text: string): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}
