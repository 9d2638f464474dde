// Unit tests of argument validation against a schema (validate: true): every kind of problem,
// with its path, and the deprecated things a call uses.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { Schema } from "../../src/qapi/schema.js";
import { validateArguments } from "../../src/qapi/validate.js";
import { commandInfo } from "../../src/qapi/live.js";

const MINI = new Schema(
  JSON.parse(
    readFileSync(new URL("../../../test/fixtures/qapi/mini-schema.json", import.meta.url), "utf8"),
  ),
);

function problems(command: string, args: unknown): string[] {
  return validateArguments(MINI, command, args).problems.map((p) => `${p.path}: ${p.message}`);
}

void test("valid arguments pass, a no-argument command takes nothing or {}", () => {
  assert.deepEqual(problems("query-status", undefined), []);
  assert.deepEqual(problems("query-status", {}), []);
  assert.deepEqual(problems("query-block", { flat: true }), []);
  assert.deepEqual(problems("blockdev-add", { driver: "file", filename: "/x" }), []);
  assert.deepEqual(problems("blockdev-add", { driver: "raw", "node-name": "r" }), []);
  assert.deepEqual(problems("x-old", { value: [1, { a: null }] }), [], "any takes anything");
});

void test("wrong types, missing and unknown members, bad enum values: each with its path", () => {
  assert.deepEqual(problems("query-status", { bogus: 1 }), ["bogus: unknown member"]);
  assert.deepEqual(problems("query-block", { flat: "yes" }), [
    "flat: expected boolean, got string",
  ]);
  assert.deepEqual(problems("blockdev-add", { driver: "file" }), ["filename: missing"]);
  assert.deepEqual(problems("blockdev-add", { driver: "qcow9", filename: "x" }), [
    'driver: expected one of "file", "qcow2", "null-co", "nested", "raw", "3des", got "qcow9"',
    "filename: unknown member",
  ]);
  assert.deepEqual(
    problems("blockdev-add", { driver: "file", filename: 1, cache: { direct: 0 } }),
    ["cache.direct: expected boolean, got integer", "filename: expected string, got integer"],
  );
  assert.deepEqual(problems("query-block", []), [": expected object, got array"]);
});

void test("flat unions: a member of another branch is unknown; a branch that is a union too", () => {
  assert.deepEqual(problems("blockdev-add", { driver: "null-co", filename: "x" }), [
    "filename: unknown member",
  ]);
  assert.deepEqual(problems("blockdev-add", { driver: "nested", kind: "a", "3des": 1.5 }), []);
  assert.deepEqual(problems("blockdev-add", { driver: "nested", kind: "a" }), ["3des: missing"]);
  assert.deepEqual(problems("blockdev-add", { driver: "nested", kind: "c" }), [
    'kind: expected one of "a", "b", got "c"',
  ]);
});

void test("alternates choose by JSON type; recursion and nested paths", () => {
  assert.deepEqual(problems("blockdev-add", { driver: "qcow2", file: "node0" }), []);
  assert.deepEqual(problems("blockdev-add", { driver: "qcow2", file: null }), []);
  assert.deepEqual(
    problems("blockdev-add", {
      driver: "qcow2",
      file: { driver: "qcow2", file: { driver: "file", filename: 7 } },
    }),
    ["file.file.filename: expected string, got integer"],
  );
  assert.deepEqual(problems("blockdev-add", { driver: "qcow2", file: 3 }), [
    "file: expected object or string or null, got integer",
  ]);
});

void test("an unknown command is one problem; the report lists deprecated things used", () => {
  assert.deepEqual(problems("no-such", {}), [": QEMU has no command 'no-such'"]);
  const old = validateArguments(MINI, "x-old", { value: 1 });
  assert.deepEqual(old.deprecated, [""]);
  assert.deepEqual(validateArguments(MINI, "query-status", {}).deprecated, []);
});

void test("at most 50 problems are listed", () => {
  const many: Record<string, number> = {};
  for (let i = 0; i < 200; i++) many[`m${i}`] = i;
  assert.equal(validateArguments(MINI, "query-status", many).problems.length, 50);
});

void test("commandInfo: members with readable types, the union's tag, oob and features", () => {
  assert.deepEqual(commandInfo(MINI, "query-block"), {
    name: "query-block",
    args: [{ name: "flat", type: "boolean", optional: true, features: [] }],
    allowOob: false,
    features: [],
  });
  const add = commandInfo(MINI, "blockdev-add")!;
  assert.deepEqual(add.union, { tag: "driver", cases: ["file", "qcow2", "null-co", "nested"] });
  assert.deepEqual(add.args[0], {
    name: "driver",
    type: '"file" | "qcow2" | "null-co" | "nested" | "raw" | "3des"',
    optional: false,
    features: [],
  });
  assert.equal(commandInfo(MINI, "stop")!.allowOob, true);
  assert.deepEqual(commandInfo(MINI, "x-old")!.features, ["deprecated", "unstable"]);
  assert.equal(commandInfo(MINI, "nope"), undefined);
});
