// Starting and cleaning up real QEMU processes for tests.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Socket } from "node:net";
import type { TestContext } from "node:test";

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
  return binary.includes("/") && existsSync(share) && share !== "/usr/share/qemu" ? ["-L", share] : [];
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
  const args: string[] = [];
  if (!options.storageDaemon) args.push(...qemuDataArgs(binary), ...QEMU_BASE_ARGS);
  args.push(`${dash}chardev`, "socket,id=ready,fd=3", `${dash}monitor`, "chardev=ready,mode=control");
  if (options.qmpSocket !== false) {
    const pretty = options.pretty ? ",pretty=on" : "";
    args.push(
      `${dash}chardev`,
      `socket,id=qmp,path=${socketPath},server=on,wait=off`,
      `${dash}monitor`,
      `chardev=qmp,mode=control${pretty}`,
    );
  }
  args.push(...(options.args ?? []));
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
    rmSync(dir, { recursive: true, force: true });
  });
  const ready = child.stdio[3] as Socket;
  ready.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    ready.once("data", () => resolve());
    child.once("error", reject);
    void exited.then(({ code, signal }) =>
      reject(new Error(`QEMU exited before it was ready (code ${code}, signal ${signal}): ${stderr}`)),
    );
  });
  return { process: child, dir, socketPath, stderr: () => stderr, exited, kill };
}

/** QEMU's version as `[major, minor]`, from `--version`. */
export async function qemuVersion(binary = qemuBinary()): Promise<[number, number]> {
  const child = spawn(binary, ["--version"], { stdio: ["ignore", "pipe", "ignore"] });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  await new Promise((resolve) => child.once("close", resolve));
  const m = /version (\d+)\.(\d+)/.exec(out);
  if (m === null) throw new Error(`Cannot tell the version of ${binary}: ${out}`);
  return [Number(m[1]), Number(m[2])];
}

/** A temp dir removed after the test. */
export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "qmp-test-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
