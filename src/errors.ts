// The error tree: every error this package throws on its own account descends from QMPError.

import type { Runstate } from "./runstate.js";

/** Every `code` a {@link QMPError} can carry. */
export type QMPErrorCode =
  | "QMP_ERR_GENERIC"
  | ConnectError["code"]
  | StateError["code"]
  | ProtocolErrorCode
  | ExecuteError["code"]
  | ExecInterruptedError["code"]
  | SessionEndedError["code"]
  | ListenerError["code"]
  | MessageTooLargeError["code"]
  | DuplicateIdError["code"]
  | FdPassingError["code"]
  | ProcessExitedError["code"]
  | TransportErrorCode
  | QueueFullError["code"]
  | ConnectCancelledError["code"]
  | ValidationError["code"]
  | TranscriptError["code"]
  | TranscriptMismatchError["code"]
  | JobError["code"]
  | MigrationError["code"];

/** Codes of {@link TransportError} and its subclasses. */
export type TransportErrorCode = "QMP_ERR_TRANSPORT" | "QMP_ERR_ADDRESS_IN_USE";

/** Codes of {@link ProtocolError} and its subclasses. */
export type ProtocolErrorCode =
  | "QMP_ERR_PROTOCOL"
  | "QMP_ERR_DESERIALIZATION"
  | "QMP_ERR_UNEXPECTED_TYPE"
  | "QMP_ERR_SERVER_PARSE"
  | "QMP_ERR_BAD_REPLY"
  | "QMP_ERR_GREETING"
  | "QMP_ERR_NEGOTIATION";

/**
 * Root of every error raised by this package (except `TypeError` for
 * arguments of the wrong type, and the `AbortSignal` reasons, which are passed
 * through unchanged).
 *
 * Branch on `instanceof` or on `code`, never on `message`.
 */
export class QMPError extends Error {
  override readonly name: string = "QMPError";
  /** A stable, machine-readable identifier of the error class. */
  readonly code: QMPErrorCode = "QMP_ERR_GENERIC";

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * A connection or session could not be established by `connect()`,
 * `startServer()` or `accept()`.
 *
 * The message starts with "Failed to establish connection" when the transport
 * failed (socket, bind, accept), or "Failed to establish session" when the
 * greeting or negotiation failed. `cause` holds the root error.
 */
export class ConnectError extends QMPError {
  override readonly name: string = "ConnectError";
  override readonly code: "QMP_ERR_CONNECT" | "QMP_ERR_SYNC" = "QMP_ERR_CONNECT";
  /** The phase message without the cause appended. */
  readonly errorMessage: string;

  constructor(errorMessage: string, cause: unknown) {
    super(`${errorMessage}: ${describe(cause)}`, { cause });
    this.errorMessage = errorMessage;
  }
}

/**
 * `QGAClient.connect()`: the guest agent did not answer the resync
 * (`guest-sync-delimited` after the byte 0xFF) with our id, or not in time
 * (`cause`: the `TimeoutError`). A {@link ConnectError}, "Failed to
 * establish session".
 */
export class SyncError extends ConnectError {
  override readonly name: string = "SyncError";
  override readonly code = "QMP_ERR_SYNC" as const;
}

/** A method was called in a runstate that does not allow it. */
export class StateError extends QMPError {
  override readonly name: string = "StateError";
  override readonly code = "QMP_ERR_STATE" as const;

  constructor(
    message: string,
    /** The runstate the client was in. */
    readonly state: Runstate,
    /** The runstate the method needs. */
    readonly required: Runstate,
  ) {
    super(message);
  }
}

/** The peer broke the protocol. Fatal to the session unless stated otherwise. */
export class ProtocolError extends QMPError {
  override readonly name: string = "ProtocolError";
  override readonly code: ProtocolErrorCode = "QMP_ERR_PROTOCOL";
}

/** Inbound bytes were not valid JSON (or the stream ended inside a message). */
export class DeserializationError extends ProtocolError {
  override readonly name: string = "DeserializationError";
  override readonly code = "QMP_ERR_DESERIALIZATION" as const;

