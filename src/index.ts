// The package's public surface: explicit named exports only.

export {
  QMPClient,
  type QMPClientOptions,
  type ExecuteOptions,
  type RawOptions,
  type ExecuteAndWaitOptions,
  type WaitEventOptions,
} from "./qmp-client.js";
export {
  QGAClient,
  parseWithBigInts,
  type QGAClientOptions,
  type QGAExecuteOptions,
  type GuestExecOptions,
  type GuestExecResult,
} from "./qga-client.js";
export { Protocol } from "./protocol.js";
export {
  DEFAULT_MAX_QUEUED_MESSAGES,
  type ProtocolOptions,
  type ProtocolEvents,
  type ConnectOptions,
  type AcceptOptions,
  type StartServerOptions,
} from "./protocol-options.js";
export { Runstate } from "./runstate.js";
export {
  EventListener,
  DEFAULT_MAX_PENDING,
  type EventListenerOptions,
  type EventFilter,
  type NamedEvent,
  type OverflowPolicy,
} from "./events.js";
// Typed clients: QMPClient<QAPI> with QAPI from "qmp/qapi" (or `qmp codegen`).
export type {
  QAPIShape,
  Untyped,
  NoArguments,
  CommandName,
  CommandArgs,
  CommandArgsParam,
  CommandParams,
  CommandReturn,
  CommandResult,
  EventName,
  EventNames,
  EventOf,
  AnyEvent,
} from "./qapi/typing.js";
export type { CommandInfo, MemberInfo } from "./qapi/live.js";
export {
  QMPError,
  ConnectError,
  StateError,
  ProtocolError,
  DeserializationError,
  UnexpectedTypeError,
  ServerParseError,
  BadReplyError,
  GreetingError,
  NegotiationError,
  ExecuteError,
  ExecInterruptedError,
  SessionEndedError,
  ListenerError,
  MessageTooLargeError,
  DuplicateIdError,
  FdPassingError,
  ProcessExitedError,
  TransportError,
  AddressInUseError,
  QueueFullError,
  ConnectCancelledError,
  ValidationError,
  SyncError,
  TranscriptError,
  TranscriptMismatchError,
  JobError,
  MigrationError,
  type FailedJob,
  type ValidationProblem,
  type ProcessExit,
  type TransportErrorCode,
  type QMPErrorCode,
  type ProtocolErrorCode,
} from "./errors.js";
export {
  parseAddress,
  type SocketAddress,
  type InetAddress,
  type UnixAddress,
  type TlsConnectOptions,
} from "./transport.js";
export { type ListenOptions } from "./listener.js";
// The scanner itself is in the subpath "qmp/framing": a tool, not part of the client's API.
export { DEFAULT_MAX_MESSAGE_SIZE } from "./framing.js";
export type {
  JsonValue,
  JsonObject,
  Greeting,
  QemuVersion,
  CommandMessage,
  ReturnMessage,
  ErrorMessage,
  ReplyMessage,
  QMPEvent,
} from "./message.js";
export { redact, REDACTED, type Logger, type CallOptions } from "./util.js";
// Session transcripts: the `record` option writes them, `ReplayServer` (qmp/testing) plays them.
export { parseTranscript, readTranscript, type TranscriptEntry } from "./transcript.js";
export { type RetryInfo, type RetryOptions } from "./retry.js";
export { QMPSupervisor, type SupervisorOptions, type SupervisorEvents } from "./supervisor.js";
export { type JobInfo, type JobProgress, type JobStatus, type RunJobOptions } from "./jobs.js";
export {
  type MigrateOptions,
  type MigrationInfo,
  type MigrationProgress,
  type MigrationStatus,
} from "./migration.js";
export {
  QMPMux,
  type QMPMuxOptions,
  type MuxListenOptions,
  type MuxEvents,
  type MuxClientInfo,
} from "./mux/mux.js";
export { type MuxPolicy, READ_ONLY_COMMANDS } from "./mux/policy.js";
