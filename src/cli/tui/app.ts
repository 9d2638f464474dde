// The TUI's screen and keys: the history pane, the status bar and the input editor laid out on
// the terminal, and what each key does. The connection lives elsewhere (see tui.ts): the app
// is told what happens and asks its host to send.

import { stripVTControlCharacters } from "node:util";
import { type JsonObject } from "../../index.js";
import { TransactionBuilder, parseLine } from "../parse.js";
import { isObject } from "../shell-messages.js";
import { Editor } from "./editor.js";
import { type Input, KeyDecoder } from "./keys.js";
import { type Entry, Pane } from "./pane.js";
import { type Frame, Screen } from "./screen.js";
import { type Style, type StyledLine, cells, paint, wrap } from "./style.js";

/** What the app needs from whoever runs it. */
export interface AppHost {
  /** Send `message` (it has an id) and resolve with QEMU's reply. */
  send(message: JsonObject): Promise<JsonObject>;
  /** Tab completion of `line`: `[candidates, the part they complete]`. */
  complete(line: string): [string[], string];
  /** An input was sent: keep it in the history file. */
  remember(line: string): void;
  /** The user wants to leave. */
  quit(): void;
}

/** How long an ESC may wait for the rest of a sequence before it is the Esc key. */
const ESC_WAIT = 40;

/** The keys, for F1. */
export const KEYS_HELP = `Keys:
  Enter          send (a complete command or JSON object), else a new line
  Alt+Enter, Ctrl+J   send as typed
  Tab            complete command and argument names
  Up, Down       move between lines; on the first or last line, the history
  PgUp, PgDn, wheel   scroll the history; End (in the history) back to the newest
  Shift+Tab, F6  move between the input and the history
  In the history: Up/Down select, Enter fold/unfold, / search, n/N next/previous,
                  f filter events by name, e show/hide events, g/G top/bottom
  Ctrl+L         redraw     Esc, Ctrl+C, Ctrl+D (on an empty input)   leave`;

/** The input's rows (each logical line wrapped after its prompt) and where its cursor is. */
interface InputRows {
  rows: StyledLine[];
  cursor: { row: number; col: number };
}

/** A one-line prompt in the status bar: search or filter. */
interface MiniPrompt {
  label: string;
  text: string;
  done: (text: string) => void;
}

/** The TUI's screen and keyboard. */
export class App {
  readonly pane = new Pane();
  readonly editor: Editor;
  readonly #screen: Screen;
  readonly #host: AppHost;
  readonly #decoder = new KeyDecoder();
  #cols: number;
  #rows: number;
  #focus: "input" | "pane" = "input";
  #status = "[Connecting]";
  #statusStyle: Style = "status";
  #hint: StyledLine | undefined;
  #prompt: MiniPrompt | undefined;
  #escTimer: NodeJS.Timeout | undefined;
  #drawPending = false;
  #ids = 0;
  /** Where the input area's view starts (its first shown row), to keep the cursor in view. */
  #inputTop = 0;

  constructor(options: {
    out: NodeJS.WritableStream;
    cols: number;
    rows: number;
    history: readonly string[];
    host: AppHost;
  }) {
    this.#screen = new Screen(options.out);
    this.#cols = options.cols;
    this.#rows = options.rows;
    this.#host = options.host;
    this.editor = new Editor(options.history);
  }

  /** Take over the terminal. */
  start(): void {
    this.#screen.enter();
    this.draw();
  }

