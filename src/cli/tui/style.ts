// The TUI's text: lines made of styled spans, JSON pretty-printed with syntax colours, wrapping
// to the screen's width, and the SGR escape codes that paint them.

/** What a span of text is, which sets its colour. */
export type Style =
  | "plain"
  | "key"
  | "string"
  | "number"
  | "literal"
  | "punct"
  | "sent"
  | "received"
  | "event"
  | "time"
  | "debug"
  | "info"
  | "warn"
  | "error"
  | "fold"
  | "match"
  | "status"
  | "selected";

/** A run of text in one style. */
export interface Span {
  text: string;
  style: Style;
}

/** One line of the screen, as spans. */
export type StyledLine = Span[];

/** SGR parameters of each style (16 colours: they follow the terminal's theme). */
const SGR: Readonly<Record<Style, string>> = {
  plain: "",
  key: "36", // cyan
  string: "32", // green
  number: "33", // yellow
  literal: "35", // magenta
  punct: "",
  sent: "1;34", // bold blue
  received: "1;32", // bold green
  event: "1;35", // bold magenta
  time: "2", // dim
  debug: "2",
  info: "",
  warn: "33",
  error: "1;31", // bold red
  fold: "2;3", // dim italic
  match: "7", // reverse
  status: "7",
  selected: "1",
};

/** The escape sequence that starts `style` (after a reset). */
export function sgr(style: Style): string {
  const code = SGR[style];
  return code === "" ? "\x1b[0m" : `\x1b[0;${code}m`;
}

/** The number of terminal cells `text` takes (one per code point: wide characters are rare in QMP). */
export function cells(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/** Text of a line, without styles. */
export function plainText(line: StyledLine): string {
  return line.map((s) => s.text).join("");
}

/**
 * Cut `line` into lines at most `width` cells wide (at least one line).
 * Control characters are shown as `^X` so that nothing reaches the terminal raw.
 */
export function wrap(line: StyledLine, width: number): StyledLine[] {
  const out: StyledLine[] = [];
  let current: StyledLine = [];
  let used = 0;
  for (const span of line) {
    let text = "";
    for (const ch of visible(span.text)) {
      if (used === width) {
        if (text !== "") current.push({ text, style: span.style });
        out.push(current);
        current = [];
        text = "";
        used = 0;
      }
      text += ch;
      used++;
    }
    if (text !== "") current.push({ text, style: span.style });
  }
  out.push(current);
  return out;
}

/** `text` with each control character shown as `^X` (a tab as two spaces). */
function visible(text: string): string {
  let out = "";
  for (const ch of text) {
    const code = ch.charCodeAt(0);
    if (code >= 0x20 && code !== 0x7f) out += ch;
    else out += ch === "\t" ? "  " : `^${String.fromCharCode(code ^ 0x40)}`;
  }
  return out;
}

/** `line` with its escape codes, cut or padded with spaces to exactly `width` cells. */
export function paint(line: StyledLine, width: number, fill: Style = "plain"): string {
  let out = "";
  let used = 0;
  for (const span of line) {
    if (used >= width) break;
    let text = "";
    for (const ch of span.text) {
      if (used >= width) break;
      text += ch;
      used++;
    }
    out += sgr(span.style) + text;
  }
  return `${out}${sgr(fill)}${" ".repeat(Math.max(0, width - used))}\x1b[0m`;
}

/** The length of `value` as one line of JSON with `", "` and `": "` between members. */
function inlineLength(value: unknown): number {
  if (Array.isArray(value)) {
    if (value.length === 0) return 2;
    return value.reduce((n: number, v) => n + inlineLength(v), 0) + 2 * value.length;
  }
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value);
    if (entries.length === 0) return 2;
    return (
      entries.reduce((n, [k, v]) => n + JSON.stringify(k).length + 2 + inlineLength(v), 0) +
      2 * entries.length
    );
  }
  return (JSON.stringify(value) ?? "null").length;
}

/**
 * `value` as JSON with syntax styles, in lines at most `width` cells wide
 * where it can be: an object or array that fits on the rest of its line
 * stays on it (`", "` and `": "` between members); one that does not is
 * spread over lines indented by two spaces per level. `Infinity` gives one
 * line; 0 lays it out as `JSON.stringify(value, null, 2)` does. Past
 * `limit` characters in all it stops (the last line cut short).
 */
export function jsonLines(value: unknown, width = 0, limit = Infinity): StyledLine[] {
  const lines: StyledLine[] = [];
  let line: StyledLine = [];
  let used = 0;
  let total = 0;
  const push = (text: string, style: Style): void => {
    line.push({ text, style });
    used += text.length;
    total += text.length;
  };
  const newline = (depth: number): void => {
    lines.push(line);
    line = [];
    used = 0;
    if (depth > 0) push("  ".repeat(depth), "plain");
  };
  const emit = (v: unknown, depth: number, inline: boolean, after: number): void => {
    if (total > limit) return;
    if (v === null || typeof v === "boolean") return push(String(v), "literal");
    if (typeof v === "number" || typeof v === "bigint") return push(String(v), "number");
    if (typeof v === "string") return push(JSON.stringify(v), "string");
    if (typeof v !== "object") return push(JSON.stringify(v) ?? "null", "plain");
    const array = Array.isArray(v);
    const members: [string | undefined, unknown][] = array
      ? v.map((item: unknown) => [undefined, item])
      : Object.entries(v);
    if (members.length === 0) return push(array ? "[]" : "{}", "punct");
    // On one line when it fits, with what follows it (a comma) too.
    const flat = inline || used + inlineLength(v) + after <= width;
    push(array ? "[" : "{", "punct");
    for (const [i, [key, item]] of members.entries()) {
      if (total > limit) return;
      const last = i === members.length - 1;
      if (flat) {
        if (i > 0) push(" ", "plain");
      } else newline(depth + 1);
      if (key !== undefined) {
        push(JSON.stringify(key), "key");
        push(": ", "punct");
      }
      emit(item, depth + 1, flat, last ? 0 : 1);
      if (!last) push(",", "punct");
    }
    if (!flat) newline(depth);
    push(array ? "]" : "}", "punct");
  };
  emit(value, 0, false, 0);
  lines.push(line);
  return lines;
}

/** The start of `value` as one line of styled JSON: about `cellsWanted` cells, cut anywhere. */
export function jsonPreview(value: unknown, cellsWanted: number): StyledLine {
  const line = jsonLines(value, Infinity, cellsWanted)[0]!;
  let left = cellsWanted;
  const out: StyledLine = [];
  for (const span of line) {
    if (left <= 0) break;
    out.push({ text: span.text.slice(0, left), style: span.style });
    left -= span.text.length;
  }
  return out;
}
