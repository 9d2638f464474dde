// The guest agent client: qemu-ga on the same engine as QMP, with the resync every connect needs.

import { randomInt } from "node:crypto";
import type { Attempt } from "./attempt.js";
import { SyncError } from "./errors.js";
import type { JsonValue } from "./message.js";
import { QMPClient } from "./qmp-client.js";
import { sleep } from "./retry.js";
import type { QMPClientOptions } from "./qmp-options.js";
import { type CallOptions, deadline } from "./util.js";

/** Options of {@link QGAClient}: those of `QMPClient` that mean something for a guest agent. */
export type QGAClientOptions = Omit<
  QMPClientOptions,
  "awaitGreeting" | "negotiate" | "validate" | "events"
>;

/** Options of {@link QGAClient.execute}. */
export interface QGAExecuteOptions extends CallOptions {
  /**
   * Integers in the reply beyond 2^53 come as `bigint`, exact (JSON.parse
   * rounds them): `guest-get-time`'s nanoseconds. Default false.
   */
  bigint?: boolean | undefined;
}

/** Options of {@link QGAClient.exec}. */
export interface GuestExecOptions extends CallOptions {
  /** What the process reads on its standard input. */
  input?: string | Buffer | undefined;
}

/** What {@link QGAClient.exec} resolves to. */
export interface GuestExecResult {
  /** The exit code; undefined when a signal ended the process. */
  exitcode: number | undefined;
  /** The signal that ended the process, if one did. */
  signal: number | undefined;
  stdout: Buffer;
  stderr: Buffer;
}

/** The byte that resets qemu-ga's JSON parser and precedes a `guest-sync-delimited` reply. */
const DELIMITER = 0xff;
/** Bytes per `guest-file-read` / `guest-file-write` (base64 makes a line of ~87 KiB). */
const FILE_CHUNK = 64 * 1024;
/** How long the resync may take when the connect has no timeout of its own. */
const SYNC_TIMEOUT = 10_000;
/** Polling `guest-exec-status`: first delay, and the longest. */
const EXEC_POLL_FIRST = 5;
const EXEC_POLL_MAX = 500;

/** Integers beyond 2^53 as strings the reviver turns into `bigint` (in no JSON text qemu-ga sends). */
const BIG_MARK = "\u0000bigint:";
const TOKENS = /"(?:[^"\\]|\\.)*"|(?<![\w.+-])-?\d{16,}(?![\w.])/g;

/** `text` parsed, with integers beyond 2^53 as exact `bigint`s. */
export function parseWithBigInts(text: string): Record<string, unknown> {
  const marked = text.replace(TOKENS, (token) =>
    token.startsWith('"') || Number.isSafeInteger(Number(token))
      ? token
      : JSON.stringify(BIG_MARK + token),
  );
  return JSON.parse(marked, (_key, value: unknown) =>
    typeof value === "string" && value.startsWith(BIG_MARK)
      ? BigInt(value.slice(BIG_MARK.length))
      : value,
  ) as Record<string, unknown>;
}

/**
 * A client for the QEMU guest agent (qemu-ga), on the same engine as
 * {@link QMPClient}: the same addresses, timeouts, aborts and errors.
 *
 * qemu-ga has no greeting and keeps the half-read input of an earlier
 * client, so every `connect()` resyncs before it resolves: it sends the byte
 * 0xFF (which resets qemu-ga's parser), then `guest-sync-delimited` with a
 * random id, skips all input up to the 0xFF that precedes the reply, and
 * checks the id. `disconnect()` half-closes and waits for qemu-ga to close
 * too (it exits when a client resets the connection with a reply unread).
 *
 * ```ts
 * await using ga = new QGAClient({ timeout: 10_000 });
 * await ga.connect("/run/vm1-qga.sock");
 * console.log(await ga.osInfo());
 * const { exitcode, stdout } = await ga.exec("/bin/uname", ["-a"]);
 * ```
 */
export class QGAClient extends QMPClient {
  /** The resync under way: the id it waits for. */
  #sync: { id: number; done: () => void; fail: (err: unknown) => void } | undefined;
  /** Ids of calls whose reply is parsed with exact big integers. */
  readonly #exact = new Set<string>();
  #exactSeq = 0;

  /**
   * @throws {TypeError} {RangeError} for options of the wrong type or range.
   */
  constructor(options: QGAClientOptions = {}) {
    super({ ...options, awaitGreeting: false, negotiate: false });
  }