  /** Give the terminal back (idempotent). */
  stop(): void {
    clearTimeout(this.#escTimer);
    this.#screen.leave();
  }

  /** The connection's state, shown at the left of the status bar. */
  setStatus(text: string, style: Style = "status"): void {
    this.#status = text;
    this.#statusStyle = style;
    this.#schedule();
  }

  /** The status bar's text. */
  get status(): string {
    return this.#status;
  }

  /** Add an entry to the history pane. */
  add(entry: Omit<Entry, "time"> & { time?: number }): void {
    this.pane.add({ ...entry, time: entry.time ?? Date.now() });
    this.#schedule();
  }

  /** The terminal was resized. */
  resize(cols: number, rows: number): void {
    this.#cols = Math.max(1, cols);
    this.#rows = Math.max(1, rows);
    this.#screen.invalidate();
    this.draw();
  }

  /** Raw input from the terminal. */
  input(data: string): void {
    clearTimeout(this.#escTimer);
    for (const input of this.#decoder.push(data)) this.#handle(input);
    if (this.#decoder.holding) {
      this.#escTimer = setTimeout(() => {
        for (const input of this.#decoder.flush()) this.#handle(input);
        this.draw();
      }, ESC_WAIT);
    }
    this.draw();
  }

  /** Draw now. */
  draw(): void {
    this.#drawPending = false;
    this.#screen.draw(this.#frame());
  }

  // ------------------------------------------------------------------ keys

  #handle(input: Input): void {
    this.#hint = undefined;
    if (input.kind === "wheel") {
      this.pane.scrollBy(input.direction === "up" ? 3 : -3);
      return;
    }
    // Typed keys come several to a read: in the history and its prompts each one counts.
    if (
      input.kind === "text" &&
      input.text.length > 1 &&
      (this.#prompt !== undefined || this.#focus === "pane")
    ) {
      for (const ch of input.text) this.#handle({ kind: "text", text: ch });
      return;
    }
    if (this.#prompt !== undefined) return this.#promptKey(input);
    if (input.kind === "key") {
      const { name, ctrl, meta, shift } = input;
      if ((ctrl && name === "c") || (name === "escape" && !meta)) return this.#host.quit();
      if (ctrl && name === "l") return this.#screen.invalidate();
      if (name === "f1") return this.#help();
      if (name === "pageup" || name === "pagedown") {
        const page = Math.max(1, this.#layout().paneHeight - 1);
        this.pane.scrollBy(name === "pageup" ? page : -page);
        return;
      }
      if ((name === "tab" && shift) || name === "f6") return this.#toggleFocus();
    }
    if (this.#focus === "pane") this.#paneKey(input);
    else this.#inputKey(input);
  }

  #toggleFocus(): void {
    this.#focus = this.#focus === "input" ? "pane" : "input";
    if (this.#focus === "pane") this.pane.moveSelection(0);
    else this.pane.unselect();
  }

  #inputKey(input: Input): void {
    if (input.kind === "key") {
      const { name, ctrl, meta } = input;
      if (ctrl && name === "d" && this.editor.text === "") return this.#host.quit();
      if (name === "tab" && !ctrl && !meta) return this.#complete();
      if (name === "enter" && !meta && !ctrl && wantsSend(this.editor.text)) {
        return this.#send();
      }
    }
    if (this.editor.handle(input) === "send") this.#send();
  }

  #paneKey(input: Input): void {
    if (input.kind === "text" && input.text.length === 1) {
      switch (input.text) {
        case "/":
          return this.#ask("Search: ", (term) => {
            if (!this.pane.find(term)) this.#hint = [{ text: `Not found: ${term}`, style: "warn" }];
          });
        case "n":
        case "N":
          if (!this.pane.find(this.pane.search, input.text === "n")) {
            this.#hint = [{ text: "No more matches", style: "warn" }];
          }
          return;
        case "f":
          return this.#ask("Show events named like: ", (text) => this.pane.setFilter(text));
        case "e":
          return this.pane.toggleEvents();
        case "g":
          return this.pane.scrollToStart();
        case "G":
          return this.pane.scrollToEnd();
        case "k":
          return this.pane.moveSelection(-1);
        case "j":
          return this.pane.moveSelection(1);
        case "i":
          return this.#toggleFocus();
        case " ":
          this.pane.toggleFold();
          return;
      }
    }
    if (input.kind === "key") {
      switch (input.name) {
        case "up":
          return this.pane.moveSelection(-1);
        case "down":
          return this.pane.moveSelection(1);
        case "enter":
          this.pane.toggleFold();
          return;
        case "home":
          return this.pane.scrollToStart();
        case "end":
          return this.pane.scrollToEnd();
        case "tab":
          return this.#toggleFocus();
        default:
          return;
      }
    }
    // Anything else typed goes to the input.
    this.#toggleFocus();
    this.#inputKey(input);
  }

  #ask(label: string, done: (text: string) => void): void {
    this.#prompt = { label, text: "", done };
  }

