// The QOM tree read from QEMU: qom-list entries, the tree below a path (concurrent, bounded
// queries), and its text in the forms of QEMU's qom-* scripts. For `qmp qom` and the shell.

import { type JsonValue, type QMPClient } from "../index.js";
import { describe } from "./common.js";

/** How many `qom-list`/`qom-get` queries `tree` keeps in flight at once. */
const CONCURRENCY = 16;

/** One entry of `qom-list`. */
export interface Property {
  name: string;
  type: string;
}

/** An object of the tree, with its properties and children, in `qom-list` order. */
export interface Node {
  path: string;
  type: string;
  properties: { name: string; type: string; value?: JsonValue; error?: string }[];
  children: Node[];
}

/** A value the way QEMU's Python scripts print it: True, None, 42, text, or JSON for the rest. */
export function pythonish(value: JsonValue): string {
  if (value === true) return "True";
  if (value === false) return "False";
  if (value === null) return "None";
  if (typeof value === "string" || typeof value === "number") return String(value);
  return JSON.stringify(value);
}

/** Runs tasks with at most `limit` in flight. */
function limiter(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await task();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

/** `qom-list` of `path`. */
export async function list(client: QMPClient, path: string): Promise<Property[]> {
  const items = await client.execute("qom-list", { path });
  return (Array.isArray(items) ? items : []).flatMap((i) =>
    typeof i === "object" && i !== null && !Array.isArray(i)
      ? [
          {
            name: typeof i["name"] === "string" ? i["name"] : "",
            type: typeof i["type"] === "string" ? i["type"] : "",
          },
        ]
      : [],
  );
}

/** The tree below `path`, read with at most {@link CONCURRENCY} queries at once. */
export async function readTree(client: QMPClient, path: string, values: boolean): Promise<Node> {
  const run = limiter(CONCURRENCY);
  const visit = async (at: string, type: string): Promise<Node> => {
    const props = await run(() => list(client, at));
    const node: Node = { path: at, type, properties: [], children: [] };
    const base = at === "/" ? "" : at;
    const children = props.filter((p) => p.type.startsWith("child<"));
    const [readings, kids] = await Promise.all([
      Promise.all(
        props
          .filter((p) => !p.type.startsWith("child<"))
          .map(async (p) => {
            if (!values) return { name: p.name, type: p.type };
            try {
              const value = await run(() =>
                client.execute("qom-get", { path: at, property: p.name }),
              );
              return { name: p.name, type: p.type, value };
            } catch (err) {
              return { name: p.name, type: p.type, error: describe(err) };
            }
          }),
      ),
      Promise.all(children.map((c) => visit(`${base}/${c.name}`, c.type.slice(6, -1)))),
    ]);
    node.properties = readings;
    node.children = kids;
    return node;
  };
  return visit(path, path === "/" ? "container" : await typeOf(client, path));
}

/** The type of the object at `path` (`qom-get … type`). */
async function typeOf(client: QMPClient, path: string): Promise<string> {
  const type = await client.execute("qom-get", { path, property: "type" });
  return typeof type === "string" ? type : "object";
}

/** The tree as text: `PATH (type)` lines; with values, qom-tree's blocks. */
export function printTree(node: Node, values: boolean, out: string[]): void {
  if (!values) {
    out.push(`${node.path} (${node.type})`);
  } else {
    out.push(node.path);
    for (const p of node.properties) {
      const shown = p.error !== undefined ? `<EXCEPTION: ${p.error}>` : pythonish(p.value ?? null);
      out.push(`  ${p.name}: ${shown} (${p.type})`);
    }
    out.push("");
  }
  for (const child of node.children) printTree(child, values, out);
}
