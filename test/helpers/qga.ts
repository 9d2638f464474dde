// Starting a real qemu-ga on the host for tests, locked down to harmless commands.
//
// THE RULE: qemu-ga runs here on the test machine itself, as whoever runs
// the tests (root in CI). It is started with an allow-list of commands that
// only ping, describe the system, read the clock, run a process the test
// names, and open files; nothing that shuts down, suspends, freezes file
// systems, changes users or passwords, sets the clock or changes devices
// can run. The tests open and write files only inside their own temp dir.
// Keep both true when you add a test.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, watch } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import type { TestContext } from "node:test";

/** The only commands the test qemu-ga runs (`--allow-rpcs`). */
export const ALLOWED_RPCS = [
  "guest-sync-delimited",
  "guest-sync",
  "guest-ping",
  "guest-info",
  "guest-get-osinfo",
  "guest-get-time",
  "guest-file-open",
  "guest-file-read",
  "guest-file-write",
  "guest-file-close",
  "guest-exec",
  "guest-exec-status",
];

/**
 * The options that let only {@link ALLOWED_RPCS} run: `--allow-rpcs` (QEMU
 * 8.2 and later); on an older qemu-ga (7.2), `-b` with every other command
 * it lists.
 */
async function lockDown(): Promise<string[]> {
  const help = await output(qgaBinary(), ["--help"]);
  if (help.includes("--allow-rpcs")) return [`--allow-rpcs=${ALLOWED_RPCS.join(",")}`];
  const all = (await output(qgaBinary(), ["--block-rpcs=help"])).split(/\s+/).filter(Boolean);
  if (!all.includes("guest-ping")) throw new Error(`qemu-ga listed no commands: ${all.join(" ")}`);
  return ["-b", all.filter((rpc) => !ALLOWED_RPCS.includes(rpc)).join(",")];
}

/** What `command args` prints on stdout and stderr. */
function output(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (text += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (text += s));
    child.once("error", reject);
    child.once("close", () => resolve(text));
  });
}

/** The qemu-ga under test: `QMP_TEST_QGA`, else Debian's. */
export function qgaBinary(): string {
  return process.env["QMP_TEST_QGA"] ?? "/usr/sbin/qemu-ga";
}

/** A running test qemu-ga. */
export interface TestQga {
  process: ChildProcess;
  /** Its UNIX socket. */
  socketPath: string;
  /** A private directory (state, socket, the tests' files), removed at cleanup. */
  dir: string;
  /** Whether it still runs. */
  alive(): boolean;
  /** Everything it logged. */
  log(): string;
}

/** Start qemu-ga on a UNIX socket in a fresh temp dir; resolves once it accepts connections. */
export async function startQga(t: TestContext): Promise<TestQga> {
  const dir = mkdtempSync(join(tmpdir(), "qmp-qga-"));
  const socketPath = join(dir, "qga.sock");
  const appeared = new Promise<void>((resolve) => {
    const watcher = watch(dir, () => {
      if (existsSync(socketPath)) {
        watcher.close();
        resolve();
      }
    });
    t.after(() => watcher.close());
  });
  const args = [
    "-m",
    "unix-listen",
    "-p",
    socketPath,
    "-t",
    dir,
    "-f",
    join(dir, "qga.pid"),
    ...(await lockDown()),
  ];
  const child = spawn(qgaBinary(), args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.setEncoding("utf8").on("data", (s: string) => (log += s));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    }
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  await Promise.race([
    appeared,
    exited.then(() => {
      throw new Error(`qemu-ga exited at start: ${log}`);
    }),
    new Promise<never>((_, reject) => {
      child.once("error", reject);
    }),
  ]);
  // The socket is there once bound, a moment before qemu-ga listens on it:
  // ready is when a connection goes through (closed at once, nothing sent).
  for (let attempt = 0; ; attempt++) {
    const refused = await new Promise<boolean>((resolve, reject) => {
      const probe = net.connect(socketPath);
      probe.once("connect", () => {
        probe.destroy();
        resolve(false);
      });
      probe.once("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "ECONNREFUSED" && attempt < 1000) resolve(true);
        else reject(err);
      });
    });
    if (!refused) break;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return {
    process: child,
    socketPath,
    dir,
    alive: () => child.exitCode === null && child.signalCode === null,
    log: () => log,
  };
}
