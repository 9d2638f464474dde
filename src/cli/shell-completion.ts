// What the shell's Tab completion knows, fetched from QEMU (or the guest agent) once the session is up.

import { type JsonValue, type QMPClient } from "../index.js";
import { HmpCompleter, QmpCompleter } from "./complete.js";
import { isObject, namesOf } from "./shell-messages.js";

/** How long the shell waits for each answer Tab completion needs. */
export const COMPLETION_TIMEOUT = 10_000;

/** Completes a line: `[completions, completeOn]`, as readline's completer gives it. */
export type LineCompleter = (line: string, context: { transaction: boolean }) => [string[], string];

/** The completer before the data has loaded: nothing in HMP mode, QMP's syntax alone else. */
export function initialCompleter(mode: { hmp: boolean }): LineCompleter {
  if (mode.hmp) return (line) => [[], line];
  const completer = new QmpCompleter([]);
  return completer.complete.bind(completer);
}

/**
 * Fetch what Tab completion needs over `client`: `help` and `help info` in
 * HMP mode; else the command list (`query-commands`, or a guest agent's
 * `guest-info` when not negotiated), the schema, and device_add's drivers.
 *
 * @returns the completer, or `undefined` when the data could not be had
 *   (the shell keeps the one it had).
 */
export async function loadCompleter(
  client: QMPClient,
  mode: { hmp: boolean; negotiate: boolean },
): Promise<LineCompleter | undefined> {
  const call = async (command: string, args?: object): Promise<JsonValue | undefined> => {
    try {
      return await client.execute(command, args, { timeout: COMPLETION_TIMEOUT });
    } catch {
      return undefined;
    }
  };
  if (mode.hmp) {
    const [help, info] = await Promise.all([
      call("human-monitor-command", { "command-line": "help" }),
      call("human-monitor-command", { "command-line": "help info" }),
    ]);
    if (typeof help !== "string") return undefined;
    const hmp = new HmpCompleter(help, typeof info === "string" ? info : "");
    return (line) => hmp.complete(line);
  }
  const qmp = (completer: QmpCompleter): LineCompleter => completer.complete.bind(completer);
  if (!mode.negotiate) {
    // Most likely a guest agent, whose command list is in guest-info (and
    // which has no schema); else a QEMU before qmp_capabilities.
    const info = await call("guest-info");
    const names = isObject(info) ? namesOf(info["supported_commands"]) : undefined;
    if (names !== undefined) return qmp(new QmpCompleter(names));
  }
  let names = namesOf(await call("query-commands"));
  if (names === undefined && !mode.negotiate) names = ["qmp_capabilities"];
  if (names === undefined) return undefined;
  const schema = await call("query-qmp-schema");
  const completer = new QmpCompleter(names, Array.isArray(schema) ? schema : undefined);
  if (names.includes("device_add")) {
    // device_add's driver is a plain string to the schema; QOM lists them.
    const types = await call("qom-list-types", { implements: "device", abstract: false });
    const drivers = namesOf(types);
    if (drivers !== undefined) completer.addValues("device_add", "driver", drivers);
  }
  return qmp(completer);
}
