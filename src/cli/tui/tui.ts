// `qmp tui`: the full-screen console. Options, the connection (supervised, or a throwaway QEMU),
// the terminal taken over and always given back.

import { appendFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { ReadStream, WriteStream } from "node:tty";
import { parseArgs } from "node:util";
import {
  type InetAddress,
  type JsonObject,
  type Logger,
  QMPClient,
  QMPSupervisor,
  Runstate,
} from "../../index.js";
import {
  ExitStatus,
  describe,
  optionError,
  parseCount,
  parseSeconds,
  resolveAddress,
  usage,
  writeLine,
} from "../common.js";
import { LaunchError, type LaunchedQemu, THROWAWAY_QEMU, launchQemu } from "../launch.js";
import { type LineCompleter, initialCompleter, loadCompleter } from "../shell-completion.js";
import { HISTORY_SIZE, appendHistory, readHistory, trimHistory } from "../shell-history.js";
import type { ShellIO } from "../shell-session.js";
import { App, KEYS_HELP } from "./app.js";
import type { LogLevel } from "./pane.js";

/** `qmp tui --help`. */
export const TUI_HELP = `Usage: qmp tui [options] [ADDRESS]

A full-screen QMP console: every message in and out in a scrolling history
(JSON with colours, timestamps, long replies folded), a status bar, and a
multi-line input that takes the qmp-shell syntax or raw JSON (an id is
added when missing). When QEMU drops the connection, it reconnects.

ADDRESS is a UNIX socket path, HOST:PORT or [IPV6]:PORT; when it is left
out, QMP_SOCKET gives it. With neither, it starts a throwaway
"qemu-system-x86_64 -machine none -nodefaults -display none" of its own,
and stops it when you leave.

${KEYS_HELP}

Options:
  -n, --num-retries N     connect attempts after the first (default 10)
  -r, --retry-delay S     seconds between attempts (default 2)
  -l, --log-file FILE     the library's log lines to FILE, not the history
  -v, --verbose           debug log lines too
      --history FILE      keep the history in FILE (default ~/.qmp_history; "" for none)
      --qemu BINARY       the throwaway QEMU's binary (default qemu-system-x86_64)
  -h, --help              show this help

Exit status:
  0  you left (Esc, Ctrl-C, Ctrl-D on an empty input, SIGINT, SIGTERM)
  1  the console failed (the terminal is restored first)
  2  usage error, no terminal, or the throwaway QEMU did not start
`;

/** The options of `qmp tui`. */
export interface TuiOptions {
  address: { address: string | InetAddress; text: string } | undefined;
  retries: number;
  retryDelay: number;
  logFile: string | undefined;
  verbose: boolean;
  history: string | undefined;
  qemu: string;
}

/**
 * Parse `qmp tui`'s arguments.
 *
 * @throws {Error} for a usage error (the message says which).
 */
export function parseTuiArgs(args: string[], env: NodeJS.ProcessEnv): TuiOptions | "help" {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      "num-retries": { type: "string", short: "n" },
      "retry-delay": { type: "string", short: "r" },
      "log-file": { type: "string", short: "l" },
      verbose: { type: "boolean", short: "v", default: false },
      history: { type: "string" },
      qemu: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  if (positionals.length > 1) throw new Error(`unexpected argument '${positionals[1]}'`);
  if (values["log-file"] === "") throw new Error("--log-file needs a file name");
  const given = positionals[0];
  const address =
    given !== undefined || (env["QMP_SOCKET"] ?? "") !== ""
      ? resolveAddress(given, env)
      : undefined;
  if (address !== undefined && values.qemu !== undefined) {
    throw new Error("--qemu is for the throwaway QEMU, started when there is no ADDRESS");
  }
  if (values.qemu === "") throw new Error("--qemu needs a binary");
  const history = values.history ?? join(env["HOME"] ?? homedir(), ".qmp_history");
  return {
    address,
    retries: parseCount("--num-retries", values["num-retries"]) ?? 10,
    retryDelay: parseSeconds("--retry-delay", values["retry-delay"]) ?? 2000,
    logFile: values["log-file"],
    verbose: values.verbose,
    history: history === "" ? undefined : history,
    qemu: values.qemu ?? THROWAWAY_QEMU[0],
  };
}

/** `QEMU 10.0.2`, from a greeting. */
function qemuVersion(client: QMPClient): string {
  const v = client.greeting?.QMP.version.qemu;
  return v === undefined ? "QEMU" : `QEMU ${v.major}.${v.minor}.${v.micro}`;
}

/**
 * Run `qmp tui` with `args` (what follows `tui`).
 *
 * @returns the exit status; never throws for a usage or connection error.
 */
export async function runTui(args: string[], io: ShellIO): Promise<ExitStatus> {
  let options;
  try {
    options = parseTuiArgs(args, io.env);
  } catch (err) {
    return usage(io, "tui", optionError(err));
  }
  if (options === "help") {
    io.stdout.write(TUI_HELP);
    return ExitStatus.OK;
  }
  const stdin = io.stdin as Partial<ReadStream> & NodeJS.ReadableStream;
  const stdout = io.stdout as Partial<WriteStream> & NodeJS.WritableStream;
  if (stdin.isTTY !== true || stdout.isTTY !== true || typeof stdin.setRawMode !== "function") {
    writeLine(io.stderr, "qmp tui: needs a terminal (use qmp shell or qmp exec in scripts)");
    return ExitStatus.USAGE;
  }
  return new Tui(options, io, stdin as ReadStream, stdout as WriteStream).run();
}

/** One `qmp tui` run. */
class Tui {
  readonly #options: TuiOptions;
  readonly #io: ShellIO;
  readonly #stdin: ReadStream;
  readonly #stdout: WriteStream;
  readonly #app: App;
  readonly #client: QMPClient;
  #supervisor: QMPSupervisor | undefined;
  #qemu: LaunchedQemu | undefined;
  #completer: LineCompleter = initialCompleter({ hmp: false });
  #leave!: () => void;
  #leaving = false;

  constructor(options: TuiOptions, io: ShellIO, stdin: ReadStream, stdout: WriteStream) {
    this.#options = options;
    this.#io = io;
    this.#stdin = stdin;
    this.#stdout = stdout;
    const history = options.history !== undefined ? (readHistory(options.history) ?? []) : [];
    this.#app = new App({
      out: stdout,
      cols: stdout.columns,
      rows: stdout.rows,
      history,
      host: {
        send: (message) => this.#send(message),
        complete: (line) => this.#completer(line, { transaction: false }),
        remember: (line) => this.#remember(line),
        quit: () => this.#leave(),
      },
    });
    this.#client = new QMPClient({ logger: this.#logger() });
  }

  async run(): Promise<ExitStatus> {
    const left = new Promise<void>((resolve) => (this.#leave = resolve));
    const onData = (data: string): void => this.#guard(() => this.#app.input(data));
    const onResize = (): void =>
      this.#guard(() => this.#app.resize(this.#stdout.columns, this.#stdout.rows));
    const onSignal = (): void => this.#leave();
    const onCrash = (err: unknown): void => {
      this.#restore();
      // No time for a graceful end: a throwaway QEMU must not outlive us.
      this.#qemu?.child.kill("SIGTERM");
      writeLine(
        this.#io.stderr,
        `qmp tui: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      );
      process.exit(ExitStatus.FAILED);
    };
    this.#stdin.setRawMode(true);
    this.#stdin.setEncoding("utf8");
    this.#stdin.on("data", onData);
    this.#stdin.resume();
    this.#stdout.on("resize", onResize);
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    process.on("SIGHUP", onSignal);
    process.on("uncaughtException", onCrash);
    let status: ExitStatus = ExitStatus.OK;
    try {
      this.#app.start();
      const connected = this.#connect();
      const ended = await Promise.race([left.then(() => "left" as const), connected]);
      if (ended === "failed") status = ExitStatus.USAGE;
    } finally {
      this.#leaving = true;
      this.#restore();
      this.#stdin.off("data", onData);
      this.#stdout.off("resize", onResize);
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.off("SIGHUP", onSignal);
      process.off("uncaughtException", onCrash);
      this.#stdin.pause();
      await this.#disconnect();
      if (this.#options.history !== undefined) {
        try {
          trimHistory(this.#options.history, HISTORY_SIZE);
        } catch {
          // A history that cannot be trimmed is not worth an error on the way out.
        }
      }
    }
    return status;
  }

  /** Put the terminal back as it was. */
  #restore(): void {
    this.#app.stop();
    try {
      this.#stdin.setRawMode(false);
    } catch {
      // The terminal is gone.
    }
  }

  /** Run a UI step; a bug in it restores the terminal before it surfaces. */
  #guard(step: () => void): void {
    try {
      step();
    } catch (err) {
      this.#restore();
      throw err;
    }
  }

  /** Connect (supervised) or start the throwaway QEMU; resolves "failed" only when that QEMU cannot start. */
  async #connect(): Promise<"failed"> {
    const { address } = this.#options;
    if (address === undefined) {
      this.#app.setStatus(`[Starting ${this.#options.qemu}]`);
      try {
        this.#qemu = await launchQemu(
          this.#client,
          [this.#options.qemu, ...THROWAWAY_QEMU.slice(1)],
          {
            onOutput: (line) =>
              this.#app.add({ kind: "log", level: "info", text: `QEMU: ${line}` }),
          },
        );
      } catch (err) {
        if (this.#leaving) return new Promise(() => {});
        this.#restore();
        const why = err instanceof LaunchError ? err.message : describe(err);
        writeLine(this.#io.stderr, `qmp tui: ${why}`);
        return "failed";
      }
      this.#up("a throwaway QEMU");
      void this.#qemu.exited.then(() => {
        if (!this.#leaving) {
          this.#app.setStatus("[Disconnected: QEMU exited]", "error");
          this.#app.add({ kind: "note", text: "The throwaway QEMU exited." });
        }
      });
      return new Promise(() => {});
    }
    const { retries, retryDelay } = this.#options;
    const supervisor = new QMPSupervisor(this.#client, address.address, {
      retry: {
        delay: retryDelay,
        maxDelay: retryDelay,
        attempts: retries + 1,
        onRetry: ({ attempt, delay, error }) => {
          this.#app.setStatus(`[Retry #${attempt} in ${Math.round(delay / 100) / 10}s]`);
          this.#app.add({
            kind: "log",
            level: "info",
            text: `Connect attempt ${attempt}: ${describe(error)}`,
          });
        },
      },
    });
    this.#supervisor = supervisor;
    supervisor.on("disconnected", (cause) => {
      this.#app.setStatus("[Disconnected]", "error");
      this.#app.add({
        kind: "note",
        text: `Disconnected${cause !== undefined ? `: ${describe(cause)}` : ""}`,
      });
    });
    supervisor.on("reconnected", () => this.#up(address.text));
    supervisor.on("reconnectFailed", (err) =>
      this.#app.setStatus(`[Error: ${describe(err)}]`, "error"),
    );
    this.#app.setStatus(`[Connecting to ${address.text}]`);
    try {
      await supervisor.start();
      this.#up(address.text);
    } catch (err) {
      if (!this.#leaving) this.#app.setStatus(`[Error: ${describe(err)}]`, "error");
    }
    return new Promise(() => {});
  }

  /** A session is up: say so, show the greeting, follow events, fetch what completion needs. */
  #up(where: string): void {
    const client = this.#client;
    this.#app.setStatus(`[Connected ${qemuVersion(client)} at ${where}]`);
    if (client.greeting !== undefined) {
      this.#app.add({ kind: "received", message: client.greeting as unknown as JsonObject });
    }
    void (async () => {
      try {
        for await (const event of client.events) {
          this.#app.add({ kind: "event", message: event as unknown as JsonObject });
        }
      } catch {
        // The session ended: the next one starts its own loop.
      }
    })();
    void loadCompleter(client, { hmp: false, negotiate: true }).then((completer) => {
      if (completer !== undefined) this.#completer = completer;
    });
  }

  async #send(message: JsonObject): Promise<JsonObject> {
    if (this.#client.runstate !== Runstate.RUNNING) throw new Error("Not connected: not sent");
    return (await this.#client.raw(message, { assignId: false })) as JsonObject;
  }

  #remember(line: string): void {
    const path = this.#options.history;
    if (path === undefined) return;
    try {
      appendHistory(path, line, { hmp: false });
    } catch (err) {
      this.#app.add({ kind: "log", level: "warn", text: `History not saved: ${describe(err)}` });
    }
  }

  async #disconnect(): Promise<void> {
    try {
      if (this.#supervisor !== undefined) await this.#supervisor.stop();
      else await this.#client.disconnect();
    } catch {
      // Leaving: how the session ended is no longer news.
    }
    await this.#qemu?.stop();
  }

  /** The client's log lines: into the history pane, or to --log-file. */
  #logger(): Logger {
    const line = (level: LogLevel) => (message: string) => {
      if (level === "debug" && !this.#options.verbose) return;
      const file = this.#options.logFile;
      if (file !== undefined) {
        try {
          appendFileSync(file, `${new Date().toISOString()} ${level.toUpperCase()} ${message}\n`, {
            mode: 0o600,
          });
        } catch {
          // A log file that cannot be written must not take the console down.
        }
        return;
      }
      if (!this.#leaving) this.#app.add({ kind: "log", level, text: message });
    };
    return { debug: line("debug"), info: line("info"), warn: line("warn"), error: line("error") };
  }
}
