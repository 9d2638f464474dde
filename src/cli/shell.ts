// `qmp shell` and `qmp wrap`: the interactive qmp-shell — prompt, completion, events, history, log.

import {
  appendFileSync,
  closeSync,
  openSync,
  readFileSync,
  renameSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import * as readline from "node:readline";
import { parseArgs } from "node:util";
import {
  type JsonObject,
  type JsonValue,
  type Logger,
  QMPClient,
  Runstate,
  redact,
} from "../index.js";
import {
  type CliIO,
  ExitStatus,
  connectFailure,
  describe,
  greetingHint,
  optionError,
  resolveAddress,
  usage,
  version,
  writeLine,
} from "./common.js";
import { HmpCompleter, QmpCompleter } from "./complete.js";
import { LaunchError, type LaunchedQemu, THROWAWAY_QEMU, launchQemu } from "./launch.js";
import { ShellSyntaxError, TransactionBuilder, USAGE_LINE, parseLine } from "./parse.js";

const TYPING = `Typing:
  COMMAND key=value ...   run a command: values are integers, true/false,
                          JSON objects and arrays, else strings; dotted keys
                          nest (a.b=1 gives {"a":{"b":1}})
  {"execute": ...}        send a JSON message as is
  transaction(            open a transaction (prompt TRANS>): then one
                          ACTION key=value ... per line, and ")" to run it
  Tab                     complete command names, argument names and values
  Ctrl-C                  clear the line, or stop waiting for a reply
  Ctrl-D                  leave (QEMU keeps running, unless qmp started it)
  # ...                   a comment

Reading a pipe instead of a terminal, results go to stdout and errors to
stderr ("line N: ..."), with no prompt. In HMP mode (-H), lines are human
monitor commands; "cpu N" picks the CPU the following commands run on.`;

const SHELL_OPTIONS = `  -H, --hmp               HMP mode: lines are human monitor commands
  -N, --skip-negotiation  no capabilities negotiation (for the guest agent)
  -p, --pretty            indent JSON output
  -v, --verbose           print each message sent, as JSON
  -l, --log FILE          append each exchange to FILE as JSON lines (secrets redacted)
      --history FILE      keep the history in FILE (default ~/.qmp_history; "" for none)`;

/** `qmp shell --help`. */
export const SHELL_HELP = `Usage: qmp shell [options] [ADDRESS]

An interactive QMP shell: qmp-shell syntax, Tab completion from the
schema, history, and events printed as they arrive.

ADDRESS is a UNIX socket path, HOST:PORT or [IPV6]:PORT; when it is left
out, QMP_SOCKET gives it. With neither, the shell starts a throwaway
"qemu-system-x86_64 -machine none -nodefaults -display none" of its own,
and stops it when you leave.

${TYPING}

Options:
${SHELL_OPTIONS}
      --qemu BINARY       the throwaway QEMU's binary (default qemu-system-x86_64)
  -h, --help              show this help

Exit status:
  0  you left (Ctrl-D), or QEMU closed the connection
  1  the connection broke with an error; or, reading a pipe, a line failed
  2  usage error, or no connection
`;

/** `qmp wrap --help`. */
export const WRAP_HELP = `Usage: qmp wrap [options] -- QEMU-COMMAND [ARGS ...]

Start QEMU with a QMP monitor that connects to a private socket of ours,
then open the shell on it. Leaving the shell stops QEMU (SIGTERM) and
removes the socket. QEMU's own output is printed above the prompt.

  qmp wrap -- qemu-system-x86_64 -machine q35 -m 1G -display none

${TYPING}

Options:
${SHELL_OPTIONS}
  -h, --help              show this help

Exit status:
  0  you left (Ctrl-D), or QEMU closed the connection
  1  the connection broke with an error; or, reading a pipe, a line failed
  2  usage error, or QEMU could not be started or did not connect
`;

/** The options the shell runs with (shared by `shell` and `wrap`). */
interface ShellOptions {
  hmp: boolean;
  negotiate: boolean;
  pretty: boolean;
  verbose: boolean;
  log: string | undefined;
  /** The history file; `undefined` for none. */
  history: string | undefined;
}

/** What the shell reads and writes: the process's streams, or a test's. */
export interface ShellIO extends CliIO {
  stdin: NodeJS.ReadableStream;
}

const OPTION_SPEC = {
  hmp: { type: "boolean", short: "H", default: false },
  "skip-negotiation": { type: "boolean", short: "N", default: false },
  pretty: { type: "boolean", short: "p", default: false },
  verbose: { type: "boolean", short: "v", default: false },
  log: { type: "string", short: "l" },
  history: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** How many history lines are kept, in memory and in the file. */
export const HISTORY_SIZE = 1000;

/**
 * Run `qmp shell` with `args` (what follows `shell`).
 *
 * @returns the exit status; never throws for a usage, connection or QEMU error.
 */
export async function runShell(args: string[], io: ShellIO): Promise<ExitStatus> {
  let options: ShellOptions;
  /** Where to connect; `undefined` for a throwaway QEMU. */
  let address: ReturnType<typeof resolveAddress> | undefined;
  let qemu: string;
  try {
    const parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: { ...OPTION_SPEC, qemu: { type: "string" } },
    });
    if (parsed.values.help) {
      io.stdout.write(SHELL_HELP);
      return ExitStatus.OK;
    }
    options = shellOptions(parsed.values, io.env);
    if (parsed.positionals.length > 1) {
      throw new Error(`unexpected argument '${parsed.positionals[1]}'`);
    }
    const addressText = parsed.positionals[0] ?? (io.env["QMP_SOCKET"] || undefined);
    if (addressText !== undefined) {
      if (parsed.values.qemu !== undefined) {
        throw new Error("--qemu is for the throwaway QEMU: give it without an ADDRESS");
      }
      address = resolveAddress(addressText, io.env);
    }
    qemu = parsed.values.qemu ?? THROWAWAY_QEMU[0];
  } catch (err) {
    return usage(io, "shell", optionError(err));
  }

  const shell = new Shell("shell", options, io);
  const status =
    address === undefined
      ? await shell.runLaunched([qemu, ...THROWAWAY_QEMU.slice(1)], true)
      : await shell.runConnected(address.address, address.text);
  return hangUpOr(shell, io, status);
}

