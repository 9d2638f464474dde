// The shell's `-l` log: one JSON object per line for each exchange and event, secrets redacted.

import { closeSync, openSync, writeSync } from "node:fs";
import { type JsonObject, redact } from "../index.js";

/** One record of the log: a command and its reply (or why none came), or an event. */
export interface LogRecord {
  command?: JsonObject;
  reply?: unknown;
  error?: string;
  event?: unknown;
}

/** An open `-l` log file. */
export class ExchangeLog {
  readonly #fd: number;

  /**
   * Open (or create, mode 0600) `path` for appending.
   *
   * @throws the file system's error when it cannot be opened.
   */
  constructor(path: string) {
    this.#fd = openSync(path, "a", 0o600);
  }

  /** Append `record`: a timestamp first, the command's secrets redacted. */
  write(record: LogRecord): void {
    const entry: Record<string, unknown> = { timestamp: new Date().toISOString() };
    if (record.command !== undefined) entry["command"] = redact(record.command);
    if (record.reply !== undefined) entry["reply"] = record.reply;
    if (record.error !== undefined) entry["error"] = record.error;
    if (record.event !== undefined) entry["event"] = record.event;
    writeSync(this.#fd, `${JSON.stringify(entry)}\n`);
  }

  /** Close the file. */
  close(): void {
    closeSync(this.#fd);
  }
}
