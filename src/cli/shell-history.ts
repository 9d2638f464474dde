// The shell's history file: read it, append a line (never a secret), trim it to its last lines.
//
// No readline and no shell state here: each function takes the file's path.
// The file is written with mode 0600 and appended to, line by line, so that
// two shells open at the same time keep the lines of both.

import { appendFileSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { redact } from "../index.js";
import { hmpMessage } from "./shell-messages.js";
import { parseLine } from "./parse.js";

/** How many history lines are kept, in memory and in the file. */
export const HISTORY_SIZE = 1000;

/**
 * The last `size` distinct non-blank lines of `text`, oldest first; a line
 * that occurs more than once is kept at its newest place.
 */
export function lastDistinct(text: string, size = HISTORY_SIZE): string[] {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const line of text.split("\n").reverse()) {
    if (lines.length === size) break;
    if (line.trim() === "" || seen.has(line)) continue;
    seen.add(line);
    lines.push(line);
  }
  return lines.reverse();
}

/**
 * The history file's lines, oldest first, as {@link lastDistinct} keeps
 * them; `undefined` if the file cannot be read (it need not exist).
 */
export function readHistory(path: string, size = HISTORY_SIZE): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  return lastDistinct(text, size);
}

/**
 * Append `line` to the history file (created with mode 0600), unless it
 * holds a secret ({@link holdsSecret}).
 *
 * @returns whether it was written.
 * @throws the file system's error when the file cannot be written.
 */
export function appendHistory(path: string, line: string, mode: { hmp: boolean }): boolean {
  if (holdsSecret(line, mode)) return false;
  appendFileSync(path, `${line}\n`, { mode: 0o600 });
  return true;
}

/**
 * Cut the history file down to its last `size` distinct lines (written to a
 * temp file, mode 0600, then renamed over it). A file that is already so,
 * or that cannot be read or written, is left as it is.
 */
export function trimHistory(path: string, size = HISTORY_SIZE): void {
  const lines = readHistory(path, size);
  if (lines === undefined) return;
  try {
    const text = lines.length > 0 ? `${lines.join("\n")}\n` : "";
    if (readFileSync(path, "utf8") === text) return;
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, path);
  } catch {
    // Kept as it is: it is only longer than it needs to be.
  }
}

/**
 * Whether a shell line sends something `redact` would hide (a password, a
 * secret's data): an HMP line in HMP mode, else a qmp-shell line. A line
 * that does not parse sends nothing, so it holds no secret.
 */
export function holdsSecret(line: string, mode: { hmp: boolean }): boolean {
  let message: unknown;
  if (mode.hmp) {
    message = hmpMessage(line.trim(), undefined);
  } else {
    try {
      const result = parseLine(line);
      if (result.kind === "command") message = result.message;
      else if (result.kind === "transaction-action")
        message = { execute: "transaction", arguments: { actions: [result.action] } };
    } catch {
      return false;
    }
  }
  return message !== undefined && JSON.stringify(redact(message)) !== JSON.stringify(message);
}
