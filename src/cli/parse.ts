// The qmp-shell line syntax: `command key=value …`, dotted keys, `transaction( … )`, raw JSON.
//
// Pure: no I/O, no eval. The rules follow QEMU's python/qemu/qmp/qmp_shell.py,
// with quotes stripped from string values and spaces allowed inside JSON values.

import type { JsonObject, JsonValue } from "../index.js";

/** The usage line printed after every syntax error. */
export const USAGE_LINE = "command format: <command-name> [arg-name1=arg1] ... [arg-nameN=argN]";

/**
 * A line (or a command given as arguments) that does not follow the
 * qmp-shell syntax. `message` says what is wrong; {@link USAGE_LINE} says
 * what is expected. Local to the CLI: it is not one of the package's errors.
 */
export class ShellSyntaxError extends Error {
  /** A stable identifier, like the package's own error codes. */
  readonly code = "QMP_ERR_CLI_SYNTAX" as const;
  /** The usage line to print after the message. */
  readonly usage: string = USAGE_LINE;

  constructor(message: string) {
    super(message);
    this.name = "ShellSyntaxError";
  }
}

/** One action of a `transaction`: `{ type, data }`, as QEMU takes it. */
export interface TransactionAction {
  type: string;
  data: JsonObject;
}

/** A message ready to send: `{ execute, arguments? }`, or a raw JSON object as typed. */
export interface ParsedCommand {
  kind: "command";
  message: JsonObject;
  /** Whether the line was a raw JSON object (sent as is, not built from `key=value`). */
  raw: boolean;
}

/** What one line did. */
export type LineResult =
  | ParsedCommand
  /** `transaction(` opened a transaction (with no action on the same line). */
  | { kind: "transaction-start" }
  /** An action was added to the open transaction (which may have been opened on this line). */
  | { kind: "transaction-action"; action: TransactionAction }
  /** Nothing to do: a blank line. */
  | { kind: "empty" };

const kSet = Symbol("set");

/**
 * The state that lives across lines: whether a `transaction(` is open and
 * the actions collected so far. A line that fails to parse leaves it as it was.
 */
export class TransactionBuilder {
  #actions: TransactionAction[] | undefined;

  /** Whether a transaction is open (the shell prompts `TRANS> `). */
  get active(): boolean {
    return this.#actions !== undefined;
  }

  /** The actions collected so far (empty when none is open). */
  get actions(): readonly TransactionAction[] {
    return this.#actions ?? [];
  }

  /** Drop the open transaction, if any (e.g. on Ctrl-C in the shell). */
  reset(): void {
    this.#actions = undefined;
  }

  /** Replace the whole state: a parsed line is committed at once. */
  [kSet](actions: TransactionAction[] | undefined): void {
    this.#actions = actions;
  }
}

/**
 * Parse one line typed at the shell.
 *
 * - A line starting with `{` is a raw JSON object, sent as is.
 * - Otherwise it is split into words (see {@link tokenize}) and parsed by
 *   {@link parseTokens}.
 *
 * @throws {ShellSyntaxError} for invalid JSON, a JSON line that is not an
 *   object (one starting with `[` included), an unterminated quote, or any error of {@link parseTokens}. The
 *   builder is then unchanged.
 */
export function parseLine(
  line: string,
  tx: TransactionBuilder = new TransactionBuilder(),
): LineResult {
  const trimmed = line.trim();
  if (trimmed.startsWith("[")) throw new ShellSyntaxError("A raw JSON message must be an object");
  if (trimmed.startsWith("{")) {
    if (tx.active) {
      throw new ShellSyntaxError("A raw JSON message cannot be part of a transaction");
    }
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch (err) {
      throw new ShellSyntaxError(`Invalid JSON message: ${(err as Error).message}`);
    }
    if (!isObject(value)) throw new ShellSyntaxError("A raw JSON message must be an object");
    return { kind: "command", message: value, raw: true };
  }
  return parseTokens(tokenize(line), tx);
}

/**
 * Parse a command already split into words (a line's {@link tokenize}
 * result, or a command line's arguments): `name key=value …`, or the
 * transaction forms `transaction(`, `action key=value …`, `)`, and
 * `transaction( action key=value … )` on one line. Each word may still hold
 * quotes, which are stripped from string values.
 *
 * @throws {ShellSyntaxError} for a `)` with no transaction open, a
 *   `transaction(` while one is, a word without `=`, a key set twice, a key
 *   used both as a leaf and as a parent (`a=1 a.b=2`), an empty key or key
 *   part, an integer too large to send exactly, or words after the `)` that
 *   closes a transaction. The builder is then unchanged.
 */
