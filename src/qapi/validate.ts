// Checking a command's arguments against a live schema, before anything is sent (`validate: true`).

import {
  OPEN_ARGUMENTS,
  type Schema,
  type SchemaEntry,
  type SchemaEntryOf,
  type SchemaMember,
  enumValues,
} from "./schema.js";

import type { ValidationProblem } from "../errors.js";

/** What a check found: the problems, and the deprecated things it met on the way. */
export interface ValidationReport {
  problems: ValidationProblem[];
  /** Deprecated members and enum values used, as paths (the command itself: `""`). */
  deprecated: string[];
}

/** At most this many problems are reported (a list of 10,000 bad entries is still one error). */
const MAX_PROBLEMS = 50;

/** The JSON type of a value, as messages name it. */
function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  if (typeof value === "bigint") return "bigint";
  return typeof value;
}

function join(path: string, member: string): string {
  return path === "" ? member : `${path}.${member}`;
}

function isDeprecated(features: readonly string[] | undefined): boolean {
  return features?.includes("deprecated") ?? false;
}

/**
 * Check `args` of command `command` against `schema`. A command the schema
 * lacks is one problem at `""`.
 */
export function validateArguments(
  schema: Schema,
  command: string,
  args: unknown,
): ValidationReport {
  const report: ValidationReport = { problems: [], deprecated: [] };
  const entry = schema.command(command);
  if (entry === undefined) {
    report.problems.push({ path: "", message: `QEMU has no command '${command}'` });
    return report;
  }
  if (isDeprecated(entry.features)) report.deprecated.push("");
  new Checker(schema, report, OPEN_ARGUMENTS.has(command)).check(args ?? {}, entry["arg-type"], "");
  return report;
}

class Checker {
  constructor(
    private readonly schema: Schema,
    private readonly report: ValidationReport,
    /** The command takes members beyond its schema at the top (device_add). */
    private readonly open = false,
  ) {}

  #problem(path: string, message: string): void {
    if (this.report.problems.length < MAX_PROBLEMS) this.report.problems.push({ path, message });
  }

  check(value: unknown, type: string, path: string): void {
    const entry = this.schema.type(type);
    switch (entry["meta-type"]) {
      case "builtin":
        this.#builtin(value, entry, path);
        return;
      case "enum":
        this.#enum(value, entry, path);
        return;
      case "array":
        if (!Array.isArray(value)) {
          this.#problem(path, `expected array, got ${jsonType(value)}`);
          return;
        }
        value.forEach((v, i) => this.check(v, entry["element-type"], `${path}[${i}]`));
        return;
      case "object":
        this.#object(value, entry, path);
        return;
      case "alternate":
        this.#alternate(value, entry, path);
        return;
      case "command":
      case "event":
        throw new TypeError(`${JSON.stringify(type)} is not a type`);
    }
  }

  #builtin(value: unknown, entry: SchemaEntryOf<"builtin">, path: string): void {
    const want = entry["json-type"];
    const got = jsonType(value);
    const ok =
      want === "value" ||
      (want === "string" && got === "string") ||
      (want === "int" && got === "integer") ||
      (want === "number" && (got === "integer" || got === "number")) ||
      (want === "boolean" && got === "boolean") ||
      (want === "null" && got === "null") ||
      (want === "object" && got === "object") ||
      (want === "array" && got === "array");
    if (!ok) {
      const expected = want === "int" ? "integer" : want;
      this.#problem(path, `expected ${expected}, got ${got}`);
    }
  }

  #enum(value: unknown, entry: SchemaEntryOf<"enum">, path: string): void {
    const values = enumValues(entry);
    if (typeof value !== "string" || !values.includes(value)) {
      const got = typeof value === "string" ? JSON.stringify(value) : jsonType(value);
      const allowed = values.map((v) => JSON.stringify(v)).join(", ");
      this.#problem(path, `expected one of ${allowed}, got ${got}`);
      return;
    }
    const member = entry.members?.find((m) => m.name === value);
    if (isDeprecated(member?.features)) this.report.deprecated.push(`${path}=${value}`);
  }

  #object(value: unknown, entry: SchemaEntryOf<"object">, path: string): void {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.#problem(path, `expected object, got ${jsonType(value)}`);
      return;
    }
    const record = value as Record<string, unknown>;
    const members = this.#members(entry, record);
    const known = new Set(members.map((m) => m.name));
    for (const m of members) {
      const at = join(path, m.name);
      if (!Object.hasOwn(record, m.name) || record[m.name] === undefined) {
        if (!("default" in m)) this.#problem(at, "missing");
        continue;
      }
      if (isDeprecated(m.features)) this.report.deprecated.push(at);
      this.check(record[m.name], m.type, at);
    }
    if (this.open && path === "") return;
    for (const key of Object.keys(record)) {
      if (!known.has(key) && record[key] !== undefined) {
        this.#problem(join(path, key), "unknown member");
      }
    }
  }

  /**
   * The members `record` must be checked against: the object's own, and
   * for a flat union those of the branch its tag picks (and so on, when the
   * branch is a union too). A bad tag value is found by the tag's own check.
   */
  #members(entry: SchemaEntryOf<"object">, record: Record<string, unknown>): SchemaMember[] {
    const members = [...entry.members];
    if (entry.tag === undefined) return members;
    const variant = entry.variants?.find((v) => v.case === record[entry.tag!]);
    if (variant === undefined) return members;
    const branch = this.schema.type(variant.type);
    if (branch["meta-type"] === "object") members.push(...this.#members(branch, record));
    return members;
  }

  #alternate(value: unknown, entry: SchemaEntryOf<"alternate">, path: string): void {
    const got = jsonType(value);
    const kinds: string[] = [];
    for (const m of entry.members) {
      const member = this.schema.type(m.type);
      const kind = alternateKind(member);
      kinds.push(kind);
      if (kind === got || (kind === "number" && got === "integer")) {
        this.check(value, m.type, path);
        return;
      }
    }
    this.#problem(path, `expected ${[...new Set(kinds)].join(" or ")}, got ${got}`);
  }
}

/** Which JSON type picks this member of an alternate. */
function alternateKind(entry: SchemaEntry): string {
  switch (entry["meta-type"]) {
    case "builtin": {
      const t = entry["json-type"];
      return t === "int" ? "integer" : t;
    }
    case "enum":
      return "string";
    case "array":
      return "array";
    case "object":
    case "alternate":
    case "command":
    case "event":
      return "object";
  }
}
