// Tab completion for the interactive shell: QMP lines from the QMP schema, HMP lines from `help`.
//
// Pure: no I/O. Each `complete` returns what Node's readline expects of a
// completer, `[completions, completeOn]`, where every completion starts with
// `completeOn` (readline inserts the rest, and adds no space of its own).

import { closingQuote, dequote, scanWords } from "./parse.js";

// ------------------------------------------------------------- the schema, indexed

/** An object type: its own members, and the variants of a union. */
interface ObjectType {
  kind: "object";
  /** Own members: name → type name. */
  members: Map<string, string>;
  /** Name of the member whose value picks the variant (unions only). */
  tag: string | undefined;
  /** The variants: `case` (a value of the tag) → object type name. */
  variants: { case: string; type: string }[];
}

/** A type as the completer needs it, from one SchemaInfo entry. */
type SchemaType =
  | ObjectType
  | { kind: "enum"; values: string[] }
  | { kind: "alternate"; branches: string[] }
  | { kind: "array"; element: string }
  | { kind: "builtin"; jsonType: string };

/** The line's `key=value` words, as key paths and raw (still quoted) values. */
interface GivenKey {
  path: string[];
  value: string;
}

/** How deep unions nested in unions are followed (QEMU's own go one level deep). */
const MAX_UNION_DEPTH = 8;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringField(entry: Record<string, unknown>, key: string): string | undefined {
  const value = entry[key];
  return typeof value === "string" ? value : undefined;
}

function records(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.filter(isRecord) : [];
}

/** One SchemaInfo entry as a {@link SchemaType}, or `undefined` when malformed or not a type. */
function toType(entry: Record<string, unknown>): SchemaType | undefined {
  switch (entry["meta-type"]) {
    case "object": {
      const members = new Map<string, string>();
      for (const m of records(entry["members"])) {
        const name = stringField(m, "name");
        const type = stringField(m, "type");
        if (name !== undefined && type !== undefined && !members.has(name)) members.set(name, type);
      }
      const variants: { case: string; type: string }[] = [];
      for (const v of records(entry["variants"])) {
        const c = stringField(v, "case");
        const type = stringField(v, "type");
        if (c !== undefined && type !== undefined) variants.push({ case: c, type });
      }
      return { kind: "object", members, tag: stringField(entry, "tag"), variants };
    }
    case "enum": {
      // Newer QEMU gives both `values` and `members`; older QEMU only `values`.
      const values = new Set<string>();
      const listed = entry["values"];
      if (Array.isArray(listed)) {
        for (const v of listed) if (typeof v === "string") values.add(v);
      }
      for (const m of records(entry["members"])) {
        const name = stringField(m, "name");
        if (name !== undefined) values.add(name);
      }
      return { kind: "enum", values: [...values] };
    }
    case "alternate": {
      const branches = records(entry["members"])
        .map((m) => stringField(m, "type"))
        .filter((t): t is string => t !== undefined);
      return { kind: "alternate", branches };
    }
    case "array": {
      const element = stringField(entry, "element-type");
      return element === undefined ? undefined : { kind: "array", element };
    }
    case "builtin": {
      const jsonType = stringField(entry, "json-type");
      return jsonType === undefined ? undefined : { kind: "builtin", jsonType };
    }
    default:
      return undefined;
  }
}

// ------------------------------------------------------------- reading the line

/** The line split as the shell will split it, up to the cursor. */
interface ScannedLine {
  /** The words before the one being completed. */
  words: string[];
  /** The word being completed (possibly empty). */
  current: string;
  /** Whether the cursor is inside an open quote or an open JSON bracket. */
  open: boolean;
}

/**
 * Split `line` into words the way `tokenize` in parse.ts does: at whitespace
 * outside quotes, and outside the brackets of a JSON value (a `{` or `[`
 * right after the word's first `=`, then any bracket nested in it).
 */
function scanLine(line: string): ScannedLine {
  const words: string[] = [];
  for (const word of scanWords(line, false)) {
    if (word.end >= line.length) {
      return { words, current: line.slice(word.start), open: word.open !== undefined };
    }
    words.push(line.slice(word.start, word.end));
  }
  return { words, current: "", open: false };
}

/** Index of the first `=` outside quotes in a word whose quotes are all closed, else -1. */
function equalsIndex(word: string): number {
  for (let i = 0; i < word.length; i++) {
    const c = word[i]!;
    if (c === "=") return i;
    if (c === '"' || c === "'") {
      const end = closingQuote(word, i);
      if (end === -1) return -1;
      i = end;
    }
  }
  return -1;
}

