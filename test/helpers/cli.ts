// Running the `qmp` command as a child process, the way a script would.

import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { TestContext } from "node:test";
import { type CommandHandler, FakeQMPServer, type HandlerResult } from "../../src/testing/index.js";

/** The repository root (this file runs from dist/test/helpers/). */
export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** The launcher under test. */
export const QMP_BIN = fileURLToPath(new URL("../../../bin/qmp.js", import.meta.url));

/** How a `qmp` run ended. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A running `qmp`. */
export interface CliRun {
  child: ChildProcess;
  /** Everything written on stderr so far. */
  stderr: () => string;
  /** Resolves once stderr matches `pattern`; rejects if the process exits first. */
  waitStderr: (pattern: RegExp) => Promise<void>;
  /** Resolves once the process has exited and its output is all read. */
  done: Promise<CliResult>;
}

/** Options of {@link runQmp}. */
export interface RunQmpOptions {
  /** The environment; default: ours without `QMP_SOCKET`. */
  env?: NodeJS.ProcessEnv;
  /**
   * What to give `qmp` on stdin: a string is written and stdin closed;
   * `{ pipe: true }` leaves the pipe open (write to `child.stdin`); default: nothing.
   */
  stdin?: string | { pipe: true };
  /** Options for node itself, before the launcher (`--expose-gc`, `--import …`). */
  nodeArgs?: string[];
}

/** Start `node bin/qmp.js ...args`; it is killed after the test if still running. */
export function runQmp(t: TestContext, args: string[], options: RunQmpOptions = {}): CliRun {
  const env = options.env ?? withoutSocket();
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), QMP_BIN, ...args], {
    cwd: ROOT,
    env,
    stdio: [options.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  if (typeof options.stdin === "string") child.stdin?.end(options.stdin);
  let stdout = "";
  let stderr = "";
  const watchers = new Set<() => void>();
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => {
    stderr += s;
    for (const w of watchers) w();
  });
  const done = new Promise<CliResult>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await done.catch(() => {});
  });
  const waitStderr = (pattern: RegExp): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (pattern.test(stderr)) {
          watchers.delete(check);
          resolve();
        }
      };
      watchers.add(check);
      check();
      void done.then(
        (r) => reject(new Error(`qmp exited (${r.code}) before ${pattern}: ${r.stderr}`)),
        reject,
      );
    });
  return { child, stderr: () => stderr, waitStderr, done };
}

/** Run `qmp ...args` to the end. */
export async function qmp(
  t: TestContext,
  args: string[],
  options: RunQmpOptions = {},
): Promise<CliResult> {
  return runQmp(t, args, options).done;
}

/** Our environment without `QMP_SOCKET` (plus `extra`). */
export function withoutSocket(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  if (!("QMP_SOCKET" in extra)) delete env["QMP_SOCKET"];
  return env;
}

/**
 * A fake guest agent: no greeting, "\n" line ends, `guest-ping`, and
 * `guest-info` listing `commands` (and those two) as supported.
 */
export function listenGuestAgent(commands: string[] = []): Promise<FakeQMPServer> {
  const names = ["guest-ping", "guest-info", ...commands];
  return FakeQMPServer.listen({
    greeting: false,
    lineEnding: "\n",
    handlers: {
      "guest-ping": () => ({ return: {} }),
      "guest-info": () => ({
        return: {
          version: "9.2",
          supported_commands: names.map((name) => ({ name, enabled: true })),
        },
      }),
    },
  });
}

/**
 * A command handler that answers `reply` only once `release()` is called,
 * like a stopped QEMU.
 */
export function heldReply(reply: HandlerResult): { handler: CommandHandler; release: () => void } {
  let release: (() => void) | undefined;
  const answered = new Promise<void>((resolve) => (release = resolve));
  return {
    handler: async () => {
      await answered;
      return reply;
    },
    release: () => release!(),
  };
}
