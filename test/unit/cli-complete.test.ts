// Tab completion of the shell: QMP lines from a synthetic (masked) schema, HMP lines from help text.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { HmpCompleter, QmpCompleter } from "../../src/cli/complete.js";

const COMMANDS = [
  "query-status",
  "query-stats",
  "blockdev-add",
  "transaction",
  "device_add",
  "set-flag",
  "connect",
  "quit",
  "query-status", // listed twice: offered once
];

/** A schema shaped like `query-qmp-schema`'s, with masked type names. */
const SCHEMA: unknown[] = [
  { name: "str", "meta-type": "builtin", "json-type": "string" },
  { name: "int", "meta-type": "builtin", "json-type": "int" },
  { name: "bool", "meta-type": "builtin", "json-type": "boolean" },
  { name: "null", "meta-type": "builtin", "json-type": "null" },
  { name: "0", "meta-type": "object", members: [] },
  { name: "query-status", "meta-type": "command", "arg-type": "0", "ret-type": "0" },
  { name: "query-stats", "meta-type": "command", "arg-type": "0", "ret-type": "0" },
  { name: "quit", "meta-type": "command", "arg-type": "0", "ret-type": "0" },
  { name: "SOME_EVENT", "meta-type": "event", "arg-type": "0" },

  // blockdev-add: a union on `driver`, whose `file` is an alternate of the union itself.
  { name: "blockdev-add", "meta-type": "command", "arg-type": "10", "ret-type": "0" },
  {
    name: "10",
    "meta-type": "object",
    members: [
      { name: "driver", type: "11" },
      { name: "node-name", type: "str", default: null },
      { name: "read-only", type: "bool", default: null },
      { name: "discard", type: "12", default: null },
      { name: "cache", type: "13", default: null },
      { name: "mode", type: "20", default: null },
      { name: "devices", type: "[22]", default: null },
    ],
    tag: "driver",
    variants: [
      { case: "file", type: "14" },
      { case: "qcow2", type: "16" },
      { case: "raw", type: "19" },
    ],
  },
  // Newer QEMU: `values` and `members`.
  {
    name: "11",
    "meta-type": "enum",
    values: ["file", "qcow2", "raw"],
    members: [{ name: "file" }, { name: "qcow2" }, { name: "raw" }],
  },
  // Older QEMU: only `values`.
  { name: "12", "meta-type": "enum", values: ["ignore", "unmap"] },
  {
    name: "13",
    "meta-type": "object",
    members: [
      { name: "direct", type: "bool", default: null },
      { name: "no-flush", type: "bool", default: null },
    ],
  },
  {
    name: "14",
    "meta-type": "object",
    members: [
      { name: "filename", type: "str" },
      { name: "locking", type: "15", default: null },
    ],
  },
  // Only `members`.
  { name: "15", "meta-type": "enum", members: [{ name: "auto" }, { name: "on" }, { name: "off" }] },
  {
    name: "16",
    "meta-type": "object",
    members: [
      { name: "file", type: "17" },
      { name: "backing", type: "18", default: null },
      { name: "lazy-refcounts", type: "bool", default: null },
    ],
  },
  { name: "17", "meta-type": "alternate", members: [{ type: "10" }, { type: "str" }] },
  {
    name: "18",
    "meta-type": "alternate",
    members: [{ type: "10" }, { type: "str" }, { type: "null" }],
  },
  {
    name: "19",
    "meta-type": "object",
    members: [
      { name: "file", type: "17" },
      { name: "offset", type: "int", default: null },
    ],
  },
  { name: "20", "meta-type": "alternate", members: [{ type: "bool" }, { type: "21" }] },
  { name: "21", "meta-type": "enum", values: ["auto", "manual"] },
  { name: "[22]", "meta-type": "array", "element-type": "22" },
  { name: "22", "meta-type": "object", members: [{ name: "x", type: "int" }] },

  // set-flag: a bool, an alternate without enum or bool, an array of str.
  { name: "set-flag", "meta-type": "command", "arg-type": "30", "ret-type": "0" },
  {
    name: "30",
    "meta-type": "object",
    members: [
      { name: "flag", type: "bool" },
      { name: "level", type: "31", default: null },
      { name: "tags", type: "[str]", default: null },
    ],
  },
  { name: "31", "meta-type": "alternate", members: [{ type: "int" }, { type: "str" }] },
  { name: "[str]", "meta-type": "array", "element-type": "str" },

  // transaction: actions is an array of a union on `type`, each variant `{ data }`.
  { name: "transaction", "meta-type": "command", "arg-type": "40", "ret-type": "0" },
  {
    name: "40",
    "meta-type": "object",
    members: [
      { name: "actions", type: "[41]" },
      { name: "properties", type: "42", default: null },
    ],
  },
  { name: "[41]", "meta-type": "array", "element-type": "41" },
  {
    name: "41",
    "meta-type": "object",
    members: [{ name: "type", type: "43" }],
    tag: "type",
    variants: [
      { case: "abort", type: "44" },
      { case: "snap", type: "45" },
      { case: "bitmap-add", type: "47" },
    ],
  },
  { name: "43", "meta-type": "enum", values: ["abort", "snap", "bitmap-add"] },
  { name: "44", "meta-type": "object", members: [{ name: "data", type: "0" }] },
  { name: "45", "meta-type": "object", members: [{ name: "data", type: "46" }] },
  {
    name: "46",
    "meta-type": "object",
    members: [
      { name: "device", type: "str" },
      { name: "format", type: "str", default: null },
      { name: "mode", type: "49", default: null },
    ],
  },
  { name: "49", "meta-type": "enum", values: ["existing", "absolute-paths"] },
  { name: "47", "meta-type": "object", members: [{ name: "data", type: "48" }] },
  {
    name: "48",
    "meta-type": "object",
    members: [
      { name: "node", type: "str" },
      { name: "name", type: "str" },
      { name: "persistent", type: "bool", default: null },
    ],
  },
  { name: "42", "meta-type": "object", members: [{ name: "completion-mode", type: "50" }] },
  { name: "50", "meta-type": "enum", values: ["individual", "grouped"] },

  { name: "device_add", "meta-type": "command", "arg-type": "60", "ret-type": "0" },
  {
    name: "60",
    "meta-type": "object",
    members: [
      { name: "driver", type: "str" },
      { name: "bus", type: "str", default: null },
      { name: "id", type: "str", default: null },
    ],
  },

  // connect: a union whose variant is itself a union (tags at the same level).
  { name: "connect", "meta-type": "command", "arg-type": "70", "ret-type": "0" },
  {
    name: "70",
    "meta-type": "object",
    members: [{ name: "transport", type: "71" }],
    tag: "transport",
    variants: [
      { case: "socket", type: "72" },
      { case: "exec", type: "76" },
    ],
  },
  { name: "71", "meta-type": "enum", values: ["socket", "exec"] },
  {
    name: "72",
    "meta-type": "object",
    members: [{ name: "type", type: "73" }],
    tag: "type",
    variants: [
      { case: "inet", type: "74" },
      { case: "unix", type: "75" },
    ],
  },
  { name: "73", "meta-type": "enum", values: ["inet", "unix"] },
  {
    name: "74",
    "meta-type": "object",
    members: [
      { name: "host", type: "str" },
      { name: "port", type: "str" },
    ],
  },
  { name: "75", "meta-type": "object", members: [{ name: "path", type: "str" }] },
  { name: "76", "meta-type": "object", members: [{ name: "args", type: "[str]" }] },
];