/** `dequote`, or `undefined` for text it rejects. */
function unquote(text: string): string | undefined {
  try {
    return dequote(text);
  } catch {
    return undefined;
  }
}

/** The `key=value` words among `words` (others are skipped). */
function givenKeys(words: readonly string[]): GivenKey[] {
  const given: GivenKey[] = [];
  for (const word of words) {
    const eq = equalsIndex(word);
    if (eq === -1) continue;
    const key = unquote(word.slice(0, eq));
    if (key === undefined) continue;
    given.push({ path: key.split("."), value: word.slice(eq + 1) });
  }
  return given;
}

function startsWithPath(path: readonly string[], prefix: readonly string[]): boolean {
  return prefix.every((part, i) => path[i] === part);
}

function sortedUnique(items: Iterable<string>): string[] {
  return [...new Set(items)].sort();
}

// ------------------------------------------------------------- QMP

/** Completes QMP command lines from query-commands names and the query-qmp-schema. */
export class QmpCompleter {
  /** Command names, sorted. */
  readonly #commands: string[];
  /** Command name → its argument type (from the schema). */
  readonly #commandArgs = new Map<string, string>();
  /** Type name → type (everything in the schema but commands and events). */
  readonly #types = new Map<string, SchemaType>();
  /** Transaction action type → the type of its `data` (undefined when it has none). */
  readonly #actions = new Map<string, string | undefined>();
  /** `command\0key` → values the schema does not list (e.g. device_add's drivers). */
  readonly #extraValues = new Map<string, string[]>();

  /**
   * @param commands The command names, e.g. the `name`s of `query-commands`.
   * @param schema The return value of `query-qmp-schema` (a SchemaInfo list),
   *   if known: it gives argument names and values, and transaction actions.
   *   Malformed entries are skipped; nothing in it makes this throw.
   */
  constructor(commands: Iterable<string>, schema?: readonly unknown[]) {
    const names = new Set<string>();
    for (const name of commands) if (typeof name === "string" && name !== "") names.add(name);
    this.#commands = [...names].sort();
    if (Array.isArray(schema)) {
      for (const entry of schema) {
        if (!isRecord(entry)) continue;
        const name = stringField(entry, "name");
        if (name === undefined) continue;
        if (entry["meta-type"] === "command") {
          const argType = stringField(entry, "arg-type");
          if (argType !== undefined && !this.#commandArgs.has(name)) {
            this.#commandArgs.set(name, argType);
          }
          continue;
        }
        const type = toType(entry);
        if (type !== undefined && !this.#types.has(name)) this.#types.set(name, type);
      }
    }
    this.#indexActions();
  }

  /**
   * Offer `values` for `key=` (a top-level argument) of `command`, besides
   * what the schema says: for strings whose values QEMU lists elsewhere,
   * like `device_add driver=` (`qom-list-types`).
   */
  addValues(command: string, key: string, values: Iterable<string>): void {
    this.#extraValues.set(
      `${command}\0${key}`,
      [...values].filter((v) => typeof v === "string"),
    );
  }

  /**
   * Complete `line`, the text of the line up to the cursor.
   *
   * @param options.transaction Whether a `transaction(` is open, so that the
   *   line is an action (`action-type key=value …`) or `)`.
   * @returns Readline's pair: the candidates, and the text they complete
   *   (the current word, or the part of it after `=` when completing a value).
   *   Command and action names, and values, end with a space; argument names
   *   end with `=`.
   */
  complete(line: string, options: { transaction?: boolean } = {}): [string[], string] {
    const { words, current, open } = scanLine(line);
    if (open || line.trimStart().startsWith("{")) return [[], current];

    let transaction = options.transaction === true;
    let rest = words;
    if (words[0] === "transaction(") {
      transaction = true;
      rest = words.slice(1);
    }
    // After the `)` that closes a transaction, nothing may follow.
    if (transaction && rest.includes(")")) return [[], current];
    const close = transaction && ")".startsWith(current) ? [")"] : [];

    const first = rest[0];
    if (first === undefined) {
      const names = transaction ? [...this.#actions.keys()] : this.#commands;
      const matches = names.filter((n) => n.startsWith(current)).map((n) => `${n} `);
      return [sortedUnique([...matches, ...close]), current];
    }

    const name = unquote(first);
    const root =
      name === undefined
        ? undefined
        : transaction
          ? this.#actions.get(name)
          : this.#commandArgs.get(name);
    if (root === undefined) return [close, current];
    const given = givenKeys(rest.slice(1));

    const eq = equalsIndex(current);
    if (eq !== -1) {
      const [values, on] = this.#completeValue(
        root,
        given,
        current.slice(0, eq),
        current.slice(eq + 1),
      );
      const extra = transaction
        ? undefined
        : this.#extraValues.get(`${name}\0${current.slice(0, eq)}`);
      if (extra === undefined) return [values, on];
      const more = extra.filter((v) => v.startsWith(on)).map((v) => `${v} `);
      return [sortedUnique([...values, ...more]), on];
    }
    const [keys] = this.#completeKey(root, given, current);
    return [sortedUnique([...keys, ...close]), current];
  }