export function parseTokens(
  tokens: readonly string[],
  tx: TransactionBuilder = new TransactionBuilder(),
): LineResult {
  let words = [...tokens];
  let actions = tx.active ? [...tx.actions] : undefined;
  const opened = words[0] === "transaction(";
  if (opened) {
    if (actions !== undefined) {
      throw new ShellSyntaxError("A transaction is already open: end it with ')' first");
    }
    actions = [];
    words.shift();
  }
  if (words[0] === ")" && actions === undefined) {
    throw new ShellSyntaxError("No transaction is open: ')' ends one that 'transaction(' began");
  }
  if (words[0] === ")" && actions !== undefined) {
    if (words.length > 1) {
      throw new ShellSyntaxError("Unexpected input after close of transaction");
    }
    tx[kSet](undefined);
    return { kind: "command", message: transaction(actions), raw: false };
  }
  if (words.length === 0) {
    if (!opened) return { kind: "empty" };
    tx[kSet](actions);
    return { kind: "transaction-start" };
  }
  const name = words[0]!;
  if (actions !== undefined) {
    const close = words[words.length - 1] === ")";
    if (close) words = words.slice(0, -1);
    const action: TransactionAction = { type: dequote(name), data: parseArguments(words.slice(1)) };
    actions.push(action);
    if (close) {
      tx[kSet](undefined);
      return { kind: "command", message: transaction(actions), raw: false };
    }
    tx[kSet](actions);
    return { kind: "transaction-action", action };
  }
  const args = parseArguments(words.slice(1));
  const message: JsonObject = { execute: dequote(name) };
  if (Object.keys(args).length > 0) message["arguments"] = args;
  return { kind: "command", message, raw: false };
}

function transaction(actions: TransactionAction[]): JsonObject {
  return {
    execute: "transaction",
    arguments: { actions: actions.map((a) => ({ type: a.type, data: a.data })) },
  };
}

/**
 * Build an arguments object from `key=value` words. Dotted keys nest
 * (`a.b.c=1` → `{ a: { b: { c: 1 } } }`), and also add to an object given
 * as JSON (`a={"x":1} a.y=2`). Values are parsed by {@link parseValue}.
 *
 * @throws {ShellSyntaxError} as {@link parseTokens} says.
 */
export function parseArguments(words: readonly string[]): JsonObject {
  const root: JsonObject = {};
  for (const word of words) {
    const eq = indexOutsideQuotes(word, "=");
    if (eq === -1) throw new ShellSyntaxError(`Expected a key=value pair, got '${word}'`);
    const key = dequote(word.slice(0, eq));
    const value = parseValue(word.slice(eq + 1));
    const path = key.split(".");
    if (path.some((p) => p === ""))
      throw new ShellSyntaxError(`Empty key or key part in '${word}'`);
    let parent = root;
    for (let i = 0; i < path.length - 1; i++) {
      const part = path[i]!;
      const existing = Object.hasOwn(parent, part) ? parent[part] : undefined;
      if (existing === undefined) {
        const child: JsonObject = {};
        setOwn(parent, part, child);
        parent = child;
      } else if (isObject(existing)) {
        parent = existing;
      } else {
        throw leafAndNonLeaf(path.slice(0, i + 1).join("."));
      }
    }
    const leaf = path[path.length - 1]!;
    if (Object.hasOwn(parent, leaf)) {
      if (isObject(parent[leaf])) throw leafAndNonLeaf(key);
      throw new ShellSyntaxError(`Cannot set "${key}" multiple times`);
    }
    setOwn(parent, leaf, value);
  }
  return root;
}

function leafAndNonLeaf(key: string): ShellSyntaxError {
  return new ShellSyntaxError(`Cannot use "${key}" as both leaf and non-leaf key`);
}

/** Largest integer sent exactly; beyond it a JavaScript number would be rounded. */
const MAX_EXACT = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The value of one `key=value` word, in qmp-shell's order:
 *
 * 1. anything quoted (`"…"` or `'…'`, even in part) is a string, quotes stripped;
 * 2. an integer (`42`, `-7`, `+3`, `1_000`);
 * 3. `true` / `false`, in any case;
 * 4. text starting with `{` or `[`: JSON, else the Python-literal subset
 *    qmp-shell accepts (`'single quotes'`, `True`/`False`/`None`, trailing commas);
 *    text that is neither stays a string;
 * 5. anything else is the string as written.
 *
 * @throws {ShellSyntaxError} for an unterminated quote, or an integer beyond
 *   ±(2^53 − 1) (it could not be sent exactly).
 */
