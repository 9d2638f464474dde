// The schema of the QEMU a client is connected to: fetched once per session, for `validate: true`
// and for feature detection (hasCommand, hasEvent, commandInfo).

import { ValidationError } from "../errors.js";
import type { Logger } from "../util.js";
import { Schema, type SchemaEntry, type SchemaMember, enumValues } from "./schema.js";
import { validateArguments } from "./validate.js";

/** A member of a command's arguments, as {@link CommandInfo} describes it. */
export interface MemberInfo {
  /** The member's name, e.g. `node-name`. */
  name: string;
  /** Its type, readably: `string`, `integer`, `boolean`, `"a" | "b"`, `object`, `string[]`, … */
  type: string;
  /** Whether it may be left out. */
  optional: boolean;
  /** Its features, e.g. `["deprecated"]`. */
  features: string[];
}

/** What {@link QMPClient.commandInfo} tells about a command of the connected QEMU. */
export interface CommandInfo {
  /** The command's name. */
  name: string;
  /**
   * Its arguments' members (empty when it takes none). For a command whose
   * arguments are a union (`blockdev-add`), the members common to every
   * branch, the tag among them.
   */
  args: MemberInfo[];
  /** The tag member and its values, when the arguments are a union (`driver` of `blockdev-add`). */
  union?: { tag: string; cases: string[] } | undefined;
  /** Whether it may be sent out of band (`exec-oob`). */
  allowOob: boolean;
  /** Its features, e.g. `["deprecated"]`, `["unstable"]`. */
  features: string[];
}

/** Paths with their indices made generic (`actions[]`): one warning per member, not per element. */
function generic(path: string): string {
  return path.replace(/\[\d+\]/g, "[]");
}

/**
 * One session's schema, fetched on first use (or at connect, with
 * `validate: true`), and what is known from it.
 */
export class LiveSchema {
  #schema: Schema | undefined;
  #pending: Promise<Schema> | undefined;
  /** Deprecated things already warned about (per client, not per session). */
  readonly #warned = new Set<string>();

  constructor(
    private readonly logger: Logger,
    private readonly tag: string,
  ) {}

  /** The schema, once fetched this session. */
  get current(): Schema | undefined {
    return this.#schema;
  }

  /**
   * The schema: the one fetched this session, or `fetch()`'s (one fetch at
   * a time, shared by whoever asks meanwhile).
   *
   * @throws what `fetch` throws; {@link TypeError} when the reply is no schema.
   */
  async get(fetch: () => Promise<unknown>): Promise<Schema> {
    if (this.#schema !== undefined) return this.#schema;
    const pending = (this.#pending ??= fetch().then(
      (entries) => {
        const schema = new Schema(entries);
        if (this.#pending === pending) this.#schema = schema;
        return schema;
      },
      (err: unknown) => {
        if (this.#pending === pending) this.#pending = undefined;
        throw err;
      },
    ));
    return pending;
  }

  /** The session ended: the next one may be another QEMU. */
  reset(): void {
    this.#schema = undefined;
    this.#pending = undefined;
  }

  /**
   * Check `args` of `command` against the fetched schema; warn once about
   * each deprecated command or member used.
   *
   * @throws {ValidationError} naming every problem.
   */
  validate(schema: Schema, command: string, args: unknown): void {
    const report = validateArguments(schema, command, args);
    if (report.problems.length > 0) throw new ValidationError(command, report.problems);
    for (const path of report.deprecated) {
      const key = `${command}\0${generic(path)}`;
      if (this.#warned.has(key)) continue;
      this.#warned.add(key);
      const what = path === "" ? `The command '${command}'` : `'${command}' ${generic(path)}`;
      this.logger.warn(`${this.tag}${what} is deprecated in this QEMU`);
    }
  }
}

/** What `commandInfo()` gives for `name` in `schema`, if it has that command. */
export function commandInfo(schema: Schema, name: string): CommandInfo | undefined {
  const command = schema.command(name);
  if (command === undefined) return undefined;
  const args = schema.type(command["arg-type"]);
  const members = args["meta-type"] === "object" ? args.members : [];
  const info: CommandInfo = {
    name,
    args: members.map((m) => memberInfo(schema, m)),
    allowOob: command["allow-oob"] === true,
    features: [...(command.features ?? [])],
  };
  if (args["meta-type"] === "object" && args.tag !== undefined) {
    info.union = { tag: args.tag, cases: (args.variants ?? []).map((v) => v.case) };
  }
  return info;
}

function memberInfo(schema: Schema, m: SchemaMember): MemberInfo {
  return {
    name: m.name,
    type: describeType(schema, schema.type(m.type)),
    optional: "default" in m,
    features: [...(m.features ?? [])],
  };
}

/** A readable name for a type: its JSON shape (introspection names are numbers). */
function describeType(schema: Schema, entry: SchemaEntry, depth = 0): string {
  switch (entry["meta-type"]) {
    case "builtin": {
      const t = entry["json-type"];
      return t === "int" ? "integer" : t === "value" ? "any" : t;
    }
    case "enum":
      return enumValues(entry)
        .map((v) => JSON.stringify(v))
        .join(" | ");
    case "array": {
      const element = describeType(schema, schema.type(entry["element-type"]), depth + 1);
      return element.includes(" ") ? `(${element})[]` : `${element}[]`;
    }
    case "alternate":
      return depth > 2
        ? "alternate"
        : entry.members
            .map((m) => describeType(schema, schema.type(m.type), depth + 1))
            .join(" | ");
    case "object":
    case "command":
    case "event":
      return "object";
  }
}