/** Entries a tolerant reader must skip (or make the best of) without throwing. */
const GARBAGE: unknown[] = [
  null,
  42,
  "query-status",
  [],
  {},
  { name: 7, "meta-type": "object" },
  { name: "g1", "meta-type": "no-such-meta" },
  { name: "g2", "meta-type": "object", members: "not a list", variants: { case: "x" } },
  {
    name: "g3",
    "meta-type": "object",
    members: [null, 5, { name: "ok", type: "str" }, { name: 1 }],
  },
  { name: "g4", "meta-type": "enum", values: [1, "one", null], members: [{ name: 2 }, "x"] },
  { name: "g5", "meta-type": "alternate", members: [{}, { type: 3 }] },
  { name: "g6", "meta-type": "array" },
  { name: "g7", "meta-type": "builtin" },
  { name: "g8", "meta-type": "command" },
  { name: "g9", "meta-type": "command", "arg-type": "no-such-type" },
];

/** Second entries of names already in {@link SCHEMA}: the first entry of a name wins. */
const DUPLICATES: unknown[] = [
  { name: "quit", "meta-type": "command", "arg-type": "60" },
  { name: "11", "meta-type": "enum", values: ["bogus"] },
];

const qmp = new QmpCompleter(COMMANDS, SCHEMA);

