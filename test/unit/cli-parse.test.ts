// The qmp-shell line parser: every value, key, transaction and error rule.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ShellSyntaxError,
  TransactionBuilder,
  USAGE_LINE,
  dequote,
  parseLine,
  parseTokens,
  parseValue,
  tokenize,
} from "../../src/cli/parse.js";

/** The message of a line that must parse to a command. */
function command(line: string, tx?: TransactionBuilder): unknown {
  const result = parseLine(line, tx);
  assert.equal(result.kind, "command", `${line} → ${JSON.stringify(result)}`);
  return result.kind === "command" ? result.message : undefined;
}

/** The arguments of `cmd <args>`. */
function args(text: string): unknown {
  const message = command(`cmd ${text}`) as { arguments?: unknown };
  return message.arguments;
}

function syntaxError(fn: () => unknown, message: string | RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ShellSyntaxError, `got ${String(err)}`);
    assert.equal(err.name, "ShellSyntaxError");
    assert.equal(err.code, "QMP_ERR_CLI_SYNTAX");
    assert.equal(err.usage, USAGE_LINE);
    if (typeof message === "string") assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

void describe("commands", () => {
  void test("a bare command has no arguments member", () => {
    assert.deepEqual(command("query-status"), { execute: "query-status" });
    assert.deepEqual(command("   query-status   "), { execute: "query-status" });
  });

  void test("key=value pairs become arguments, in order", () => {
    assert.deepEqual(command("device_add driver=e1000 id=net1"), {
      execute: "device_add",
      arguments: { driver: "e1000", id: "net1" },
    });
    assert.deepEqual(Object.keys(args("b=1 a=2 c=3") as object), ["b", "a", "c"]);
  });

  void test("blank lines are empty", () => {
    assert.deepEqual(parseLine(""), { kind: "empty" });
    assert.deepEqual(parseLine(" \t "), { kind: "empty" });
  });

  void test("the value is everything after the first '='", () => {
    assert.deepEqual(args("x=a=b"), { x: "a=b" });
    assert.deepEqual(args("x="), { x: "" });
  });
});