  /**
   * Run a guest agent command and resolve to its `return`. One command runs
   * at a time in qemu-ga; calls are queued and answered in order.
   *
   * @throws {ExecuteError} on an error reply (a disabled command:
   *   `CommandNotFound`); as `QMPClient.execute` otherwise.
   */
  override execute<T = JsonValue>(
    command: string,
    args?: object,
    options: QGAExecuteOptions = {},
  ): Promise<T> {
    const { bigint, ...rest } = options;
    if (bigint !== true) return super.execute<T>(command, args, rest);
    const id = `qga-exact-${++this.#exactSeq}`;
    this.#exact.add(id);
    const message =
      args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
    return this.executeMsg(message, rest).finally(() => this.#exact.delete(id)) as Promise<T>;
  }

  /** `guest-ping`. */
  async ping(options?: CallOptions): Promise<void> {
    await this.execute("guest-ping", undefined, options);
  }

  /** `guest-info`: the agent's version and its commands (`supported_commands`, `enabled`). */
  info(options?: CallOptions): Promise<Record<string, JsonValue>> {
    return this.execute("guest-info", undefined, options);
  }

  /** `guest-get-osinfo`: the guest's OS (`id`, `name`, `version`, `kernel-release`, …). */
  osInfo(options?: CallOptions): Promise<Record<string, JsonValue>> {
    return this.execute("guest-get-osinfo", undefined, options);
  }

  /** `guest-get-time`: the guest's clock in nanoseconds since the epoch, exact. */
  getTime(options?: CallOptions): Promise<bigint> {
    return this.execute<bigint | number>("guest-get-time", undefined, {
      ...options,
      bigint: true,
    }).then((t) => BigInt(t));
  }

  /**
   * Whether the agent has the command `name` and it is enabled (from
   * `guest-info`, asked each time: an agent's allow-list may change).
   */
  override async hasCommand(name: string): Promise<boolean> {
    const info = await this.info();
    const list = info["supported_commands"];
    if (!Array.isArray(list)) return false;
    return list.some((c) => {
      const entry = c as { name?: unknown; enabled?: unknown };
      return entry.name === name && entry.enabled !== false;
    });
  }

  /**
   * The whole content of the guest file `path` (`guest-file-open`, `-read`
   * in 64 KiB pieces, `-close`; the handle is closed also on error).
   *
   * @throws {ExecuteError} when the guest cannot open or read it.
   */
  async readFile(path: string, options?: CallOptions): Promise<Buffer> {
    return this.#withFile(path, "r", options, async (handle, call) => {
      const parts: Buffer[] = [];
      for (;;) {
        const r = await call<{ count: number; "buf-b64": string; eof: boolean }>(
          "guest-file-read",
          { handle, count: FILE_CHUNK },
        );
        if (r["buf-b64"] !== "") parts.push(Buffer.from(r["buf-b64"], "base64"));
        if (r.eof || r.count === 0) return Buffer.concat(parts);
      }
    });
  }

  /**
   * Write `data` to the guest file `path`, replacing it (`guest-file-open`
   * in mode `w`, `-write` in 64 KiB pieces, `-close`; the handle is closed
   * also on error).
   *
   * @throws {ExecuteError} when the guest cannot open or write it.
   */
  async writeFile(path: string, data: string | Buffer, options?: CallOptions): Promise<void> {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    await this.#withFile(path, "w", options, async (handle, call) => {
      for (let at = 0; at < bytes.length;) {
        const piece = bytes.subarray(at, at + FILE_CHUNK);
        const r = await call<{ count: number }>("guest-file-write", {
          handle,
          "buf-b64": piece.toString("base64"),
        });
        if (!(r.count > 0)) throw new Error(`guest-file-write wrote ${r.count} bytes`);
        at += r.count;
      }
    });
  }

  /**
   * Run `path` with `args` in the guest and wait for it to end
   * (`guest-exec` with output captured, then `guest-exec-status`, polled
   * with a growing delay). `timeout` bounds the whole.
   *
   * @throws {ExecuteError} when the guest cannot start it.
   */
  async exec(
    path: string,
    args: readonly string[] = [],
    options: GuestExecOptions = {},
  ): Promise<GuestExecResult> {
    const { signal, dispose } = deadline(
      { signal: options.signal, timeout: options.timeout ?? this.defaultTimeout },
      `exec('${path}')`,
    );
    try {
      const request: Record<string, JsonValue> = { path, arg: [...args], "capture-output": true };
      if (options.input !== undefined) {
        request["input-data"] = Buffer.from(options.input).toString("base64");
      }
      const { pid } = await this.execute<{ pid: number }>("guest-exec", request, { signal });
      for (let delay = EXEC_POLL_FIRST; ; delay = Math.min(delay * 2, EXEC_POLL_MAX)) {
        const s = await this.execute<Record<string, JsonValue>>(
          "guest-exec-status",
          { pid },
          { signal },
        );
        if (s["exited"] === true) {
          const data = (key: string): Buffer =>
            typeof s[key] === "string" ? Buffer.from(s[key], "base64") : Buffer.alloc(0);
          return {
            exitcode: typeof s["exitcode"] === "number" ? s["exitcode"] : undefined,
            signal: typeof s["signal"] === "number" ? s["signal"] : undefined,
            stdout: data("out-data"),
            stderr: data("err-data"),
          };
        }
        await sleep(delay, signal);
      }
    } finally {
      dispose();
    }
  }

  // ---------------------------------------------------------- the engine's hooks

  /** Each message on a line of its own, as qemu-ga's protocol has it. */
  protected override serialize(message: object): string {
    return JSON.stringify(message) + "\n";
  }

  protected override get drainOnClose(): boolean {
    return true;
  }

  protected override async establishSession(attempt: Attempt): Promise<void> {
    await super.establishSession(attempt);
    // The resync has a deadline of its own when the connect has none.
    const bound = attempt.aborted ? undefined : deadline({ timeout: SYNC_TIMEOUT }, "resync");
    const stop = (): void => this.#sync?.fail(bound!.signal.reason);
    bound?.signal.addEventListener("abort", stop, { once: true });
    try {
      await this.#resync();
    } catch (err) {
      const reason: unknown = attempt.aborted
        ? attempt.reason
        : bound?.signal.aborted
          ? (bound.signal.reason as unknown)
          : err;
      // A disconnect() or the caller's own abort is not the agent's fault.
      if (attempt.aborted && !isTimeout(reason)) throw err;
      const why = isTimeout(reason)
        ? "the guest agent did not answer guest-sync-delimited in time"
        : "the guest agent did not answer guest-sync-delimited";
      throw new SyncError(`Failed to establish session: ${why}`, reason);
    } finally {
      bound?.signal.removeEventListener("abort", stop);
      bound?.dispose();
    }
  }

  protected override handleMessage(message: Record<string, unknown>): void {
    const sync = this.#sync;
    if (sync !== undefined) {
      // Until our delimited reply comes, everything is stale: an earlier
      // client's replies, qemu-ga's error for the 0xFF, another sync's reply.
      if (!("id" in message) && message["return"] === sync.id) {
        this.#sync = undefined;
        sync.done();
      } else {
        this.discardInputUntil(DELIMITER);
      }
      return;
    }
    const id = message["id"];
    if (typeof id === "string" && this.#exact.has(id)) message = parseWithBigInts(this.inboundLine);
    super.handleMessage(message);
  }

  protected override sessionEnded(cause: unknown, reason: Error): void {
    this.#sync?.fail(reason);
    this.#sync = undefined;
    super.sessionEnded(cause, reason);
  }

  // ------------------------------------------------------------- machinery

  /** 0xFF, then `guest-sync-delimited` with a fresh id; resolves when its reply comes. */
  #resync(): Promise<void> {
    // An integer (qemu-ga refuses a string) that JSON.parse keeps exact.
    const id = randomInt(1, 2 ** 48 - 1);
    const done = new Promise<void>((resolve, reject) => {
      this.#sync = { id, done: resolve, fail: reject };
    });
    this.discardInputUntil(DELIMITER);
    this.stream?.write(Buffer.of(DELIMITER));
    const sent = this.sendMessage({ execute: "guest-sync-delimited", arguments: { id } });
    sent.catch(() => {});
    return done;
  }

  /** Open `path`, run `body` with its handle, always close it. */
  async #withFile<T>(
    path: string,
    mode: string,
    options: CallOptions | undefined,
    body: (handle: number, call: <R>(command: string, args: object) => Promise<R>) => Promise<T>,
  ): Promise<T> {
    const call = <R>(command: string, args: object): Promise<R> =>
      this.execute<R>(command, args, options);
    const handle = await call<number>("guest-file-open", { path, mode });
    try {
      return await body(handle, call);
    } finally {
      // Closed even after an error or a timeout (with no deadline of the call's own).
      await this.execute("guest-file-close", { handle }).catch(() => {});
    }
  }
}

function isTimeout(reason: unknown): boolean {
  return reason instanceof DOMException && reason.name === "TimeoutError";
}
