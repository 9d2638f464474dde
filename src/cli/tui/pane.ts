// The TUI's history pane: every message in and out, log lines and notes, with timestamps;
// long messages folded; events shown, hidden or filtered; search; scrolling that follows the
// newest line unless the user scrolled up.

import { formatJson } from "../shell-messages.js";
import {
  type Span,
  type Style,
  type StyledLine,
  cells,
  jsonLines,
  jsonPreview,
  plainText,
  wrap,
} from "./style.js";

/** What an entry of the pane is. */
export type EntryKind = "sent" | "received" | "event" | "log" | "note" | "error";

/** The levels of log entries. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** One entry of the pane. */
export interface Entry {
  readonly kind: EntryKind;
  /** When it happened (ms since the epoch). */
  readonly time: number;
  /** The message, for `sent`, `received` and `event`. */
  readonly message?: Record<string, unknown> | undefined;
  /** The text, for `log`, `note` and `error`. */
  readonly text?: string | undefined;
  /** The level of a `log` entry. */
  readonly level?: LogLevel | undefined;
}

/** Messages longer than this (JSON characters) are folded to one line. */
export const FOLD_SIZE = 2048;
/** The most entries kept; the oldest go first. */
export const MAX_ENTRIES = 10_000;

const MARK: Readonly<Record<EntryKind, [string, Style]>> = {
  sent: ["→", "sent"],
  received: ["←", "received"],
  event: ["←", "event"],
  log: ["·", "debug"],
  note: ["·", "info"],
  error: ["!", "error"],
};

