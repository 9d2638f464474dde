// Small shared helpers: deferred promises, deadlines, logging, redaction.

import { debuglog } from "node:util";

/** A promise with its resolve and reject functions outside. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

/** Make a {@link Deferred}. */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * The reason a timed-out call rejects with: a `DOMException` named
 * `TimeoutError`, as `AbortSignal.timeout()` gives, whose message names
 * what timed out and after how long.
 */
export function timeoutError(what: string, ms: number): DOMException {
  return new DOMException(`${what} timed out after ${ms} ms`, "TimeoutError");
}

/** The longest delay setTimeout() takes as it is. */
export const MAX_TIMER_DELAY = 2 ** 31 - 1;

/** Cancellation options taken by every asynchronous call. */
export interface CallOptions {
  /** Abort the wait; the call rejects with `signal.reason` as it is. */
  signal?: AbortSignal | undefined;
  /**
   * Milliseconds before the call rejects with a `TimeoutError`
   * `DOMException` (its message names the call); `Infinity` for none.
   */
  timeout?: number | undefined;
}

/**
 * Check the cancellation options of a call before it changes anything.
 *
 * @throws {TypeError} when `options` is not an object, `signal` not an
 *   `AbortSignal`, or `timeout` not a number.
 * @throws {RangeError} when `timeout` is negative or NaN.
 */
export function checkCallOptions(options: unknown): asserts options is CallOptions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${typeName(options)}`);
  }
  const { signal, timeout } = options as Record<string, unknown>;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`signal must be an AbortSignal, got ${typeName(signal)}`);
  }
  checkTimeout(timeout, "timeout");
}

/**
 * @throws {TypeError} when `value` is neither undefined nor a number.
 * @throws {RangeError} when it is negative or NaN.
 */
export function checkTimeout(value: unknown, name: string): asserts value is number | undefined {
  if (value === undefined) return;
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a number of milliseconds, got ${typeName(value)}`);
  }
  if (!(value >= 0)) {
    throw new RangeError(`${name} must be a number of milliseconds >= 0, got ${value}`);
  }
}

/** How a value is described in a `TypeError`. */
export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return `the string ${JSON.stringify(value.slice(0, 40))}`;
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") {
    return `${typeof value} ${String(value)}`;
  }
  return typeof value === "object" || typeof value === "function"
    ? `an ${typeof value}`
    : typeof value;
}

/**
 * One signal for a user signal, a timeout and any `more` signals. Call
 * `dispose()` when the operation is over, to clear the timer and the
 * listeners at once. The timer is our own (not `AbortSignal.timeout()`,
 * which Node 20 may collect while `AbortSignal.any()` still needs it).
 *
 * @param what names the operation in the `TimeoutError`'s message.
 * @throws {TypeError} {RangeError} as {@link checkCallOptions}.
 */
export function deadline(
  options: CallOptions,
  what: string,
  ...more: (AbortSignal | undefined)[]
): { signal: AbortSignal; dispose: () => void } {
  // Check before any listener is added, so that a throw leaves nothing behind.
  checkCallOptions(options);
  const timeout = options.timeout;
  if ((timeout === undefined || timeout === Infinity) && options.signal === undefined) {
    // Nothing to compose: one signal given is used as it is (connect() without a
    // timeout costs no controller and no listener beyond its own).
    const only = more.filter((s): s is AbortSignal => s !== undefined);
    if (only.length === 1) return { signal: only[0]!, dispose: noop };
  }
  const controller = new AbortController();
  const sources = [options.signal, ...more].filter((s): s is AbortSignal => s !== undefined);
  const listeners: (() => void)[] = [];
  let timer: NodeJS.Timeout | undefined;
  const dispose = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    sources.forEach((s, i) => {
      const l = listeners[i];
      if (l !== undefined) s.removeEventListener("abort", l);
    });
  };
  for (const s of sources) {
    if (s.aborted) {
      controller.abort(s.reason);
      break;
    }
    const onAbort = (): void => {
      dispose();
      controller.abort(s.reason);
    };
    listeners.push(onAbort);
    s.addEventListener("abort", onAbort, { once: true });
  }
  if (timeout !== undefined && timeout !== Infinity && !controller.signal.aborted) {
    // setTimeout() turns a delay past 2^31 - 1 ms (~24.8 days) into 1 ms: cap it instead.
    timer = setTimeout(
      () => {
        dispose();
        controller.abort(timeoutError(what, timeout));
      },
      Math.min(timeout, MAX_TIMER_DELAY),
    );
  }
  return { signal: controller.signal, dispose };
}