/** Just the candidates, checking that each starts with what it completes. */
function candidates(line: string, transaction = false): string[] {
  const [list, on] = qmp.complete(line, { transaction });
  for (const c of list) assert.ok(c.startsWith(on), `${JSON.stringify(c)} must start with ${on}`);
  return list;
}

void describe("QmpCompleter: the word being completed", () => {
  void test("the first word completes command names, sorted, each with a space", () => {
    assert.deepEqual(qmp.complete("query-sta"), [["query-stats ", "query-status "], "query-sta"]);
    assert.deepEqual(qmp.complete("  query-statu"), [["query-status "], "query-statu"]);
    assert.deepEqual(candidates(""), [
      "blockdev-add ",
      "connect ",
      "device_add ",
      "query-stats ",
      "query-status ",
      "quit ",
      "set-flag ",
      "transaction ",
    ]);
    assert.deepEqual(qmp.complete("nope"), [[], "nope"]);
  });

  void test("`transaction` is a plain command; `transaction(` is not offered", () => {
    assert.deepEqual(qmp.complete("trans"), [["transaction "], "trans"]);
    assert.deepEqual(qmp.complete("transaction("), [[], "transaction("]);
  });

  void test("inside an open quote or JSON bracket: nothing", () => {
    assert.deepEqual(qmp.complete('blockdev-add node-name="a b'), [[], 'node-name="a b']);
    assert.deepEqual(qmp.complete("blockdev-add node-name='x"), [[], "node-name='x"]);
    assert.deepEqual(qmp.complete('blockdev-add file={"driver": "fi'), [[], 'file={"driver": "fi']);
    assert.deepEqual(qmp.complete('blockdev-add cache={"direct": tr'), [[], 'cache={"direct": tr']);
    assert.deepEqual(qmp.complete("set-flag tags=[1, 2, [3"), [[], "tags=[1, 2, [3"]);
  });

  void test("a raw JSON line: nothing", () => {
    assert.deepEqual(qmp.complete('{"execute": "qu'), [[], '"qu']);
    assert.deepEqual(qmp.complete('  { "execute": "quit" } '), [[], ""]);
  });

  void test("closed quotes and JSON values (even with spaces) are single words", () => {
    assert.deepEqual(qmp.complete('blockdev-add node-name="a b" dis'), [["discard="], "dis"]);
    assert.deepEqual(qmp.complete('blockdev-add node-name="a \\" b" dis'), [["discard="], "dis"]);
    assert.deepEqual(qmp.complete('blockdev-add cache={"direct": true, "x": [1, 2]} ca'), [
      [],
      "ca",
    ]);
    assert.deepEqual(qmp.complete("set-flag tags=[1, 2] fl"), [["flag="], "fl"]);
  });

  void test("a bracket not right after `=` is not JSON (as tokenize reads it)", () => {
    assert.deepEqual(qmp.complete("blockdev-add node-name=a[b dis"), [["discard="], "dis"]);
  });
});

