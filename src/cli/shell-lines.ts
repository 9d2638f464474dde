// The shell's lines: a qmp-shell line or an HMP line sent, its reply printed, `cpu N`, `quit`.

import { type JsonObject, type JsonValue, type QMPClient, Runstate } from "../index.js";
import { describe } from "./common.js";
import { ShellSyntaxError, type TransactionBuilder, USAGE_LINE, parseLine } from "./parse.js";
import { COMPLETION_TIMEOUT } from "./shell-completion.js";
import { printTree, readTree } from "./qom-tree.js";
import { errorLine, formatJson, hmpMessage, isObject, isQuit } from "./shell-messages.js";

/** After this long without a reply, the shell says that Ctrl-C stops waiting. */
const SLOW_REPLY = 5000;

/** How long a `quit` may take to close the connection before the prompt comes back. */
const QUIT_WAIT = 10_000;

/** Where a {@link LineRunner} reports, and what it asks of the session. */
export interface LineOutput {
  /** Print a result. */
  print(text: string): void;
  /** Print a message about the session (not a result). */
  note(text: string): void;
  /** Print what went wrong with the line. */
  error(text: string): void;
  /** Append a record to the `-l` log. */
  log(record: { command?: JsonObject; reply?: unknown; error?: string }): void;
  /** Whether QEMU has ended the session. */
  ended(): boolean;
  /** `qmp_capabilities`, sent by hand (`-N`), succeeded. */
  negotiated(): void;
}

/** Runs the shell's lines over a client, one at a time. */
export class LineRunner {
  readonly #client: QMPClient;
  readonly #options: { hmp: boolean; pretty: boolean; verbose: boolean };
  readonly #tx: TransactionBuilder;
  readonly #interactive: boolean;
  readonly #out: LineOutput;
  /** The command being run, to stop waiting for its reply on Ctrl-C. */
  #running: AbortController | undefined;
  /** The CPU HMP lines run on (`cpu N`). */
  #cpuIndex: number | undefined;

  constructor(
    client: QMPClient,
    options: { hmp: boolean; pretty: boolean; verbose: boolean },
    context: { tx: TransactionBuilder; interactive: boolean; output: LineOutput },
  ) {
    this.#client = client;
    this.#options = options;
    this.#tx = context.tx;
    this.#interactive = context.interactive;
    this.#out = context.output;
  }

  /** Whether a command is waiting for its reply. */
  get running(): boolean {
    return this.#running !== undefined;
  }

  /** Ctrl-C: stop waiting for the reply (a late one is dropped). */
  interrupt(): void {
    this.#running?.abort(new Error("interrupted"));
  }

  /** Run one line. */
  async handle(line: string): Promise<void> {
    // A comment: for scripts fed on stdin, and notes in the history.
    if (line.trimStart().startsWith("#")) return;
    if (this.#options.hmp) return this.#handleHmp(line.trim());
    const tree = /^\s*qom-tree(?:\s+(\S+))?\s*$/.exec(line);
    if (tree !== null) return this.#qomTree(tree[1] ?? "/");
    let result;
    try {
      result = parseLine(line, this.#tx);
    } catch (err) {
      if (err instanceof ShellSyntaxError) {
        // The usage line is about COMMAND key=value, not about JSON.
        const json = /^\s*[{[]/.test(line);
        this.#out.error(json ? `Error: ${err.message}` : `Error: ${err.message}\n${USAGE_LINE}`);
        return;
      }
      throw err;
    }
    if (result.kind !== "command") return;
    const id = result.message["id"];
    if (result.raw && id !== undefined && typeof id !== "string") {
      this.#out.error(
        "Error: the id of a JSON message must be a string (numbers are the shell's own)",
      );
      return;
    }
    const reply = await this.#send(result.message, result.raw);
    if (reply === undefined) return;
    this.#printReply(reply);
    if (result.message["execute"] === "qmp_capabilities" && "return" in reply) {
      this.#out.negotiated();
    }
  }

  /** The shell's own `qom-tree [PATH]`: the objects below PATH with their types. */
  async #qomTree(path: string): Promise<void> {
    try {
      const out: string[] = [];
      printTree(await readTree(this.#client, path, false), false, out);
      this.#out.print(out.join("\n"));
    } catch (err) {
      this.#out.error(`Error: ${describe(err)}`);
    }
  }

  /** Send `message`; the whole reply, or `undefined` (and a message printed) when there is none. */
  async #send(message: JsonObject, raw: boolean): Promise<Record<string, unknown> | undefined> {
    if (this.#options.verbose) this.#out.print(formatJson(message, this.#options.pretty));
    const controller = new AbortController();
    this.#running = controller;
    // A stopped (SIGSTOP) or stuck QEMU never answers: say how to get the prompt back.
    const hint = this.#interactive
      ? setTimeout(() => {
          this.#out.note(`(no reply after ${SLOW_REPLY / 1000} s; Ctrl-C stops waiting)`);
        }, SLOW_REPLY)
      : undefined;
    let reply: Record<string, unknown>;
    try {
      reply = await this.#client.raw(message, { signal: controller.signal });
    } catch (err) {
      this.#out.log({ command: message, error: describe(err) });
      if (this.#out.ended()) {
        this.#out.error("(no reply: the connection closed first)");
        return undefined;
      }
      if (controller.signal.aborted) {
        this.#out.note("^C (the reply will be ignored)");
        return undefined;
      }
      this.#out.error(`Error: ${describe(err)}`);
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
    this.#out.log({ command: message, reply: shown });
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
      this.#out.error(errorLine(error));
      return;
    }
    this.#out.print(formatJson(reply, this.#options.pretty));
  }

  /** One HMP line: `cpu N` picks the CPU; anything else goes through human-monitor-command. */
  async #handleHmp(line: string): Promise<void> {
    if (line === "") return;
    const cpu = /^cpu(?:\s+(\S+))?\s*$/.exec(line);
    if (cpu !== null) {
      const index = Number(cpu[1]);
      if (cpu[1] === undefined || !/^\d+$/.test(cpu[1]) || !Number.isSafeInteger(index)) {
        this.#out.error("cpu: give a CPU index, e.g. cpu 0");
        return;
      }
      const reply = await this.#send(hmpMessage("info version", index), false);
      if (reply === undefined) return;
      if (isObject(reply["error"])) {
        this.#out.error(`cpu: no CPU ${index} (${await this.#cpuList()})`);
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
      if (text !== "") this.#out.print(text);
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
}
