// Starting and cleaning up real QEMU processes for tests.

import { type ChildProcess, spawn } from "node:child_process";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Socket } from "node:net";
import type { TestContext } from "node:test";
import { QMPClient, type QMPClientOptions } from "../../src/index.js";

/** The QEMU binary under test: `QMP_TEST_QEMU`, else `qemu-system-x86_64` from PATH. */
export function qemuBinary(): string {
  return process.env["QMP_TEST_QEMU"] ?? "qemu-system-x86_64";
}

/** `qemu-storage-daemon` beside the QEMU under test, else from PATH. */
export function storageDaemonBinary(): string {
  const qemu = process.env["QMP_TEST_QEMU"];
  if (qemu !== undefined) {
    const sibling = join(dirname(qemu), "qemu-storage-daemon");
    if (existsSync(sibling)) return sibling;
  }
  return "qemu-storage-daemon";
}

/**
 * `-L <dir>` when the QEMU under test was unpacked with `dpkg -x` (its data
 * files are in `<root>/usr/share/qemu`, not where it looks by default).
 */
export function qemuDataArgs(binary = qemuBinary()): string[] {
  const share = join(dirname(binary), "..", "share", "qemu");
  if (!binary.includes("/") || !existsSync(share) || share === "/usr/share/qemu") return [];
  // An unpacked QEMU has its own data but not SeaBIOS (another package): the installed one's
  // serves the machines that boot firmware (-machine pc).
  const seabios = "/usr/share/seabios";
  return existsSync(seabios) ? ["-L", share, "-L", seabios] : ["-L", share];
}

/** The base arguments of every test QEMU: no machine, no devices, no display. */
export const QEMU_BASE_ARGS = ["-machine", "none", "-nodefaults", "-display", "none"];

/** A running test QEMU. */
export interface TestQemu {
  process: ChildProcess;
  /** A private directory for sockets and files, removed at cleanup. */
  dir: string;
  /** Path of the QMP UNIX socket (when started with `qmpSocket`). */
  socketPath: string;
  /** Everything QEMU wrote on stderr so far. */
  stderr: () => string;
  /** Resolves with the exit code/signal once QEMU has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL (after SIGCONT, in case it was stopped) and wait for the exit. */
  kill: () => Promise<void>;
}

/** Options of {@link startQemu}. */
export interface StartQemuOptions {
  /** Extra arguments after the base ones. */
  args?: string[];
  /** Listen for QMP on `<dir>/qmp.sock` (default true). */
  qmpSocket?: boolean;
  /** `pretty=on` for that monitor. */
  pretty?: boolean;
  /** Binary to run (default {@link qemuBinary}). */
  binary?: string;
  /** Do not add the base arguments (for qemu-storage-daemon). */
  storageDaemon?: boolean;
}

/**
 * Start QEMU with a QMP monitor on a UNIX socket in a fresh temp dir, and
 * resolve once that socket accepts connections. Readiness is an event, not a
 * poll: QEMU also gets a monitor on an inherited socketpair (fd 3), and its
 * greeting there shows that every chardev, the QMP socket included, is set
 * up. Registers cleanup (kill, remove the dir) on the test context.
 */
export async function startQemu(t: TestContext, options: StartQemuOptions = {}): Promise<TestQemu> {
  const dir = mkdtempSync(join(tmpdir(), "qmp-test-"));
  const socketPath = join(dir, "qmp.sock");
  const binary = options.binary ?? (options.storageDaemon ? storageDaemonBinary() : qemuBinary());
  const dash = options.storageDaemon ? "--" : "-";
  // qemu-system's `-monitor` takes a chardev spec; `-mon` takes `chardev=…`.
  const mon = options.storageDaemon ? "--monitor" : "-mon";
  const args: string[] = [];
  if (!options.storageDaemon) args.push(...qemuDataArgs(binary), ...QEMU_BASE_ARGS);
  if (options.qmpSocket !== false) {
    const pretty = options.pretty ? ",pretty=on" : "";
    args.push(
      `${dash}chardev`,
      `socket,id=qmp,path=${socketPath},server=on,wait=off`,
      mon,
      `chardev=qmp,mode=control${pretty}`,
    );
  }
  args.push(...(options.args ?? []));
  // Last, so that everything before it exists when its greeting comes:
  // qemu-storage-daemon handles its options in order, and a monitor's
  // greeting is sent from its I/O thread at once.
  args.push(`${dash}chardev`, "socket,id=ready,fd=3", mon, "chardev=ready,mode=control");
  const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    }
    await exited;
  };
  t.after(async () => {
    await kill();
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  });
  const ready = child.stdio[3] as Socket;
  ready.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    ready.once("data", () => resolve());
    child.once("error", reject);
    void exited.then(({ code, signal }) =>
      reject(
        new Error(`QEMU exited before it was ready (code ${code}, signal ${signal}): ${stderr}`),
      ),
    );
  });
  return { process: child, dir, socketPath, stderr: () => stderr, exited, kill };
}

