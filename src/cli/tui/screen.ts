// The TUI's terminal: the alternate screen, mouse and paste modes in and out, and frames drawn
// by rewriting only the rows that changed.

/** Modes set on entry, in order; {@link LEAVE} undoes them in reverse. */
const ENTER =
  "\x1b[?1049h" + // the alternate screen: the shell's screen comes back as it was
  "\x1b[?1000h\x1b[?1006h" + // mouse buttons (the wheel), SGR coordinates
  "\x1b[?2004h" + // bracketed paste
  "\x1b[?25l" + // no cursor while drawing
  "\x1b[2J";

const LEAVE =
  "\x1b[?2026l" + // in case a frame was cut short
  "\x1b[0m" +
  "\x1b[?2004l" +
  "\x1b[?1006l\x1b[?1000l" +
  "\x1b[?25h" + // the cursor visible again
  "\x1b[?1049l";

/** A frame: every row painted to the full width, and where the cursor goes (hidden when absent). */
export interface Frame {
  rows: readonly string[];
  cursor: { row: number; col: number } | undefined;
}

/** Draws frames on a terminal, sending only the rows that differ from the last frame. */
export class Screen {
  readonly #out: NodeJS.WritableStream;
  #shown: string[] = [];
  #entered = false;

  constructor(out: NodeJS.WritableStream) {
    this.#out = out;
  }

  /** Whether the terminal is in the TUI's modes. */
  get entered(): boolean {
    return this.#entered;
  }

  /** Switch to the alternate screen and the TUI's modes. */
  enter(): void {
    if (this.#entered) return;
    this.#entered = true;
    this.#shown = [];
    this.#write(ENTER);
  }

  /** Restore the terminal as it was (safe to call more than once, and after a failed write). */
  leave(): void {
    if (!this.#entered) return;
    this.#entered = false;
    this.#write(LEAVE);
  }

  /** Forget what is shown: the next frame is drawn whole (after a resize, or Ctrl+L). */
  invalidate(): void {
    this.#shown = [];
    if (this.#entered) this.#write("\x1b[2J");
  }

  /** Draw `frame`. */
  draw(frame: Frame): void {
    if (!this.#entered) return;
    let out = "\x1b[?2026h\x1b[?25l";
    frame.rows.forEach((row, i) => {
      if (this.#shown[i] !== row) out += `\x1b[${i + 1};1H${row}`;
    });
    this.#shown = [...frame.rows];
    if (frame.cursor !== undefined) {
      out += `\x1b[${frame.cursor.row + 1};${frame.cursor.col + 1}H\x1b[?25h`;
    }
    this.#write(`${out}\x1b[?2026l`);
  }

  #write(text: string): void {
    try {
      this.#out.write(text);
    } catch {
      // The terminal is gone (a hang-up): nothing to draw on.
    }
  }
}
