// The shell's history file: appending, trimming to the last distinct lines, no secrets, mode 0600.

import assert from "node:assert/strict";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import {
  HISTORY_SIZE,
  appendHistory,
  holdsSecret,
  lastDistinct,
  readHistory,
  trimHistory,
} from "../../src/cli/shell-history.js";
import { tempDir } from "../helpers/qemu.js";

const QMP = { hmp: false };
const HMP = { hmp: true };

void test("appendHistory appends one line, creating the file with mode 0600", (t) => {
  const path = join(tempDir(t), "history");
  assert.equal(appendHistory(path, "query-status", QMP), true);
  assert.equal(appendHistory(path, "stop", QMP), true);
  assert.equal(readFileSync(path, "utf8"), "query-status\nstop\n");
  assert.equal(statSync(path).mode & 0o777, 0o600);
});

void test("lines that carry a secret are never written", (t) => {
  const path = join(tempDir(t), "history");
  const secrets = [
    "set_password protocol=vnc password=hunter2",
    "object-add qom-type=secret id=s0 data=hunter2",
    '{"execute": "set_password", "arguments": {"protocol": "vnc", "password": "x"}}',
  ];
  for (const line of secrets) {
    assert.equal(holdsSecret(line, QMP), true, line);
    assert.equal(appendHistory(path, line, QMP), false, line);
  }
  appendHistory(path, "query-name", QMP);
  assert.equal(readFileSync(path, "utf8"), "query-name\n");
  // Neither a line that does not parse nor an ordinary command holds one.
  assert.equal(holdsSecret("a..b=1 'open", QMP), false);
  assert.equal(holdsSecret("query-status", QMP), false);
  assert.equal(holdsSecret("info status", HMP), false);
});

void test("lastDistinct keeps the newest place of each line, the last ones, no blanks", () => {
  assert.deepEqual(lastDistinct("a\nb\na\n\n  \nc\n"), ["b", "a", "c"]);
  assert.deepEqual(lastDistinct("a\nb\nc\nd\n", 2), ["c", "d"]);
  assert.deepEqual(lastDistinct(""), []);
});

void test("trimHistory cuts the file to its last 1000 distinct lines, mode 0600", (t) => {
  const path = join(tempDir(t), "history");
  const lines = Array.from({ length: HISTORY_SIZE + 200 }, (_, i) => `cmd-${i}`);
  // Duplicates of recent lines: each is kept once, at its newest place.
  lines.push("cmd-1100", "cmd-1199");
  writeFileSync(path, `${lines.join("\n")}\n`, { mode: 0o644 });
  trimHistory(path);
  const kept = readFileSync(path, "utf8").split("\n");
  assert.equal(kept.pop(), "");
  assert.equal(kept.length, HISTORY_SIZE);
  assert.equal(new Set(kept).size, HISTORY_SIZE);
  assert.deepEqual(kept.slice(-3), ["cmd-1198", "cmd-1100", "cmd-1199"]);
  assert.equal(kept[0], "cmd-200");
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(readHistory(path), kept);
});

void test("readHistory and trimHistory leave a missing file alone", (t) => {
  const path = join(tempDir(t), "none");
  assert.equal(readHistory(path), undefined);
  trimHistory(path);
  assert.throws(() => statSync(path), { code: "ENOENT" });
});