void describe("QmpCompleter: argument names", () => {
  void test("names not yet given, sorted, each with `=`", () => {
    assert.deepEqual(candidates("device_add "), ["bus=", "driver=", "id="]);
    assert.deepEqual(qmp.complete("device_add dr"), [["driver="], "dr"]);
    assert.deepEqual(candidates("device_add driver=e1000 "), ["bus=", "id="]);
    assert.deepEqual(candidates("device_add driver=e1000 id=n0 bus=pci.0 "), []);
    assert.deepEqual(candidates("device_add driver=e1000 id=n0 i"), []);
  });

  void test("a quoted key counts as given", () => {
    assert.deepEqual(candidates("device_add \"driver\"=e1000 'id'=x "), ["bus="]);
  });

  void test("a command without arguments, an unknown command: nothing", () => {
    assert.deepEqual(qmp.complete("quit "), [[], ""]);
    assert.deepEqual(qmp.complete("no-such-command a"), [[], "a"]);
  });

  void test("a union without its tag on the line: own members and every variant's, once", () => {
    // An object member is offered as `cache.`; one that may be an object or not
    // (an alternate: `file`, `backing`) both ways.
    assert.deepEqual(candidates("blockdev-add "), [
      "backing.",
      "backing=",
      "cache.",
      "devices=",
      "discard=",
      "driver=",
      "file.",
      "file=",
      "filename=",
      "lazy-refcounts=",
      "locking=",
      "mode=",
      "node-name=",
      "offset=",
      "read-only=",
    ]);
  });

  void test("addValues: values QEMU lists elsewhere join the schema's, for that command and key", () => {
    const completer = new QmpCompleter(COMMANDS, SCHEMA);
    completer.addValues("blockdev-add", "node-name", ["disk0", "disk1", "cd0"]);
    assert.deepEqual(completer.complete("blockdev-add node-name=d"), [["disk0 ", "disk1 "], "d"]);
    // Other keys and commands are unchanged; so is the completer they came from.
    assert.deepEqual(completer.complete("blockdev-add driver=r"), [["raw "], "r"]);
    assert.deepEqual(qmp.complete("blockdev-add node-name=d"), [[], "d"]);
  });

  void test("a union with its tag on the line: own members and that variant's", () => {
    assert.deepEqual(candidates("blockdev-add driver=qcow2 "), [
      "backing.",
      "backing=",
      "cache.",
      "devices=",
      "discard=",
      "file.",
      "file=",
      "lazy-refcounts=",
      "mode=",
      "node-name=",
      "read-only=",
    ]);
    assert.deepEqual(candidates("blockdev-add driver=file f"), ["filename="]);
    assert.deepEqual(candidates('blockdev-add driver="raw" o'), ["offset="]);
    // An unknown tag value: only the own members.
    assert.deepEqual(candidates("blockdev-add driver=vmdk f"), []);
  });

  void test("dotted keys: the member's type gives the names; completeOn is the whole word", () => {
    assert.deepEqual(qmp.complete("blockdev-add cache.d"), [["cache.direct="], "cache.d"]);
    assert.deepEqual(candidates("blockdev-add cache.direct=on cache."), ["cache.no-flush="]);
    // Through an alternate to its object branch, a union again: its tag is file's.
    assert.deepEqual(qmp.complete("blockdev-add driver=qcow2 file.dr"), [
      ["file.driver="],
      "file.dr",
    ]);
    assert.deepEqual(candidates("blockdev-add driver=qcow2 file.driver=file file.f"), [
      "file.filename=",
    ]);
    assert.deepEqual(candidates("blockdev-add driver=qcow2 file.driver=raw file.f"), [
      "file.file.",
      "file.file=",
    ]);
    assert.deepEqual(candidates("blockdev-add driver=qcow2 file.driver=qcow2 file.file.dri"), [
      "file.file.driver=",
    ]);
    // The root's tag does not pick file's variant.
    assert.deepEqual(candidates("blockdev-add driver=raw file.driver=qcow2 file.l"), [
      "file.lazy-refcounts=",
    ]);
  });

  void test("dotted keys that lead nowhere: nothing", () => {
    assert.deepEqual(qmp.complete("blockdev-add devices.x"), [[], "devices.x"]);
    assert.deepEqual(qmp.complete("blockdev-add node-name.a"), [[], "node-name.a"]);
    assert.deepEqual(qmp.complete("blockdev-add nope.a"), [[], "nope.a"]);
    assert.deepEqual(qmp.complete("blockdev-add cache..d"), [[], "cache..d"]);
    assert.deepEqual(qmp.complete("set-flag tags."), [[], "tags."]);
    // With driver=file, `file` is not a member.
    assert.deepEqual(qmp.complete("blockdev-add driver=file file.d"), [[], "file.d"]);
  });

  void test("a union whose variant is a union: both tags are read at the same level", () => {
    assert.deepEqual(candidates("connect "), [
      "args=",
      "host=",
      "path=",
      "port=",
      "transport=",
      "type=",
    ]);
    assert.deepEqual(candidates("connect transport=socket "), ["host=", "path=", "port=", "type="]);
    assert.deepEqual(candidates("connect transport=socket type=unix "), ["path="]);
    assert.deepEqual(candidates("connect transport=exec "), ["args="]);
  });
});

