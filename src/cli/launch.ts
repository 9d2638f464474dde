// Starting a QEMU that connects to us: a private socket, `-chardev socket` + `-mon`, accept, cleanup.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import { type QMPClient } from "../index.js";
import { deadline } from "./common.js";

/** The QEMU the shell starts when it is given no address. */
export const THROWAWAY_QEMU = [
  "qemu-system-x86_64",
  "-machine",
  "none",
  "-nodefaults",
  "-display",
  "none",
] as const;

/** The id of the chardev and monitor we add to QEMU's command line. */
const CHARDEV_ID = "qmp-cli";

/** How long QEMU may take to exit after SIGTERM before it gets SIGKILL. */
const TERM_GRACE = 5000;

/** How many lines of QEMU's stderr are kept for the error of a failed start. */
const STDERR_LINES = 20;

/** QEMU could not be started, or exited before it connected: a one-line (or a few lines) story. */
export class LaunchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LaunchError";
  }
}

/** A QEMU we started, connected to the client given to {@link launchQemu}. */
export interface LaunchedQemu {
  /** The QEMU process. */
  readonly child: ChildProcess;
  /** The whole command line, as run (our `-chardev`/`-mon` included). */
  readonly argv: readonly string[];
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<void>;
  /** Stop QEMU (SIGTERM, then SIGKILL after a grace period) and remove the socket's directory. */
  stop(): Promise<void>;
}

/** Options of {@link launchQemu}. */
export interface LaunchOptions {
  /**
   * Each line QEMU writes on stdout or stderr once connected, and those it
   * wrote before (which are also kept for the error of a failed start).
   */
  onOutput?: (line: string, stream: "stdout" | "stderr") => void;
  /** Cancels the wait for QEMU to connect. */
  signal?: AbortSignal | undefined;
}

/**
 * Run `argv` (a QEMU command line) with a QMP monitor that connects to a
 * private UNIX socket `client` listens on, and wait until the session is up
 * (greeting and negotiation as `client` is set up to do).
 *
 * @throws {LaunchError} when the binary cannot be run, or QEMU exits before
 *   it connects (its exit status and last stderr lines in the message).
 * @throws what `client.accept()` throws otherwise (the signal's reason, a
 *   `ConnectError` for a failed negotiation). QEMU is stopped on any failure.
 */
export async function launchQemu(
  client: QMPClient,
  argv: readonly string[],
  options: LaunchOptions = {},
): Promise<LaunchedQemu> {
  const [binary, ...args] = argv;
  if (binary === undefined || binary === "") throw new LaunchError("no QEMU command given");
  const dir = mkdtempSync(join(tmpdir(), "qmp-cli-"));
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  const path = join(dir, "qmp.sock");
  try {
    await client.startServer(path);
  } catch (err) {
    removeDir();
    throw err;
  }
  const full = [binary, ...args, ...monitorArgs(path)];
  const child = spawn(binary, full.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  const tail: [string, "stdout" | "stderr"][] = [];
  let connected = false;
  const onLine = (line: string, stream: "stdout" | "stderr"): void => {
    if (connected && options.onOutput !== undefined) {
      options.onOutput(line, stream);
    } else {
      tail.push([line, stream]);
      if (tail.length > STDERR_LINES) tail.shift();
    }
  };
  forEachLine(child.stdout, (line) => onLine(line, "stdout"));
  forEachLine(child.stderr, (line) => onLine(line, "stderr"));

  let spawnError: NodeJS.ErrnoException | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once("error", (err: NodeJS.ErrnoException) => {
      spawnError = err;
      resolve();
    });
    child.once("close", () => resolve());
  });

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && spawnError === undefined) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), TERM_GRACE);
      await exited;
      clearTimeout(timer);
    }
    removeDir();
  };

  const gone = new AbortController();
  void exited.then(() => gone.abort(new LaunchError("QEMU exited")));
  const waiting = deadline(undefined, gone.signal, options.signal);
  try {
    await client.accept({ signal: waiting.signal });
  } catch (err) {
    await client.disconnect().catch(() => {});
    await stop();
    if (spawnError !== undefined) {
      const why = spawnError.code === "ENOENT" ? "command not found" : spawnError.message;
      throw new LaunchError(`cannot run '${binary}': ${why}`);
    }
    if (gone.signal.aborted) {
      const how =
        child.exitCode !== null
          ? `exited with code ${child.exitCode}`
          : `was killed by ${child.signalCode}`;
      const output = tail.length > 0 ? `:\n${tail.map(([line]) => line).join("\n")}` : "";
      throw new LaunchError(`${binary} ${how} before it connected${output}`);
    }
    throw err;
  } finally {
    waiting.clear();
  }
  connected = true;
  for (const [line, stream] of tail.splice(0)) options.onOutput?.(line, stream);
  return { child, argv: full, exited, stop };
}

/**
 * The QEMU options that add a QMP monitor connecting to the UNIX socket at
 * `path`: `-chardev socket,…,path=…` and `-mon …,mode=control`.
 */
export function monitorArgs(path: string): string[] {
  return [
    "-chardev",
    `socket,id=${CHARDEV_ID},path=${qemuOptionValue(path)}`,
    "-mon",
    `chardev=${CHARDEV_ID},mode=control`,
  ];
}

/**
 * A value for a comma-separated QEMU option (`key=value,key=value`): QEMU
 * reads a doubled comma as a comma of the value, so commas are doubled.
 */
export function qemuOptionValue(value: string): string {
  return value.replaceAll(",", ",,");
}

/** Call `fn` with each line of `stream` (UTF-8), the last unterminated one at its end. */
function forEachLine(stream: NodeJS.ReadableStream, fn: (line: string) => void): void {
  const decoder = new StringDecoder("utf8");
  let rest = "";
  const emit = (text: string): void => {
    rest += text;
    let nl: number;
    while ((nl = rest.indexOf("\n")) !== -1) {
      fn(rest.slice(0, nl).replace(/\r$/, ""));
      rest = rest.slice(nl + 1);
    }
  };
  stream.on("data", (chunk: Buffer) => emit(decoder.write(chunk)));
  stream.on("end", () => {
    emit(decoder.end());
    if (rest !== "") fn(rest);
    rest = "";
  });
}