export function parseValue(text: string): JsonValue {
  if (text.startsWith("{") || text.startsWith("[")) {
    try {
      return JSON.parse(text) as JsonValue;
    } catch {
      // Not JSON: try the Python-literal subset, as qmp-shell does.
    }
    const lenient = parseLiteral(text);
    return lenient ?? text;
  }
  if (text.includes('"') || text.includes("'")) return dequote(text);
  if (/^[+-]?\d+(?:_\d+)*$/.test(text)) {
    const big = BigInt(text.replaceAll("_", ""));
    if (big > MAX_EXACT || big < -MAX_EXACT) {
      throw new ShellSyntaxError(
        `Integer ${text} is too large to send exactly (the limit is ±${Number.MAX_SAFE_INTEGER})`,
      );
    }
    return Number(big);
  }
  const lower = text.toLowerCase();
  if (lower === "true") return true;
  if (lower === "false") return false;
  return text;
}

/**
 * Split a line into words at whitespace. A quoted part (`"…"` or `'…'`,
 * with backslash escapes) may hold spaces; so may a JSON value after `=`
 * (`a={"b": [1, 2]}`) while its brackets are open. Quotes are kept in the
 * words: {@link parseValue} strips them, and JSON needs them.
 *
 * @throws {ShellSyntaxError} for an unterminated quote.
 */
export function tokenize(line: string): string[] {
  const words: string[] = [];
  for (const word of scanWords(line, true)) {
    if (word.open === "quote") {
      const q = line[word.quote]!;
      throw new ShellSyntaxError(
        `Unterminated ${q === '"' ? "double" : "single"} quote in: ${line}`,
      );
    }
    words.push(line.slice(word.start, word.end));
  }
  return words;
}

/**
 * The words of `line`, each with where it starts (see {@link scanWord}).
 * With `splitOpen`, a JSON value whose brackets never close is not JSON and
 * is split at spaces (as {@link tokenize} does); without, it runs to the end
 * of the line and is reported open (as Tab completion wants).
 */
export function* scanWords(
  line: string,
  splitOpen: boolean,
): Generator<ScannedWord & { start: number }> {
  let i = 0;
  while (i < line.length) {
    if (isSpace(line[i]!)) {
      i++;
      continue;
    }
    let word = scanWord(line, i);
    if (splitOpen && word.open === "bracket") word = scanWord(line, i, false);
    yield { start: i, ...word };
    i = word.end;
  }
}

/** Where a word of a line ends, and whether the line ends inside it (see {@link scanWord}). */
export interface ScannedWord {
  /** The index after the word (the line's length when the line ends inside it). */
  end: number;
  /** What is still open at the end of the line: a quote, a JSON bracket, or nothing. */
  open: "quote" | "bracket" | undefined;
  /** Where the open quote is (when `open` is "quote"). */
  quote: number;
}

/**
 * Scan the word starting at `start`: it ends at whitespace outside quotes
 * and, with `brackets`, outside the brackets of a JSON value (a `{` or `[`
 * right after the word's first `=`, and any bracket nested in it). Never
 * throws: an unterminated quote or bracket is reported in `open`.
 */
export function scanWord(line: string, start: number, brackets = true): ScannedWord {
  let depth = 0;
  let seenEquals = false;
  let i = start;
  while (i < line.length) {
    const c = line[i]!;
    if (depth === 0 && isSpace(c)) break;
    if (c === '"' || c === "'") {
      const end = closingQuote(line, i);
      if (end === -1) return { end: line.length, open: "quote", quote: i };
      i = end + 1;
      continue;
    }
    if (brackets && c === "=" && !seenEquals) {
      seenEquals = true;
      const next = line[i + 1];
      if (next === "{" || next === "[") {
        depth = 1;
        i += 2;
        continue;
      }
    } else if (depth > 0 && (c === "{" || c === "[")) depth++;
    else if (depth > 0 && (c === "}" || c === "]")) depth--;
    i++;
  }
  return { end: i, open: depth > 0 ? "bracket" : undefined, quote: -1 };
}

/** Index of the quote closing the one at `open`, or -1 when it is not closed. */
export function closingQuote(text: string, open: number): number {
  const q = text[open]!;
  for (let i = open + 1; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === q) return i;
  }
  return -1;
}

