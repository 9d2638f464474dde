// The TUI's input editor: multi-line text with readline's keys, a kill ring of one, and history.
//
// No drawing here: the screen asks for the lines and the cursor. Columns are
// UTF-16 offsets moved by whole code points.

import type { Input } from "./keys.js";

/** What a key did to the editor. */
export type EditResult =
  /** The text changed or the cursor moved. */
  | "edited"
  /** The key means "send what is typed" (Ctrl+J, Alt+Enter). */
  | "send"
  /** Not the editor's key. */
  | "ignored";

/** Whether `ch` is part of a word (for Alt+B, Alt+F, Ctrl+W). */
function isWordChar(ch: string | undefined): boolean {
  return ch !== undefined && /[\p{L}\p{N}_]/u.test(ch);
}

/** The offset before the code point that ends at `col` in `line`. */
function stepBack(line: string, col: number): number {
  if (col <= 0) return 0;
  const low = line.charCodeAt(col - 1);
  return col >= 2 && low >= 0xdc00 && low <= 0xdfff ? col - 2 : col - 1;
}

/** The offset after the code point at `col` in `line`. */
function stepForward(line: string, col: number): number {
  if (col >= line.length) return line.length;
  const high = line.charCodeAt(col);
  return high >= 0xd800 && high <= 0xdbff && col + 1 < line.length ? col + 2 : col + 1;
}

/** A multi-line line editor with readline's keys and a history. */
export class Editor {
  #lines: string[] = [""];
  #row = 0;
  #col = 0;
  /** The last text killed (Ctrl+K, Ctrl+U, Ctrl+W, Alt+D), for Ctrl+Y. */
  #killed = "";
  /** Earlier inputs, oldest first. */
  readonly #history: string[];
  readonly #historySize: number;
  /** Where Up/Down are in the history: `#history.length` is the text being written. */
  #at: number;
  /** The text being written, kept while the history is browsed. */
  #draft = "";

  constructor(history: readonly string[] = [], historySize = 1000) {
    this.#history = history.slice(-historySize);
    this.#historySize = historySize;
    this.#at = this.#history.length;
  }

  /** The text, lines joined with "\n". */
  get text(): string {
    return this.#lines.join("\n");
  }

  /** Replace the text; the cursor goes to its end. */
  set text(value: string) {
    this.#lines = value.split("\n");
    this.#row = this.#lines.length - 1;
    this.#col = this.#lines[this.#row]!.length;
  }

  /** The lines of the text. */
  get lines(): readonly string[] {
    return this.#lines;
  }

