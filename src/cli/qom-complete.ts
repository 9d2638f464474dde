// The shell's QOM at hand: Tab completion of QOM paths (`path=` of qom-list, qom-get, qom-set,
// and the path of `qom-tree`) and of `property=` names, read from QEMU as you type.

import type { QMPClient } from "../index.js";
import { list } from "./qom-tree.js";

/** The commands whose `path=` is a QOM path; `qom-tree` is the shell's own. */
const QOM_COMMANDS = new Set(["qom-list", "qom-get", "qom-set", "qom-tree"]);

/** The shell's own command that prints the QOM tree. */
export const QOM_TREE = "qom-tree";

/** The children and links of `parent` whose names start with `prefix`, as paths. */
async function childPaths(client: QMPClient, value: string): Promise<string[]> {
  const path = value === "" ? "/" : value;
  const slash = path.lastIndexOf("/");
  const parent = slash <= 0 ? "/" : path.slice(0, slash);
  const prefix = path.slice(slash + 1);
  let items;
  try {
    items = await list(client, parent);
  } catch {
    return [];
  }
  const base = parent === "/" ? "" : parent;
  return items
    .filter((i) => /^(child|link)</.test(i.type) && i.name.startsWith(prefix))
    .map((i) => `${base}/${i.name}`)
    .sort();
}

/**
 * Tab completion of QOM paths and property names on `line`, as readline's
 * completer gives it (`[candidates, the word they complete]`); `undefined`
 * when the word is none of those (the schema's completion applies).
 */
export async function completeQom(
  client: QMPClient,
  line: string,
): Promise<[string[], string] | undefined> {
  const words = line.trimStart().split(/\s+/);
  const command = words[0];
  if (command === undefined || !QOM_COMMANDS.has(command) || words.length < 2) return undefined;
  const word = words.at(-1)!;
  if (command === QOM_TREE && !word.includes("=")) {
    return [await childPaths(client, word), word];
  }
  if (word.startsWith("path=")) {
    const paths = await childPaths(client, word.slice(5));
    return [paths.map((p) => `path=${p}`), word];
  }
  if (word.startsWith("property=") && (command === "qom-get" || command === "qom-set")) {
    const path = words.find((w) => w.startsWith("path="))?.slice(5);
    if (path === undefined || path === "") return [[], word];
    const prefix = word.slice(9);
    let items;
    try {
      items = await list(client, path);
    } catch {
      return [[], word];
    }
    const names = items
      .filter((i) => !i.type.startsWith("child<") && i.name.startsWith(prefix))
      .map((i) => `property=${i.name} `)
      .sort();
    return [names, word];
  }
  return undefined;
}
