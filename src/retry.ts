// Connect retry: back-off between attempts, which errors are worth retrying, and watching QEMU's process.

import { ChildProcess } from "node:child_process";
import type { Duplex } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { type ProcessExit, ProcessExitedError, describe } from "./errors.js";
import type { SocketAddress } from "./transport.js";
import { deadline, typeName } from "./util.js";

/**
 * Options of `connect(address, { retry })`: try again, with exponential
 * back-off, while the socket does not exist yet or refuses connections (QEMU
 * still starting). Any other failure ends it at once.
 */
export interface RetryOptions {
  /** Milliseconds to wait after the first failed attempt (default 50). */
  delay?: number | undefined;
  /**
   * Longest wait between attempts, in milliseconds (default 1000, or `delay`
   * when that is longer); each wait doubles until then.
   */
  maxDelay?: number | undefined;
  /**
   * How many attempts in all, the first included (default `Infinity`: until
   * the connect's `timeout` or `signal` ends it, or the watched process exits).
   */
  attempts?: number | undefined;
  /**
   * The QEMU process to watch, as a pid or a `ChildProcess`: once it has
   * exited, stop at once with a {@link ProcessExitedError} (exit status and,
   * for a `ChildProcess` whose stderr is a pipe, its last stderr lines). A
   * `ChildProcess` is noticed the moment it exits; a bare pid is checked
   * (`kill(pid, 0)`) before each attempt. While `connect()` runs, it reads
   * the child's stderr too (which puts that stream in flowing mode).
   */
  process?: number | ChildProcess | undefined;
  /**
   * Told of each failed attempt that will be tried again, before the wait:
   * the attempt's number (from 1), the wait in milliseconds and the error
   * (to show "retry #2 in 2 s"). What it throws is ignored.
   */
  onRetry?: ((retry: RetryInfo) => void) | undefined;
}

/** What {@link RetryOptions.onRetry} is told. */
export interface RetryInfo {
  /** The attempt that failed, from 1. */
  attempt: number;
  /** Milliseconds until the next attempt. */
  delay: number;
  /** Why it failed. */
  error: unknown;
}

/** {@link RetryOptions} with the defaults filled in and checked. */
export interface RetryPolicy {
  delay: number;
  maxDelay: number;
  attempts: number;
  process: number | ChildProcess | undefined;
  onRetry: ((retry: RetryInfo) => void) | undefined;
}

/**
 * Check `retry` and fill in the defaults.
 *
 * @throws {TypeError} for a stream address (nothing to connect again) or a
 *   `process` that is neither a positive integer pid nor a `ChildProcess`.
 * @throws {RangeError} for a negative `delay`/`maxDelay` or `attempts` below 1.
 */
export function retryPolicy(retry: true | RetryOptions, address?: SocketAddress): RetryPolicy {
  if (
    address !== undefined &&
    typeof address !== "string" &&
    !("path" in address || "port" in address)
  ) {
    throw new TypeError("The retry option needs an address to connect to, not a stream");
  }
  const options = retry === true ? {} : retry;
  const policy: RetryPolicy = {
    delay: options.delay ?? 50,
    maxDelay: options.maxDelay ?? Math.max(1000, options.delay ?? 0),
    attempts: options.attempts ?? Infinity,
    process: options.process,
    onRetry: options.onRetry,
  };
  if (policy.onRetry !== undefined && typeof policy.onRetry !== "function") {
    throw new TypeError(`retry.onRetry must be a function, got ${typeName(policy.onRetry)}`);
  }
  for (const key of ["delay", "maxDelay"] as const) {
    if (!(policy[key] >= 0) || policy[key] === Infinity) {
      throw new RangeError(`retry.${key} must be a number of milliseconds, got ${policy[key]}`);
    }
  }
  if (
    !(policy.attempts >= 1) ||
    (!Number.isInteger(policy.attempts) && policy.attempts !== Infinity)
  ) {
    throw new RangeError(`retry.attempts must be a whole number from 1, got ${policy.attempts}`);
  }
  const target = policy.process;
  if (
    target !== undefined &&
    !(target instanceof ChildProcess) &&
    !(typeof target === "number" && Number.isSafeInteger(target) && target > 0)
  ) {
    throw new TypeError("retry.process must be a pid (an integer above 0) or a ChildProcess");
  }
  return policy;
}

