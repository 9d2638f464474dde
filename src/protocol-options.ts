// The options of the engine and of its connect/accept calls, and the checks they pass before anything changes.

import type { RetryOptions } from "./retry.js";
import type { Runstate } from "./runstate.js";
import type { ListenOptions } from "./listener.js";
import type { TlsConnectOptions } from "./transport.js";
import { type TranscriptEntry, checkRecordOption } from "./transcript.js";
import { type CallOptions, checkTimeout, typeName } from "./util.js";
import type { Logger } from "./util.js";

/** Options of the engine, shared by every client class. */
export interface ProtocolOptions {
  /** Name used in log lines, `inspect()` and diagnostics; default none. */
  name?: string | undefined;
  /** Where log lines go; default `util.debuglog('qmp')` (`NODE_DEBUG=qmp`). */
  logger?: Logger | undefined;
  /**
   * Trace every message in and out (`--> …`, `<-- …`, secrets redacted) at
   * debug level. Default: on when `NODE_DEBUG=qmp` is set.
   */
  trace?: boolean | undefined;
  /** Largest inbound message in bytes (default 10 MiB; `Infinity` for no limit). */
  maxMessageSize?: number | undefined;
  /**
   * Milliseconds `disconnect()` may spend writing out queued messages and
   * closing before it cuts the connection (default 5000; `Infinity` for no
   * limit). One deadline for the whole graceful teardown.
   */
  disconnectTimeout?: number | undefined;
  /**
   * Default timeout in milliseconds of every call that gives none:
   * `connect`, `accept`, `startServer`, and the client's calls (`execute`,
   * `raw`, `waitEvent`, …). Default: none.
   */
  timeout?: number | undefined;
  /**
   * Most messages queued for the socket and not yet taken by it (default
   * 65 536). Past it, a call is refused with a `QueueFullError` before
   * anything is sent. Queued messages stay objects until written, so the
   * bytes in memory are bounded by the socket's buffer, not by this.
   */
  maxQueuedMessages?: number | undefined;
  /**
   * Record a transcript of every session: each message sent and received,
   * secrets redacted (see `redact()`), as a {@link TranscriptEntry}. A
   * string is a file that each entry is appended to as a line of JSON
   * (created with mode 0600; opened when a session has its first message,
   * closed when the session ends); a function is given each entry. `t`
   * counts from the moment each session's connection came up. Recording
   * never breaks the client: a failure (the file cannot be written, the
   * function throws) is logged once as a warning and recording stops until
   * the next session. Replay one with `ReplayServer` (`qmp/testing`).
   * Default: none.
   */
  record?: string | ((entry: TranscriptEntry) => void) | undefined;
}

/** Options of `connect()`. */
export interface ConnectOptions extends CallOptions {
  /**
   * Speak TLS (TCP `{ host, port }` only): `true`, or Node's
   * `tls.ConnectionOptions` (`ca`, `cert`/`key`, `servername`, …). The server
   * is verified (CA, host name) unless `rejectUnauthorized: false`.
   */
  tls?: TlsConnectOptions | undefined;
  /**
   * Try again, with back-off, while the socket does not exist yet or refuses
   * connections (QEMU still starting): `true` for the defaults, or
   * {@link RetryOptions} (`delay`, `maxDelay`, `attempts`, and the QEMU
   * `process` to watch). Bounded by `timeout` and `signal`; the runstate
   * stays `CONNECTING` throughout. Other failures end it at once.
   */
  retry?: true | RetryOptions | undefined;
}

/** Options of `accept()`. */
export interface AcceptOptions extends CallOptions {}

/** Options of `startServer()` and `startServerAndAccept()`. */
export interface StartServerOptions extends CallOptions, ListenOptions {}

/** The lifecycle events of a client. */
export interface ProtocolEvents {
  /** The runstate changed from `previous` to `state`. */
  runstate: [state: Runstate, previous: Runstate];
}

/** Default of {@link ProtocolOptions.maxQueuedMessages}. */
export const DEFAULT_MAX_QUEUED_MESSAGES = 65_536;

/**
 * @throws {TypeError} unless `address` is a non-empty path, `{ path }`,
 *   `{ host, port }` with a port from 0 to 65535, or a stream.
 */
export function checkAddress(address: unknown): void {
  if (typeof address === "string") {
    if (address === "") throw new TypeError("The address is an empty path");
    return;
  }
  if (typeof address === "object" && address !== null) {
    const a = address as Record<string, unknown>;
    if (typeof a["path"] === "string" && a["path"] !== "") return;
    if (typeof a["host"] === "string" && "port" in a) {
      const port = a["port"];
      if (typeof port === "number" && Number.isInteger(port) && port >= 0 && port <= 65535) return;
      throw new TypeError(`The port must be an integer from 0 to 65535, got ${typeName(port)}`);
    }
    if (typeof a["pipe"] === "function" && typeof a["write"] === "function") return;
  }
  throw new TypeError(
    `The address must be a UNIX socket path, { path }, { host, port } or a stream, got ${typeName(address)}`,
  );
}

/** @throws {TypeError} {RangeError} for options of the wrong type or range. */
export function checkProtocolOptions(options: ProtocolOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${typeName(options)}`);
  }
  if (options.name !== undefined && typeof options.name !== "string") {
    throw new TypeError(`name must be a string, got ${typeName(options.name)}`);
  }
  checkRecordOption(options.record);
  checkTimeout(options.timeout, "timeout");
  checkTimeout(options.disconnectTimeout, "disconnectTimeout");
  const size = options.maxMessageSize;
  checkTimeout(size, "maxMessageSize");
  if (size !== undefined && size < 1) throw new RangeError("maxMessageSize must be at least 1");
  const queued = options.maxQueuedMessages;
  if (queued !== undefined && !(Number.isInteger(queued) && queued >= 1)) {
    throw new RangeError(`maxQueuedMessages must be a whole number from 1, got ${queued}`);
  }
}
