// Replaying a recorded transcript: a server that plays QEMU's side of a session back and checks the client's.

import { rmSync } from "node:fs";
import net from "node:net";
import { TranscriptMismatchError } from "../errors.js";
import { type Frame, JsonObjectScanner } from "../framing.js";
import type { JsonObject, JsonValue } from "../message.js";
import {
  type NumberedTranscript,
  type TranscriptEntry,
  checkEntries,
  readNumbered,
} from "../transcript.js";
import type { InetAddress } from "../transport.js";
import { listenAt } from "./listen.js";
import {
  type CallOptions,
  REDACTED,
  checkCallOptions,
  deadline,
  raceSignal,
  typeName,
} from "../util.js";

/** Options of {@link ReplayServer.listen}. */
export interface ReplayServerOptions {
  /**
   * Replay a guest agent's transcript (one recorded with `QGAClient`): `\n`
   * line endings; the client's byte 0xFF is dropped, unanswered (it resets
   * qemu-ga's parser, and what qemu-ga says to it is skipped by the client
   * unread, so no transcript holds it); the id of `guest-sync-delimited`
   * and `guest-sync` may differ from the recorded one (the client draws
   * it at random), and their reply is sent with the client's id, after a
   * 0xFF for `guest-sync-delimited`. Default false.
   */
  guestAgent?: boolean | undefined;
  /**
   * Where to listen: a UNIX socket path, or `{ host, port }` (`port: 0`
   * picks a free one). Default: a UNIX socket in a private temp directory,
   * removed by `close()`.
   */
  address?: string | InetAddress | undefined;
}

/** The byte that resets a guest agent's parser and precedes its delimited reply. */
const DELIMITER = 0xff;
/** How much of a message an error message shows. */
const SHOWN = 300;
/** The guest agent's commands whose `arguments.id` the client draws at random. */
const SYNC_COMMANDS = new Set(["guest-sync-delimited", "guest-sync"]);

/**
 * A server that replays a transcript (recorded with the client's `record`
 * option or `qmp exec --record`) to each connection, for tests that run
 * without QEMU: it writes the recorded `in` entries (what the client
 * received) as their turn comes, without waiting for their `t`, and at each
 * `out` entry waits for the client's next message and checks it against
 * the recorded one.
 *
 * A message matches when it is equal as JSON (members in any order), except
 * that its `id` may differ (later `in` entries with the recorded id are sent
 * with the client's id) and a recorded `"<redacted>"` matches any value. A
 * message that does not match is answered with a QMP error
 * (`GenericError`, `replay: expected …, got …`) and stops the replay of
 * that connection (anything more it sends gets the same kind of error);
 * so is a message after the end of the transcript. File descriptors are not
 * checked (Node's sockets cannot receive them).
 *
 * Each connection plays the transcript from its start, on its own.
 *
 * ```ts
 * await using server = await ReplayServer.listen("session.jsonl");
 * await client.connect(server.address);
 * await client.execute("query-status");
 * await server.done(); // every entry played, every message as recorded
 * ```
 */
export class ReplayServer {
  readonly #server: net.Server;
  readonly #dir: string | undefined;
  readonly #script: NumberedTranscript;
  readonly #guestAgent: boolean;
  readonly #connections = new Set<Replay>();
  /** The newest connection, for {@link remaining}. */
  #latest: Replay | undefined;
  readonly #mismatches: TranscriptMismatchError[] = [];
  readonly #outcome: Promise<void>;
  #settle!: (error: TranscriptMismatchError | undefined) => void;
  #settled = false;
  #closing = false;
  /** The address to connect to (with the real port for `{ host, port: 0 }`). */
  readonly address: string | InetAddress;