  #promptKey(input: Input): void {
    const prompt = this.#prompt!;
    if (input.kind === "text" || input.kind === "paste") {
      prompt.text += input.text.replace(/[\r\n]/g, " ");
      return;
    }
    if (input.kind !== "key") return;
    if (input.name === "escape" || (input.ctrl && input.name === "c")) this.#prompt = undefined;
    else if (input.name === "enter") {
      this.#prompt = undefined;
      prompt.done(prompt.text);
    } else if (input.name === "backspace") prompt.text = prompt.text.slice(0, -1);
  }

  #help(): void {
    this.add({ kind: "note", text: KEYS_HELP });
    this.pane.scrollToEnd();
  }

  /** Tab: complete the word before the cursor on the current line (one candidate, or their common prefix). */
  #complete(): void {
    const { row, col } = this.editor.cursor;
    const line = this.editor.lines[row]!.slice(0, col);
    const [candidates, on] = this.#host.complete(line);
    if (candidates.length === 0) return;
    let common = candidates[0]!;
    for (const c of candidates) {
      while (!c.startsWith(common)) common = common.slice(0, -1);
    }
    if (common.length > on.length) this.editor.insert(common.slice(on.length));
    else if (candidates.length > 1) {
      this.#hint = [{ text: candidates.join("  "), style: "plain" }];
    }
  }

  // ------------------------------------------------------------------ sending

  #send(): void {
    const text = this.editor.text;
    if (text.trim() === "") return;
    let message: JsonObject;
    try {
      message = toMessage(text);
    } catch (err) {
      this.add({ kind: "error", text: (err as Error).message });
      this.pane.scrollToEnd();
      return;
    }
    this.editor.remember(text);
    this.editor.clear();
    this.#host.remember(text);
    if (!("id" in message)) message = { ...message, id: `tui-${++this.#ids}` };
    this.add({ kind: "sent", message });
    this.pane.scrollToEnd();
    void this.#host.send(message).then(
      (reply) => this.add({ kind: "received", message: reply }),
      (err: unknown) =>
        this.add({ kind: "error", text: err instanceof Error ? err.message : String(err) }),
    );
  }

  // ------------------------------------------------------------------ drawing

  #schedule(): void {
    if (this.#drawPending) return;
    this.#drawPending = true;
    setImmediate(() => {
      if (this.#drawPending) this.draw();
    });
  }

  /** The input's rows: each logical line wrapped after its prompt. */
  #inputRows(): InputRows {
    const width = Math.max(1, this.#cols - 2);
    const rows: StyledLine[] = [];
    let cursor = { row: 0, col: 2 };
    const { row: cRow, col: cCol } = this.editor.cursor;
    this.editor.lines.forEach((line, i) => {
      const prompt = i === 0 ? "› " : "  ";
      const parts = wrap([{ text: line, style: "plain" }], width);
      if (i === cRow) {
        const before = cells(line.slice(0, cCol));
        const at = Math.min(Math.floor(before / width), parts.length - 1);
        cursor = { row: rows.length + at, col: 2 + before - at * width };
        if (cursor.col >= this.#cols) cursor = { row: cursor.row, col: this.#cols - 1 };
      }
      parts.forEach((part, j) => {
        rows.push([
          { text: j === 0 ? prompt : "  ", style: i === 0 && j === 0 ? "sent" : "plain" },
          ...part,
        ]);
      });
    });
    return { rows, cursor };
  }

  /** The input's rows, and how the rows of the terminal are shared: input (a third at most), pane. */
  #layout(): {
    input: InputRows;
    inputHeight: number;
    paneHeight: number;
  } {
    const input = this.#inputRows();
    const inputHeight = Math.max(1, Math.min(input.rows.length, Math.floor(this.#rows / 3)));
    const hint = this.#hint !== undefined ? 1 : 0;
    const paneHeight = Math.max(1, this.#rows - 1 - inputHeight - hint);
    return { input, inputHeight, paneHeight };
  }

  #statusLine(): StyledLine {
    if (this.#prompt !== undefined) {
      return [{ text: this.#prompt.label + this.#prompt.text, style: "plain" }];
    }
    const flags: string[] = [];
    if (!this.pane.eventsShown) flags.push("[events hidden]");
    if (this.pane.filter !== "") flags.push(`[events: *${this.pane.filter}*]`);
    if (!this.pane.following) flags.push("[scrolled]");
    if (this.#focus === "pane") flags.push("[history]");
    const counts = [...this.pane.eventCounts].map(([name, n]) => `${name} ${n}`).join(" · ");
    const left = [this.#status, ...flags].join(" ");
    const right = `${counts}${counts !== "" ? "  " : ""}F1 help`;
    const gap = Math.max(1, this.#cols - cells(left) - cells(right));
    return [
      { text: this.#status, style: this.#statusStyle },
      { text: left.slice(this.#status.length), style: "status" },
      { text: " ".repeat(gap) + right, style: "status" },
    ];
  }

  #frame(): Frame {
    const cols = this.#cols;
    const { input, inputHeight, paneHeight } = this.#layout();
    // Keep the cursor's row in the input's view.
    if (input.cursor.row < this.#inputTop) this.#inputTop = input.cursor.row;
    if (input.cursor.row >= this.#inputTop + inputHeight)
      this.#inputTop = input.cursor.row - inputHeight + 1;
    this.#inputTop = Math.min(this.#inputTop, Math.max(0, input.rows.length - inputHeight));
    const rows: string[] = [];
    for (const line of this.pane.render(cols, paneHeight)) rows.push(paint(line, cols));
    if (this.#hint !== undefined) rows.push(paint(this.#hint, cols));
    const statusRow = rows.length;
    rows.push(paint(this.#statusLine(), cols, this.#prompt !== undefined ? "plain" : "status"));
    const shown = input.rows.slice(this.#inputTop, this.#inputTop + inputHeight);
    for (const line of shown) rows.push(paint(line, cols));
    while (rows.length < this.#rows) rows.push(paint([], cols));
    rows.length = this.#rows;
    let cursor: Frame["cursor"];
    if (this.#prompt !== undefined) {
      cursor = {
        row: statusRow,
        col: Math.min(cols - 1, cells(this.#prompt.label + this.#prompt.text)),
      };
    } else if (this.#focus === "input") {
      cursor = { row: statusRow + 1 + input.cursor.row - this.#inputTop, col: input.cursor.col };
    }
    if (cursor !== undefined && cursor.row >= this.#rows) cursor = undefined;
    return { rows, cursor };
  }

  /** The text of the screen's rows without styles (for tests and the log). */
  text(): string {
    return this.#frame()
      .rows.map((r) => stripVTControlCharacters(r).trimEnd())
      .join("\n");
  }
}

/** Whether the braces and brackets of `text` (outside strings) are all closed. */
export function bracesClosed(text: string): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "{" || ch === "[") depth++;
    else if (ch === "}" || ch === "]") depth--;
  }
  return depth <= 0 && !inString;
}

/**
 * The message for what was typed: a JSON object (from `{`), or a command
 * in the qmp-shell syntax (`transaction(` … `)` over several lines too).
 *
 * @throws {Error} with a message for the pane: invalid JSON, not an object,
 *   or the shell syntax's error.
 */
export function toMessage(text: string): JsonObject {
  const trimmed = text.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[") || trimmed.startsWith('"')) {
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch (err) {
      throw new Error(`Invalid JSON, not sent: ${(err as Error).message}`, { cause: err });
    }
    if (!isObject(value)) throw new Error("Not sent: a QMP message is a JSON object");
    return value;
  }
  const tx = new TransactionBuilder();
  for (const line of trimmed.split("\n")) {
    if (line.trim() === "") continue;
    const result = parseLine(line, tx);
    if (result.kind === "command") return result.message;
  }
  throw new Error("Not sent: the transaction is not closed with ')'");
}

/** Whether Enter should send `text`: a command, or a JSON object whose braces are closed. */
export function wantsSend(text: string): boolean {
  const trimmed = text.trim();
  if (trimmed === "") return false;
  if (trimmed.startsWith("{")) return bracesClosed(trimmed);
  const lines = trimmed.split("\n").map((l) => l.trim());
  if (/^transaction\(\s*$/.test(lines[0]!)) return lines.at(-1) === ")";
  return true;
}
