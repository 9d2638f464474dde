// The shell's terminal: readline on the TTY, text printed above the line being typed, the prompt, ^C.
//
// The only module of the shell that draws on the terminal or drives readline's
// line editor, with readline's public API only (`prompt`, `write` of keys,
// `line`, `getCursorPos`). Printing above the typed line redraws the prompt
// here rather than through readline's refresh, which climbs by a row count
// it keeps privately and does not always keep up to date.

import * as readline from "node:readline";
import { PassThrough } from "node:stream";
import { stripVTControlCharacters } from "node:util";
import { writeLine } from "./common.js";

/** Options of {@link Terminal}. */
export interface TerminalOptions {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /** A terminal at both ends: line editing, prompt, completion; else plain lines in and out. */
  interactive: boolean;
  /** Tab completion: `[completions, completeOn]`, as readline's completer gives it. */
  complete: (line: string) => Promise<[string[], string]>;
  /** The history to start with, newest first (readline's order). */
  history: string[];
  /** How many history lines readline keeps. */
  historySize: number;
}

/** Tab stops of the typed line, as readline is told (for the redraw's arithmetic). */
const TAB_SIZE = 4;

/** The shell's readline interface and the drawing around it. */
export class Terminal {
  /** The line reader: iterate it for lines; its events ('line', 'history', 'SIGINT', …) are the shell's. */
  readonly readline: readline.Interface;
  readonly #output: NodeJS.WritableStream;
  readonly #input: NodeJS.ReadableStream;
  readonly #interactive: boolean;
  #closed = false;
  #atPrompt = false;
  #hungUp = false;