  private constructor(
    server: net.Server,
    dir: string | undefined,
    address: string | InetAddress,
    script: NumberedTranscript,
    guestAgent: boolean,
  ) {
    this.#server = server;
    this.#dir = dir;
    this.address = address;
    this.#script = script;
    this.#guestAgent = guestAgent;
    this.#outcome = new Promise<void>((resolve, reject) => {
      this.#settle = (error) => {
        if (this.#settled) return;
        this.#settled = true;
        if (error === undefined) resolve();
        else reject(error);
      };
    });
    // Nobody may ever ask done(): its rejection must not be an unhandled one.
    this.#outcome.catch(() => {});
    server.on("connection", (socket) => this.#accept(socket));
  }

  /**
   * Read the transcript (a file path, or entries such as a `record`
   * function collected) and start listening.
   *
   * @throws {TypeError} for options or entries of the wrong type.
   * @throws {TranscriptError} for a malformed transcript (the message names the line or entry).
   * @throws the file system's error when the file cannot be read, or the
   *   socket's when the address cannot be listened on.
   */
  static async listen(
    transcript: string | readonly TranscriptEntry[],
    options: ReplayServerOptions = {},
  ): Promise<ReplayServer> {
    // Prepare: the options and the whole transcript are checked before anything listens.
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object, got ${typeName(options)}`);
    }
    const { guestAgent, address } = options;
    if (guestAgent !== undefined && typeof guestAgent !== "boolean") {
      throw new TypeError(`guestAgent must be a boolean, got ${typeName(guestAgent)}`);
    }
    if (address !== undefined && typeof address !== "string") {
      if (typeof address !== "object" || address === null || typeof address.host !== "string") {
        throw new TypeError(`address must be a path or { host, port }, got ${typeName(address)}`);
      }
    }
    const script =
      typeof transcript === "string" ? await readNumbered(transcript) : checkEntries(transcript);
    // Commit.
    const { server, dir, address: bound } = await listenAt(address, "qmp-replay-");
    return new ReplayServer(server, dir, bound, script, guestAgent === true);
  }

  /** The transcript's entries, as replayed. */
  get entries(): readonly TranscriptEntry[] {
    return this.#script.entries;
  }

  /**
   * How many entries the newest connection has not played yet (all of
   * them before the first connection; 0 once one has played them all).
   */
  get remaining(): number {
    return this.#latest?.remaining ?? this.#script.entries.length;
  }

  /** Every mismatch so far, of every connection, in order (also those after {@link done} settled). */
  get mismatches(): readonly TranscriptMismatchError[] {
    return this.#mismatches;
  }

  /**
   * Resolves once a connection has played the whole transcript, every
   * `out` entry matched. The first outcome counts: it rejects with a
   * {@link TranscriptMismatchError} when, before that, a connection sent a
   * message that does not match, closed before the end of the transcript,
   * or {@link close} was called (then `actual` is undefined and the message
   * says the transcript was not finished). A message sent after the end is
   * answered with an error and listed in {@link mismatches}, but does not
   * undo a `done()` that resolved.
   *
   * @throws {TypeError} {RangeError} for options of the wrong type or range.
   * @throws the `signal`'s reason, or a `TimeoutError` after `timeout` ms.
   */
  done(options: CallOptions = {}): Promise<void> {
    checkCallOptions(options);
    if (options.signal === undefined && options.timeout === undefined) return this.#outcome;
    const limit = deadline(options, "ReplayServer.done()");
    return raceSignal(this.#outcome, limit.signal).finally(limit.dispose);
  }

  /**
   * Stop listening and drop every connection; remove the temp directory.
   * A {@link done} still pending rejects (the transcript was not finished),
   * unless a connection has played it all. Calling it again is harmless.
   */
  async close(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      const latest = this.#latest;
      if (latest?.complete === true) this.#settle(undefined);
      else this.#settle(this.#unfinished(latest?.position ?? 0, "the server was closed"));
    }
    for (const c of this.#connections) c.destroy();
    this.#connections.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (this.#dir !== undefined) rmSync(this.#dir, { recursive: true, force: true });
  }

  /** `await using server = await ReplayServer.listen(…)` closes it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ------------------------------------------------------------- machinery

  #accept(socket: net.Socket): void {
    // At once: an error before anything else (a reset) must not crash the process.
    socket.on("error", () => {});
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const replay = new Replay(socket, this.#script, this.#guestAgent, {
      mismatch: (err) => {
        this.#mismatches.push(err);
        this.#settle(err);
      },
      complete: () => this.#settle(undefined),
      closed: () => {
        this.#connections.delete(replay);
        // After a mismatch, that mismatch is what went wrong; after close(), close() said it.
        if (this.#closing || replay.stopped || replay.remaining === 0) return;
        const err = this.#unfinished(replay.position, "the connection closed");
        this.#mismatches.push(err);
        this.#settle(err);
      },
    });
    this.#connections.add(replay);
    this.#latest = replay;
    replay.start();
  }

  /** The transcript was left at entry `index` because of `why`. */
  #unfinished(index: number, why: string): TranscriptMismatchError {
    const { entries, lines } = this.#script;
    const entry = entries[index];
    const what =
      this.#latest === undefined
        ? `no client connected (${entries.length} entries)`
        : `${why} at entry ${index}${lineOf(lines[index])} of ${entries.length}` +
          (entry?.msg !== undefined ? `, which expects ${show(entry.msg)}` : "");
    return new TranscriptMismatchError(
      `Transcript not finished: ${what}`,
      { index, line: lines[index] },
      entry?.msg,
      undefined,
    );
  }
}

/** What a {@link Replay} tells its server. */
interface ReplayHooks {
  /** The first mismatch of the connection (it plays no more). */
  mismatch(err: TranscriptMismatchError): void;
  /** The whole transcript was played. */
  complete(): void;
  /** The connection closed. */
  closed(): void;
}

/** One connection's replay of the transcript. */
class Replay {
  readonly #socket: net.Socket;
  readonly #script: NumberedTranscript;
  readonly #guestAgent: boolean;
  readonly #hooks: ReplayHooks;
  #scanner = new JsonObjectScanner();
  /** The next entry to play. */
  #next = 0;
  /** The mismatch that stopped the replay, if one did. */
  #stoppedAt: number | undefined;
  /** The client's id for each recorded id still to be answered (JSON of the recorded one → the client's). */
  readonly #ids = new Map<string, unknown>();
  /** Guest agent: the client's sync id for each recorded one (JSON of the recorded one → the client's). */
  readonly #syncIds = new Map<string, unknown>();
  /** Guest agent: recorded ids of `guest-sync-delimited` whose reply (after a 0xFF) is still due. */
  readonly #delimited = new Set<string>();

  constructor(
    socket: net.Socket,
    script: NumberedTranscript,
    guestAgent: boolean,
    hooks: ReplayHooks,
  ) {
    this.#socket = socket;
    this.#script = script;
    this.#guestAgent = guestAgent;
    this.#hooks = hooks;
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.once("close", () => hooks.closed());
  }

  /** Entries not played yet. */
  get remaining(): number {
    return this.#script.entries.length - this.#next;
  }

  /** The next entry to play. */
  get position(): number {
    return this.#next;
  }

  /** Whether a mismatch stopped the replay. */
  get stopped(): boolean {
    return this.#stoppedAt !== undefined;
  }

  /** Whether every entry was played, and matched. */
  get complete(): boolean {
    return this.#stoppedAt === undefined && this.#next === this.#script.entries.length;
  }

  /** Play what comes before the first `out` entry (QEMU's greeting). */
  start(): void {
    this.#play();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /** Write `in` entries until an `out` entry is due, or the end. */
  #play(): void {
    const entries = this.#script.entries;
    for (let entry = entries[this.#next]; entry !== undefined; entry = entries[this.#next]) {
      // fds passed alone (a space byte on the wire) are nothing to wait for.
      if (entry.dir === "out" && entry.msg !== undefined) return;
      if (entry.msg !== undefined) this.#send(entry.msg);
      this.#next++;
    }
    this.#hooks.complete();
  }

  /** Write a recorded `in` message, with the client's ids for the recorded ones. */
  #send(recorded: JsonObject): void {
    let message: Record<string, unknown> = recorded;
    let delimit = false;
    if ("id" in recorded) {
      const key = JSON.stringify(recorded["id"]);
      if (this.#ids.has(key)) {
        message = { ...recorded, id: this.#ids.get(key) };
        this.#ids.delete(key);
      }
    }
    if (this.#guestAgent && "return" in recorded) {
      const key = JSON.stringify(recorded["return"]);
      if (this.#syncIds.has(key)) {
        message = { ...message, return: this.#syncIds.get(key) };
        delimit = this.#delimited.delete(key);
        this.#syncIds.delete(key);
      }
    }
    if (delimit) this.#write(Buffer.of(DELIMITER));
    this.#write(JSON.stringify(message) + (this.#guestAgent ? "\n" : "\r\n"));
  }

  #write(data: string | Uint8Array): void {
    if (!this.#socket.destroyed) this.#socket.write(data);
  }

  #onData(chunk: Buffer): void {
    const emit = (frame: Frame): void => this.#onFrame(frame);
    try {
      if (this.#guestAgent) {
        // qemu-ga's parser starts afresh after a 0xFF; what it answers to it is not replayed.
        for (let at = chunk.indexOf(DELIMITER); at !== -1; at = chunk.indexOf(DELIMITER)) {
          this.#scanner.push(chunk.subarray(0, at), emit);
          this.#scanner = new JsonObjectScanner();
          chunk = chunk.subarray(at + 1);
        }
      }
      this.#scanner.push(chunk, emit);
    } catch (err) {
      this.#fatal(`the client sent what is not a JSON object: ${String(err)}`);
    }
  }

  #onFrame(frame: Frame): void {
    if (frame.kind === "oversize") {
      this.#fatal(`the client sent a message of ${frame.size} bytes, more than the limit`);
      return;
    }
    const actual = frame.value;
    if (this.#stoppedAt !== undefined) {
      this.#reject(actual, `replay: stopped at the mismatch at entry ${this.#stoppedAt}`);
      return;
    }
    const { entries, lines } = this.#script;
    const index = this.#next;
    const expected = entries[index]?.msg;
    if (expected === undefined) {
      const err = new TranscriptMismatchError(
        `Transcript mismatch after its end (${entries.length} entries): ` +
          `expected nothing more, got ${show(actual)}`,
        { index, line: undefined },
        undefined,
        actual,
      );
      this.#stop(
        err,
        actual,
        `replay: expected nothing more (the transcript has ended), got ${show(actual)}`,
      );
      return;
    }
    if (!this.#matches(expected, actual)) {
      const err = new TranscriptMismatchError(
        `Transcript mismatch at entry ${index}${lineOf(lines[index])}: ` +
          `expected ${show(expected)}, got ${show(actual)}`,
        { index, line: lines[index] },
        expected,
        actual,
      );
      this.#stop(err, actual, `replay: expected ${show(expected)}, got ${show(actual)}`);
      return;
    }
    this.#learn(expected, actual);
    this.#next++;
    this.#play();
  }

  /** Whether `actual` is the recorded `expected` (see {@link ReplayServer}). */
  #matches(expected: JsonObject, actual: Record<string, unknown>): boolean {
    const keys = Object.keys(expected);
    if (keys.length !== Object.keys(actual).length) return false;
    for (const key of keys) {
      if (!Object.hasOwn(actual, key)) return false;
      if (key === "id") continue;
      if (key === "arguments" && this.#isSync(expected)) {
        if (!sameExceptId(expected[key], actual[key])) return false;
      } else if (!same(expected[key], actual[key])) return false;
    }
    return true;
  }

  /** Remember the client's ids for the recorded ones that later `in` entries carry. */
  #learn(expected: JsonObject, actual: Record<string, unknown>): void {
    if ("id" in expected) this.#ids.set(JSON.stringify(expected["id"]), actual["id"]);
    if (this.#isSync(expected)) {
      const recorded = syncId(expected["arguments"]);
      if (recorded === undefined) return;
      const key = JSON.stringify(recorded);
      this.#syncIds.set(key, syncId(actual["arguments"]));
      if (expected["execute"] === "guest-sync-delimited") this.#delimited.add(key);
    }
  }

  #isSync(message: JsonObject): boolean {
    return this.#guestAgent && SYNC_COMMANDS.has(message["execute"] as string);
  }

  /** The first mismatch: answer it, report it, play no more. */
  #stop(err: TranscriptMismatchError, actual: Record<string, unknown>, desc: string): void {
    this.#stoppedAt = err.index;
    this.#reject(actual, desc);
    this.#hooks.mismatch(err);
  }

  /** Answer `actual` with a QMP error (with its id, if it has one). */
  #reject(actual: Record<string, unknown>, desc: string): void {
    const reply: Record<string, unknown> = { error: { class: "GenericError", desc } };
    if ("id" in actual) reply["id"] = actual["id"];
    this.#write(JSON.stringify(reply) + (this.#guestAgent ? "\n" : "\r\n"));
  }

  /** Bytes that are no message: a mismatch, and the connection is dropped. */
  #fatal(why: string): void {
    if (this.#stoppedAt === undefined) {
      const index = this.#next;
      const expected = this.#script.entries[index]?.msg;
      this.#stoppedAt = index;
      this.#hooks.mismatch(
        new TranscriptMismatchError(
          `Transcript mismatch at entry ${index}${lineOf(this.#script.lines[index])}: ${why}`,
          { index, line: this.#script.lines[index] },
          expected,
          undefined,
        ),
      );
    }
    this.#socket.destroy();
  }
}