/**
 * After a shell whose terminal went away (SIGHUP, EIO), end the process the
 * way SIGHUP does: exiting normally would make Node restore the terminal's
 * modes, which fails on a dead terminal with an assertion (a Node bug).
 */
function hangUpOr(shell: Shell, io: ShellIO, status: ExitStatus): ExitStatus {
  if (shell.hungUp && io.stdin === process.stdin) process.kill(process.pid, "SIGHUP");
  return status;
}

/**
 * Run `qmp wrap` with `args` (what follows `wrap`): options, then `--` (or
 * the first word that is not an option) and QEMU's command line.
 *
 * @returns the exit status; never throws for a usage, launch or QEMU error.
 */
export async function runWrap(args: string[], io: ShellIO): Promise<ExitStatus> {
  let options: ShellOptions;
  let argv: string[];
  try {
    const split = splitWrapArgs(args);
    const parsed = parseArgs({
      args: split.own,
      allowPositionals: false,
      strict: true,
      options: OPTION_SPEC,
    });
    if (parsed.values.help) {
      io.stdout.write(WRAP_HELP);
      return ExitStatus.OK;
    }
    options = shellOptions(parsed.values, io.env);
    argv = split.qemu;
    if (argv.length === 0) {
      throw new Error("no QEMU command given (qmp wrap -- qemu-system-… ARGS)");
    }
    if (argv.some((a) => a === "-daemonize" || a === "--daemonize")) {
      throw new Error(
        "QEMU must stay in the foreground to be stopped when you leave: drop -daemonize",
      );
    }
  } catch (err) {
    return usage(io, "wrap", optionError(err));
  }
  const shell = new Shell("wrap", options, io);
  return hangUpOr(shell, io, await shell.runLaunched(argv, false));
}

/** Split `qmp wrap`'s arguments into its own options and QEMU's command line. */
function splitWrapArgs(args: string[]): { own: string[]; qemu: string[] } {
  const dashes = args.indexOf("--");
  if (dashes !== -1) return { own: args.slice(0, dashes), qemu: args.slice(dashes + 1) };
  const { tokens } = parseArgs({
    args,
    strict: false,
    allowPositionals: true,
    tokens: true,
    options: OPTION_SPEC,
  });
  const first = tokens.find((t) => t.kind === "positional");
  if (first === undefined) return { own: args, qemu: [] };
  return { own: args.slice(0, first.index), qemu: args.slice(first.index) };
}

function shellOptions(
  values: {
    hmp: boolean;
    "skip-negotiation": boolean;
    pretty: boolean;
    verbose: boolean;
    log?: string | undefined;
    history?: string | undefined;
  },
  env: NodeJS.ProcessEnv,
): ShellOptions {
  if (values.hmp && values["skip-negotiation"]) {
    throw new Error("-H (HMP) needs a negotiated session: it cannot go with -N");
  }
  if (values.log === "") throw new Error("--log needs a file name");
  const home = env["HOME"] ?? homedir();
  const history = values.history ?? join(home, ".qmp_history");
  return {
    hmp: values.hmp,
    negotiate: !values["skip-negotiation"],
    pretty: values.pretty,
    verbose: values.verbose,
    log: values.log,
    history: history === "" ? undefined : history,
  };
}

