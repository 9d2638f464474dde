// Shapes of QMP messages and the checks that tell them apart.

/** Any JSON value. */
export type JsonValue =
  string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** QEMU's version triple, as in the greeting and `query-version`. */
export interface QemuVersion {
  /** The numeric version. */
  qemu: { major: number; minor: number; micro: number };
  /** The build's package string, e.g. `"Debian 1:10.0.2+ds-2"`. */
  package: string;
}

/** The first message of a QMP session. */
export interface Greeting {
  /** QEMU's version and the capabilities it offers (e.g. `"oob"`). */
  QMP: {
    version: QemuVersion;
    capabilities: string[];
  };
}

/** A command message. Exactly one of `execute` and `exec-oob` is set. */
export interface CommandMessage {
  /** The command to run in band. */
  execute?: string;
  /** The command to run out of band (needs the `oob` capability). */
  "exec-oob"?: string;
  /** The command's arguments; left out when there are none. */
  arguments?: object;
  /** Matches the reply to the command: the client's integers, or a caller's string. */
  id?: JsonValue;
  /** Anything else the caller chose to send. */
  [key: string]: unknown;
}

/** A successful reply. */
export interface ReturnMessage {
  /** The command's result. */
  return: JsonValue;
  /** The id of the command it answers. */
  id?: JsonValue;
}

/** An error reply. */
export interface ErrorMessage {
  /** QEMU's error class (e.g. `GenericError`) and description. */
  error: { class: string; desc: string; [key: string]: unknown };
  /** The id of the command it answers (absent when QEMU could not parse it). */
  id?: JsonValue;
}

/** Any reply to a command. */
export type ReplyMessage = ReturnMessage | ErrorMessage;

/** An asynchronous event. */
export interface QMPEvent {
  /** The event's name, e.g. `STOP`. */
  event: string;
  /** The event's details, if it has any. */
  data?: JsonObject;
  /** When QEMU emitted it (host clock). */
  timestamp: { seconds: number; microseconds: number };
}

/** Whether `msg` is an event (has a string `event`). */
export function isEvent(msg: Record<string, unknown>): msg is Record<string, unknown> & QMPEvent {
  return typeof msg["event"] === "string";
}

/** Whether `msg` is a well-formed greeting. */
export function isGreeting(msg: unknown): msg is Greeting {
  if (typeof msg !== "object" || msg === null) return false;
  const qmp = (msg as Record<string, unknown>)["QMP"];
  if (typeof qmp !== "object" || qmp === null) return false;
  const { version, capabilities } = qmp as Record<string, unknown>;
  return (
    typeof version === "object" &&
    version !== null &&
    Array.isArray(capabilities) &&
    capabilities.every((c) => typeof c === "string")
  );
}

/** Whether `msg` is a well-formed error reply. */
export function isErrorReply(
  msg: Record<string, unknown>,
): msg is Record<string, unknown> & ErrorMessage {
  const error = msg["error"];
  if (typeof error !== "object" || error === null) return false;
  const e = error as Record<string, unknown>;
  return typeof e["class"] === "string" && typeof e["desc"] === "string";
}