/** Whether `actual` is the recorded `expected`: equal as JSON, a recorded `"<redacted>"` matching anything. */
function same(expected: unknown, actual: unknown): boolean {
  if (expected === REDACTED || expected === actual) return true;
  if (typeof expected !== "object" || expected === null) return false;
  if (typeof actual !== "object" || actual === null) return false;
  if (Array.isArray(expected)) {
    return (
      Array.isArray(actual) &&
      expected.length === actual.length &&
      expected.every((e, i) => same(e, actual[i]))
    );
  }
  if (Array.isArray(actual)) return false;
  const keys = Object.keys(expected);
  if (keys.length !== Object.keys(actual).length) return false;
  return keys.every(
    (k) =>
      Object.hasOwn(actual, k) &&
      same((expected as Record<string, unknown>)[k], (actual as Record<string, unknown>)[k]),
  );
}

/** {@link same} for a sync command's arguments, whose `id` the client draws at random. */
function sameExceptId(expected: unknown, actual: unknown): boolean {
  if (typeof expected !== "object" || expected === null || Array.isArray(expected)) {
    return same(expected, actual);
  }
  if (typeof actual !== "object" || actual === null || Array.isArray(actual)) return false;
  const e = { ...(expected as Record<string, unknown>) };
  const a = { ...(actual as Record<string, unknown>) };
  if ("id" in e && "id" in a) a["id"] = e["id"];
  return same(e, a);
}

function syncId(args: unknown): JsonValue | undefined {
  if (typeof args !== "object" || args === null) return undefined;
  return (args as Record<string, JsonValue>)["id"];
}

/** ` (line N)`, or nothing for entries given as an array. */
function lineOf(line: number | undefined): string {
  return line === undefined ? "" : ` (line ${line})`;
}

/** A message as compact JSON, cut short. */
function show(message: unknown): string {
  const text = JSON.stringify(message) ?? String(message);
  return text.length <= SHOWN ? text : `${text.slice(0, SHOWN)}… (${text.length} chars)`;
}