void describe("QmpCompleter: values", () => {
  void test("enum values, each with a space; completeOn is the text after `=`", () => {
    assert.deepEqual(qmp.complete("blockdev-add driver=q"), [["qcow2 "], "q"]);
    assert.deepEqual(qmp.complete("blockdev-add driver="), [["file ", "qcow2 ", "raw "], ""]);
    assert.deepEqual(qmp.complete("blockdev-add driver=vm"), [[], "vm"]);
  });

  void test("the three forms of enum: values and members, values only, members only", () => {
    assert.deepEqual(candidates("blockdev-add driver="), ["file ", "qcow2 ", "raw "]);
    assert.deepEqual(candidates("blockdev-add discard="), ["ignore ", "unmap "]);
    assert.deepEqual(candidates("blockdev-add driver=file locking=o"), ["off ", "on "]);
  });

  void test("booleans", () => {
    assert.deepEqual(qmp.complete("set-flag flag="), [["false ", "true "], ""]);
    assert.deepEqual(qmp.complete("set-flag flag=t"), [["true "], "t"]);
    assert.deepEqual(candidates("blockdev-add cache.direct=f"), ["false "]);
  });

  void test("an alternate: the enum and bool values of its branches", () => {
    assert.deepEqual(candidates("blockdev-add mode="), ["auto ", "false ", "manual ", "true "]);
    assert.deepEqual(candidates("set-flag level="), []);
  });

  void test("through dotted keys and tags", () => {
    assert.deepEqual(qmp.complete("blockdev-add driver=qcow2 file.driver=r"), [["raw "], "r"]);
    assert.deepEqual(candidates("blockdev-add driver=qcow2 file.driver=file file.locking=a"), [
      "auto ",
    ]);
    assert.deepEqual(candidates("connect transport=socket type="), ["inet ", "unix "]);
  });

  void test("strings, numbers, objects, arrays, unknown keys: nothing", () => {
    assert.deepEqual(qmp.complete("blockdev-add node-name="), [[], ""]);
    assert.deepEqual(qmp.complete("blockdev-add driver=raw offset=1"), [[], "1"]);
    assert.deepEqual(qmp.complete("blockdev-add cache="), [[], ""]);
    assert.deepEqual(qmp.complete("set-flag tags="), [[], ""]);
    assert.deepEqual(qmp.complete("set-flag nope=t"), [[], "t"]);
    assert.deepEqual(qmp.complete("quit x=t"), [[], "t"]);
  });

  void test("a quoted key still finds its type", () => {
    assert.deepEqual(candidates('set-flag "flag"=f'), ["false "]);
  });
});

