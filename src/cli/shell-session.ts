// The shell's session: set-up (connect, or start QEMU), the prompt loop, events, history, the log.

import { type Logger, QGAClient, QMPClient, Runstate } from "../index.js";
import {
  type CliIO,
  ExitStatus,
  connectFailure,
  describe,
  greetingHint,
  version,
  writeLine,
} from "./common.js";
import { LaunchError, type LaunchedQemu, launchQemu } from "./launch.js";
import { TransactionBuilder } from "./parse.js";
import { type LineCompleter, initialCompleter, loadCompleter } from "./shell-completion.js";
import { QOM_TREE, completeQom } from "./qom-complete.js";
import { LineRunner } from "./shell-lines.js";
import { ExchangeLog, type LogRecord } from "./shell-log.js";
import { HISTORY_SIZE, appendHistory, readHistory, trimHistory } from "./shell-history.js";
import { formatJson } from "./shell-messages.js";
import { type ShellOptions } from "./shell-options.js";
import { Terminal } from "./shell-terminal.js";

/** What the shell reads and writes: the process's streams, or a test's. */
export interface ShellIO extends CliIO {
  stdin: NodeJS.ReadableStream;
}

/** Whether the TTY check passes for both ends: then the shell is interactive. */
function isTTY(stream: NodeJS.ReadableStream | NodeJS.WritableStream): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true;
}

/** One shell session: the prompt loop over a connected client. */
export class Shell {
  /** `shell` or `wrap`: how messages name the command. */
  readonly #command: string;
  readonly #options: ShellOptions;
  readonly #io: ShellIO;
  readonly #interactive: boolean;
  readonly #client: QMPClient;
  readonly #tx = new TransactionBuilder();
  /** The terminal (or pipe) lines are read from, once the session is up. */
  #terminal: Terminal | undefined;
  readonly #lines: LineRunner;
  #completer: LineCompleter;
  /** Settles once the completion data is loaded (or failed to load). */
  #completionsLoaded: Promise<void> = Promise.resolve();
  #logFile: ExchangeLog | undefined;
  /** We are leaving: a session end is ours, not news. */
  #leaving = false;
  /** Set when QEMU ended the session: resolves to the error if it broke rather than closed. */
  #ended: Promise<unknown> | undefined;
  /** Lines read but not handled yet (typed ahead, or pasted): no prompt between them. */
  #queued = 0;
  /** The number of the line being handled (for messages when reading a pipe). */
  #lineNumber = 0;
  /** A line failed (reading a pipe: the exit status says so). */
  #failed = false;

  /** Whether the shell ended because its terminal went away. */
  get hungUp(): boolean {
    return this.#terminal?.hungUp ?? false;
  }

  constructor(command: string, options: ShellOptions, io: ShellIO) {
    this.#command = command;
    this.#options = options;
    this.#io = io;
    this.#interactive = isTTY(io.stdin) && isTTY(io.stdout);
    this.#completer = initialCompleter(options);
    this.#client = options.ga
      ? new QGAClient({ name: "qmp shell", logger: this.#logger(), record: options.record })
      : new QMPClient({
          name: "qmp shell",
          negotiate: options.negotiate,
          awaitGreeting: options.negotiate,
          logger: this.#logger(),
          record: options.record,
        });
    this.#lines = new LineRunner(this.#client, options, {
      tx: this.#tx,
      interactive: this.#interactive,
      output: {
        print: (text) => this.#print(text),
        note: (text) => this.#note(text),
        error: (text) => this.#error(text),
        log: (record) => this.#log(record),
        ended: () => this.#ended !== undefined,
        negotiated: () => {
          // After a qmp_capabilities by hand (-N), the command list can be had.
          if (this.#interactive && !this.#options.negotiate) {
            this.#completionsLoaded = this.#loadCompletions();
          }
        },
      },
    });
  }

