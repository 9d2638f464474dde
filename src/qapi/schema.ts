// QEMU's introspection (`query-qmp-schema`): the entries' shapes, and an index over them.

/** A `features` list: `deprecated`, `unstable`, or a feature of QEMU's own. */
export type SchemaFeatures = readonly string[] | undefined;

/** `{ name, type, default?, features? }`: a member of an object type. `default` present: optional. */
export interface SchemaMember {
  readonly name: string;
  readonly type: string;
  /** Present (always `null`) when the member is optional. */
  readonly default?: null;
  readonly features?: SchemaFeatures;
}

/** The entries of `query-qmp-schema`, by `meta-type`. */
export type SchemaEntry =
  | {
      readonly name: string;
      readonly "meta-type": "builtin";
      /** `string`, `int`, `number`, `boolean`, `null`, `object`, `array` or `value`. */
      readonly "json-type": string;
      readonly features?: SchemaFeatures;
    }
  | {
      readonly name: string;
      readonly "meta-type": "enum";
      /** Since QEMU 6.2; `values` alone before. */
      readonly members?: readonly { readonly name: string; readonly features?: SchemaFeatures }[];
      readonly values?: readonly string[];
      readonly features?: SchemaFeatures;
    }
  | {
      readonly name: string;
      readonly "meta-type": "array";
      readonly "element-type": string;
      readonly features?: SchemaFeatures;
    }
  | {
      readonly name: string;
      readonly "meta-type": "object";
      readonly members: readonly SchemaMember[];
      /** The member whose value picks a variant (a flat union). */
      readonly tag?: string;
      readonly variants?: readonly { readonly case: string; readonly type: string }[];
      readonly features?: SchemaFeatures;
    }
  | {
      readonly name: string;
      readonly "meta-type": "alternate";
      readonly members: readonly { readonly type: string }[];
      readonly features?: SchemaFeatures;
    }
  | {
      readonly name: string;
      readonly "meta-type": "command";
      readonly "arg-type": string;
      readonly "ret-type": string;
      readonly "allow-oob"?: boolean;
      readonly features?: SchemaFeatures;
    }
  | {
      readonly name: string;
      readonly "meta-type": "event";
      readonly "arg-type": string;
      readonly features?: SchemaFeatures;
    };

/** One kind of entry. */
export type SchemaEntryOf<M extends SchemaEntry["meta-type"]> = Extract<
  SchemaEntry,
  { "meta-type": M }
>;

/**
 * Commands whose arguments go beyond what introspection lists: QEMU
 * declares them with `gen: false` and reads the rest itself, and
 * introspection cannot say so. `device_add` takes the device's properties
 * (`drive`, `netdev`, `addr`, …) beside `driver`, `bus` and `id`.
 */
export const OPEN_ARGUMENTS: ReadonlySet<string> = new Set(["device_add"]);

const META_TYPES = new Set(["builtin", "enum", "array", "object", "alternate", "command", "event"]);

/** The values of an enum entry (from `members`, or `values` before QEMU 6.2). */
export function enumValues(entry: SchemaEntryOf<"enum">): string[] {
  return entry.members?.map((m) => m.name) ?? [...(entry.values ?? [])];
}

/**
 * A `query-qmp-schema` reply, indexed by name.
 *
 * @throws {TypeError} when `entries` is not a list of schema entries, or an
 *   entry refers to a type the list does not have.
 */
export class Schema {
  readonly #byName = new Map<string, SchemaEntry>();
  readonly commands: SchemaEntryOf<"command">[] = [];
  readonly events: SchemaEntryOf<"event">[] = [];

  constructor(entries: unknown) {
    if (!Array.isArray(entries)) {
      throw new TypeError("A QAPI schema is a list of entries (the return of query-qmp-schema)");
    }
    for (const [i, e] of entries.entries()) {
      const entry = e as Partial<Record<string, unknown>> | null;
      const meta = entry?.["meta-type"];
      if (
        entry === null ||
        typeof entry !== "object" ||
        typeof entry["name"] !== "string" ||
        typeof meta !== "string" ||
        !META_TYPES.has(meta)
      ) {
        throw new TypeError(`Schema entry ${i} is not a { name, meta-type } object`);
      }
      const checked = entry as unknown as SchemaEntry;
      this.#byName.set(checked.name, checked);
      if (checked["meta-type"] === "command") this.commands.push(checked);
      else if (checked["meta-type"] === "event") this.events.push(checked);
    }
    const byName = (a: { name: string }, b: { name: string }): number =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    this.commands.sort(byName);
    this.events.sort(byName);
    for (const entry of this.#byName.values()) {
      for (const ref of references(entry)) this.type(ref, entry.name);
    }
  }

  /** The entry named `name`, if any (a command, an event or a type). */
  get(name: string): SchemaEntry | undefined {
    return this.#byName.get(name);
  }

  /**
   * The type named `name`.
   *
   * @throws {TypeError} when there is none (`from` names who refers to it).
   */
  type(name: string, from?: string): SchemaEntry {
    const entry = this.#byName.get(name);
    if (entry === undefined || entry["meta-type"] === "command" || entry["meta-type"] === "event") {
      const by = from !== undefined ? ` (used by ${JSON.stringify(from)})` : "";
      throw new TypeError(`The schema has no type ${JSON.stringify(name)}${by}`);
    }
    return entry;
  }

  /** The command named `name`, if the schema has it. */
  command(name: string): SchemaEntryOf<"command"> | undefined {
    const entry = this.#byName.get(name);
    return entry?.["meta-type"] === "command" ? entry : undefined;
  }

  /** The event named `name`, if the schema has it. */
  event(name: string): SchemaEntryOf<"event"> | undefined {
    const entry = this.#byName.get(name);
    return entry?.["meta-type"] === "event" ? entry : undefined;
  }

  /** Whether `name` is an object type with no members and no variants (QEMU's "no data"). */
  isEmptyObject(name: string): boolean {
    const entry = this.#byName.get(name);
    return (
      entry?.["meta-type"] === "object" &&
      entry.members.length === 0 &&
      (entry.variants?.length ?? 0) === 0
    );
  }
}

/** The type names an entry refers to. */
export function references(entry: SchemaEntry): string[] {
  switch (entry["meta-type"]) {
    case "builtin":
    case "enum":
      return [];
    case "array":
      return [entry["element-type"]];
    case "object":
      return [...entry.members.map((m) => m.type), ...(entry.variants ?? []).map((v) => v.type)];
    case "alternate":
      return entry.members.map((m) => m.type);
    case "command":
      return [entry["arg-type"], entry["ret-type"]];
    case "event":
      return [entry["arg-type"]];
  }
}