function noop(): void {}

/**
 * What the engine's waits need of a signal: an `AbortSignal`, or a lighter
 * object of the same shape (a connect attempt's, see `Attempt`).
 */
export interface Abortable {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/**
 * Wait for `promise`, or reject with the signal's reason when it aborts
 * (calling `onAbort` first). The abort listener is removed either way.
 */
export function raceSignal<T>(
  promise: Promise<T>,
  signal: Abortable | undefined,
  onAbort?: () => void,
): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    onAbort?.();
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => {
      onAbort?.();
      reject(signal.reason);
    };
    signal.addEventListener("abort", abort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", abort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", abort);
        reject(e);
      },
    );
  });
}

/**
 * Where log lines go: `console`, pino, winston or anything else with these
 * four methods.
 */
export interface Logger {
  debug(message: string, ...args: unknown[]): void;
  info(message: string, ...args: unknown[]): void;
  warn(message: string, ...args: unknown[]): void;
  error(message: string, ...args: unknown[]): void;
}

const nodeDebug = debuglog("qmp");

/** Whether `NODE_DEBUG=qmp` is set. */
export function debugEnabled(): boolean {
  return nodeDebug.enabled;
}

/** The default logger: everything to `util.debuglog('qmp')` (silent unless `NODE_DEBUG=qmp`). */
export const debugLogger: Logger = {
  debug: (m, ...a) => nodeDebug(m, ...a),
  info: (m, ...a) => nodeDebug(m, ...a),
  warn: (m, ...a) => nodeDebug(`WARNING: ${m}`, ...a),
  error: (m, ...a) => nodeDebug(`ERROR: ${m}`, ...a),
};

/** Placeholder that replaces secret values in traces. */
export const REDACTED = "<redacted>";

const SECRET_KEY = /passw(?:or)?d|passphrase|secret|token|(?:^|[-_])key$/i;
/** HMP command lines that carry a secret (sent through `human-monitor-command`). */
const SECRET_HMP =
  /^\s*(?:set_password|expire_password|object_add\s+(?:\S*,)?\s*secret|change\s+\S+\s+passw)|passw(?:or)?d|secret/i;

/**
 * A copy of a QMP message safe to log: values of arguments named like a
 * secret (`password`, `secret`, `key`, `token`…), the `data` of a `secret`
 * object (`object-add`), every argument of `set_password`, and an HMP
 * `command-line` that mentions a password or secret are replaced by
 * `"<redacted>"`. The message itself is not changed.
 */
export function redact(message: unknown): unknown {
  if (typeof message !== "object" || message === null) return message;
  const m = message as Record<string, unknown>;
  const command = m["execute"] ?? m["exec-oob"];
  const args = m["arguments"];
  if (typeof args === "object" && args !== null && !Array.isArray(args)) {
    let redactedArgs: unknown;
    if (command === "set_password" || command === "expire_password") {
      redactedArgs = Object.fromEntries(
        Object.entries(args).map(([k, v]) => [k, k === "protocol" ? v : REDACTED]),
      );
    } else if (command === "human-monitor-command") {
      const line = (args as Record<string, unknown>)["command-line"];
      redactedArgs =
        typeof line === "string" && SECRET_HMP.test(line)
          ? { ...args, "command-line": REDACTED }
          : redactDeep(args, false);
    } else {
      redactedArgs = redactDeep(args, command === "object-add" && isSecretObject(args));
    }
    return { ...m, arguments: redactedArgs };
  }
  return redactDeep(m, false);
}

function isSecretObject(args: object): boolean {
  const type = (args as Record<string, unknown>)["qom-type"];
  return typeof type === "string" && type.startsWith("secret");
}

function redactDeep(value: unknown, secretData: boolean): unknown {
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, false));
  if (typeof value !== "object" || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (SECRET_KEY.test(k) || (secretData && k === "data")) out[k] = REDACTED;
    // Before QEMU 6.0, object-add took the object's properties inside `props`.
    else out[k] = redactDeep(v, secretData && k === "props");
  }
  return out;
}

/** JSON for a trace line, cut to `limit` characters. */
export function traceText(message: unknown, limit = 2048): string {
  const text = JSON.stringify(redact(message));
  return text.length <= limit ? text : `${text.slice(0, limit)}… (${text.length} chars)`;
}