  /** Connect to `address`, then run the shell. */
  async runConnected(
    address: Parameters<QMPClient["connect"]>[0],
    text: string,
  ): Promise<ExitStatus> {
    // A guest agent sends no greeting: nothing to hint about while waiting for one.
    const hint = this.#options.ga ? () => {} : greetingHint(this.#io, this.#command, text);
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
      if (this.hungUp) {
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
    if (this.#interactive) {
      stdout.write(banner(this.#client, this.#options, where));
    }
    if (this.#options.log !== undefined) {
      try {
        this.#logFile = new ExchangeLog(this.#options.log);
      } catch (err) {
        writeLine(this.#io.stderr, `qmp ${this.#command}: cannot open the log: ${describe(err)}`);
        await this.#client.disconnect().catch(() => {});
        return ExitStatus.USAGE;
      }
    }

    const terminal = new Terminal({
      input: this.#io.stdin,
      output: stdout,
      interactive: this.#interactive,
      // A Tab pressed before the completion data is in waits for it.
      complete: (line) => this.#completionsLoaded.then(() => this.#complete(line)),
      history: this.#interactive ? this.#loadHistory() : [],
      historySize: this.#interactive ? HISTORY_SIZE : 0,
    });
    this.#terminal = terminal;
    const rl = terminal.readline;
    rl.on("line", () => this.#queued++);
    rl.on("history", (history: string[]) => this.#saveHistory(history));
    rl.on("SIGINT", () => this.#interrupt());

    const onRunstate = (state: Runstate): void => {
      if (state === Runstate.DISCONNECTING && !this.#leaving) this.#sessionEnded();
    };
    this.#client.on("runstate", onRunstate);
    const leave = (): void => rl.close();
    const signals: NodeJS.Signals[] = this.#interactive ? ["SIGTERM"] : ["SIGINT", "SIGTERM"];
    for (const s of signals) process.on(s, leave);
    const unwatch = terminal.watchHangUp();
    const events = this.#pumpEvents();
    // Only a terminal has Tab; a pipe would pay for the schema for nothing.
    if (this.#interactive) this.#completionsLoaded = this.#loadCompletions();

    let loopError: unknown;
    try {
      this.#prompt();
      for await (const line of rl) {
        this.#queued--;
        this.#lineNumber++;
        if (terminal.hungUp) break;
        terminal.busy();
        await this.#lines.handle(line);
        if (this.#ended !== undefined) break;
        // Lines typed ahead or pasted follow at once: their prompt would only flicker.
        if (this.#queued === 0) this.#prompt();
      }
      if (this.#tx.active && !this.#interactive && this.#ended === undefined) {
        this.#error("the input ended inside a transaction: it was not sent");
      }
    } catch (err) {
      // readline's errors end the loop too (a dead terminal's among them).
      if (!terminal.hungUp) loopError = err;
    } finally {
      // Ctrl-D leaves the cursor after the prompt: end that line first.
      terminal.endLine();
      this.#leaving = true;
      for (const s of signals) process.off(s, leave);
      unwatch();
      this.#client.off("runstate", onRunstate);
      terminal.close();
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
    if (terminal.hungUp) {
      this.#logFile?.close();
      await this.#client.destroy();
      return ExitStatus.OK;
    }
    if (error !== undefined) {
      this.#note(`Disconnected: ${describe(error)}`);
      status = ExitStatus.FAILED;
    } else {
      // Reading a pipe (a script), the end of the session is no news.
      if (isTTY(this.#io.stdin)) this.#note("Disconnected");
      if (this.#failed && !this.#interactive) status = ExitStatus.FAILED;
    }
    // Two shells append to one file; the one that leaves cuts it down.
    if (this.#interactive && this.#options.history !== undefined) {
      trimHistory(this.#options.history);
    }
    this.#logFile?.close();
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
    this.#terminal?.close();
  }

  /** Show the prompt (interactive only). */
  #prompt(): void {
    this.#terminal?.prompt(this.#tx.active ? "TRANS> " : "(QEMU) ");
  }

  /** Print a result (or lines of one) above the line being typed; plainly before the session. */
  #print(text: string): void {
    if (this.#terminal === undefined) writeLine(this.#io.stdout, text);
    else this.#terminal.print(text);
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
    const terminal = this.#terminal;
    if (terminal === undefined) return;
    if (this.#lines.running) {
      // Like a terminal, Ctrl-C drops what was typed ahead too.
      terminal.dropTypedAhead();
      this.#lines.interrupt();
      return;
    }
    terminal.cancelLine();
    if (this.#tx.active) {
      this.#tx.reset();
      this.#print("(transaction dropped)");
    }
    this.#prompt();
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

  /** Fetch what Tab completion needs; a failure leaves the completion it had. */
  async #loadCompletions(): Promise<void> {
    const completer = await loadCompleter(this.#client, this.#options);
    if (completer !== undefined) this.#completer = completer;
  }

  /** Tab: QOM paths and properties read from QEMU, else the schema's completion (and `qom-tree`). */
  async #complete(line: string): Promise<[string[], string]> {
    if (!this.#options.hmp && !this.#options.ga) {
      const qom = await completeQom(this.#client, line);
      if (qom !== undefined) return qom;
    }
    const [candidates, on] = this.#completer(line, { transaction: this.#tx.active });
    const word = line.trimStart();
    if (
      !this.#options.hmp &&
      !this.#options.ga &&
      !word.includes(" ") &&
      QOM_TREE.startsWith(word)
    ) {
      return [[...candidates, `${QOM_TREE} `].sort(), on];
    }
    return [candidates, on];
  }

  /** The history to start with, newest first (readline's order); empty if there is no file. */
  #loadHistory(): string[] {
    const path = this.#options.history;
    return (path === undefined ? undefined : readHistory(path))?.reverse() ?? [];
  }

  /**
   * Append the line just added to the history (newest first, as readline
   * keeps it) to the file, unless it holds a secret: that one is kept in
   * memory for this session (Up recalls it), never written.
   */
  #saveHistory(history: string[]): void {
    const path = this.#options.history;
    const newest = history[0];
    if (path === undefined || newest === undefined) return;
    try {
      appendHistory(path, newest, this.#options);
    } catch (err) {
      this.#options.history = undefined;
      this.#print(`(history not saved: ${describe(err)})`);
    }
  }

  /** Append one record to the `-l` log, if there is one. */
  #log(record: LogRecord): void {
    this.#logFile?.write(record);
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

/** What the interactive shell says first: who it is, what it is connected to, how to use it. */
function banner(client: QMPClient, options: ShellOptions, where: string): string {
  const v = client.greeting?.QMP.version.qemu;
  const qemu = options.ga
    ? "the guest agent"
    : v === undefined
      ? "QMP"
      : `QEMU ${v.major}.${v.minor}.${v.micro}`;
  const kind = options.ga ? "guest agent" : options.hmp ? "HMP" : "QMP";
  const lines = [
    `Welcome to the ${kind} shell of qmp ${version()}!`,
    `Connected to ${qemu} ${where}.`,
  ];
  if (!options.negotiate && !options.ga) {
    lines.push("Capabilities not negotiated (-N): send qmp_capabilities if needed.");
  }
  lines.push("Tab completes; Ctrl-D leaves.");
  return lines.map((line) => `${line}\n`).join("");
}