void describe("QmpCompleter: transactions", () => {
  void test("in a transaction the first word is an action type, or `)`", () => {
    assert.deepEqual(qmp.complete("", { transaction: true }), [
      [")", "abort ", "bitmap-add ", "snap "],
      "",
    ]);
    assert.deepEqual(qmp.complete("sn", { transaction: true }), [["snap "], "sn"]);
    assert.deepEqual(qmp.complete(")", { transaction: true }), [[")"], ")"]);
    assert.deepEqual(qmp.complete("quit", { transaction: true }), [[], "quit"]);
  });

  void test("an action type of the tag's enum without a variant of its own is offered too", () => {
    const schema = [
      { name: "transaction", "meta-type": "command", "arg-type": "1", "ret-type": "0" },
      { name: "1", "meta-type": "object", members: [{ name: "actions", type: "[2]" }] },
      { name: "[2]", "meta-type": "array", "element-type": "2" },
      {
        name: "2",
        "meta-type": "object",
        members: [{ name: "type", type: "3" }],
        tag: "type",
        variants: [{ case: "abort", type: "4" }],
      },
      { name: "3", "meta-type": "enum", values: ["abort", "x-bare"] },
      { name: "4", "meta-type": "object", members: [{ name: "data", type: "0" }] },
      { name: "0", "meta-type": "object", members: [] },
    ];
    const completer = new QmpCompleter(["transaction"], schema);
    assert.deepEqual(completer.complete("", { transaction: true }), [
      [")", "abort ", "x-bare "],
      "",
    ]);
  });

  void test("after `transaction(` on the same line, the next word is an action type", () => {
    assert.deepEqual(qmp.complete("transaction( "), [[")", "abort ", "bitmap-add ", "snap "], ""]);
    assert.deepEqual(qmp.complete("transaction( bi"), [["bitmap-add "], "bi"]);
    assert.deepEqual(qmp.complete("transaction( bi", { transaction: true }), [
      ["bitmap-add "],
      "bi",
    ]);
  });

  void test("an action's keys and values come from its `data`", () => {
    assert.deepEqual(qmp.complete("snap dev", { transaction: true }), [["device="], "dev"]);
    assert.deepEqual(candidates("snap device=vda ", true), [")", "format=", "mode="]);
    assert.deepEqual(qmp.complete("snap mode=e", { transaction: true }), [["existing "], "e"]);
    assert.deepEqual(candidates("transaction( bitmap-add node=n0 "), [")", "name=", "persistent="]);
    assert.deepEqual(candidates("transaction( bitmap-add persistent="), ["false ", "true "]);
    // abort has no arguments; an unknown action has none we know of.
    assert.deepEqual(candidates("abort ", true), [")"]);
    assert.deepEqual(candidates("nope ", true), [")"]);
    assert.deepEqual(candidates("nope x", true), []);
  });

  void test("outside a transaction, action types are not commands", () => {
    assert.deepEqual(qmp.complete("snap dev"), [[], "dev"]);
  });

  void test("after the closing `)`: nothing", () => {
    assert.deepEqual(qmp.complete("transaction( abort ) "), [[], ""]);
    assert.deepEqual(qmp.complete(") ", { transaction: true }), [[], ""]);
  });

  void test("the `transaction` command itself completes as a command", () => {
    assert.deepEqual(candidates("transaction "), ["actions=", "properties."]);
    assert.deepEqual(candidates("transaction properties.completion-mode=g"), ["grouped "]);
  });
});

