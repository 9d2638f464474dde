// The TUI's keyboard and mouse: raw terminal input decoded into keys, pastes and wheel turns.
//
// A terminal in raw mode sends bytes: text, control characters, and escape
// sequences for the other keys (CSI `ESC [`, SS3 `ESC O`), for a bracketed
// paste (`ESC[200~ … ESC[201~`) and for the mouse in SGR mode
// (`ESC[<b;x;yM`). A sequence may arrive split over reads; an ESC alone is the
// Esc key only when nothing follows it soon, which the caller decides with a
// timer and `flush()`.

/**
 * The name of a key: `enter`, `tab`, `backspace`, `delete`, `insert`,
 * `escape`, `up`, `down`, `left`, `right`, `home`, `end`, `pageup`,
 * `pagedown`, `f1` … `f12`, `space` (Ctrl+Space), or the letter or
 * character typed with Ctrl or Alt (`ctrl`/`meta` tell which).
 */
export type KeyName = string;

/** One thing the user did. */
export type Input =
  /** Typed characters (several at once when they came in one read). */
  | { kind: "text"; text: string }
  /** A bracketed paste: the text as pasted, line breaks and all. */
  | { kind: "paste"; text: string }
  /** A key with a name, and its modifiers. */
  | { kind: "key"; name: KeyName; ctrl: boolean; meta: boolean; shift: boolean }
  /** The mouse wheel, over cell `row`, `col` (0-based). */
  | { kind: "wheel"; direction: "up" | "down"; row: number; col: number };

const ESC = "\x1b";
const PASTE_START = "\x1b[200~";
const PASTE_END = "\x1b[201~";

/** Keys ending `ESC [ n ~`. */
const TILDE_KEYS: Readonly<Record<number, KeyName>> = {
  1: "home",
  2: "insert",
  3: "delete",
  4: "end",
  5: "pageup",
  6: "pagedown",
  7: "home",
  8: "end",
  11: "f1",
  12: "f2",
  13: "f3",
  14: "f4",
  15: "f5",
  17: "f6",
  18: "f7",
  19: "f8",
  20: "f9",
  21: "f10",
  23: "f11",
  24: "f12",
};

/** Keys ending `ESC [ … X` or `ESC O X`. */
const LETTER_KEYS: Readonly<Record<string, KeyName>> = {
  A: "up",
  B: "down",
  C: "right",
  D: "left",
  H: "home",
  F: "end",
  P: "f1",
  Q: "f2",
  R: "f3",
  S: "f4",
};

function key(name: KeyName, ctrl = false, meta = false, shift = false): Input {
  return { kind: "key", name, ctrl, meta, shift };
}

/** The modifiers of an xterm modifier parameter (`1;5C` is Ctrl+Right: 5 = 1 + 4). */
function modifiers(param: number | undefined): { ctrl: boolean; meta: boolean; shift: boolean } {
  const bits = param !== undefined && param > 1 ? param - 1 : 0;
  return { shift: (bits & 1) !== 0, meta: (bits & 2) !== 0, ctrl: (bits & 4) !== 0 };
}

/** A control character (below 0x20, or DEL) as a key. */
function control(ch: string, meta: boolean): Input {
  switch (ch) {
    case "\r":
      return key("enter", false, meta);
    case "\t":
      return key("tab", false, meta);
    case "\x7f":
    case "\b":
      return key("backspace", false, meta);
    case ESC:
      return key("escape", false, meta);
    case "\0":
      return key("space", true, meta);
    default: {
      const code = ch.charCodeAt(0);
      // Ctrl+A … Ctrl+Z are 0x01 … 0x1a (Ctrl+J is "\n", Ctrl+M "\r").
      if (code <= 0x1a) return key(String.fromCharCode(code + 0x60), true, meta);
      return key(String.fromCharCode(code + 0x40), true, meta);
    }
  }
}

/**
 * The length of the escape sequence at `at` in `data` (which starts with
 * ESC), or 0 when it is not complete yet.
 */
function sequenceLength(data: string, at: number): number {
  const next = data[at + 1];
  if (next === undefined) return 0;
  if (next === "[") {
    // CSI: parameters 0x30-0x3f, intermediates 0x20-0x2f, a final byte 0x40-0x7e.
    for (let i = at + 2; i < data.length; i++) {
      const c = data.charCodeAt(i);
      if (c >= 0x40 && c <= 0x7e) return i - at + 1;
      if (c < 0x20 || c > 0x3f) return i - at; // broken: up to here
    }
    return 0;
  }
  if (next === "O") return data.length > at + 2 ? 3 : 0;
  return 2;
}