  /** The cursor: line and UTF-16 offset in it. */
  get cursor(): { row: number; col: number } {
    return { row: this.#row, col: this.#col };
  }

  /** The history, oldest first. */
  get history(): readonly string[] {
    return this.#history;
  }

  /** Empty the editor (after sending); the history goes back to its end. */
  clear(): void {
    this.text = "";
    this.#at = this.#history.length;
    this.#draft = "";
  }

  /** Add `entry` to the history (a repeat of the last one is not added twice). */
  remember(entry: string): void {
    if (entry.trim() !== "" && this.#history.at(-1) !== entry) {
      this.#history.push(entry);
      if (this.#history.length > this.#historySize) this.#history.shift();
    }
    this.#at = this.#history.length;
  }

  /** Insert `text` (line breaks split the line) at the cursor. */
  insert(text: string): void {
    const parts = text.replace(/\r\n?/g, "\n").split("\n");
    const line = this.#lines[this.#row]!;
    const before = line.slice(0, this.#col);
    const after = line.slice(this.#col);
    if (parts.length === 1) {
      this.#lines[this.#row] = before + text + after;
      this.#col += text.length;
      return;
    }
    const last = parts.at(-1)!;
    const added = [before + parts[0]!, ...parts.slice(1, -1), last + after];
    this.#lines.splice(this.#row, 1, ...added);
    this.#row += parts.length - 1;
    this.#col = last.length;
  }

  /** Act on one key or typed text. */
  handle(input: Input): EditResult {
    if (input.kind === "text" || input.kind === "paste") {
      this.insert(input.text);
      return "edited";
    }
    if (input.kind !== "key") return "ignored";
    const { name, ctrl, meta } = input;
    if ((name === "enter" && meta) || (name === "j" && ctrl)) return "send";
    if (ctrl && !meta) return this.#ctrl(name);
    if (meta && !ctrl) return this.#meta(name);
    switch (name) {
      case "enter":
        this.insert("\n");
        return "edited";
      case "backspace":
        return this.#backspace();
      case "delete":
        return this.#delete();
      case "left":
        return this.#left();
      case "right":
        return this.#right();
      case "up":
        return this.#up();
      case "down":
        return this.#down();
      case "home":
        this.#col = 0;
        return "edited";
      case "end":
        this.#col = this.#lines[this.#row]!.length;
        return "edited";
      default:
        return "ignored";
    }
  }

  #ctrl(name: string): EditResult {
    const line = this.#lines[this.#row]!;
    switch (name) {
      case "a":
        this.#col = 0;
        return "edited";
      case "e":
        this.#col = line.length;
        return "edited";
      case "b":
        return this.#left();
      case "f":
        return this.#right();
      case "h":
        return this.#backspace();
      case "d":
        return this.#delete();
      case "p":
        return this.#history.length > 0 ? this.#browse(-1) : "ignored";
      case "n":
        return this.#browse(1);
      case "k":
        this.#killed = line.slice(this.#col);
        this.#lines[this.#row] = line.slice(0, this.#col);
        return "edited";
      case "u":
        this.#killed = line.slice(0, this.#col);
        this.#lines[this.#row] = line.slice(this.#col);
        this.#col = 0;
        return "edited";
      case "w": {
        const from = this.#wordStart();
        this.#killed = line.slice(from, this.#col);
        this.#lines[this.#row] = line.slice(0, from) + line.slice(this.#col);
        this.#col = from;
        return "edited";
      }
      case "y":
        this.insert(this.#killed);
        return "edited";
      case "left":
        this.#col = this.#wordStart();
        return "edited";
      case "right":
        this.#col = this.#wordEnd();
        return "edited";
      default:
        return "ignored";
    }
  }

  #meta(name: string): EditResult {
    const line = this.#lines[this.#row]!;
    switch (name) {
      case "b":
      case "left":
        this.#col = this.#wordStart();
        return "edited";
      case "f":
      case "right":
        this.#col = this.#wordEnd();
        return "edited";
      case "d": {
        const to = this.#wordEnd();
        this.#killed = line.slice(this.#col, to);
        this.#lines[this.#row] = line.slice(0, this.#col) + line.slice(to);
        return "edited";
      }
      case "backspace":
        return this.#ctrl("w");
      default:
        return "ignored";
    }
  }

  #backspace(): EditResult {
    if (this.#col > 0) {
      const line = this.#lines[this.#row]!;
      const from = stepBack(line, this.#col);
      this.#lines[this.#row] = line.slice(0, from) + line.slice(this.#col);
      this.#col = from;
    } else if (this.#row > 0) {
      const line = this.#lines.splice(this.#row, 1)[0]!;
      this.#row--;
      this.#col = this.#lines[this.#row]!.length;
      this.#lines[this.#row] += line;
    } else return "ignored";
    return "edited";
  }

  #delete(): EditResult {
    const line = this.#lines[this.#row]!;
    if (this.#col < line.length) {
      this.#lines[this.#row] = line.slice(0, this.#col) + line.slice(stepForward(line, this.#col));
    } else if (this.#row < this.#lines.length - 1) {
      this.#lines[this.#row] = line + this.#lines.splice(this.#row + 1, 1)[0]!;
    } else return "ignored";
    return "edited";
  }

  #left(): EditResult {
    if (this.#col > 0) this.#col = stepBack(this.#lines[this.#row]!, this.#col);
    else if (this.#row > 0) {
      this.#row--;
      this.#col = this.#lines[this.#row]!.length;
    } else return "ignored";
    return "edited";
  }

  #right(): EditResult {
    const line = this.#lines[this.#row]!;
    if (this.#col < line.length) this.#col = stepForward(line, this.#col);
    else if (this.#row < this.#lines.length - 1) {
      this.#row++;
      this.#col = 0;
    } else return "ignored";
    return "edited";
  }

  /** Up: the line above, or the previous history entry on the first line. */
  #up(): EditResult {
    if (this.#row === 0) return this.#history.length > 0 ? this.#browse(-1) : "ignored";
    this.#row--;
    this.#col = Math.min(this.#col, this.#lines[this.#row]!.length);
    return "edited";
  }

  /** Down: the line below, or the next history entry on the last line. */
  #down(): EditResult {
    if (this.#row === this.#lines.length - 1) return this.#browse(1);
    this.#row++;
    this.#col = Math.min(this.#col, this.#lines[this.#row]!.length);
    return "edited";
  }

  /** Move `step` in the history; the draft is kept and comes back past the newest entry. */
  #browse(step: -1 | 1): EditResult {
    const to = this.#at + step;
    if (to < 0 || to > this.#history.length) return "ignored";
    if (this.#at === this.#history.length) this.#draft = this.text;
    this.#at = to;
    this.text = to === this.#history.length ? this.#draft : this.#history[to]!;
    return "edited";
  }

  #wordStart(): number {
    const line = this.#lines[this.#row]!;
    let i = this.#col;
    while (i > 0 && !isWordChar(line[i - 1])) i--;
    while (i > 0 && isWordChar(line[i - 1])) i--;
    return i;
  }

  #wordEnd(): number {
    const line = this.#lines[this.#row]!;
    let i = this.#col;
    while (i < line.length && !isWordChar(line[i])) i++;
    while (i < line.length && isWordChar(line[i])) i++;
    return i;
  }
}
