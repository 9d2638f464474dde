// The benchmarks' peers: the fake QMP server process, real QEMU, and the cleanup that never leaves either behind.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

// ------------------------------------------------------------- cleanup

const children = new Set<ChildProcess>();
const dirs = new Set<string>();

/** Kill every process the bench started and remove its temp dirs; synchronous, so it can run on 'exit'. */
export function cleanupAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  children.clear();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

process.on("exit", cleanupAll);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    cleanupAll();
    process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
  });
}

/** Spawn a process that {@link cleanupAll} will kill. */
export function spawnTracked(
  command: string,
  args: string[],
  stdio: ("pipe" | "ignore" | "inherit")[],
): ChildProcess {
  const child = spawn(command, args, { stdio });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** A temp dir that {@link cleanupAll} will remove. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "qmp-bench-"));
  dirs.add(dir);
  return dir;
}

/** Resolve when `child` exits (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Kill `child` and wait for its exit. */
export async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await exited(child);
}

// ------------------------------------------------------------- fake server

/** The fake QMP server process. */
export interface FakeServer {
  path: string;
  process: ChildProcess;
  stop: () => Promise<void>;
}

/** Start the fake server (`fake-qmp-server.js`) on a socket in `dir`, answering query-qmp-schema with `schema`. */
export async function startFakeServer(dir: string, schema: string): Promise<FakeServer> {
  const path = join(dir, "fake.sock");
  const schemaPath = join(dir, "schema.json");
  writeFileSync(schemaPath, schema);
  const child = spawnTracked(
    process.execPath,
    [join(here, "fake-qmp-server.js"), path, schemaPath],
    ["pipe", "pipe", "inherit"],
  );
  await new Promise<void>((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      if (out.includes("ready\n")) resolve();
    });
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`The fake QMP server exited (${code})`)));
  });
  return {
    path,
    process: child,
    stop: async () => {
      child.stdin!.end();
      await Promise.race([exited(child), new Promise((r) => setTimeout(r, 2000).unref())]);
      await kill(child);
    },
  };
}

// ------------------------------------------------------------- QEMU

/** The QEMU binary: `QMP_TEST_QEMU`, else `qemu-system-x86_64` from PATH (as the tests). */
export function qemuBinary(): string {
  return process.env["QMP_TEST_QEMU"] ?? "qemu-system-x86_64";
}

/** QEMU's `--version` first line, or undefined when it cannot be run. */
export async function qemuVersionLine(): Promise<string | undefined> {
  const child = spawnTracked(qemuBinary(), ["--version"], ["ignore", "pipe", "ignore"]);
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  const ok = await new Promise<boolean>((resolve) => {
    child.once("error", () => resolve(false));
    child.once("close", (code) => resolve(code === 0));
  });
  return ok ? out.split("\n")[0]!.trim() : undefined;
}

/** A running QEMU with one QMP socket per client. */
export interface Qemu {
  /** One QMP UNIX socket per client: a QEMU socket monitor serves one client at a time. */
  paths: string[];
  process: ChildProcess;
  stop: () => Promise<void>;
}

/**
 * Start `qemu-system-x86_64 -machine none -nodefaults -display none` with
 * `monitors` QMP sockets (`-qmp unix:PATH,server=on,wait=off`) in `dir`, and
 * resolve once they accept connections. Readiness is an event, as in the
 * tests: a last monitor on an inherited socketpair (fd 3) greets once every
 * chardev before it is set up.
 */
export async function startQemu(dir: string, monitors: number): Promise<Qemu> {
  const paths = Array.from({ length: monitors }, (_, i) => join(dir, `qemu-${i}.sock`));
  const args = ["-machine", "none", "-nodefaults", "-display", "none"];
  for (const path of paths) args.push("-qmp", `unix:${path},server=on,wait=off`);
  args.push("-chardev", "socket,id=ready,fd=3", "-mon", "chardev=ready,mode=control");
  const child = spawnTracked(qemuBinary(), args, ["ignore", "ignore", "pipe", "pipe"]);
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const ready = child.stdio[3] as net.Socket;
  ready.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    ready.once("data", () => resolve());
    child.once("error", reject);
    child.once("exit", (code, signal) =>
      reject(new Error(`QEMU exited before it was ready (${code ?? signal}): ${stderr.trim()}`)),
    );
  });
  return { paths, process: child, stop: () => kill(child) };
}

/**
 * QEMU's `query-qmp-schema` return value as compact JSON text, read over a
 * plain socket (so that no client under test is involved).
 */
export async function captureSchema(path: string): Promise<string> {
  const socket = net.connect(path);
  socket.setEncoding("utf8");
  try {
    const lines: string[] = [];
    let rest = "";
    let wake: (() => void) | undefined;
    socket.on("data", (text: string) => {
      const all = rest + text;
      const parts = all.split("\n");
      rest = parts.pop()!;
      lines.push(...parts.filter((l) => l.trim() !== ""));
      wake?.();
    });
    const failed = new Promise<never>((_, reject) => {
      socket.once("error", reject);
      socket.once("close", () => reject(new Error("QEMU closed the socket")));
    });
    const next = async (): Promise<Record<string, unknown>> => {
      while (lines.length === 0) {
        await Promise.race([new Promise<void>((resolve) => (wake = resolve)), failed]);
      }
      return JSON.parse(lines.shift()!) as Record<string, unknown>;
    };
    await next(); // greeting
    socket.write('{"execute": "qmp_capabilities"}\n');
    await next();
    socket.write('{"execute": "query-qmp-schema", "id": 1}\n');
    const reply = await next();
    if (!Array.isArray(reply["return"])) throw new Error("query-qmp-schema returned no array");
    return JSON.stringify(reply["return"]);
  } finally {
    socket.destroy();
  }
}

/**
 * A schema-like return value of about `bytes` bytes, for when QEMU cannot be
 * run: object types with members, as query-qmp-schema returns them.
 */
export function buildSchema(bytes: number): string {
  const entries: object[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const entry =
      i % 3 === 0
        ? { name: `${i}`, "meta-type": "object", members: [{ name: "node-name", type: "str" }] }
        : {
            name: `x-command-${i}`,
            "meta-type": "command",
            "arg-type": `${i - 1}`,
            "ret-type": "0",
          };
    size += JSON.stringify(entry).length + 1;
    entries.push(entry);
  }
  return JSON.stringify(entries);
}
