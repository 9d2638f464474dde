// What the `qmp` subcommands share: their I/O, exit statuses, addresses and option values.

import { closeSync, openSync, readFileSync } from "node:fs";
import { DeserializationError, GreetingError, type InetAddress, parseAddress } from "../index.js";

/** Where a subcommand writes and what environment it sees (the process's, or a test's). */
export interface CliIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

/** The exit statuses every subcommand uses. */
export const ExitStatus = {
  /** The command succeeded (`exec`), or events arrived (`events`). */
  OK: 0,
  /** QEMU answered with an error (`exec`), or no event arrived (`events`). */
  FAILED: 1,
  /** Bad usage, a connection error, or a timeout. */
  USAGE: 2,
  /** Interrupted (Ctrl-C, SIGINT): long work was cancelled. */
  INTERRUPTED: 130,
} as const;

/** One of {@link ExitStatus}. */
export type ExitStatus = (typeof ExitStatus)[keyof typeof ExitStatus];

/** A usage error: printed with a pointer to `--help`, exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Report a usage error of `qmp COMMAND`: the message, then a pointer to its
 * `--help`, on stderr.
 *
 * @returns {@link ExitStatus.USAGE}, for `return usage(…)`.
 */
export function usage(io: CliIO, command: string, message: string): ExitStatus {
  writeLine(io.stderr, `qmp ${command}: ${message}`);
  writeLine(io.stderr, `Try 'qmp ${command} --help' for more information.`);
  return ExitStatus.USAGE;
}

/** The environment variable that gives the address when it is left out. */
export const ADDRESS_ENV = "QMP_SOCKET";

/**
 * The address to use: `given`, else `$QMP_SOCKET`, parsed as a command line
 * address (UNIX path, `host:port`, `[ipv6]:port`).
 *
 * @throws {UsageError} when there is neither, or it does not parse.
 */
export function resolveAddress(
  given: string | undefined,
  env: NodeJS.ProcessEnv,
): { address: string | InetAddress; text: string } {
  const text = given ?? env[ADDRESS_ENV];
  if (text === undefined || text === "") {
    throw new UsageError(`no ADDRESS given and ${ADDRESS_ENV} is not set`);
  }
  try {
    return { address: parseAddress(text), text };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/**
 * Whether a word, first after the options, is an address rather than a
 * command: it holds a `/` or a `:` and is not raw JSON. Used only when
 * `$QMP_SOCKET` could stand in for a left-out address.
 */
export function looksLikeAddress(word: string): boolean {
  return !word.startsWith("{") && (word.includes("/") || word.includes(":"));
}

/**
 * Seconds as typed (`5`, `0.5`) to milliseconds.
 *
 * @throws {UsageError} unless it is a positive number.
 */
export function parseSeconds(option: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const seconds = /^\d+(?:\.\d*)?$|^\.\d+$/.test(text) ? Number(text) : NaN;
  if (!(seconds > 0))
    throw new UsageError(`${option} needs a positive number of seconds, got '${text}'`);
  return Math.round(seconds * 1000);
}

/**
 * A positive integer as typed.
 *
 * @throws {UsageError} unless it is one.
 */
export function parseCount(option: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1) || !Number.isSafeInteger(n)) {
    throw new UsageError(`${option} needs a positive integer, got '${text}'`);
  }
  return n;
}

/** A signal that a timer of our own or other signals abort; {@link Deadline.clear} it when done. */
export interface Deadline {
  /** Aborts with a `TimeoutError` `DOMException` after the timeout, or with a source's reason. */
  readonly signal: AbortSignal;
  /** Stop the timer and the listeners on the sources (call it in `finally`). */
  clear(): void;
}

/**
 * A signal that aborts after `timeout` milliseconds (never, if `undefined`),
 * or when one of `sources` aborts, with that source's reason.
 *
 * Not `AbortSignal.any([…, AbortSignal.timeout()])`: on Node 20 the composed
 * signal holds its sources weakly, and an `AbortSignal.timeout()` nobody else
 * holds may be garbage collected before it fires — then the timeout never
 * comes. The timer here is ours and held until {@link Deadline.clear}.
 */