  /** `key=partial`: the values of key's type that start with `partial`. */
  #completeValue(
    root: string,
    given: readonly GivenKey[],
    keyText: string,
    partial: string,
  ): [string[], string] {
    const key = unquote(keyText);
    if (key === undefined) return [[], partial];
    const path = key.split(".");
    const leaf = path.pop()!;
    const types = this.#members(this.#objectsAt(root, path, given), path, given).get(leaf);
    const values = new Set<string>();
    for (const type of types ?? []) {
      for (const v of this.#values(type)) values.add(v);
    }
    const matches = [...values].filter((v) => v.startsWith(partial)).map((v) => `${v} `);
    return [sortedUnique(matches), partial];
  }

  /** A word without `=`: the argument names (or `parent.` names) not yet given. */
  #completeKey(root: string, given: readonly GivenKey[], word: string): [string[], string] {
    const dot = word.lastIndexOf(".");
    const prefix = word.slice(0, dot + 1);
    const partial = word.slice(dot + 1);
    if (partial.includes('"') || partial.includes("'")) return [[], word];
    let parent: string[] = [];
    if (dot !== -1) {
      const parentKey = unquote(word.slice(0, dot));
      if (parentKey === undefined) return [[], word];
      parent = parentKey.split(".");
    }
    const members = this.#members(this.#objectsAt(root, parent, given), parent, given);
    const used = new Set<string>();
    for (const g of given) {
      if (g.path.length > parent.length && startsWithPath(g.path, parent)) {
        used.add(g.path[parent.length]!);
      }
    }
    const matches = [...members]
      .filter(([m]) => m.startsWith(partial) && !used.has(m))
      .flatMap(([m, types]) => {
        // An object is filled in key by key (`cache.direct=…`); a value that may
        // be an object or not (an alternate, like a block node's `file`) both ways.
        const object = types.some((t) => this.#objectsOf(t).length > 0);
        const scalar = types.some((t) => this.#types.get(t)?.kind !== "object");
        return [
          ...(scalar || !object ? [`${prefix}${m}=`] : []),
          ...(object ? [`${prefix}${m}.`] : []),
        ];
      });
    return [sortedUnique(matches), word];
  }

  /** The object types a value at `path` (below the root type) may have. */
  #objectsAt(root: string, path: readonly string[], given: readonly GivenKey[]): string[] {
    let objects = this.#objectsOf(root);
    for (let i = 0; i < path.length && objects.length > 0; i++) {
      const here = path.slice(0, i);
      const types = this.#members(objects, here, given).get(path[i]!) ?? [];
      objects = [...new Set(types.flatMap((t) => this.#objectsOf(t)))];
    }
    return objects;
  }

  /** `type` itself if it is an object, its object branches if an alternate, else nothing. */
  #objectsOf(type: string): string[] {
    const info = this.#types.get(type);
    if (info?.kind === "object") return [type];
    if (info?.kind === "alternate") {
      return info.branches.filter((b) => this.#types.get(b)?.kind === "object");
    }
    return [];
  }

  /**
   * The members of `objects` (values at `path`): own members, and for a union
   * those of the variant its tag picks on the line, else of every variant.
   * Name → the types it has (one per object that declares it differently).
   */
  #members(
    objects: readonly string[],
    path: readonly string[],
    given: readonly GivenKey[],
  ): Map<string, string[]> {
    const out = new Map<string, string[]>();
    const add = (type: string, depth: number): void => {
      const info = this.#types.get(type);
      if (info?.kind !== "object") return;
      for (const [name, memberType] of info.members) {
        const types = out.get(name);
        if (types === undefined) out.set(name, [memberType]);
        else if (!types.includes(memberType)) types.push(memberType);
      }
      if (info.tag === undefined || depth >= MAX_UNION_DEPTH) return;
      const tag = info.tag;
      const set = given.find(
        (g) => g.path.length === path.length + 1 && g.path[path.length] === tag,
      );
      const value = set === undefined ? undefined : unquote(set.value);
      for (const variant of info.variants) {
        if (value === undefined || variant.case === value) add(variant.type, depth + 1);
      }
    };
    for (const object of objects) add(object, 0);
    return out;
  }

  /** The values to offer for a member of type `type`: enum values and booleans. */
  #values(type: string, alternate = true): string[] {
    const info = this.#types.get(type);
    if (info?.kind === "enum") return info.values;
    if (info?.kind === "builtin") return info.jsonType === "boolean" ? ["false", "true"] : [];
    if (info?.kind === "alternate" && alternate) {
      return info.branches.flatMap((b) => this.#values(b, false));
    }
    return [];
  }

  /**
   * Find the transaction actions through the schema: the `transaction`
   * command's `actions` argument is an array of a union whose tag is `type`;
   * each variant holds the action's arguments in its `data` member.
   */
  #indexActions(): void {
    const args = this.#commandArgs.get("transaction");
    if (args === undefined) return;
    const arrayType = this.#members([args], [], []).get("actions")?.[0];
    const array = arrayType === undefined ? undefined : this.#types.get(arrayType);
    if (array?.kind !== "array") return;
    const union = this.#types.get(array.element);
    if (union?.kind !== "object" || union.tag === undefined) return;
    for (const variant of union.variants) {
      if (this.#actions.has(variant.case)) continue;
      this.#actions.set(variant.case, this.#members([variant.type], [], []).get("data")?.[0]);
    }
    // A case with no variant (allowed by QAPI) is an action without arguments.
    const tagType = union.members.get(union.tag);
    const tagEnum = tagType === undefined ? undefined : this.#types.get(tagType);
    if (tagEnum?.kind === "enum") {
      for (const value of tagEnum.values)
        if (!this.#actions.has(value)) this.#actions.set(value, undefined);
    }
  }
}

// ------------------------------------------------------------- HMP

/** The start of an HMP help entry: `name[|alias…]` then arguments. */
const HELP_NAMES = /^([\w?][\w?.-]*(?:\|[\w?][\w?.-]*)*)(?:\s|$)/;
/** The start of a `help info` entry: `info name` then arguments. */
const INFO_NAMES = /^info\s+([\w?][\w?.-]*(?:\|[\w?][\w?.-]*)*)(?:\s|$)/;
/** The separator between an entry's arguments and its description. */
const DESCRIPTION = /\s--(?:\s|$)/;

/**
 * The names in HMP help text: entries `names args -- description`. An
 * entry's arguments may run over unindented lines that do not start an
 * entry (as `drive_add`'s do); its description may run over indented ones.
 * A line that starts like an entry but never reaches ` -- ` is not one.
 */
function helpNames(text: string, start: RegExp): string[] {
  const names: string[] = [];
  let pending: string[] | undefined;
  for (const line of text.split(/\r?\n/)) {
    const match = start.exec(line);
    let rest = line;
    if (match !== null) {
      pending = match[1]!.split("|");
      rest = line.slice(match[0].length - 1);
    } else if (!/^\S/.test(line)) {
      pending = undefined;
    }
    if (pending !== undefined && DESCRIPTION.test(rest)) {
      names.push(...pending);
      pending = undefined;
    }
  }
  return sortedUnique(names);
}

/** Completes HMP command lines from the text of HMP `help` and `help info`. */
export class HmpCompleter {
  readonly #commands: string[];
  readonly #info: string[];

  /**
   * @param helpText The output of the HMP command `help`.
   * @param infoHelpText The output of the HMP command `help info`.
   */
  constructor(helpText: string, infoHelpText: string) {
    this.#commands = helpNames(helpText, HELP_NAMES);
    this.#info = helpNames(infoHelpText, INFO_NAMES);
  }

  /**
   * Complete `line`, the text of the line up to the cursor: the first word
   * is a command name, the word after `info` an info sub-command; nothing
   * else is completed.
   *
   * @returns Readline's pair: the candidates (each ending with a space) and
   *   the word they complete.
   */
  complete(line: string): [string[], string] {
    const words = line.trimStart().split(/\s+/);
    const current = words[words.length - 1]!;
    let names: readonly string[] = [];
    if (words.length === 1) names = this.#commands;
    else if (words.length === 2 && words[0] === "info") names = this.#info;
    return [names.filter((n) => n.startsWith(current)).map((n) => `${n} `), current];
  }
}