/**
 * Whether a transport error means "not there yet": the socket file does not
 * exist (`ENOENT`), nobody listens (`ECONNREFUSED`), or a UNIX socket's
 * backlog is full (`EAGAIN`). Anything else (`EACCES`, TLS errors, …) will
 * not go away by waiting.
 */
export function isRetryable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "ENOENT" || code === "ECONNREFUSED" || code === "EAGAIN";
}

/** Exponential back-off: `delay`, doubling up to `maxDelay`, each wait 0–10 % shorter (jitter). */
export class Backoff {
  readonly #policy: RetryPolicy;
  #next: number;

  constructor(policy: RetryPolicy) {
    this.#policy = policy;
    this.#next = Math.min(policy.delay, policy.maxDelay);
  }

  /** The wait before the next attempt, in whole milliseconds. */
  next(): number {
    const base = this.#next;
    this.#next = Math.min(base * 2, this.#policy.maxDelay);
    // The jitter only shortens, so maxDelay stays a true bound.
    return Math.round(base * (1 - 0.1 * Math.random()));
  }
}

/**
 * Resolve after `ms`, or reject with the signal's reason as soon as it
 * aborts. Either way no timer or listener is left behind.
 */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    // setTimeout() takes a delay past 2^31 - 1 ms as 1 ms: cap it.
    const timer = setTimeout(
      () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      },
      Math.min(ms, 2 ** 31 - 1),
    );
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** How many stderr lines a {@link ProcessExitedError} keeps. */
const STDERR_LINES = 20;
/** How much stderr text is kept while reading (the tail of it). */
const STDERR_KEEP = 64 * 1024;
/** How long to wait, after the exit, for the rest of stderr to be read. */
const STDERR_GRACE = 250;

/** Why a watch's signal aborted: the process is gone. Never seen outside this file. */
const EXITED = Symbol("exited");

/**
 * Watches a QEMU process while connect() retries: `signal` aborts once it is
 * known to have exited (with its stderr read to the end, bounded).
 */
class ProcessWatch {
  readonly #controller = new AbortController();
  /** Aborts when the process has exited; `exit` is set by then. */
  readonly signal = this.#controller.signal;
  /** How it ended, once known. */
  exit: ProcessExit | undefined;
  readonly #pid: number | undefined;
  readonly #cleanup: (() => void)[] = [];
  #tail = "";