  constructor(
    message: string,
    /** The offending text, cut to at most 1 KiB. */
    readonly raw: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Inbound JSON was valid but not an object. */
export class UnexpectedTypeError extends ProtocolError {
  override readonly name: string = "UnexpectedTypeError";
  override readonly code = "QMP_ERR_UNEXPECTED_TYPE" as const;

  constructor(
    message: string,
    /** The value received. */
    readonly value: unknown,
  ) {
    super(message);
  }
}

/**
 * QEMU answered with an `error` that carries no `id` while no id-less command
 * was pending: it could not parse something we sent. Fatal.
 */
export class ServerParseError extends ProtocolError {
  override readonly name: string = "ServerParseError";
  override readonly code = "QMP_ERR_SERVER_PARSE" as const;

  constructor(
    message: string,
    /** The error message as received. */
    readonly received: object,
  ) {
    super(message);
  }
}

/**
 * A reply matched a pending command but is malformed: neither `return` nor
 * `error`, or an `error` without string `class` and `desc`. Only the command
 * it answers fails; the session goes on.
 */
export class BadReplyError extends ProtocolError {
  override readonly name: string = "BadReplyError";
  override readonly code = "QMP_ERR_BAD_REPLY" as const;

  constructor(
    message: string,
    /** The command as sent (with its id). */
    readonly sent: object,
    /** The reply as received. */
    readonly received: object,
  ) {
    super(message);
  }
}

/** The greeting was missing or malformed (cause of a {@link ConnectError}). */
export class GreetingError extends ProtocolError {
  override readonly name: string = "GreetingError";
  override readonly code = "QMP_ERR_GREETING" as const;

  constructor(
    message: string,
    /** The message received instead of a well-formed greeting, if any. */
    readonly received?: object,
  ) {
    super(message);
  }
}

/** `qmp_capabilities` failed (cause of a {@link ConnectError}). */
export class NegotiationError extends ProtocolError {
  override readonly name: string = "NegotiationError";
  override readonly code = "QMP_ERR_NEGOTIATION" as const;

  constructor(
    message: string,
    /** The reply to `qmp_capabilities`. */
    readonly received: object,
  ) {
    super(message);
  }
}

/**
 * QEMU answered a command with an error reply. `message` equals `desc`.
 * This is an answer, not a failure of the session: the client stays usable.
 */
export class ExecuteError extends QMPError {
  override readonly name: string = "ExecuteError";
  override readonly code = "QMP_ERR_EXECUTE" as const;
  /** QEMU's error class, e.g. `GenericError`, `CommandNotFound`. */
  readonly errorClass: string;
  /** QEMU's human-readable description. */
  readonly desc: string;

  constructor(
    /** The command as sent (with its id). */
    readonly sent: object,
    /** The whole error reply. */
    readonly received: { error: { class: string; desc: string } },
  ) {
    super(received.error.desc);
    this.errorClass = received.error.class;
    this.desc = received.error.desc;
  }
}

/**
 * The session ended while a command waited for its reply. The command may or
 * may not have run. `cause` is the error that ended the session, if any.
 */
export class ExecInterruptedError extends QMPError {
  override readonly name: string = "ExecInterruptedError";
  override readonly code = "QMP_ERR_EXEC_INTERRUPTED" as const;
}

/** The session ended while waiting for an event (`EventListener.get`, `waitEvent`). */
export class SessionEndedError extends QMPError {
  override readonly name: string = "SessionEndedError";
  override readonly code = "QMP_ERR_SESSION_ENDED" as const;
}

/** Misuse of event listeners, or an `overflow: "error"` listener that overflowed. */
export class ListenerError extends QMPError {
  override readonly name: string = "ListenerError";
  override readonly code = "QMP_ERR_LISTENER" as const;
}

/**
 * A reply exceeded `maxMessageSize`. It was skipped without being buffered;
 * only the command it answers fails and the session goes on.
 */
export class MessageTooLargeError extends QMPError {
  override readonly name: string = "MessageTooLargeError";
  override readonly code = "QMP_ERR_MESSAGE_TOO_LARGE" as const;

  constructor(
    /** Size of the message in bytes. */
    readonly size: number,
    /** The `maxMessageSize` in force. */
    readonly limit: number,
  ) {
    super(
      `Reply of ${size} bytes exceeds maxMessageSize (${limit} bytes); ` +
        `it was skipped. Raise the client's maxMessageSize option to receive it.`,
    );
  }
}

/** A caller-chosen command id is already in use by a pending command. */
export class DuplicateIdError extends QMPError {
  override readonly name: string = "DuplicateIdError";
  override readonly code = "QMP_ERR_DUPLICATE_ID" as const;
}

/**
 * File descriptors could not be passed (`sendFdScm()`, `execute(…, { fds })`):
 * the session does not run over a UNIX socket, the platform is not supported,
 * the optional native module `koffi` is missing, or the kernel refused the fds
 * (`cause` then holds the system error). Nothing was sent for that call; the
 * session goes on.
 */
export class FdPassingError extends QMPError {
  override readonly name: string = "FdPassingError";
  override readonly code = "QMP_ERR_FD_PASSING" as const;
}

/**
 * A transport could not be used: a stream handed to `connect()` that is
 * already destroyed, a listener closed before its peer came, and the like.
 * System errors of the socket itself (`ECONNREFUSED`, `ENOENT`, …) are not
 * wrapped in this: they are the `cause` of the {@link ConnectError}.
 */
export class TransportError extends QMPError {
  override readonly name: string = "TransportError";
  override readonly code: TransportErrorCode = "QMP_ERR_TRANSPORT";
}

/**
 * `startServer()` cannot listen where it was told: a live listener owns the
 * UNIX socket path or the TCP port, or a file that is not a socket is in the
 * way (it is never deleted). The cause of a {@link ConnectError}.
 */
export class AddressInUseError extends TransportError {
  override readonly name: string = "AddressInUseError";
  override readonly code = "QMP_ERR_ADDRESS_IN_USE" as const;

  constructor(
    message: string,
    /** The path or `host:port` that is in use. */
    readonly address: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * The outbound queue holds `maxQueuedMessages` messages that the socket has
 * not taken yet (the peer reads slower than we send): this call was refused
 * before anything was queued or sent. The session goes on; try again once
 * earlier calls have completed.
 */
export class QueueFullError extends QMPError {
  override readonly name: string = "QueueFullError";
  override readonly code = "QMP_ERR_QUEUE_FULL" as const;
}

/**
 * `disconnect()` or `destroy()` was called while `connect()`, `accept()` or
 * `startServer()` was still in progress: the cause of the
 * {@link ConnectError} that attempt rejects with.
 */
export class ConnectCancelledError extends QMPError {
  override readonly name: string = "ConnectCancelledError";
  override readonly code = "QMP_ERR_CONNECT_CANCELLED" as const;
}

/** One thing wrong with a call's arguments, as {@link ValidationError} lists them. */
export interface ValidationProblem {
  /** Where, from the arguments' top: `actions[0].data.name` (`""`: the call itself). */
  path: string;
  /** What is wrong there: `expected string, got number`, `missing`, `unknown member`, … */
  message: string;
}

/**
 * With `validate: true`, a call's arguments do not fit the connected QEMU's
 * schema (or QEMU has no such command): nothing was sent. The message names
 * every bad path, e.g. `Invalid arguments for 'transaction':
 * actions[0].data.name: expected string, got number`.
 */
export class ValidationError extends QMPError {
  override readonly name: string = "ValidationError";
  override readonly code = "QMP_ERR_VALIDATION" as const;
  /** The command. */
  readonly command: string;
  /** Every problem found (at most 50). */
  readonly problems: readonly ValidationProblem[];

  constructor(command: string, problems: readonly ValidationProblem[]) {
    const list = problems.map((p) => (p.path === "" ? p.message : `${p.path}: ${p.message}`));
    const unknown = problems.length === 1 && problems[0]!.path === "";
    super(unknown ? list[0]! : `Invalid arguments for '${command}': ${list.join("; ")}`);
    this.command = command;
    this.problems = problems;
  }
}

/** How a watched process ended, as {@link ProcessExitedError} reports it. */
export interface ProcessExit {
  /** The process id, when known. */
  pid?: number | undefined;
  /** Its exit code; `null` when it was killed by a signal, or unknown (a bare pid). */
  exitCode: number | null;
  /** The signal that killed it; `null` when it exited by itself, or unknown (a bare pid). */
  signal: NodeJS.Signals | null;
  /** Its last lines on stderr (about 20), when they could be read. */
  stderr?: string | undefined;
}

/**
 * The process watched by `connect(…, { retry: { process } })` (QEMU, usually)
 * exited, or could not be started, before a connection was made: retrying is
 * pointless. The cause of a `ConnectError`; its own `cause` is the last
 * connect error, if any (or the spawn error). The message holds the exit
 * status and the last stderr lines, which usually say what was wrong.
 */
export class ProcessExitedError extends QMPError {
  override readonly name: string = "ProcessExitedError";
  override readonly code = "QMP_ERR_PROCESS_EXITED" as const;
  /** The process id, when known. */
  readonly pid: number | undefined;
  /** Its exit code; `null` when killed by a signal, or unknown (only a pid was watched). */
  readonly exitCode: number | null;
  /** The signal that killed it; `null` when it exited by itself, or unknown. */
  readonly signal: NodeJS.Signals | null;
  /**
   * Its last lines on stderr (about 20), when its stderr was a pipe we could
   * read (a `ChildProcess` spawned with `stdio` `"pipe"` for stderr); else `undefined`.
   */
  readonly stderr: string | undefined;

  constructor(exit: ProcessExit, options?: ErrorOptions) {
    const who = exit.pid !== undefined ? `The process ${exit.pid}` : "The process";
    const how =
      exit.exitCode !== null
        ? `exited with code ${exit.exitCode} before a connection was made`
        : exit.signal !== null
          ? `was killed by ${exit.signal} before a connection was made`
          : exit.pid !== undefined
            ? "exited before a connection was made"
            : "could not be started";
    const stderr =
      exit.stderr !== undefined && exit.stderr !== "" ? `; stderr:\n${exit.stderr}` : "";
    super(`${who} ${how}${stderr}`, options);
    this.pid = exit.pid;
    this.exitCode = exit.exitCode;
    this.signal = exit.signal;
    this.stderr = exit.stderr;
  }
}

/**
 * A transcript (JSON lines of `{"dir", "t", "msg"}` entries, see
 * `parseTranscript`) is malformed: a line that is not JSON, or an entry of
 * the wrong shape. The message names the line (or, for entries given as an
 * array, the entry's index).
 */
export class TranscriptError extends QMPError {
  override readonly name: string = "TranscriptError";
  override readonly code = "QMP_ERR_TRANSCRIPT" as const;
  /** The 1-based line of the bad entry; `undefined` for entries given as an array. */
  readonly line: number | undefined;
  /** The 0-based index of the bad entry among the entries (blank lines not counted). */
  readonly index: number;

  constructor(message: string, index: number, line: number | undefined, options?: ErrorOptions) {
    super(message, options);
    this.index = index;
    this.line = line;
  }
}

/**
 * Replaying a transcript (`ReplayServer` of `qmp/testing`), the client did
 * not do what the transcript says: it sent a different message
 * (`expected` and `actual` both set), a message after the transcript's end
 * (`expected` undefined), or nothing where a message was due, because the
 * connection or the server was closed first (`actual` undefined: the
 * transcript was not finished).
 */
export class TranscriptMismatchError extends QMPError {
  override readonly name: string = "TranscriptMismatchError";
  override readonly code = "QMP_ERR_TRANSCRIPT_MISMATCH" as const;
  /** The 0-based index of the entry that was due (the entries' length past the end). */
  readonly index: number;
  /** Its 1-based line in the transcript file; `undefined` for entries given as an array, or past the end. */
  readonly line: number | undefined;
  /** The recorded message that was due; `undefined` past the end of the transcript. */
  readonly expected: Record<string, unknown> | undefined;
  /** What the client sent; `undefined` when nothing came (the transcript was not finished). */
  readonly actual: Record<string, unknown> | undefined;

  constructor(
    message: string,
    where: { index: number; line: number | undefined },
    expected: Record<string, unknown> | undefined,
    actual: Record<string, unknown> | undefined,
  ) {
    super(message);
    this.index = where.index;
    this.line = where.line;
    this.expected = expected;
    this.actual = actual;
  }
}

/** One-line description of any thrown value, for messages and logs. */
export function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const prefix = typeof code === "string" && !err.message.includes(code) ? `[${code}] ` : "";
    return `${err.name}: ${prefix}${err.message}`;
  }
  return String(err);
}

/** An Error for any thrown value: the value itself when it is one. */
export function toError(value: unknown): Error {
  return value instanceof Error ? value : new QMPError(`Non-error thrown: ${String(value)}`);
}

/** What {@link JobError} tells of the job. */
export interface FailedJob {
  /** The job's id. */
  id: string;
  /** Its type (`backup`, `mirror`, …). */
  type: string;
  /** QEMU's error text. */
  error: string;
}

/**
 * A job started by `runJob()` failed: `desc` is QEMU's error text (read
 * before the job was dismissed, when QEMU forgets it).
 */
export class JobError extends QMPError {
  override readonly name: string = "JobError";
  override readonly code = "QMP_ERR_JOB" as const;
  /** The command that started the job. */
  readonly command: string;
  /** The job's id. */
  readonly jobId: string;
  /** The job's type. */
  readonly jobType: string;
  /** QEMU's error text. */
  readonly desc: string;

  constructor(command: string, job: FailedJob, options?: ErrorOptions) {
    super(`The ${job.type} job ${job.id} (${command}) failed: ${job.error}`, options);
    this.command = command;
    this.jobId = job.id;
    this.jobType = job.type;
    this.desc = job.error;
  }
}

/**
 * A migration run by `migrate()` failed, or was cancelled by someone else:
 * `desc` is QEMU's error description (`error-desc` of `query-migrate`).
 */
export class MigrationError extends QMPError {
  override readonly name: string = "MigrationError";
  override readonly code = "QMP_ERR_MIGRATION" as const;
  /** How it ended: `failed` or `cancelled`. */
  readonly status: string;
  /** QEMU's description of what went wrong. */
  readonly desc: string;

  constructor(status: string, desc: string, options?: ErrorOptions) {
    super(`The migration ${status === "failed" ? "failed" : "was cancelled"}: ${desc}`, options);
    this.status = status;
    this.desc = desc;
  }
}