void describe("values", () => {
  void test("integers", () => {
    assert.equal(parseValue("42"), 42);
    assert.equal(parseValue("-7"), -7);
    assert.equal(parseValue("+3"), 3);
    assert.equal(parseValue("0"), 0);
    assert.equal(parseValue("1_000"), 1000);
    assert.equal(parseValue(String(Number.MAX_SAFE_INTEGER)), Number.MAX_SAFE_INTEGER);
    // Not integers: strings.
    assert.equal(parseValue("1.5"), "1.5");
    assert.equal(parseValue("0x10"), "0x10");
    assert.equal(parseValue("12abc"), "12abc");
    assert.equal(parseValue("1__0"), "1__0");
  });

  void test("an integer that cannot be sent exactly is an error", () => {
    syntaxError(() => parseValue("18446744073709551615"), /18446744073709551615 is too large/);
    syntaxError(() => parseValue("-9007199254740992"), /too large/);
  });

  void test("true and false in any case; null is a string", () => {
    assert.equal(parseValue("true"), true);
    assert.equal(parseValue("False"), false);
    assert.equal(parseValue("TRUE"), true);
    assert.equal(parseValue("null"), "null");
    assert.equal(parseValue("yes"), "yes");
  });

  void test("JSON objects and arrays", () => {
    assert.deepEqual(parseValue('{"a":1,"b":[true,null,"x"]}'), { a: 1, b: [true, null, "x"] });
    assert.deepEqual(parseValue("[1,2,3]"), [1, 2, 3]);
    assert.deepEqual(parseValue("[]"), []);
    assert.deepEqual(args('opts={"driver": "qcow2", "file": {"filename": "a b"}}'), {
      opts: { driver: "qcow2", file: { filename: "a b" } },
    });
  });

  void test("the Python literal subset qmp-shell accepts", () => {
    assert.deepEqual(parseValue("{'key':'value','n':-1.5e3}"), { key: "value", n: -1500 });
    assert.deepEqual(parseValue("[True, False, None, true, false, null,]"), [
      true,
      false,
      null,
      true,
      false,
      null,
    ]);
    assert.deepEqual(parseValue("{'a': 'it\\'s', \"b\": '\\u00e9\\n'}"), { a: "it's", b: "é\n" });
  });

  void test("bracketed text that is neither JSON nor a literal stays a string", () => {
    assert.equal(parseValue("[abc"), "[abc");
    assert.equal(parseValue("{not json}"), "{not json}");
    assert.equal(parseValue("[1, os.system('x')]"), "[1, os.system('x')]");
    assert.equal(parseValue("{'a': 1} trailing"), "{'a': 1} trailing");
  });

  void test("anything else is a string as written", () => {
    assert.equal(parseValue("e1000"), "e1000");
    assert.equal(parseValue("/tmp/disk.img"), "/tmp/disk.img");
    assert.equal(parseValue("a\\b"), "a\\b");
  });

  void test("quoted values are strings with the quotes stripped", () => {
    assert.deepEqual(args('s="a b  c"'), { s: "a b  c" });
    assert.deepEqual(args("s='x y'"), { s: "x y" });
    assert.deepEqual(args('n="123" b="true" o="{}"'), { n: "123", b: "true", o: "{}" });
    assert.deepEqual(args('s=pre"mid dle"post'), { s: "premid dlepost" });
    assert.deepEqual(args(`s="it's" t='say "hi"'`), { s: "it's", t: 'say "hi"' });
    assert.deepEqual(args('s="a \\"q\\" \\\\ \\n"'), { s: 'a "q" \\ \\n' });
    assert.deepEqual(args('"quoted key"=1'), { "quoted key": 1 });
  });

  void test("an unterminated quote is an error", () => {
    syntaxError(() => parseLine('cmd s="abc'), 'Unterminated double quote in: cmd s="abc');
    syntaxError(() => parseLine("cmd s='abc"), /Unterminated single quote/);
    syntaxError(() => dequote('"x'), /Unterminated double quote/);
  });
});

void describe("tokenize", () => {
  void test("splits at whitespace, keeps quotes, keeps JSON values whole", () => {
    assert.deepEqual(tokenize("  a\tb=1   c='x y' "), ["a", "b=1", "c='x y'"]);
    assert.deepEqual(tokenize('x a={"k": [1, {"m": "} ]"}]} b=2'), [
      "x",
      'a={"k": [1, {"m": "} ]"}]}',
      "b=2",
    ]);
    assert.deepEqual(tokenize("x a=[1, 2] b=[3]"), ["x", "a=[1, 2]", "b=[3]"]);
  });

  void test("brackets that never close do not swallow the line", () => {
    assert.deepEqual(tokenize("x a=[abc y=2"), ["x", "a=[abc", "y=2"]);
  });

  void test("brackets not at the start of a value do not join words", () => {
    assert.deepEqual(tokenize("x a=b[ c=d]"), ["x", "a=b[", "c=d]"]);
  });
});