void describe("QmpCompleter: tolerance", () => {
  void test("malformed schema entries are skipped; the rest still works", () => {
    const tolerant = new QmpCompleter(COMMANDS, [...GARBAGE, ...SCHEMA, ...DUPLICATES]);
    const lines = ["blockdev-add driver=qcow2 file.dr", "snap device=x ", "quit ", "g3 ", "g9 x"];
    for (const line of lines) {
      const options = { transaction: line.startsWith("snap") };
      assert.deepEqual(tolerant.complete(line, options), qmp.complete(line, options));
    }
    // The first entry of a name wins: "11" keeps its values, quit its arg-type.
    assert.deepEqual(tolerant.complete("blockdev-add driver=")[0], ["file ", "qcow2 ", "raw "]);
  });

  void test("schemas that are garbage through and through never throw", () => {
    const schemas: unknown[] = [
      GARBAGE,
      [],
      "not a list",
      null,
      { 0: "x" },
      [{ name: "transaction", "meta-type": "command", "arg-type": "t" }, { name: "t" }],
      [
        { name: "transaction", "meta-type": "command", "arg-type": "t" },
        { name: "t", "meta-type": "object", members: [{ name: "actions", type: "a" }] },
        { name: "a", "meta-type": "array", "element-type": "e" },
        { name: "e", "meta-type": "object", tag: "type", members: [], variants: [{ case: 1 }] },
      ],
      // A cycle of unions through their variants.
      [
        { name: "c", "meta-type": "command", "arg-type": "u" },
        {
          name: "u",
          "meta-type": "object",
          tag: "k",
          members: [],
          variants: [{ case: "a", type: "u" }],
        },
      ],
    ];
    for (const schema of schemas) {
      const c = new QmpCompleter(["c", "transaction"], schema as unknown[]);
      for (const line of ["", "c ", "c k=", "c x.y", "transaction( ", "e ", "c a.b.c.d="]) {
        const [list, on] = c.complete(line);
        assert.ok(Array.isArray(list) && typeof on === "string");
        c.complete(line, { transaction: true });
      }
    }
  });

  void test("without a schema: command names only", () => {
    const bare = new QmpCompleter(new Set(["b", "a", "ab"]));
    assert.deepEqual(bare.complete("a"), [["a ", "ab "], "a"]);
    assert.deepEqual(bare.complete("a x"), [[], "x"]);
    assert.deepEqual(bare.complete("", { transaction: true }), [[")"], ""]);
  });

  void test("indexed once: fast on a schema of 10,000 entries", () => {
    const big: unknown[] = [...SCHEMA];
    const commands = [...COMMANDS];
    for (let i = 0; i < 2500; i++) {
      commands.push(`cmd-${i}`);
      big.push(
        { name: `cmd-${i}`, "meta-type": "command", "arg-type": `o${i}`, "ret-type": "0" },
        {
          name: `o${i}`,
          "meta-type": "object",
          members: [
            { name: "kind", type: `e${i}` },
            { name: "sub", type: `o${i + 1}` },
          ],
          tag: "kind",
          variants: [{ case: "a", type: `o${i + 1}` }],
        },
        { name: `e${i}`, "meta-type": "enum", values: ["a", "b"] },
        { name: `[o${i}]`, "meta-type": "array", "element-type": `o${i}` },
      );
    }
    const c = new QmpCompleter(commands, big);
    const start = performance.now();
    for (let i = 0; i < 200; i++) {
      assert.equal(c.complete(`cmd-${i * 10} kind=a sub.sub.kind=`)[0].length, 2);
      assert.equal(c.complete("blockdev-add driver=qcow2 file.driver=file file.f")[0].length, 1);
      c.complete("cmd-1");
    }
    // Generous: a few milliseconds in practice; quadratic work would take seconds.
    assert.ok(performance.now() - start < 2000, `took ${performance.now() - start} ms`);
  });
});