/** Index of the quote closing the one at `open`. */
function quoteEnd(text: string, open: number): number {
  const end = closingQuote(text, open);
  if (end !== -1) return end;
  const q = text[open]!;
  throw new ShellSyntaxError(`Unterminated ${q === '"' ? "double" : "single"} quote in: ${text}`);
}

function indexOutsideQuotes(text: string, char: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === char) return i;
    if (c === '"' || c === "'") i = quoteEnd(text, i);
  }
  return -1;
}

/**
 * Strip quotes the way a shell does: `"a b"` → `a b`, `x"y z"` → `xy z`.
 * Inside quotes a backslash escapes the quote character or a backslash;
 * other backslashes stay as they are.
 *
 * @throws {ShellSyntaxError} for an unterminated quote.
 */
export function dequote(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '"' && c !== "'") {
      out += c;
      continue;
    }
    const end = quoteEnd(text, i);
    for (let j = i + 1; j < end; j++) {
      const d = text[j]!;
      const e = text[j + 1];
      if (d === "\\" && (e === c || e === "\\")) {
        out += e;
        j++;
      } else {
        out += d;
      }
    }
    i = end;
  }
  return out;
}

/** Whether `c` separates words (the whitespace Python's `str.split()` splits at). */
function isSpace(c: string): boolean {
  return c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v";
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Set an own property, even `__proto__`, without touching the prototype. */
function setOwn(target: JsonObject, key: string, value: JsonValue): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

// ------------------------------------------------- the Python-literal subset

/** Thrown inside {@link parseLiteral} to give up; never escapes it. */
class NotALiteral extends Error {}

/**
 * Parse the literals qmp-shell's FuzzyJSON accepts besides JSON: strings in
 * single or double quotes, `True`/`False`/`None` (and `true`/`false`/`null`),
 * numbers, lists and dicts with string keys, trailing commas. A small
 * recursive-descent parser: nothing is evaluated.
 */
function parseLiteral(text: string): JsonValue | undefined {
  let pos = 0;
  const fail = (): never => {
    throw new NotALiteral();
  };
  const skip = (): void => {
    while (pos < text.length && isSpace(text[pos]!)) pos++;
  };
  const value = (): JsonValue => {
    skip();
    const c = text[pos];
    if (c === "{") return dict();
    if (c === "[") return list();
    if (c === '"' || c === "'") return str();
    const word = /^[A-Za-z_]\w*/.exec(text.slice(pos));
    if (word !== null) {
      pos += word[0].length;
      const constants: Record<string, JsonValue> = {
        true: true,
        True: true,
        false: false,
        False: false,
        null: null,
        None: null,
      };
      if (!Object.hasOwn(constants, word[0])) fail();
      return constants[word[0]]!;
    }
    const num = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(text.slice(pos));
    if (num === null) return fail();
    pos += num[0].length;
    return Number(num[0]);
  };
  const str = (): string => {
    const q = text[pos]!;
    let out = "";
    pos++;
    for (;;) {
      if (pos >= text.length) fail();
      const c = text[pos++]!;
      if (c === q) return out;
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = text[pos++];
      const simple: Record<string, string> = {
        n: "\n",
        t: "\t",
        r: "\r",
        b: "\b",
        f: "\f",
        "\\": "\\",
        "/": "/",
        '"': '"',
        "'": "'",
      };
      if (e !== undefined && Object.hasOwn(simple, e)) out += simple[e]!;
      else if (e === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(pos, pos + 4))) {
        out += String.fromCharCode(parseInt(text.slice(pos, pos + 4), 16));
        pos += 4;
      } else fail();
    }
  };
  const sequence = (close: string, item: () => void): void => {
    pos++;
    for (;;) {
      skip();
      if (text[pos] === close) {
        pos++;
        return;
      }
      item();
      skip();
      if (text[pos] === ",") pos++;
      else if (text[pos] !== close) fail();
    }
  };
  const list = (): JsonValue[] => {
    const out: JsonValue[] = [];
    sequence("]", () => out.push(value()));
    return out;
  };
  const dict = (): JsonObject => {
    const out: JsonObject = {};
    sequence("}", () => {
      skip();
      if (text[pos] !== '"' && text[pos] !== "'") fail();
      const key = str();
      skip();
      if (text[pos++] !== ":") fail();
      setOwn(out, key, value());
    });
    return out;
  };
  try {
    const result = value();
    skip();
    return pos === text.length ? result : undefined;
  } catch (err) {
    if (err instanceof NotALiteral) return undefined;
    throw err;
  }
}