void describe("dotted keys", () => {
  void test("nest", () => {
    assert.deepEqual(args("a.b.c=1"), { a: { b: { c: 1 } } });
    assert.deepEqual(args("a.b=1 a.c=2 a.d.e=x"), { a: { b: 1, c: 2, d: { e: "x" } } });
  });

  void test("add to an object given as JSON", () => {
    assert.deepEqual(args('a={"x":1} a.y=2'), { a: { x: 1, y: 2 } });
  });

  void test("a key used as leaf and as parent is an error, either way round", () => {
    syntaxError(() => parseLine("cmd a=1 a.b=2"), 'Cannot use "a" as both leaf and non-leaf key');
    syntaxError(() => parseLine("cmd a.b=1 a=2"), 'Cannot use "a" as both leaf and non-leaf key');
    syntaxError(
      () => parseLine("cmd a.b.c=1 a.b=2"),
      'Cannot use "a.b" as both leaf and non-leaf key',
    );
    syntaxError(
      () => parseLine("cmd a.b=1 a.b.c=2"),
      'Cannot use "a.b" as both leaf and non-leaf key',
    );
    syntaxError(() => parseLine("cmd a=[1] a.b=2"), 'Cannot use "a" as both leaf and non-leaf key');
  });

  void test("a key set twice is an error", () => {
    syntaxError(() => parseLine("cmd a=1 a=2"), 'Cannot set "a" multiple times');
    syntaxError(() => parseLine("cmd x.y=1 x.y=1"), 'Cannot set "x.y" multiple times');
  });

  void test("empty keys and key parts are errors", () => {
    syntaxError(() => parseLine("cmd =1"), "Empty key or key part in '=1'");
    syntaxError(() => parseLine("cmd a..b=1"), "Empty key or key part in 'a..b=1'");
    syntaxError(() => parseLine("cmd a.=1"), "Empty key or key part in 'a.=1'");
  });

  void test("__proto__ is an ordinary key", () => {
    const a = args('__proto__.polluted=1 b={"__proto__":2}') as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(a), Object.prototype);
    assert.deepEqual(Object.keys(a), ["__proto__", "b"]);
    assert.equal(JSON.stringify(a), '{"__proto__":{"polluted":1},"b":{"__proto__":2}}');
    assert.equal(({} as Record<string, unknown>)["polluted"], undefined);
  });
});

void describe("a word without '='", () => {
  void test("is an error with the usage line", () => {
    syntaxError(() => parseLine("cmd a=1 oops"), "Expected a key=value pair, got 'oops'");
    syntaxError(() => parseLine('cmd "a=1"'), `Expected a key=value pair, got '"a=1"'`);
  });
});