/** JSON the way qmp-shell prints it: `{"a": 1, "b": [2, 3]}`, or indented with `-p`. */
function formatJson(value: unknown, pretty: boolean): string {
  if (pretty) return JSON.stringify(value, null, 4);
  return spaced(value);
}

function spaced(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(spaced).join(", ")}]`;
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${spaced(v)}`);
    return `{${entries.join(", ")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether the TTY check passes for both ends: then the shell is interactive. */
function isTTY(stream: NodeJS.ReadableStream | NodeJS.WritableStream): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true;
}

/** How long the shell waits for the data Tab completion needs. */
const COMPLETION_TIMEOUT = 10_000;

/** After this long without a reply, the shell says that Ctrl-C stops waiting. */
const SLOW_REPLY = 5000;

/** How long a `quit` may take to close the connection before the prompt comes back. */
const QUIT_WAIT = 10_000;

/** Whether `message` asks QEMU to quit (QMP `quit`, or HMP `quit`/`q`). */
function isQuit(message: JsonObject): boolean {
  const command = message["execute"] ?? message["exec-oob"];
  if (command === "quit") return true;
  const args = message["arguments"];
  return (
    command === "human-monitor-command" &&
    isObject(args) &&
    typeof args["command-line"] === "string" &&
    /^\s*(?:quit|q)\s*$/.test(args["command-line"])
  );
}

/** One shell session: the prompt loop over a connected client. */
class Shell {
  /** `shell` or `wrap`: how messages name the command. */
  readonly #command: string;
  readonly #options: ShellOptions;
  readonly #io: ShellIO;
  readonly #interactive: boolean;
  readonly #client: QMPClient;
  readonly #tx = new TransactionBuilder();
  #rl: readline.Interface | undefined;
  /** The prompt is on screen, waiting for a line: output goes above it. */
  #atPrompt = false;
  /** The command being run, to stop waiting for its reply on Ctrl-C. */
  #running: AbortController | undefined;
  #qmpCompleter = new QmpCompleter([]);
  /** Settles once the completion data is loaded (or failed to load). */
  #completionsLoaded: Promise<void> = Promise.resolve();
  #hmpCompleter: HmpCompleter | undefined;
  #cpuIndex: number | undefined;
  #logFd: number | undefined;
  /** We are leaving: a session end is ours, not news. */
  #leaving = false;
  /** Set when QEMU ended the session: resolves to the error if it broke rather than closed. */
  #ended: Promise<unknown> | undefined;
  /** The terminal is gone: nothing more is written to it. */
  #hungUp = false;
  /** Lines read but not handled yet (typed ahead, or pasted): no prompt between them. */
  #queued = 0;
  /** The number of the line being handled (for messages when reading a pipe). */
  #lineNumber = 0;
  /** A line failed (reading a pipe: the exit status says so). */
  #failed = false;

  /** Whether the shell ended because its terminal went away. */
  get hungUp(): boolean {
    return this.#hungUp;
  }

  constructor(command: string, options: ShellOptions, io: ShellIO) {
    this.#command = command;
    this.#options = options;
    this.#io = io;
    this.#interactive = isTTY(io.stdin) && isTTY(io.stdout);
    this.#client = new QMPClient({
      name: "qmp shell",
      negotiate: options.negotiate,
      awaitGreeting: options.negotiate,
      logger: this.#logger(),
    });
  }

  /** Connect to `address`, then run the shell. */
  async runConnected(
    address: Parameters<QMPClient["connect"]>[0],
    text: string,
  ): Promise<ExitStatus> {
    const hint = greetingHint(this.#io, this.#command, text);
    const connected = await this.#setUp(
      (signal) => this.#client.connect(address, { signal }),
      (err) =>
        `cannot connect to ${text}: ${err === undefined ? "interrupted" : connectFailure(err)}`,
    ).finally(hint);
    if (!connected) return ExitStatus.USAGE;
    return this.#session(`at ${text}`);
  }

  /**
   * Start QEMU with `argv` (it connects to us), then run the shell; stop QEMU
   * after. A `throwaway` QEMU is announced first.
   */
  async runLaunched(argv: string[], throwaway: boolean): Promise<ExitStatus> {
    if (throwaway) {
      this.#note(`Starting a throwaway QEMU: ${argv.join(" ")}`);
      this.#note("(it is stopped when you leave)");
    }
    let qemu: LaunchedQemu | undefined;
    await this.#setUp(
      async (signal) => {
        qemu = await launchQemu(this.#client, argv, {
          signal,
          onOutput: (line, stream) => {
            // What QEMU says once we are leaving (its SIGTERM notice) is not news.
            if (this.#leaving) return;
            if (this.#interactive) this.#print(line);
            else writeLine(stream === "stdout" ? this.#io.stdout : this.#io.stderr, line);
          },
        });
      },
      (err) =>
        err === undefined
          ? "interrupted"
          : err instanceof LaunchError
            ? err.message
            : `QEMU did not connect: ${describe(err)}`,
    );
    // Unset: it failed, and #setUp said why.
    if (qemu === undefined) return ExitStatus.USAGE;
    try {
      return await this.#session(`(pid ${qemu.child.pid})`);
    } finally {
      const { exitCode, signalCode } = qemu.child;
      if (this.#hungUp) {
        // Nobody to tell.
      } else if (signalCode !== null && signalCode !== "SIGTERM") {
        this.#note(`(QEMU was killed by ${signalCode})`);
      } else if (exitCode !== null && exitCode !== 0) {
        this.#note(`(QEMU exited with code ${exitCode})`);
      }
      await qemu.stop();
    }
  }

  /**
   * Run `set-up` (connecting, or starting QEMU) with a signal that Ctrl-C
   * (SIGINT, the terminal is not raw yet) aborts. On failure, say why on
   * stderr — `explain` gets the error, or `undefined` after a Ctrl-C — and
   * drop the client.
   *
   * @returns whether it succeeded.
   */
  async #setUp(
    setUp: (signal: AbortSignal) => Promise<void>,
    explain: (err: unknown) => string,
  ): Promise<boolean> {
    const stop = new AbortController();
    const onSignal = (): void => stop.abort(new Error("interrupted"));
    process.once("SIGINT", onSignal);
    try {
      await setUp(stop.signal);
      return true;
    } catch (err) {
      // After a ^C, start on a line of our own.
      if (stop.signal.aborted && isTTY(this.#io.stderr)) this.#io.stderr.write("\n");
      writeLine(
        this.#io.stderr,
        `qmp ${this.#command}: ${explain(stop.signal.aborted ? undefined : err)}`,
      );
      await this.#client.destroy();
      return false;
    } finally {
      process.off("SIGINT", onSignal);
    }
  }

  /** The shell proper, on a session that is up. */
  async #session(where: string): Promise<ExitStatus> {
    const { stdout } = this.#io;
    const v = this.#client.greeting?.QMP.version.qemu;
    const qemu = v === undefined ? "QMP" : `QEMU ${v.major}.${v.minor}.${v.micro}`;
    if (this.#interactive) {
      const mode = this.#options.hmp ? "HMP" : "QMP";
      writeLine(stdout, `Welcome to the ${mode} shell of qmp ${version()}!`);
      writeLine(stdout, `Connected to ${qemu} ${where}.`);
      if (!this.#options.negotiate) {
        writeLine(stdout, "Capabilities not negotiated (-N): send qmp_capabilities if needed.");
      }
      writeLine(stdout, "Tab completes; Ctrl-D leaves.");
    }
    if (this.#options.log !== undefined) {
      try {
        this.#logFd = openSync(this.#options.log, "a", 0o600);
      } catch (err) {
        writeLine(this.#io.stderr, `qmp ${this.#command}: cannot open the log: ${describe(err)}`);
        await this.#client.disconnect().catch(() => {});
        return ExitStatus.USAGE;
      }
    }

    const rl = readline.createInterface({
      input: this.#io.stdin,
      output: this.#interactive ? stdout : undefined,
      terminal: this.#interactive,
      // A Tab pressed before the completion data is in waits for it.
      completer: (line: string, done: (err: null, result: [string[], string]) => void): void => {
        void this.#completionsLoaded.then(() => done(null, this.#complete(line)));
      },
      history: this.#interactive ? this.#loadHistory() : [],
      historySize: this.#interactive ? HISTORY_SIZE : 0,
      removeHistoryDuplicates: true,
      tabSize: 4,
      // Empty while a command runs: what is typed ahead shows from column 0.
      prompt: "",
    });
    this.#rl = rl;
    rl.on("line", () => this.#queued++);
    // Once closed, readline must not be prompted again: that would resume stdin
    // and keep the process alive.
    rl.on("close", () => {
      if (this.#rl === rl) this.#rl = undefined;
    });
    rl.on("history", (history: string[]) => this.#saveHistory(history));
    rl.on("SIGINT", () => this.#interrupt());

    const onRunstate = (state: Runstate): void => {
      if (state === Runstate.DISCONNECTING && !this.#leaving) this.#sessionEnded();
    };
    this.#client.on("runstate", onRunstate);
    const leave = (): void => rl.close();
    const signals: NodeJS.Signals[] = this.#interactive ? ["SIGTERM"] : ["SIGINT", "SIGTERM"];
    for (const s of signals) process.on(s, leave);
    // The terminal went away (EIO, often with SIGHUP): leave quietly, no stack trace.
    const deadTerminal = (): void => {
      if (this.#hungUp) return;
      this.#hungUp = true;
      this.#atPrompt = false;
      // There are no terminal modes to restore on a dead terminal; trying fails again.
      const input = this.#io.stdin as { setRawMode?: unknown };
      if (typeof input.setRawMode === "function") input.setRawMode = () => input;
    };
    const onIoError = (): void => {
      deadTerminal();
      rl.close();
    };
    process.on("SIGHUP", onIoError);
    rl.on("error", onIoError);
    this.#io.stdin.on("error", onIoError);
    this.#io.stdout.on("error", onIoError);
    // A terminal ends its input only when it is gone (Ctrl-D is a key, not an
    // end). Said before readline hears it: readline then hands over the
    // half-typed line, which must not run, and resets the dead terminal.
    if (this.#interactive) this.#io.stdin.prependListener("end", deadTerminal);
    const events = this.#pumpEvents();
    // Only a terminal has Tab; a pipe would pay for the schema for nothing.
    if (this.#interactive) this.#completionsLoaded = this.#loadCompletions();

    let loopError: unknown;
    try {
      this.#prompt();
      for await (const line of rl) {
        this.#queued--;
        this.#lineNumber++;
        if (this.#hungUp) break;
        this.#atPrompt = false;
        rl.setPrompt("");
        await this.#handle(line);
        if (this.#ended !== undefined) break;
        // Lines typed ahead or pasted follow at once: their prompt would only flicker.
        if (this.#queued === 0) this.#prompt();
      }
      if (this.#tx.active && !this.#interactive && this.#ended === undefined) {
        this.#error("the input ended inside a transaction: it was not sent");
      }
    } catch (err) {
      // readline's errors end the loop too (a dead terminal's among them).
      if (!this.#hungUp) loopError = err;
    } finally {
      // Ctrl-D leaves the cursor after the prompt: end that line first.
      if (this.#atPrompt) this.#io.stdout.write("\n");
      this.#leaving = true;
      this.#atPrompt = false;
      for (const s of signals) process.off(s, leave);
      process.off("SIGHUP", onIoError);
      this.#io.stdin.off("end", deadTerminal);
      this.#client.off("runstate", onRunstate);
      rl.close();
      this.#rl = undefined;
    }

    let status: ExitStatus = ExitStatus.OK;
    let error: unknown = await (this.#ended ??
      this.#client.disconnect().then(
        () => undefined,
        (err: unknown) => err,
      ));
    // QEMU killed with our messages still unread resets the connection:
    // that is QEMU gone, like an end of file, not a broken protocol.
    if (isPeerGone(error)) error = undefined;
    error ??= loopError;
    await events;
    if (this.#hungUp) {
      if (this.#logFd !== undefined) closeSync(this.#logFd);
      await this.#client.destroy();
      return ExitStatus.OK;
    }
    if (error !== undefined) {
      this.#note(`Disconnected: ${describe(error)}`);
      status = ExitStatus.FAILED;
    } else {
      this.#note("Disconnected");
      if (this.#failed && !this.#interactive) status = ExitStatus.FAILED;
    }
    this.#trimHistory();
    if (this.#logFd !== undefined) closeSync(this.#logFd);
    await this.#client.destroy();
    return status;
  }

  /** QEMU closed the connection (or it broke): end the prompt loop. */
  #sessionEnded(): void {
    this.#ended = this.#client.disconnect().then(
      () => undefined,
      (err: unknown) => err,
    );
    // A command in flight fails (or, for quit, succeeds) with the session by itself.
    this.#rl?.close();
  }

  /** Show the prompt (interactive only). */
  #prompt(): void {
    const rl = this.#rl;
    if (rl === undefined || !this.#interactive) return;
    rl.setPrompt(this.#tx.active ? "TRANS> " : "(QEMU) ");
    this.#atPrompt = true;
    // Keep what was typed ahead, and the cursor in it.
    rl.prompt(true);
  }

  /**
   * Print a result (or lines of one) without breaking the line being typed:
   * the prompt and the typed text are cleared, the text printed, and the
   * prompt drawn again below with the cursor where it was.
   */
  #print(text: string): void {
    if (this.#hungUp) return;
    const out = this.#io.stdout;
    const rl = this.#rl;
    // On a terminal, readline always owns the last line: the prompt, or (with
    // an empty prompt, while a command runs) what is typed ahead.
    if (rl === undefined || !this.#interactive || (rl.getPrompt() === "" && rl.line === "")) {
      writeLine(out, text);
      return;
    }
    // Go to the top of the prompt's rows, clear them and print. readline then
    // redraws the prompt and the line, first climbing as many rows as it thinks
    // the cursor is down (`prevRows`, stale after plain typing): give it those.
    const { rows } = rl.getCursorPos();
    const climb = (rl as unknown as { prevRows?: unknown }).prevRows;
    readline.moveCursor(out, 0, -rows);
    readline.cursorTo(out, 0);
    readline.clearScreenDown(out);
    out.write(`${text}\n${"\n".repeat(typeof climb === "number" ? climb : rows)}`);
    rl.prompt(true);
  }

  /** Print a message about the session (not a result): on stderr when reading a pipe. */
  #note(text: string): void {
    if (this.#interactive) this.#print(text);
    else writeLine(this.#io.stderr, text);
  }

  /**
   * Print what went wrong with the line being handled: on stderr, with its
   * line number, when reading a pipe (whose exit status then says so).
   */
  #error(text: string): void {
    this.#failed = true;
    if (this.#interactive) this.#print(text);
    else writeLine(this.#io.stderr, `line ${this.#lineNumber}: ${text}`);
  }

  /** Ctrl-C: stop waiting for the reply, or drop the typed line (and an open transaction). */
  #interrupt(): void {
    const rl = this.#rl;
    if (rl === undefined) return;
    if (this.#running !== undefined) {
      // Like a terminal, Ctrl-C drops what was typed ahead too.
      rl.write(null, { ctrl: true, name: "e" });
      rl.write(null, { ctrl: true, name: "u" });
      this.#running.abort(new Error("interrupted"));
      return;
    }
    // Like a terminal: "^C" after the line, which stays on screen; a fresh prompt below.
    rl.write(null, { ctrl: true, name: "e" });
    this.#io.stdout.write("^C");
    const withClear = rl as unknown as { clearLine?: unknown };
    if (typeof withClear.clearLine === "function") {
      (withClear.clearLine as () => void).call(rl);
    } else {
      this.#io.stdout.write("\n");
      rl.write(null, { ctrl: true, name: "u" });
    }
    if (this.#tx.active) {
      this.#tx.reset();
      this.#print("(transaction dropped)");
    }
    this.#prompt();
  }

  /** Run one line. */
  async #handle(line: string): Promise<void> {
    // A comment: for scripts fed on stdin, and notes in the history.
    if (line.trimStart().startsWith("#")) return;
    if (this.#options.hmp) return this.#handleHmp(line.trim());
    let result;
    try {
      result = parseLine(line, this.#tx);
    } catch (err) {
      if (err instanceof ShellSyntaxError) {
        // The usage line is about COMMAND key=value, not about JSON.
        const json = /^\s*[{[]/.test(line);
        this.#error(json ? `Error: ${err.message}` : `Error: ${err.message}\n${USAGE_LINE}`);
        return;
      }
      throw err;
    }
    if (result.kind !== "command") return;
    const id = result.message["id"];
    if (result.raw && id !== undefined && typeof id !== "string") {
      this.#error("Error: the id of a JSON message must be a string (numbers are the shell's own)");
      return;
    }
    const reply = await this.#send(result.message, result.raw);
    if (reply === undefined) return;
    this.#printReply(reply);
    if (
      this.#interactive &&
      !this.#options.negotiate &&
      result.message["execute"] === "qmp_capabilities" &&
      "return" in reply
    ) {
      this.#completionsLoaded = this.#loadCompletions();
    }
  }

  /** Send `message`; the whole reply, or `undefined` (and a message printed) when there is none. */
  async #send(message: JsonObject, raw: boolean): Promise<Record<string, unknown> | undefined> {
    if (this.#options.verbose) this.#print(formatJson(message, this.#options.pretty));
    const controller = new AbortController();
    this.#running = controller;
    // A stopped (SIGSTOP) or stuck QEMU never answers: say how to get the prompt back.
    const hint = this.#interactive
      ? setTimeout(() => {
          this.#note(`(no reply after ${SLOW_REPLY / 1000} s; Ctrl-C stops waiting)`);
        }, SLOW_REPLY)
      : undefined;
    let reply: Record<string, unknown>;
    try {
      reply = await this.#client.raw(message, { signal: controller.signal });
    } catch (err) {
      this.#log({ command: message, error: describe(err) });
      if (this.#ended !== undefined) {
        this.#error("(no reply: the connection closed first)");
        return undefined;
      }
      if (controller.signal.aborted) {
        this.#note("^C (the reply will be ignored)");
        return undefined;
      }
      this.#error(`Error: ${describe(err)}`);
      return undefined;
    } finally {
      clearTimeout(hint);
      this.#running = undefined;
    }
    // Without an id of the user's own, the one the client gave is noise.
    let shown = reply;
    if (!raw || !("id" in message)) {
      const { id: _id, ...rest } = reply;
      shown = rest;
    }
    this.#log({ command: message, reply: shown });
    if (isQuit(message) && "return" in reply) await this.#quitting();
    return shown;
  }

  /** After a successful `quit`: QEMU is closing; wait (a little) for that rather than prompt again. */
  async #quitting(): Promise<void> {
    const ended = new Promise<void>((resolve) => {
      const check = (state: Runstate): void => {
        if (state !== Runstate.RUNNING) {
          this.#client.off("runstate", check);
          resolve();
        }
      };
      if (this.#client.runstate !== Runstate.RUNNING) resolve();
      else this.#client.on("runstate", check);
      setTimeout(() => {
        this.#client.off("runstate", check);
        resolve();
      }, QUIT_WAIT).unref();
    });
    await ended;
  }

  #printReply(reply: Record<string, unknown>): void {
    const error = reply["error"];
    if (isObject(error)) {
      this.#error(errorLine(error));
      return;
    }
    this.#print(formatJson(reply, this.#options.pretty));
  }

  /** One HMP line: `cpu N` picks the CPU; anything else goes through human-monitor-command. */
  async #handleHmp(line: string): Promise<void> {
    if (line === "") return;
    const cpu = /^cpu(?:\s+(\S+))?\s*$/.exec(line);
    if (cpu !== null) {
      const index = Number(cpu[1]);
      if (cpu[1] === undefined || !/^\d+$/.test(cpu[1]) || !Number.isSafeInteger(index)) {
        this.#error("cpu: give a CPU index, e.g. cpu 0");
        return;
      }
      const reply = await this.#send(hmpMessage("info version", index), false);
      if (reply === undefined) return;
      if (isObject(reply["error"])) {
        this.#error(`cpu: no CPU ${index} (${await this.#cpuList()})`);
        return;
      }
      this.#cpuIndex = index;
      return;
    }
    const reply = await this.#send(hmpMessage(line, this.#cpuIndex), false);
    if (reply === undefined) return;
    const output = reply["return"];
    if (typeof output === "string") {
      const text = output.replace(/\r\n/g, "\n").replace(/\n$/, "");
      if (text !== "") this.#print(text);
      return;
    }
    this.#printReply(reply);
  }

  /** The CPU indexes QEMU has, for a message: "CPUs: 0, 1", or that there are none. */
  async #cpuList(): Promise<string> {
    let cpus: JsonValue | undefined;
    try {
      cpus = await this.#client.execute("query-cpus-fast", undefined, {
        timeout: COMPLETION_TIMEOUT,
      });
    } catch {
      return "query-cpus-fast lists them";
    }
    const indexes = Array.isArray(cpus)
      ? cpus.flatMap((c) =>
          isObject(c) && typeof c["cpu-index"] === "number" ? [c["cpu-index"]] : [],
        )
      : [];
    return indexes.length === 0 ? "this machine has no CPUs" : `CPUs: ${indexes.join(", ")}`;
  }

  /** Print events as they come, until the session ends. */
  async #pumpEvents(): Promise<void> {
    try {
      for await (const event of this.#client.events) {
        this.#log({ event });
        this.#print(formatJson(event, this.#options.pretty));
      }
    } catch (err) {
      this.#print(`(events: ${describe(err)})`);
    }
  }

  #complete(line: string): [string[], string] {
    if (this.#options.hmp) return this.#hmpCompleter?.complete(line) ?? [[], line];
    return this.#qmpCompleter.complete(line, { transaction: this.#tx.active });
  }

  /** Fetch what Tab completion needs; a failure leaves the completion it had. */
  async #loadCompletions(): Promise<void> {
    const call = async (command: string, args?: object): Promise<JsonValue | undefined> => {
      try {
        return await this.#client.execute(command, args, { timeout: COMPLETION_TIMEOUT });
      } catch {
        return undefined;
      }
    };
    if (this.#options.hmp) {
      const [help, info] = await Promise.all([
        call("human-monitor-command", { "command-line": "help" }),
        call("human-monitor-command", { "command-line": "help info" }),
      ]);
      if (typeof help === "string") {
        this.#hmpCompleter = new HmpCompleter(help, typeof info === "string" ? info : "");
      }
      return;
    }
    if (!this.#options.negotiate) {
      // Most likely a guest agent, whose command list is in guest-info (and
      // which has no schema); else a QEMU before qmp_capabilities.
      const info = await call("guest-info");
      const names = isObject(info) ? namesOf(info["supported_commands"]) : undefined;
      if (names !== undefined) {
        this.#qmpCompleter = new QmpCompleter(names);
        return;
      }
    }
    let names = namesOf(await call("query-commands"));
    if (names === undefined && !this.#options.negotiate) names = ["qmp_capabilities"];
    if (names === undefined) return;
    const schema = await call("query-qmp-schema");
    const completer = new QmpCompleter(names, Array.isArray(schema) ? schema : undefined);
    if (names.includes("device_add")) {
      // device_add's driver is a plain string to the schema; QOM lists them.
      const types = await call("qom-list-types", { implements: "device", abstract: false });
      const drivers = namesOf(types);
      if (drivers !== undefined) completer.addValues("device_add", "driver", drivers);
    }
    this.#qmpCompleter = completer;
  }

  /** The history to start with, newest first (readline's order); empty if there is no file. */
  #loadHistory(): string[] {
    return this.#readHistory()?.reverse() ?? [];
  }

  /** The history file's lines, oldest first, each once (its newest place), at most HISTORY_SIZE. */
  #readHistory(): string[] | undefined {
    const path = this.#options.history;
    if (path === undefined) return undefined;
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch {
      return undefined;
    }
    const seen = new Set<string>();
    const lines: string[] = [];
    for (const line of text.split("\n").reverse()) {
      if (line.trim() === "" || seen.has(line)) continue;
      seen.add(line);
      lines.push(line);
      if (lines.length === HISTORY_SIZE) break;
    }
    return lines.reverse();
  }

  /**
   * Append the line just added to the history (newest first, as readline
   * keeps it) to the file, unless it holds a secret. Appending, not
   * rewriting, keeps the lines of other shells open at the same time.
   */
  #saveHistory(history: string[]): void {
    const path = this.#options.history;
    const newest = history[0];
    if (path === undefined || newest === undefined) return;
    // Kept in memory for this session (Up recalls it), never written.
    if (this.#holdsSecret(newest)) return;
    try {
      appendFileSync(path, `${newest}\n`, { mode: 0o600 });
    } catch (err) {
      this.#options.history = undefined;
      this.#print(`(history not saved: ${describe(err)})`);
    }
  }

  /** On leaving: cut the history file down to its last HISTORY_SIZE distinct lines. */
  #trimHistory(): void {
    if (!this.#interactive) return;
    const path = this.#options.history;
    const lines = this.#readHistory();
    if (path === undefined || lines === undefined) return;
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

  /** Whether a line sends something `redact` would hide (a password, a secret's data). */
  #holdsSecret(line: string): boolean {
    let message: unknown;
    if (this.#options.hmp) {
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

  /** Append one record to the `-l` log: secrets redacted, a timestamp first. */
  #log(record: { command?: JsonObject; reply?: unknown; error?: string; event?: unknown }): void {
    const fd = this.#logFd;
    if (fd === undefined) return;
    const entry: Record<string, unknown> = { timestamp: new Date().toISOString() };
    if (record.command !== undefined) entry["command"] = redact(record.command);
    if (record.reply !== undefined) entry["reply"] = record.reply;
    if (record.error !== undefined) entry["error"] = record.error;
    if (record.event !== undefined) entry["event"] = record.event;
    writeSync(fd, `${JSON.stringify(entry)}\n`);
  }

  /** The client's warnings, printed above the prompt; the rest dropped. */
  #logger(): Logger {
    const ignore = (): void => {};
    return {
      debug: ignore,
      info: ignore,
      warn: (message: string) => this.#print(`qmp: warning: ${message}`),
      // What ends a session is reported once, as "Disconnected: why".
      error: ignore,
    };
  }
}

/** Whether `err` (or its cause) is the peer closing hard: a reset or a broken pipe. */
function isPeerGone(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ECONNRESET" || code === "EPIPE") return true;
  }
  return false;
}

/** The `human-monitor-command` message for an HMP line. */
function hmpMessage(line: string, cpuIndex: number | undefined): JsonObject {
  const args: JsonObject = { "command-line": line };
  if (cpuIndex !== undefined) args["cpu-index"] = cpuIndex;
  return { execute: "human-monitor-command", arguments: args };
}

/** The `name`s of a list of `{ name }` objects (query-commands, guest-info), or `undefined`. */
function namesOf(value: JsonValue | undefined): string[] | undefined {
  if (!Array.isArray(value)) return undefined;
  return value.flatMap((c) => (isObject(c) && typeof c["name"] === "string" ? [c["name"]] : []));
}

/** `Class: desc` of a QMP error object. */
function errorLine(error: JsonObject): string {
  const text = (v: JsonValue | undefined): string =>
    typeof v === "string" ? v : JSON.stringify(v);
  return `${text(error["class"])}: ${text(error["desc"])}`;
}
