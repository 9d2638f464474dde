// The TUI's input editor: insertion over lines, readline's keys, the kill buffer, Up and Down
// through lines and then the history (the draft kept), and which keys send.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Editor } from "../../src/cli/tui/editor.js";
import { type Input } from "../../src/cli/tui/keys.js";

const k = (name: string, mods: { ctrl?: boolean; meta?: boolean } = {}): Input => ({
  kind: "key",
  name,
  ctrl: mods.ctrl ?? false,
  meta: mods.meta ?? false,
  shift: false,
});
const text = (t: string): Input => ({ kind: "text", text: t });

void test("typing, Enter for a new line, Backspace joining lines, arrows across lines", () => {
  const e = new Editor();
  e.handle(text("ab"));
  e.handle(k("enter"));
  e.handle(text("cd"));
  assert.deepEqual(e.lines, ["ab", "cd"]);
  assert.deepEqual(e.cursor, { row: 1, col: 2 });
  e.handle(k("home"));
  e.handle(k("backspace"));
  assert.equal(e.text, "abcd");
  assert.deepEqual(e.cursor, { row: 0, col: 2 });
  e.handle(k("left"));
  e.handle(k("left"));
  assert.equal(e.handle(k("left")), "ignored");
  e.handle(k("end"));
  e.handle(k("delete"));
  assert.equal(e.text, "abcd");
  e.insert("1\n2\r\n3");
  assert.deepEqual(e.lines, ["abcd1", "2", "3"]);
});

void test("readline keys: Ctrl+A/E/B/F/K/U/W/Y, Alt+B/F/D, surrogate pairs move as one", () => {
  const e = new Editor();
  e.handle(text("query-block node=d0"));
  e.handle(k("w", { ctrl: true }));
  assert.equal(e.text, "query-block node=");
  e.handle(k("y", { ctrl: true }));
  assert.equal(e.text, "query-block node=d0");
  e.handle(k("a", { ctrl: true }));
  e.handle(k("f", { meta: true }));
  assert.deepEqual(e.cursor, { row: 0, col: 5 });
  e.handle(k("d", { meta: true }));
  assert.equal(e.text, "query node=d0");
  e.handle(k("k", { ctrl: true }));
  assert.equal(e.text, "query");
  e.handle(k("b", { meta: true }));
  e.handle(k("u", { ctrl: true }));
  assert.equal(e.text, "query");
  e.text = "a😀b";
  e.handle(k("left"));
  e.handle(k("backspace"));
  assert.equal(e.text, "ab");
});

void test("Up and Down: lines first, then the history; the draft comes back", () => {
  const e = new Editor(["first", "second"]);
  e.handle(text("dra"));
  e.handle(k("enter"));
  e.handle(text("ft"));
  e.handle(k("up"));
  assert.deepEqual(e.cursor, { row: 0, col: 2 });
  e.handle(k("up"));
  assert.equal(e.text, "second");
  e.handle(k("up"));
  assert.equal(e.text, "first");
  assert.equal(e.handle(k("up")), "ignored");
  e.handle(k("down"));
  e.handle(k("down"));
  assert.equal(e.text, "dra\nft");
  e.remember("third");
  e.remember("third");
  e.clear();
  e.handle(k("p", { ctrl: true }));
  assert.equal(e.text, "third");
  e.handle(k("p", { ctrl: true }));
  assert.equal(e.text, "second", "a repeat is kept once");
});

void test("Ctrl+J and Alt+Enter send; other keys are the editor's or ignored", () => {
  const e = new Editor();
  assert.equal(e.handle(k("j", { ctrl: true })), "send");
  assert.equal(e.handle(k("enter", { meta: true })), "send");
  assert.equal(e.handle(k("f5")), "ignored");
  assert.equal(e.handle({ kind: "paste", text: "x\ny" }), "edited");
  assert.deepEqual(e.lines, ["x", "y"]);
});

void test("the history is bounded", () => {
  const e = new Editor([], 3);
  for (const line of ["a", "b", "c", "d"]) e.remember(line);
  assert.deepEqual(e.history, ["b", "c", "d"]);
});