  constructor(target: number | ChildProcess) {
    if (typeof target === "number") {
      this.#pid = target;
      return;
    }
    const child = target;
    // A failed spawn() leaves no pid; its 'error' comes later, but it is over already.
    if (child.pid === undefined) {
      this.#finish({ exitCode: child.exitCode, signal: child.signalCode });
      return;
    }
    const stderr = child.stderr;
    let stderrDone: Promise<void> | undefined;
    if (stderr !== null && !stderr.readableEnded && !stderr.destroyed) {
      const decoder = new StringDecoder("utf8");
      const onData = (chunk: Buffer | string): void =>
        this.#collect(typeof chunk === "string" ? chunk : decoder.write(chunk));
      stderr.on("data", onData);
      this.#cleanup.push(() => stderr.off("data", onData));
      stderrDone = new Promise<void>((resolve) => {
        const done = (): void => {
          stderr.off("end", done);
          stderr.off("close", done);
          stderr.off("error", done);
          this.#collect(decoder.end());
          resolve();
        };
        stderr.once("end", done);
        stderr.once("close", done);
        stderr.once("error", done);
        this.#cleanup.push(done);
      });
    }
    const onExit = (exitCode: number | null, signal: NodeJS.Signals | null): void => {
      const info = { pid: child.pid, exitCode, signal };
      if (stderrDone === undefined) {
        this.#finish(info);
        return;
      }
      // 'exit' may come before the last stderr bytes are read: wait for its
      // end, but not long (a process QEMU started may hold the pipe open).
      const timer = setTimeout(() => this.#finish(info), STDERR_GRACE);
      this.#cleanup.push(() => clearTimeout(timer));
      void stderrDone.then(() => {
        clearTimeout(timer);
        this.#finish(info);
      });
    };
    if (child.exitCode !== null || child.signalCode !== null) {
      onExit(child.exitCode, child.signalCode);
    } else {
      child.once("exit", onExit);
      this.#cleanup.push(() => child.off("exit", onExit));
    }
  }

  /** For a bare pid: find out whether it still exists (`kill(pid, 0)`). */
  poll(): void {
    if (this.#pid === undefined || this.exit !== undefined) return;
    try {
      process.kill(this.#pid, 0);
    } catch (err) {
      // EPERM: it exists, as someone else's process.
      if ((err as { code?: unknown }).code === "ESRCH") {
        this.#finish({ pid: this.#pid, exitCode: null, signal: null });
      }
    }
  }

  /** The error to report, with the last connect error as its cause. */
  error(lastError: unknown): ProcessExitedError {
    return new ProcessExitedError(
      this.exit!,
      lastError !== undefined ? { cause: lastError } : undefined,
    );
  }

  /** Stop watching: remove every listener and timer. */
  dispose(): void {
    for (const undo of this.#cleanup.splice(0)) undo();
  }

  #collect(text: string): void {
    this.#tail += text;
    if (this.#tail.length > STDERR_KEEP) this.#tail = this.#tail.slice(-STDERR_KEEP);
  }

  #finish(info: ProcessExit): void {
    if (this.exit !== undefined) return;
    const lines = this.#tail.split(/\r?\n/);
    while (lines.length > 0 && lines.at(-1)!.trim() === "") lines.pop();
    const stderr = lines.length > 0 ? lines.slice(-STDERR_LINES).join("\n") : undefined;
    this.exit = { ...info, stderr };
    this.dispose();
    this.#controller.abort(EXITED);
  }
}

/**
 * Open a stream with `open`, trying again after a back-off while the error
 * is {@link isRetryable}. Each attempt and each wait is cut short when
 * `signal` aborts or the watched process exits.
 *
 * @throws the signal's reason on abort; a {@link ProcessExitedError} once the
 *   watched process has exited; else the last attempt's error.
 */
export async function openWithRetry(
  policy: RetryPolicy,
  signal: AbortSignal,
  open: (signal: AbortSignal) => Promise<Duplex>,
  log: (message: string) => void,
): Promise<Duplex> {
  const watch = policy.process !== undefined ? new ProcessWatch(policy.process) : undefined;
  const { signal: either, dispose } = deadline({ signal }, "connect()", watch?.signal);
  const backoff = new Backoff(policy);
  let lastError: unknown;
  try {
    for (let attempt = 1; ; attempt++) {
      signal.throwIfAborted();
      watch?.poll();
      if (watch?.exit !== undefined) throw watch.error(lastError);
      try {
        return await open(either);
      } catch (err) {
        signal.throwIfAborted();
        watch?.poll();
        if (watch?.exit !== undefined) throw watch.error(either.aborted ? lastError : err);
        lastError = err;
        if (!isRetryable(err) || attempt >= policy.attempts) throw err;
      }
      const wait = backoff.next();
      log(`Connect attempt ${attempt} failed (${describe(lastError)}); retrying in ${wait} ms`);
      try {
        policy.onRetry?.({ attempt, delay: wait, error: lastError });
      } catch {
        // A listener's failure must not end the retries.
      }
      // An abort or an exit ends the wait early; the top of the loop says which.
      await sleep(wait, either).catch(() => {});
    }
  } finally {
    dispose();
    watch?.dispose();
  }
}
