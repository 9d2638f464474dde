// What the shell sends and prints: HMP lines as QMP messages, JSON the way qmp-shell prints it.

import { type JsonObject, type JsonValue } from "../index.js";

/** Whether `value` is a JSON object (not an array, not null). */
export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** JSON the way qmp-shell prints it: `{"a": 1, "b": [2, 3]}`, or indented with `-p`. */
export function formatJson(value: unknown, pretty: boolean): string {
  if (pretty) return JSON.stringify(value, null, 4);
  return spaced(value);
}

function spaced(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(spaced).join(", ")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${spaced(v)}`);
    return `{${entries.join(", ")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** `Class: desc` of a QMP error object. */
export function errorLine(error: JsonObject): string {
  const text = (v: JsonValue | undefined): string =>
    typeof v === "string" ? v : JSON.stringify(v);
  return `${text(error["class"])}: ${text(error["desc"])}`;
}

/** The `human-monitor-command` message for an HMP line. */
export function hmpMessage(line: string, cpuIndex: number | undefined): JsonObject {
  const args: JsonObject = { "command-line": line };
  if (cpuIndex !== undefined) args["cpu-index"] = cpuIndex;
  return { execute: "human-monitor-command", arguments: args };
}

/** Whether `message` asks QEMU to quit (QMP `quit`, or HMP `quit`/`q`). */
export function isQuit(message: JsonObject): boolean {
  const command = message["execute"] ?? message["exec-oob"];
  if (command === "quit") return true;
  const args = message["arguments"];
  return (
    command === "human-monitor-command" &&
    isObject(args) &&
    typeof args["command-line"] === "string" &&
    /^\s*(?:quit|q)\s*$/.test(args["command-line"])
  );
}

/** The `name`s of a list of `{ name }` objects (query-commands, guest-info), or `undefined`. */
export function namesOf(value: JsonValue | undefined): string[] | undefined {
  if (!Array.isArray(value)) return undefined;
  return value.flatMap((c) => (isObject(c) && typeof c["name"] === "string" ? [c["name"]] : []));
}