/** QEMU's version as `[major, minor]`, from `--version`. */
export async function qemuVersion(binary = qemuBinary()): Promise<[number, number]> {
  const child = spawn(binary, ["--version"], { stdio: ["ignore", "pipe", "ignore"] });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  await new Promise((resolve) => child.once("close", resolve));
  const m = /version (\d+)\.(\d+)/.exec(out);
  if (m === null) throw new Error(`Cannot tell the version of ${binary}: ${out}`);
  return [Number(m[1]), Number(m[2])];
}

/** QEMU's full version and package string, as `--version` prints them. */
export interface QemuVersionInfo {
  major: number;
  minor: number;
  micro: number;
  /** What `--version` shows in parentheses after the number (a distro's package), else "". */
  package: string;
}

/** The full version of `binary` (QEMU or qemu-storage-daemon), from `--version`. */
export async function qemuVersionInfo(binary = qemuBinary()): Promise<QemuVersionInfo> {
  const child = spawn(binary, ["--version"], { stdio: ["ignore", "pipe", "ignore"] });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  await new Promise((resolve) => child.once("close", resolve));
  const m = /version (\d+)\.(\d+)\.(\d+)(?: \(([^)\n]*)\))?/.exec(out);
  if (m === null) throw new Error(`Cannot tell the version of ${binary}: ${out}`);
  return { major: Number(m[1]), minor: Number(m[2]), micro: Number(m[3]), package: m[4] ?? "" };
}

/** A {@link QMPClient} that is destroyed after the test, whatever happens. */
export function testClient(t: TestContext, options: QMPClientOptions = {}): QMPClient {
  const client = new QMPClient(options);
  t.after(() => client.destroy());
  return client;
}

/**
 * Every message `client` sends (`"send"`) or receives (`"receive"`) from now
 * on, in order, seen through the `qmp:message:*` diagnostics channels. The
 * subscription ends with the test. `onMessage`, if given, sees each one too.
 */
export function recordMessages(
  t: TestContext,
  client: QMPClient,
  direction: "send" | "receive",
  onMessage?: (message: Record<string, unknown>) => void,
): Record<string, unknown>[] {
  const messages: Record<string, unknown>[] = [];
  const name = `qmp:message:${direction}`;
  const handler = (data: unknown): void => {
    const d = data as { client: unknown; message: Record<string, unknown> };
    if (d.client !== client) return;
    messages.push(d.message);
    onMessage?.(d.message);
  };
  subscribe(name, handler);
  t.after(() => {
    unsubscribe(name, handler);
  });
  return messages;
}

/**
 * A temp dir for the HOME of a program that `start` runs, removed after the
 * cleanups `start` registers (they run in order): a shell being stopped
 * still writes its history there.
 */
export async function withHomeDir<T>(
  t: TestContext,
  start: (home: string) => Promise<T>,
): Promise<T> {
  const home = mkdtempSync(join(tmpdir(), "qmp-test-"));
  try {
    return await start(home);
  } finally {
    t.after(() => rmSync(home, { recursive: true, force: true }));
  }
}

/** A temp dir removed after the test. */
export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "qmp-test-"));
  // Retried: a program under test that is still being stopped may write there (a history file).
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  return dir;
}

/** `value` as a JSON object; fails the test when it is anything else. */
export function asObject(value: unknown, what = "value"): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new assert.AssertionError({
      message: `${what} is not an object: ${JSON.stringify(value)}`,
    });
  }
  return value as Record<string, unknown>;
}

/** `value` as an array; fails the test when it is anything else. */
export function asArray(value: unknown, what = "value"): unknown[] {
  if (!Array.isArray(value)) {
    throw new assert.AssertionError({
      message: `${what} is not an array: ${JSON.stringify(value)}`,
    });
  }
  return value;
}

/**
 * A test QEMU with a second QMP monitor, `control` (a socket path), for the
 * test's own client: a QEMU socket monitor serves one client at a time, and
 * the program under test takes the first.
 */
export async function startQemuWithControl(
  t: TestContext,
): Promise<{ qemu: TestQemu; control: string }> {
  const control = join(tempDir(t), "control.sock");
  const qemu = await startQemu(t, {
    args: [
      "-chardev",
      `socket,id=control,path=${control},server=on,wait=off`,
      "-mon",
      "chardev=control,mode=control",
    ],
  });
  return { qemu, control };
}

/** `-chardev`/`-mon` arguments for a QMP monitor listening on the UNIX socket `path`. */
export function qmpArgs(path: string): string[] {
  return [
    "-chardev",
    `socket,id=qmp,path=${path},server=on,wait=off`,
    "-mon",
    "chardev=qmp,mode=control",
  ];
}

/**
 * The `--qemu` binary for a throwaway QEMU of `qmp shell` or `qmp tui`: the
 * QEMU under test, or, when it needs `-L` (an unpacked QEMU), a script in a
 * temp dir that runs it with that.
 */
export function throwawayBinary(t: TestContext): string {
  const data = qemuDataArgs();
  if (data.length === 0) return qemuBinary();
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const path = join(tempDir(t), "qemu");
  const words = [qemuBinary(), ...data].map(quote).join(" ");
  writeFileSync(path, `#!/bin/sh\nexec ${words} "$@"\n`, { mode: 0o755 });
  return path;
}