/** A sample of real HMP `help` output (QEMU 10.0), CRLF line ends included. */
const HMP_HELP = [
  "announce_self [interfaces] [id] -- Trigger GARP/RARP announcements",
  "balloon target -- request VM to change its memory allocation (in MB)",
  "block_job_cancel [-f] device -- stop an active background block operation (use -f",
  "\t\t\t if you want to abort the operation immediately",
  "\t\t\t instead of keep running until data is in sync)",
  "commit device|all -- commit changes to the disk images (if -snapshot is used) or backing files",
  "cont|c  -- resume emulation",
  "device_add driver[,prop=value][,...] -- add device, like -device on the command line",
  "drive_add [-n] [[<domain>:]<bus>:]<slot>",
  "[file=file][,if=type][,bus=n]",
  "[,unit=m][,media=d][,index=i]",
  "[,snapshot=on|off][,cache=on|off]",
  "[,readonly=on|off][,copy-on-read=on|off] -- add drive to PCI storage controller",
  "drive_backup [-n] [-f] [-c] device target [format] -- initiates a point-in-time",
  "\t\t\tcopy for a device. The device's contents are",
  "\t\t\t",
  "drive_del device -- remove host block device",
  "help|? [cmd] -- show the help",
  "i /fmt addr -- I/O port read",
  "info [subcommand] -- show various information about the system state",
  "nbd_server_add nbd_server_add [-w] device [name] -- export a block device via NBD",
  "nmi  -- inject an NMI",
  "print|p /fmt expr -- print expression value (use $reg for CPU register access)",
  'qemu-io [-d] [device] "[command]" -- run a qemu-io command on a block device',
  "\t\t\t-d: [device] is a device ID rather than a drive ID or node name",
  "quit|q  -- quit the emulator",
  "stop|s  -- stop emulation",
  "system_reset  -- reset the system",
  "x_colo_lost_heartbeat  -- Tell COLO that heartbeat is lost,",
  "\t\t\ta failover or takeover is needed.",
  "xen-event-list  -- list event channel state",
  "",
].join("\r\n");

const HMP_INFO = [
  "info balloon  -- show balloon information",
  "info block [-n] [-v] [device] -- show info of one block device or all block devices (-n: show named nodes; -v: show details)",
  "info block-jobs  -- show progress of ongoing block device operations",
  "info registers [-a|vcpu] -- show the cpu registers (-a: show register info for all cpus; vcpu: specific vCPU to query; show the current CPU's registers if omitted)",
  "info stats target [names] [provider] -- show statistics for the given target (vm or vcpu)",
  "info status  -- show the current VM status (running|paused)",
  "info version  -- show the version of QEMU",
  "",
].join("\r\n");

void describe("HmpCompleter", () => {
  const hmp = new HmpCompleter(HMP_HELP, HMP_INFO);

  void test("the first word: every name and alias from `help`, each with a space", () => {
    assert.deepEqual(hmp.complete(""), [
      [
        "? ",
        "announce_self ",
        "balloon ",
        "block_job_cancel ",
        "c ",
        "commit ",
        "cont ",
        "device_add ",
        "drive_add ",
        "drive_backup ",
        "drive_del ",
        "help ",
        "i ",
        "info ",
        "nbd_server_add ",
        "nmi ",
        "p ",
        "print ",
        "q ",
        "qemu-io ",
        "quit ",
        "s ",
        "stop ",
        "system_reset ",
        "x_colo_lost_heartbeat ",
        "xen-event-list ",
      ],
      "",
    ]);
    assert.deepEqual(hmp.complete("inf"), [["info "], "inf"]);
    assert.deepEqual(hmp.complete("  dri"), [["drive_add ", "drive_backup ", "drive_del "], "dri"]);
    assert.deepEqual(hmp.complete("zz"), [[], "zz"]);
  });

  void test("`info <partial>`: info sub-commands from `help info`", () => {
    assert.deepEqual(hmp.complete("info sta"), [["stats ", "status "], "sta"]);
    assert.deepEqual(hmp.complete("info  bl"), [["block ", "block-jobs "], "bl"]);
    assert.deepEqual(hmp.complete("info ")[0].length, 7);
  });

  void test("anything else: nothing", () => {
    assert.deepEqual(hmp.complete("info status "), [[], ""]);
    assert.deepEqual(hmp.complete("stop s"), [[], "s"]);
    assert.deepEqual(hmp.complete("device_add dr"), [[], "dr"]);
  });

  void test("lines that are not entries are ignored; empty help gives nothing", () => {
    const odd = new HmpCompleter(
      "garbage without separator\n-- no space before\n  indented -- x\nok  -- fine\n",
      "status  -- not prefixed with info\ninfo  -- no name\ninfo good -- yes\n",
    );
    assert.deepEqual(odd.complete(""), [["ok "], ""]);
    assert.deepEqual(odd.complete("info "), [["good "], ""]);
    assert.deepEqual(new HmpCompleter("", "").complete(""), [[], ""]);
  });
});