  constructor(options: TerminalOptions) {
    this.#output = options.output;
    this.#input = options.input;
    this.#interactive = options.interactive;
    const keys = options.interactive ? keysOf(options.input) : undefined;
    const rl = readline.createInterface({
      input: keys ?? options.input,
      output: options.interactive ? options.output : undefined,
      terminal: options.interactive,
      completer: (line: string, done: (err: null, result: [string[], string]) => void): void => {
        void options.complete(line).then((result) => done(null, result));
      },
      history: options.history,
      historySize: options.historySize,
      removeHistoryDuplicates: true,
      tabSize: TAB_SIZE,
      // Empty while a command runs: what is typed ahead shows from column 0.
      prompt: "",
    });
    this.readline = rl;
    rl.on("close", () => (this.#closed = true));
    if (keys !== undefined) feedKeys(options.input, keys, rl);
  }

  /** The prompt is on screen, waiting for a line: output goes above it. */
  get atPrompt(): boolean {
    return this.#atPrompt;
  }

  /** The terminal went away: nothing more is written to it. */
  get hungUp(): boolean {
    return this.#hungUp;
  }

  /** Show `prompt` (interactive only), keeping what was typed ahead and the cursor in it. */
  prompt(prompt: string): void {
    if (this.#closed || !this.#interactive) return;
    this.readline.setPrompt(prompt);
    this.#atPrompt = true;
    this.readline.prompt(true);
  }

  /** A line is being handled: no prompt; keys typed meanwhile show from column 0. */
  busy(): void {
    this.#atPrompt = false;
    this.readline.setPrompt("");
  }

  /**
   * Print `text` (one or more lines) without breaking the line being typed:
   * the prompt and the typed text are cleared, the text printed, and the
   * prompt and the typed text drawn again below, the cursor where it was.
   */
  print(text: string): void {
    if (this.#hungUp) return;
    const rl = this.readline;
    // On a terminal, readline owns the last line: the prompt, or (with an
    // empty prompt, while a command runs) what is typed ahead.
    if (this.#closed || !this.#interactive || (rl.getPrompt() === "" && rl.line === "")) {
      writeLine(this.#output, text);
      return;
    }
    const out = this.#output;
    const shown = rl.getPrompt() + rl.line;
    const cursor = rl.getCursorPos();
    readline.moveCursor(out, 0, -cursor.rows);
    readline.cursorTo(out, 0);
    readline.clearScreenDown(out);
    out.write(`${text}\n${shown}`);
    const columns = (out as { columns?: number }).columns ?? Infinity;
    const end = displayEnd(shown, columns);
    // At the right margin the terminal waits to wrap: a space makes it (as readline does).
    if (end.cols === 0) out.write(" ");
    readline.cursorTo(out, cursor.cols);
    readline.moveCursor(out, 0, cursor.rows - end.rows);
  }

  /** Ctrl-C while a command runs: drop what was typed ahead. */
  dropTypedAhead(): void {
    this.readline.write(null, { ctrl: true, name: "e" });
    this.readline.write(null, { ctrl: true, name: "u" });
  }

  /**
   * Ctrl-C at the prompt, as a terminal does it: "^C" after the typed line,
   * which stays on screen, and the line emptied; the cursor on a new row.
   */
  cancelLine(): void {
    const typed = this.readline.line;
    // readline empties its line and redraws the prompt alone; the text goes back after it.
    this.dropTypedAhead();
    this.#output.write(`${typed}^C\n`);
    this.#atPrompt = false;
  }

  /** Leaving: end the prompt's row (Ctrl-D leaves the cursor after the prompt). */
  endLine(): void {
    if (this.#atPrompt && !this.#hungUp) this.#output.write("\n");
    this.#atPrompt = false;
  }

  /**
   * The terminal is gone (EIO, SIGHUP): write nothing more, and make the
   * input's raw mode a no-op — there are no modes to restore on a dead
   * terminal, and trying fails again.
   */
  hangUp(): void {
    if (this.#hungUp) return;
    this.#hungUp = true;
    this.#atPrompt = false;
    const input = this.#input as { setRawMode?: unknown };
    if (typeof input.setRawMode === "function") input.setRawMode = () => input;
  }

  /**
   * Until the returned function is called, watch for the terminal going
   * away — EIO on either stream, SIGHUP, the end of a terminal's input — and
   * then {@link hangUp} and close, quietly (no stack trace).
   */
  watchHangUp(): () => void {
    const hangUp = (): void => this.hangUp();
    const onIoError = (): void => {
      this.hangUp();
      this.close();
    };
    process.on("SIGHUP", onIoError);
    // Kept after the session: a late EIO must not crash the process either.
    this.readline.on("error", onIoError);
    this.#input.on("error", onIoError);
    this.#output.on("error", onIoError);
    // A terminal ends its input only when it is gone (Ctrl-D is a key, not an
    // end). Said before readline hears it: readline then hands over the
    // half-typed line, which must not run, and resets the dead terminal.
    if (this.#interactive) this.#input.prependListener("end", hangUp);
    return () => {
      process.off("SIGHUP", onIoError);
      this.#input.off("end", hangUp);
    };
  }

  /** Close the line reader (idempotent). */
  close(): void {
    this.readline.close();
  }
}

/**
 * A stream to stand in for the terminal `tty` as readline's input: what
 * {@link feedKeys} writes to it comes out, and its raw mode is the terminal's.
 */
function keysOf(tty: NodeJS.ReadableStream): PassThrough {
  const keys = new PassThrough();
  Object.defineProperties(keys, {
    isTTY: { value: true },
    isRaw: { get: () => (tty as { isRaw?: boolean }).isRaw },
    setRawMode: {
      value: (mode: boolean) => {
        (tty as { setRawMode?: (mode: boolean) => unknown }).setRawMode?.(mode);
        return keys;
      },
    },
  });
  return keys;
}

/**
 * Feed the keys read from the terminal `tty` to readline's input `keys`.
 * readline completes on a Tab only when it is the last key of a read: two
 * Tabs in one read (a paste, a slow link) would insert a tab, then complete
 * on it. A run of Tabs that ends a read is passed on one Tab per chunk
 * instead, so they complete like Tabs pressed one at a time. readline's
 * pauses (while it completes, and once closed) pause the terminal.
 */
function feedKeys(tty: NodeJS.ReadableStream, keys: PassThrough, rl: readline.Interface): void {
  const onData = (chunk: Buffer | string): void => {
    for (const piece of splitTrailingTabs(Buffer.from(chunk))) keys.write(piece);
  };
  const onEnd = (): void => {
    keys.end();
  };
  tty.on("data", onData);
  tty.on("end", onEnd);
  rl.on("pause", () => tty.pause());
  rl.on("resume", () => tty.resume());
  rl.on("close", () => {
    tty.off("data", onData);
    tty.off("end", onEnd);
    tty.pause();
  });
}

/**
 * A read split so that each Tab of a run of two or more that ends it is the
 * last byte of its own piece: `"qco\t\t"` → `"qco\t"`, `"\t"`. Any other read
 * is one piece (Tabs inside pasted text stay text).
 */
export function splitTrailingTabs(chunk: Buffer): Buffer[] {
  let start = chunk.length;
  while (start > 0 && chunk[start - 1] === 0x09) start--;
  const tabs = chunk.length - start;
  if (tabs < 2) return [chunk];
  const pieces = [chunk.subarray(0, start + 1)];
  for (let i = start + 1; i < chunk.length; i++) pieces.push(chunk.subarray(i, i + 1));
  return pieces;
}

/**
 * Where the cursor ends after writing `text` from the left margin, on a
 * terminal `columns` wide: rows down and column, the way readline counts
 * them (Tabs to stops every {@link TAB_SIZE}; wide characters take two
 * cells and do not straddle the margin; combining marks none).
 */
export function displayEnd(text: string, columns: number): { rows: number; cols: number } {
  let offset = 0;
  for (const char of stripVTControlCharacters(text)) {
    if (char === "\t") {
      offset += TAB_SIZE - (offset % TAB_SIZE);
      continue;
    }
    const width = charWidth(char);
    if (width === 2 && (offset + 1) % columns === 0) offset++;
    offset += width;
  }
  if (!Number.isFinite(columns)) return { rows: 0, cols: offset };
  const cols = offset % columns;
  return { rows: (offset - cols) / columns, cols };
}

/** Cells a character takes: 0 for marks and controls, 2 for East Asian wide ones and emoji, else 1. */
function charWidth(char: string): number {
  if (/^[\p{M}\p{Cc}\p{Cf}]$/u.test(char)) return 0;
  const code = char.codePointAt(0)!;
  const wide =
    (code >= 0x1100 && code <= 0x115f) ||
    (code >= 0x2e80 && code <= 0xa4cf && code !== 0x303f) ||
    (code >= 0xac00 && code <= 0xd7a3) ||
    (code >= 0xf900 && code <= 0xfaff) ||
    (code >= 0xfe30 && code <= 0xfe4f) ||
    (code >= 0xff00 && code <= 0xff60) ||
    (code >= 0xffe0 && code <= 0xffe6) ||
    (code >= 0x1f300 && code <= 0x1f64f) ||
    (code >= 0x1f900 && code <= 0x1f9ff) ||
    (code >= 0x20000 && code <= 0x3fffd);
  return wide ? 2 : 1;
}
