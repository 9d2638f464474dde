// Readable, stable TypeScript names for the numbered types of QEMU's introspection.
//
// `query-qmp-schema` hides most type names behind numbers ("288", "[288]"),
// and the numbers change between QEMU versions. A type is named after the
// place where it is used: a command's arguments `BlockdevAddArgs`, its return
// `QueryStatusReturn`, an event's data `BlockJobCompletedData`, a member
// `QueryStatusReturnStatus`, a union branch `BlockdevAddArgsFile`. Of all the
// places, the one nearest a command or event wins, then the shortest name,
// then the first in alphabetical order: the same schema always gives the
// same names, and a type keeps its name across versions as long as the
// place it is named after stays.

import { type Schema, type SchemaEntry } from "./schema.js";

/** `query-status` → `QueryStatus`, `BLOCK_JOB_COMPLETED` → `BlockJobCompleted`, `node-name` → `NodeName`. */
export function pascalCase(name: string): string {
  const words = name.split(/[^A-Za-z0-9]+/).filter((w) => w !== "");
  const allCaps = name === name.toUpperCase();
  return words
    .map((w) => {
      const rest = allCaps ? w.slice(1).toLowerCase() : w.slice(1);
      return w.charAt(0).toUpperCase() + rest;
    })
    .join("");
}

/** A candidate name for a type: how far from a command or event, and the name. */
interface Candidate {
  depth: number;
  name: string;
  type: string;
}

function better(a: Candidate, b: Candidate): boolean {
  if (a.depth !== b.depth) return a.depth < b.depth;
  if (a.name.length !== b.name.length) return a.name.length < b.name.length;
  return a.name < b.name;
}

/** A binary heap of candidates, best first. */
class Heap {
  readonly #items: Candidate[] = [];

  get size(): number {
    return this.#items.length;
  }

  push(c: Candidate): void {
    const items = this.#items;
    items.push(c);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!better(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): Candidate {
    const items = this.#items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < items.length && better(items[l]!, items[best]!)) best = l;
        if (r < items.length && better(items[r]!, items[best]!)) best = r;
        if (best === i) break;
        [items[i], items[best]] = [items[best]!, items[i]!];
        i = best;
      }
    }
    return top;
  }
}

/** Whether a type gets a declaration of its own (enums, objects, alternates). */
export function isNamed(entry: SchemaEntry): boolean {
  const meta = entry["meta-type"];
  return meta === "enum" || meta === "object" || meta === "alternate";
}

/**
 * Names for every enum, object and alternate type of `schema` (arrays and
 * builtins are written inline, and so are the empty objects the caller
 * treats as "nothing"). `reserved` names are never given.
 */
export function nameTypes(
  schema: Schema,
  skip: (type: string) => boolean,
  reserved: Iterable<string>,
): Map<string, string> {
  const names = new Map<string, string>();
  const taken = new Set(reserved);
  const heap = new Heap();
  for (const c of schema.commands) {
    const base = pascalCase(c.name);
    heap.push({ depth: 0, name: `${base}Args`, type: c["arg-type"] });
    heap.push({ depth: 0, name: `${base}Return`, type: c["ret-type"] });
  }
  for (const e of schema.events) {
    heap.push({ depth: 0, name: `${pascalCase(e.name)}Data`, type: e["arg-type"] });
  }
  while (heap.size > 0) {
    const { depth, name, type } = heap.pop();
    const entry = schema.type(type);
    if (entry["meta-type"] === "array") {
      // An array is written as its element's type with []: the element is named for it.
      heap.push({ depth, name: `${name}Item`, type: entry["element-type"] });
      continue;
    }
    if (!isNamed(entry) || names.has(type) || skip(type)) continue;
    let unique = name;
    for (let n = 2; taken.has(unique); n++) unique = `${name}${n}`;
    names.set(type, unique);
    taken.add(unique);
    const next = depth + 1;
    if (entry["meta-type"] === "object") {
      for (const m of entry.members) {
        heap.push({ depth: next, name: `${unique}${pascalCase(m.name)}`, type: m.type });
      }
      for (const v of entry.variants ?? []) {
        heap.push({ depth: next, name: `${unique}${pascalCase(v.case)}`, type: v.type });
      }
    } else if (entry["meta-type"] === "alternate") {
      for (const m of entry.members) {
        const member = schema.type(m.type);
        const kind = member["meta-type"] === "array" ? "List" : pascalCase(member["meta-type"]);
        heap.push({ depth: next, name: `${unique}${kind}`, type: m.type });
      }
    }
  }
  return names;
}