export function deadline(
  timeout: number | undefined,
  ...sources: (AbortSignal | undefined)[]
): Deadline {
  const controller = new AbortController();
  const cleanups: (() => void)[] = [];
  for (const source of sources) {
    if (source === undefined) continue;
    if (source.aborted) {
      controller.abort(source.reason);
      break;
    }
    const onAbort = (): void => controller.abort(source.reason);
    source.addEventListener("abort", onAbort, { once: true });
    cleanups.push(() => source.removeEventListener("abort", onAbort));
  }
  if (timeout !== undefined && !controller.signal.aborted) {
    // setTimeout() takes a delay past 2^31 - 1 ms as 1 ms: cap it.
    const timer = setTimeout(
      () => {
        controller.abort(
          new DOMException("The operation was aborted due to timeout", "TimeoutError"),
        );
      },
      Math.min(timeout, 2 ** 31 - 1),
    );
    cleanups.push(() => clearTimeout(timer));
  }
  // Once aborted, the timer and the other sources' listeners are of no more use.
  const clear = (): void => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  };
  controller.signal.addEventListener("abort", clear, { once: true });
  return { signal: controller.signal, clear };
}

/** After this long without a greeting, say what may be wrong (the wait goes on). */
export const GREETING_HINT_AFTER = 3000;

/**
 * Say on stderr, if connecting to `text` takes {@link GREETING_HINT_AFTER} ms,
 * that another client may hold the monitor: QEMU serves one client per
 * monitor socket and lets a second one wait, connected but not greeted.
 *
 * @returns a function that cancels the hint (call it once connected, or failed).
 */
export function greetingHint(io: CliIO, command: string, text: string): () => void {
  const timer = setTimeout(() => {
    writeLine(
      io.stderr,
      `qmp ${command}: no greeting from ${text} yet: another client may hold this monitor ` +
        "(QEMU serves one at a time); still waiting (Ctrl-C to give up)",
    );
  }, GREETING_HINT_AFTER);
  return () => clearTimeout(timer);
}

/** Whether `err` is the `TimeoutError` of a {@link deadline} (or an `AbortSignal.timeout()`). */
export function isTimeout(err: unknown): boolean {
  return err instanceof DOMException && err.name === "TimeoutError";
}

/** The message of an error, or its text. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Make sure a `--record` transcript can be appended to before connecting:
 * open it (created with mode 0600 if missing) and close it again. The
 * client opens it itself once the session has its first message.
 *
 * @throws the file system's error (`EACCES`, `EISDIR`, `ENOENT` for a missing directory, …).
 */
export function checkRecordFile(path: string): void {
  closeSync(openSync(path, "a", 0o600));
}

/** Write one line. */
export function writeLine(stream: NodeJS.WritableStream, text: string): void {
  stream.write(`${text}\n`);
}

/** The package's version, from its package.json. */
export function version(): string {
  const url = new URL("../../../package.json", import.meta.url);
  const pkg = JSON.parse(readFileSync(url, "utf8")) as { version?: unknown };
  return String(pkg.version);
}

/**
 * Why a connection attempt failed, in a user's words: the system error
 * behind it (`ENOENT`, `ECONNREFUSED`, …) explained, or "not a QMP monitor"
 * for a peer that does not greet like one. Falls back to the error's message.
 */
export function connectFailure(err: unknown): string {
  for (let e = err, depth = 0; e instanceof Error && depth < 6; e = e.cause, depth++) {
    if (e instanceof GreetingError || e instanceof DeserializationError) {
      return `not a QMP monitor (${e.message})`;
    }
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === undefined ? undefined : SYSTEM_ERRORS[code];
    if (why !== undefined) return `${why} (${code})`;
  }
  return describe(err);
}

const SYSTEM_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: "no such socket",
  ECONNREFUSED: "connection refused: nothing listens there, or it is not a socket",
  EACCES: "permission denied",
  EPERM: "permission denied",
  ENOTSOCK: "not a socket",
  ECONNRESET: "the connection was reset",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
};

/**
 * The message of an option-parsing error of `util.parseArgs`, shorter than
 * Node's own for an unknown option.
 */
export function optionError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const option = /'([^']+)'/.exec(e.message)?.[1];
    if (option !== undefined) return `unknown option '${option}'`;
  }
  return describe(err);
}

/** `value` as JSON text; a `bigint` (a guest agent's exact integer) as its digits. */
export function toJson(value: unknown, pretty: boolean): string {
  const mark = "\u0000";
  const text = JSON.stringify(
    value,
    (_key, v: unknown) => (typeof v === "bigint" ? `${mark}${v}${mark}` : v),
    pretty ? 2 : undefined,
  );
  return text.replace(/"\\u0000(-?\d+)\\u0000"/g, "$1");
}
