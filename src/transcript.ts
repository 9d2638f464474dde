// Session transcripts: the entry type, the recorder behind the `record` option, and the JSON-lines parser.

import { closeSync, openSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { TranscriptError, describe } from "./errors.js";
import type { JsonObject } from "./message.js";
import { redact, typeName } from "./util.js";

/**
 * One message of a transcript, as a line of JSON:
 * `{"dir":"out","t":1.234,"msg":{"execute":"stop","id":2}}`.
 */
export interface TranscriptEntry {
  /** `"in"`: the client received it; `"out"`: the client sent it. */
  dir: "in" | "out";
  /**
   * Milliseconds since the session's connection came up (3 decimals).
   * Replaying ignores it.
   */
  t: number;
  /**
   * The message, with secrets redacted (see `redact()`). Absent only in an
   * `out` entry for file descriptors passed alone (`sendFdScm()`).
   */
  msg?: JsonObject;
  /** How many file descriptors were passed with the message (SCM_RIGHTS); absent when none. */
  fds?: number;
}

/** What the `record` option takes: a file to append to, or a function given each entry. */
export type TranscriptTarget = string | ((entry: TranscriptEntry) => void);

/**
 * @throws {TypeError} unless `value` is undefined, a non-empty string or a function.
 */
export function checkRecordOption(value: unknown): void {
  if (value === undefined || typeof value === "function") return;
  if (typeof value === "string" && value !== "") return;
  throw new TypeError(
    `record must be a file path or a function, got ${value === "" ? "an empty string" : typeName(value)}`,
  );
}

/**
 * Writes one client's transcript: each session's entries, timed from the
 * moment its connection came up. A file is opened at the first entry of a
 * session and closed when the session ends. A failure (a file that cannot
 * be written, a function that throws) is reported once through `warn` and
 * stops the recording until the next session: the client itself goes on.
 */
export class TranscriptRecorder {
  readonly #target: TranscriptTarget;
  readonly #warn: (text: string) => void;
  #origin = 0;
  #fd: number | undefined;
  /** Recording failed in this session: nothing more until the next one. */
  #stopped = false;

  constructor(target: TranscriptTarget, warn: (text: string) => void) {
    this.#target = target;
    this.#warn = warn;
  }

  /** A session's connection came up: its entries are timed from now. */
  sessionStarted(): void {
    this.release();
    this.#stopped = false;
    this.#origin = performance.now();
  }

  /**
   * The session is ending or over: close the file. Messages still written
   * while it closes (queued ones) reopen it.
   */
  release(): void {
    const fd = this.#fd;
    if (fd === undefined) return;
    this.#fd = undefined;
    try {
      closeSync(fd);
    } catch {
      // Nothing is lost: every entry was written with writeSync().
    }
  }

  /** A message (or fds alone) was written. */
  sent(message: object | undefined, fds: readonly number[] | undefined): void {
    this.#add("out", message, fds);
  }

  /** A message was read. */
  received(message: object): void {
    this.#add("in", message, undefined);
  }

  #add(dir: "in" | "out", message: object | undefined, fds: readonly number[] | undefined): void {
    if (this.#stopped) return;
    try {
      const entry: TranscriptEntry = {
        dir,
        t: Math.round((performance.now() - this.#origin) * 1000) / 1000,
      };
      if (message !== undefined) entry.msg = redact(message) as JsonObject;
      if (fds !== undefined) entry.fds = fds.length;
      const target = this.#target;
      if (typeof target === "function") {
        target(entry);
        return;
      }
      this.#fd ??= openSync(target, "a", 0o600);
      const bytes = Buffer.from(`${JSON.stringify(entry)}\n`, "utf8");
      for (let at = 0; at < bytes.length;) at += writeSync(this.#fd, bytes, at);
    } catch (err) {
      // Never the client's problem: say it once, and record nothing more this session.
      this.#stopped = true;
      this.release();
      const where = typeof this.#target === "string" ? ` to ${this.#target}` : "";
      this.#warn(`Transcript recording${where} stopped for this session: ${describe(err)}`);
    }
  }
}

/** Transcript entries with the line each came from (1-based; `undefined` for entries given as an array). */
export interface NumberedTranscript {
  entries: TranscriptEntry[];
  lines: (number | undefined)[];
}

/**
 * Parse a transcript: JSON lines of {@link TranscriptEntry} (what the
 * `record` option writes). Blank lines are skipped; members other than
 * `dir`, `t`, `msg` and `fds` are ignored.
 *
 * @throws {TypeError} when `text` is not a string.
 * @throws {TranscriptError} for a line that is not JSON or not an entry
 *   (`dir` not `"in"`/`"out"`, `t` not a number ≥ 0, `msg` not an object,
 *   `fds` not a whole number, neither `msg` nor `fds`); the message and
 *   the error's `line` say which line.
 */
export function parseTranscript(text: string): TranscriptEntry[] {
  return parseNumbered(text, "").entries;
}

/**
 * Read and parse the transcript file at `path` (see {@link parseTranscript}).
 *
 * @throws the file system's error when the file cannot be read (`ENOENT`, …).
 * @throws {TranscriptError} for a malformed line (the message names the file and the line).
 */
export async function readTranscript(path: string): Promise<TranscriptEntry[]> {
  return (await readNumbered(path)).entries;
}

/** {@link readTranscript}, with each entry's line. */
export async function readNumbered(path: string): Promise<NumberedTranscript> {
  return parseNumbered(await readFile(path, "utf8"), `${path}: `);
}

/** {@link parseTranscript}, with each entry's line; `prefix` starts every error message. */
export function parseNumbered(text: string, prefix: string): NumberedTranscript {
  if (typeof text !== "string") {
    throw new TypeError(`A transcript must be a string, got ${typeName(text)}`);
  }
  const entries: TranscriptEntry[] = [];
  const lines: number[] = [];
  const rows = text.split("\n");
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!.trim();
    if (row === "") continue;
    const line = i + 1;
    let value: unknown;
    try {
      value = JSON.parse(row);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new TranscriptError(`${prefix}line ${line}: not JSON: ${why}`, entries.length, line);
    }
    entries.push(checkEntry(value, `${prefix}line ${line}`, entries.length, line));
    lines.push(line);
  }
  return { entries, lines };
}

/**
 * Checked copies of transcript entries given as an array.
 *
 * @throws {TypeError} when `entries` is not an array.
 * @throws {TranscriptError} for an entry of the wrong shape (see {@link parseTranscript}).
 */
export function checkEntries(entries: readonly unknown[]): NumberedTranscript {
  if (!Array.isArray(entries)) {
    throw new TypeError(`The transcript must be entries or a path, got ${typeName(entries)}`);
  }
  const checked = entries.map((e, i) => {
    const entry = checkEntry(e, `entry ${i}`, i, undefined);
    // A copy as JSON: what is replayed cannot change under the server, and is what a file would hold.
    try {
      if (entry.msg !== undefined) entry.msg = JSON.parse(JSON.stringify(entry.msg)) as JsonObject;
    } catch (err) {
      throw new TranscriptError(`entry ${i}: "msg" is not JSON: ${describe(err)}`, i, undefined);
    }
    return entry;
  });
  return { entries: checked, lines: checked.map(() => undefined) };
}

/** `value` as an entry, with only the members an entry has. */
function checkEntry(
  value: unknown,
  where: string,
  index: number,
  line: number | undefined,
): TranscriptEntry {
  const fail = (what: string): never => {
    throw new TranscriptError(`${where}: ${what}`, index, line);
  };
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return fail(`an entry must be an object, got ${typeName(value)}`);
  }
  const { dir, t, msg, fds } = value as Record<string, unknown>;
  if (dir !== "in" && dir !== "out")
    return fail(`"dir" must be "in" or "out", got ${typeName(dir)}`);
  if (typeof t !== "number" || !(t >= 0))
    return fail(`"t" must be a number >= 0, got ${typeName(t)}`);
  const entry: TranscriptEntry = { dir, t };
  if (msg !== undefined) {
    if (typeof msg !== "object" || msg === null || Array.isArray(msg)) {
      return fail(`"msg" must be an object, got ${typeName(msg)}`);
    }
    entry.msg = msg as JsonObject;
  }
  if (fds !== undefined) {
    if (typeof fds !== "number" || !Number.isInteger(fds) || fds < 0) {
      return fail(`"fds" must be a whole number, got ${typeName(fds)}`);
    }
    entry.fds = fds;
  }
  if (entry.msg === undefined && (entry.fds === undefined || dir !== "out")) {
    return fail(`an entry needs a "msg" (only an "out" entry of fds passed alone has none)`);
  }
  return entry;
}