/** `HH:MM:SS.mmm`, local time. */
function clock(time: number): string {
  const d = new Date(time);
  const two = (n: number): string => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

/** `n` bytes, readable. */
function size(n: number): string {
  return n < 1024
    ? `${n} B`
    : n < 1024 * 1024
      ? `${(n / 1024).toFixed(1)} KB`
      : `${(n / 1048576).toFixed(1)} MB`;
}

/** A stored entry and what the pane knows about it. */
interface Item {
  entry: Entry;
  /** The message as JSON, once measured. */
  json: string | undefined;
  folded: boolean;
  /** Its rendered lines, for `key`. */
  cache: { key: string; lines: StyledLine[] } | undefined;
}

/** Cut the spans of `line` where `term` occurs (case-insensitive) and style those parts as matches. */
function highlight(line: StyledLine, term: string): StyledLine {
  const text = plainText(line).toLowerCase();
  const hits: [number, number][] = [];
  for (let at = text.indexOf(term); at !== -1; at = text.indexOf(term, at + term.length)) {
    hits.push([at, at + term.length]);
  }
  if (hits.length === 0) return line;
  const out: StyledLine = [];
  let offset = 0;
  for (const span of line) {
    const end = offset + span.text.length;
    let from = offset;
    for (const [a, b] of hits) {
      if (b <= from || a >= end) continue;
      if (a > from)
        out.push({ text: span.text.slice(from - offset, a - offset), style: span.style });
      const to = Math.min(b, end);
      out.push({ text: span.text.slice(Math.max(a, from) - offset, to - offset), style: "match" });
      from = to;
    }
    if (from < end) out.push({ text: span.text.slice(from - offset), style: span.style });
    offset = end;
  }
  return out;
}

/** The history pane's contents, view state and rendering. */
export class Pane {
  #items: Item[] = [];
  /** Lines scrolled up from the bottom; 0 follows the newest line. */
  #scroll = 0;
  /** Show events at all. */
  #events = true;
  /** Show only events whose name contains this (lower case). */
  #filter = "";
  /** The search term (lower case), highlighted. */
  #search = "";
  /** The selected entry (an index into the shown entries' list), when the pane has the focus. */
  #selected: Item | undefined;
  /** Entries dropped because of {@link MAX_ENTRIES}. */
  dropped = 0;
  /** Events received, by name. */
  readonly eventCounts = new Map<string, number>();

  /** Add an entry at the bottom. */
  add(entry: Entry): void {
    const item: Item = { entry, json: undefined, folded: false, cache: undefined };
    if (entry.message !== undefined) {
      item.json = JSON.stringify(entry.message);
      item.folded = item.json.length > FOLD_SIZE;
    }
    if (entry.kind === "event") {
      const name = String(entry.message?.["event"]);
      this.eventCounts.set(name, (this.eventCounts.get(name) ?? 0) + 1);
    }
    this.#items.push(item);
    if (this.#items.length > MAX_ENTRIES) {
      const gone = this.#items.shift();
      if (gone === this.#selected) this.#selected = undefined;
      this.dropped++;
    }
    // Scrolled up: stay on the same lines while new ones come in below.
    if (this.#scroll > 0 && this.#shows(item))
      this.#scroll += this.#linesOf(item, this.#width).length;
  }

  /** The entries, oldest first. */
  get entries(): Entry[] {
    return this.#items.map((i) => i.entry);
  }

  /** Whether events are shown. */
  get eventsShown(): boolean {
    return this.#events;
  }

  /** Show or hide events. */
  toggleEvents(): void {
    this.#events = !this.#events;
    this.#scroll = 0;
  }

  /** The event filter ("" for none). */
  get filter(): string {
    return this.#filter;
  }

  /** Show only events whose name contains `text` (case-insensitive); "" shows all. */
  setFilter(text: string): void {
    this.#filter = text.toLowerCase();
    this.#scroll = 0;
  }

  /** The search term ("" for none). */
  get search(): string {
    return this.#search;
  }

  /** Whether the view follows the newest line. */
  get following(): boolean {
    return this.#scroll === 0;
  }

  /** Scroll by `lines` (positive: up, towards older lines). */
  scrollBy(lines: number): void {
    this.#scroll = Math.max(0, Math.min(this.#scroll + lines, this.#maxScroll()));
  }

  /** Back to the newest line. */
  scrollToEnd(): void {
    this.#scroll = 0;
  }

  /** To the oldest line. */
  scrollToStart(): void {
    this.#scroll = this.#maxScroll();
  }

  /**
   * Find `term` (case-insensitive) in an entry older than the one at the top
   * of the view (`backwards`, the default) or newer than it, scroll it into
   * view and select it. Returns whether one was found.
   */
  find(term: string, backwards = true): boolean {
    this.#search = term.toLowerCase();
    if (this.#search === "") return false;
    const shown = this.#shown();
    const current = this.#selected !== undefined ? shown.indexOf(this.#selected) : shown.length;
    const order = backwards
      ? shown.slice(0, Math.max(0, current)).reverse()
      : shown.slice(current + 1);
    const hit = order.find((item) => this.#text(item).toLowerCase().includes(this.#search));
    if (hit === undefined) return false;
    hit.folded = false;
    this.#select(hit);
    return true;
  }

  /** The selected entry, if any. */
  get selected(): Entry | undefined {
    return this.#selected?.entry;
  }

  /** Select the entry `step` away from the selected one (or the newest), and show it. */
  moveSelection(step: number): void {
    const shown = this.#shown();
    if (shown.length === 0) return;
    const at = this.#selected !== undefined ? shown.indexOf(this.#selected) : shown.length;
    const to = Math.max(0, Math.min(shown.length - 1, (at === -1 ? shown.length : at) + step));
    this.#select(shown[to]!);
  }

  /** Drop the selection (the pane lost the focus). */
  unselect(): void {
    this.#selected = undefined;
  }

  /**
   * Fold or unfold the selected entry (or, with none selected, the newest
   * folded one). Returns whether anything changed.
   */
  toggleFold(): boolean {
    const item = this.#selected ?? this.#shown().findLast((i) => i.folded);
    if (item?.json === undefined || item.json.length <= FOLD_SIZE) return false;
    item.folded = !item.folded;
    if (this.#selected !== undefined) this.#select(item);
    return true;
  }

  #width = 80;
  #height = 24;

  /** The lines to show in a pane `width` wide and `height` high. */
  render(width: number, height: number): StyledLine[] {
    this.#width = width;
    this.#height = height;
    const out: StyledLine[] = [];
    const shown = this.#shown();
    let skip = this.#scroll;
    for (let i = shown.length - 1; i >= 0 && out.length < height; i--) {
      const lines = this.#linesOf(shown[i]!, width);
      for (let j = lines.length - 1; j >= 0 && out.length < height; j--) {
        if (skip > 0) skip--;
        else out.push(lines[j]!);
      }
    }
    out.reverse();
    while (out.length < height) out.unshift([]);
    return out;
  }

  // ---------------------------------------------------------------- inside

  #shows(item: Item): boolean {
    if (item.entry.kind !== "event") return true;
    if (!this.#events) return false;
    return (
      this.#filter === "" ||
      String(item.entry.message?.["event"]).toLowerCase().includes(this.#filter)
    );
  }

  #shown(): Item[] {
    return this.#items.filter((i) => this.#shows(i));
  }

  #maxScroll(): number {
    let total = 0;
    for (const item of this.#shown()) total += this.#linesOf(item, this.#width).length;
    return Math.max(0, total - this.#height);
  }

  /** Scroll so that `item` is in view, and select it. */
  #select(item: Item): void {
    this.#selected = item;
    const shown = this.#shown();
    let below = 0;
    for (let i = shown.length - 1; i >= 0 && shown[i] !== item; i--) {
      below += this.#linesOf(shown[i]!, this.#width).length;
    }
    const height = this.#linesOf(item, this.#width).length;
    // All of it in view; one taller than the view shows its first lines.
    if (below + height > this.#scroll + this.#height || height > this.#height) {
      this.#scroll = Math.max(0, below + height - this.#height);
    } else if (below < this.#scroll) this.#scroll = below;
  }

  /** The entry's text as shown (JSON with spaces after `:` and `,`), for search. */
  #text(item: Item): string {
    const m = shown(item.entry);
    return m !== undefined ? formatJson(m, false) : (item.entry.text ?? "");
  }

  #linesOf(item: Item, width: number): StyledLine[] {
    const selected = item === this.#selected;
    const key = `${width}:${item.folded}:${this.#search}:${selected}`;
    if (item.cache?.key === key) return item.cache.lines;
    const lines = this.#render(item, width, selected);
    item.cache = { key, lines };
    return lines;
  }

  #render(item: Item, width: number, selected: boolean): StyledLine[] {
    const { entry } = item;
    const [mark, markStyle] = MARK[entry.kind];
    const style: Style = entry.kind === "log" ? (entry.level ?? "info") : markStyle;
    const head: Span[] = [
      { text: selected ? "▶" : " ", style: "selected" },
      { text: clock(entry.time), style: selected ? "selected" : "time" },
      { text: ` ${mark} `, style },
    ];
    const indent = cells(plainText(head));
    let body: StyledLine[];
    if (entry.message === undefined) {
      body = (entry.text ?? "")
        .split("\n")
        .map((t) => [{ text: t, style: entry.kind === "note" ? "plain" : style }]);
    } else if (item.folded) {
      const preview = jsonPreview(shown(entry), Math.max(16, width - indent - 30));
      body = [
        [...preview, { text: ` … ${size(item.json!.length)}, Enter unfolds`, style: "fold" }],
      ];
    } else {
      body = jsonLines(shown(entry), Math.max(20, width - indent));
    }
    const lines: StyledLine[] = [];
    body.forEach((line, i) => {
      const first = i === 0 ? head : [{ text: " ".repeat(indent), style: "plain" as Style }];
      const full =
        this.#search !== "" ? highlight([...first, ...line], this.#search) : [...first, ...line];
      lines.push(...wrap(full, width));
    });
    return lines;
  }
}

/** The message as shown: an event's name first, its timestamp last. */
function shown(entry: Entry): Record<string, unknown> | undefined {
  const m = entry.message;
  if (entry.kind !== "event" || m === undefined) return m;
  const { event, data, timestamp, ...rest } = m;
  return { event, ...(data !== undefined ? { data } : {}), ...rest, timestamp };
}
