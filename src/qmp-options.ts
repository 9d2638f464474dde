// The options of QMPClient and its calls, and the checks of execute()'s arguments.

import type { EventFilter, EventListenerOptions, NamedEvent } from "./events.js";
import { checkFds } from "./fd-passing.js";
import type { Greeting, QMPEvent } from "./message.js";
import type { ProtocolOptions } from "./protocol-options.js";
import type { EventNames } from "./qapi/typing.js";
import { type CallOptions, checkCallOptions, typeName } from "./util.js";

/** Options of {@link QMPClient}. */
export interface QMPClientOptions extends ProtocolOptions {
  /**
   * Wait for QEMU's greeting before `RUNNING` (default true). `false` with
   * `negotiate: false` is guest-agent mode: nothing is read or sent first.
   */
  awaitGreeting?: boolean | undefined;
  /** Send `qmp_capabilities` before `RUNNING` (default true). */
  negotiate?: boolean | undefined;
  /** Options of the default listener {@link QMPClient.events}. */
  events?: Omit<EventListenerOptions, "names" | "filter"> | undefined;
  /**
   * Check every `execute()` and `executeMsg()` against the connected QEMU's
   * schema before sending (default false): `connect()` fetches
   * `query-qmp-schema` once per session; a call whose arguments do not fit
   * rejects with a `ValidationError` naming every bad path, and nothing is
   * sent. Deprecated commands and members are warned about once, through
   * the logger. (`raw()` is never checked.)
   */
  validate?: boolean | undefined;
}

/** Options of {@link QMPClient.execute}. */
export interface ExecuteOptions extends CallOptions {
  /** Send as `exec-oob` (out-of-band; needs the `oob` capability, negotiated when offered). */
  oob?: boolean | undefined;
  /**
   * File descriptors to pass with the command (SCM_RIGHTS, UNIX sockets
   * only): they go in one message on a single space byte right before the
   * command. QEMU keeps only the first fd of a message, so give QEMU one fd
   * per command (`getfd`, `add-fd`). The fds stay open on our side: close
   * them yourself once QEMU has them.
   */
  fds?: readonly number[] | undefined;
}

/** Options of {@link QMPClient.raw}. */
export interface RawOptions extends CallOptions {
  /** Give the message a fresh id when it has none (default true). */
  assignId?: boolean | undefined;
}

/**
 * Options of {@link QMPClient.executeAndWait}. On a typed client `N` is
 * the event's name and `E` its type.
 */
export interface ExecuteAndWaitOptions<
  N extends string = string,
  E extends NamedEvent = QMPEvent,
> extends ExecuteOptions {
  /** Name(s) of the event to wait for. */
  event: EventNames<N>;
  /** Which of those events is the one (e.g. the right `device`). */
  filter?: EventFilter<E> | undefined;
}

/** Options of {@link QMPClient.waitEvent}. */
export interface WaitEventOptions extends CallOptions {}

/**
 * How long `qmp_capabilities` may take on a TLS session with a QEMU before
 * 8.0 before we call it the known stall rather than wait for the caller's
 * timeout (a QEMU with the fix backported answers at once).
 */
export const TLS_STALL_TIMEOUT = 3000;

/** The options of a call that gives none: one shared object, not one per call. */
export const NO_OPTIONS: ExecuteOptions & RawOptions = Object.freeze({});

/**
 * QEMU before 8.0 stalls on a TLS monitor: commands go unanswered (QEMU 7.2
 * answers not even `qmp_capabilities`); a bug of its TLS channel, fixed in
 * QEMU 8.0. What to warn about, for the greeting of a TLS session.
 */
export function tlsStallWarning(greeting: Greeting): string | undefined {
  const { major, minor, micro } = greeting.QMP.version.qemu;
  if (major >= 8) return undefined;
  return (
    `QEMU ${major}.${minor}.${micro} over TLS: QEMU before 8.0 stalls on a TLS monitor and ` +
    "leaves commands unanswered (a QEMU bug, fixed in QEMU 8.0); use QEMU >= 8.0, or a UNIX socket"
  );
}

/** Whether `value` has no enumerable own or inherited keys (and is no array). */
export function isEmptyObject(value: object): boolean {
  for (const _ in value) return false;
  return !Array.isArray(value);
}

/**
 * Check `execute()`'s arguments; the options to use.
 *
 * @throws {TypeError} when `command` is not a non-empty string, `args` not
 *   an object, an option of the wrong type, or `fds` not a non-empty array
 *   of fd numbers; {RangeError} for a negative `timeout`.
 */
export function checkExecute(command: unknown, args: unknown, options: unknown): ExecuteOptions {
  if (typeof command !== "string" || command === "") {
    throw new TypeError(`The command must be a non-empty string, got ${typeName(command)}`);
  }
  if (args !== undefined && (typeof args !== "object" || args === null || Array.isArray(args))) {
    throw new TypeError(`The arguments must be an object, got ${typeName(args)}`);
  }
  if (options === undefined || options === NO_OPTIONS) return NO_OPTIONS;
  checkCallOptions(options);
  const { oob, fds } = options as ExecuteOptions;
  if (oob !== undefined && typeof oob !== "boolean") {
    throw new TypeError(`oob must be a boolean, got ${typeName(oob)}`);
  }
  if (fds !== undefined) checkFds(fds);
  return options;
}

/**
 * Check the options of a `QMPClient` (those beyond the engine's).
 *
 * @throws {TypeError} for an option of the wrong type.
 */
export function checkClientOptions(options: QMPClientOptions): void {
  for (const key of ["awaitGreeting", "negotiate", "validate"] as const) {
    const value = options[key];
    if (value !== undefined && typeof value !== "boolean") {
      throw new TypeError(`${key} must be a boolean, got ${typeName(value)}`);
    }
  }
}