/** Decode one complete escape sequence. */
function decodeSequence(seq: string): Input | undefined {
  if (seq.length === 2) {
    const ch = seq[1]!;
    return ch < " " || ch === "\x7f" ? control(ch, true) : key(ch, false, true);
  }
  if (seq[1] === "O") {
    const name = LETTER_KEYS[seq[2]!];
    return name !== undefined ? key(name) : undefined;
  }
  const final = seq[seq.length - 1]!;
  const body = seq.slice(2, -1);
  if (body.startsWith("<") && (final === "M" || final === "m")) {
    const [b, x, y] = body.slice(1).split(";").map(Number);
    if (b === undefined || x === undefined || y === undefined) return undefined;
    // Wheel: button 64 up, 65 down (with modifier bits 4, 8, 16 added).
    if ((b & 0xc3) === 64) return { kind: "wheel", direction: "up", row: y - 1, col: x - 1 };
    if ((b & 0xc3) === 65) return { kind: "wheel", direction: "down", row: y - 1, col: x - 1 };
    return undefined;
  }
  const params = body.split(";").map((p) => (p === "" ? undefined : Number(p)));
  if (final === "~") {
    const name = TILDE_KEYS[params[0] ?? 0];
    if (name === undefined) return undefined;
    const m = modifiers(params[1]);
    return key(name, m.ctrl, m.meta, m.shift);
  }
  if (final === "Z") return key("tab", false, false, true);
  const name = LETTER_KEYS[final];
  if (name === undefined) return undefined;
  const m = modifiers(params[1]);
  return key(name, m.ctrl, m.meta, m.shift);
}

/**
 * Turns the terminal's raw input into {@link Input}s. Feed it each read with
 * {@link push}; an unfinished sequence (or a lone ESC) is held until the
 * next read or {@link flush}.
 */
export class KeyDecoder {
  #held = "";
  /** Inside a bracketed paste: the text so far. */
  #paste: string | undefined;

  /** Whether input is held (an ESC that may start a sequence): call {@link flush} after a pause. */
  get holding(): boolean {
    return this.#held !== "" && this.#paste === undefined;
  }

  /** Decode `data` (with what was held before). */
  push(data: string): Input[] {
    const out: Input[] = [];
    let text = this.#held + data;
    this.#held = "";
    let i = 0;
    let run = "";
    const endRun = (): void => {
      if (run !== "") out.push({ kind: "text", text: run });
      run = "";
    };
    while (i < text.length) {
      if (this.#paste !== undefined) {
        const end = text.indexOf(PASTE_END, i);
        if (end === -1) {
          // Keep a tail that may be the start of the end marker.
          const keep = Math.min(PASTE_END.length - 1, text.length - i);
          this.#paste += text.slice(i, text.length - keep);
          this.#held = text.slice(text.length - keep);
          return out;
        }
        out.push({ kind: "paste", text: this.#paste + text.slice(i, end) });
        this.#paste = undefined;
        i = end + PASTE_END.length;
        continue;
      }
      const ch = text[i]!;
      if (ch === ESC) {
        const length = sequenceLength(text, i);
        if (length === 0) {
          endRun();
          this.#held = text.slice(i);
          return out;
        }
        const seq = text.slice(i, i + length);
        i += length;
        endRun();
        if (seq === PASTE_START) {
          this.#paste = "";
          text = text.slice(i);
          i = 0;
          continue;
        }
        const decoded = decodeSequence(seq);
        if (decoded !== undefined) out.push(decoded);
        continue;
      }
      if (ch < " " || ch === "\x7f") {
        endRun();
        out.push(control(ch, false));
      } else run += ch;
      i++;
    }
    endRun();
    return out;
  }

  /** What is held, now taken as typed: a lone ESC is the Esc key. */
  flush(): Input[] {
    if (this.#paste !== undefined) return [];
    const held = this.#held;
    this.#held = "";
    if (held === "") return [];
    if (held === ESC) return [key("escape")];
    // An unfinished sequence that never finished: its characters, after Esc.
    return [key("escape"), ...this.push(held.slice(1))];
  }
}