void describe("transactions", () => {
  void test("across lines: start, actions, close", () => {
    const tx = new TransactionBuilder();
    assert.deepEqual(parseLine("transaction(", tx), { kind: "transaction-start" });
    assert.equal(tx.active, true);
    const first = parseLine("block-dirty-bitmap-add node=drive0 name=bitmap1", tx);
    assert.deepEqual(first, {
      kind: "transaction-action",
      action: { type: "block-dirty-bitmap-add", data: { node: "drive0", name: "bitmap1" } },
    });
    assert.deepEqual(parseLine("", tx), { kind: "empty" });
    parseLine("abort", tx);
    assert.equal(tx.actions.length, 2);
    assert.deepEqual(command(")", tx), {
      execute: "transaction",
      arguments: {
        actions: [
          { type: "block-dirty-bitmap-add", data: { node: "drive0", name: "bitmap1" } },
          { type: "abort", data: {} },
        ],
      },
    });
    assert.equal(tx.active, false);
    assert.deepEqual(tx.actions, []);
  });

  void test("an action line may close the transaction", () => {
    const tx = new TransactionBuilder();
    parseLine("transaction(", tx);
    assert.deepEqual(command("abort )", tx), {
      execute: "transaction",
      arguments: { actions: [{ type: "abort", data: {} }] },
    });
    assert.equal(tx.active, false);
  });

  void test("one line: transaction( action … )", () => {
    const tx = new TransactionBuilder();
    assert.deepEqual(command("transaction( block-dirty-bitmap-clear node=d0 name=b0 )", tx), {
      execute: "transaction",
      arguments: {
        actions: [{ type: "block-dirty-bitmap-clear", data: { node: "d0", name: "b0" } }],
      },
    });
    assert.equal(tx.active, false);
    assert.deepEqual(command("transaction( )"), {
      execute: "transaction",
      arguments: { actions: [] },
    });
  });

  void test("start and a first action on one line, closed later", () => {
    const tx = new TransactionBuilder();
    const r = parseLine("transaction( abort", tx);
    assert.equal(r.kind, "transaction-action");
    assert.equal(tx.active, true);
    command(")", tx);
    assert.equal(tx.active, false);
  });

  void test("action arguments follow the same rules", () => {
    const tx = new TransactionBuilder();
    parseLine("transaction(", tx);
    const r = parseLine("drive-backup device=d0 sync=full opts.a.b=1 n=2", tx);
    assert.ok(r.kind === "transaction-action");
    assert.deepEqual(r.action.data, { device: "d0", sync: "full", opts: { a: { b: 1 } }, n: 2 });
    syntaxError(() => parseLine("abort junk", tx), "Expected a key=value pair, got 'junk'");
  });

  void test("input after the closing ')' is an error", () => {
    const tx = new TransactionBuilder();
    parseLine("transaction(", tx);
    syntaxError(() => parseLine(") extra", tx), "Unexpected input after close of transaction");
  });

  void test("a line that fails leaves the builder as it was", () => {
    const tx = new TransactionBuilder();
    syntaxError(() => parseLine("transaction( abort x", tx), /Expected a key=value pair/);
    assert.equal(tx.active, false);
    parseLine("transaction(", tx);
    parseLine("abort", tx);
    syntaxError(() => parseLine("abort a=1 a=2", tx), /multiple times/);
    assert.equal(tx.active, true);
    assert.equal(tx.actions.length, 1);
    tx.reset();
    assert.equal(tx.active, false);
  });

  void test("')' with no transaction open is an error (qmp-shell would send it as a command)", () => {
    syntaxError(() => parseLine(")"), /No transaction is open/);
  });

  void test("'transaction(' while one is open is an error; the open one is kept", () => {
    const tx = new TransactionBuilder();
    parseLine("transaction(", tx);
    parseLine("abort", tx);
    syntaxError(() => parseLine("transaction(", tx), /already open/);
    syntaxError(() => parseLine("transaction( abort )", tx), /already open/);
    assert.equal(tx.active, true);
    assert.equal(tx.actions.length, 1);
  });

  void test("a line starting with '[' is not a message", () => {
    syntaxError(() => parseLine("[1, 2]"), /must be an object/);
  });

  void test("a raw JSON line inside a transaction is an error", () => {
    const tx = new TransactionBuilder();
    parseLine("transaction(", tx);
    syntaxError(() => parseLine('{"execute":"stop"}', tx), /cannot be part of a transaction/);
  });
});

void describe("raw JSON lines", () => {
  void test("are sent as is", () => {
    const line =
      '{"execute": "qom-get", "arguments": {"path": "/machine", "property": "type"}, "id": "x"}';
    assert.deepEqual(parseLine(`  ${line}  `), {
      kind: "command",
      message: JSON.parse(line) as unknown,
      raw: true,
    });
    assert.deepEqual(parseLine('{"anything": [1]}'), {
      kind: "command",
      message: { anything: [1] },
      raw: true,
    });
  });

  void test("invalid JSON is an error", () => {
    syntaxError(() => parseLine('{"execute": '), /^Invalid JSON message: /);
    syntaxError(() => parseLine("{execute: 'stop'}"), /^Invalid JSON message: /);
  });

  void test("a key=value command is not mistaken for one", () => {
    assert.equal((parseLine('cmd a={"b":1}') as { raw: boolean }).raw, false);
  });
});

void describe("parseTokens (command-line arguments)", () => {
  void test("takes words as already split, with the same rules", () => {
    assert.deepEqual(parseTokens(["human-monitor-command", "command-line=info status"]), {
      kind: "command",
      message: { execute: "human-monitor-command", arguments: { "command-line": "info status" } },
      raw: false,
    });
    assert.deepEqual(parseTokens(["transaction(", "abort", ")"]), {
      kind: "command",
      message: { execute: "transaction", arguments: { actions: [{ type: "abort", data: {} }] } },
      raw: false,
    });
    syntaxError(() => parseTokens(["cmd", "a"]), "Expected a key=value pair, got 'a'");
  });
});
