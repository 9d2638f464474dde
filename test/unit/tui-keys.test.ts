// The TUI's key decoder: text, control keys, CSI and SS3 sequences with modifiers, Alt+key,
// bracketed paste, the SGR mouse wheel, sequences split over reads, and a lone Esc.

import assert from "node:assert/strict";
import { test } from "node:test";
import { type Input, KeyDecoder } from "../../src/cli/tui/keys.js";

function key(name: string, mods: { ctrl?: boolean; meta?: boolean; shift?: boolean } = {}): Input {
  return {
    kind: "key",
    name,
    ctrl: mods.ctrl ?? false,
    meta: mods.meta ?? false,
    shift: mods.shift ?? false,
  };
}

function decode(...reads: string[]): Input[] {
  const d = new KeyDecoder();
  return [...reads.flatMap((r) => d.push(r)), ...d.flush()];
}

void test("text runs, Enter, Tab, Backspace, Ctrl+letters", () => {
  assert.deepEqual(decode("abc\r"), [{ kind: "text", text: "abc" }, key("enter")]);
  assert.deepEqual(decode("\t\x7f\b"), [key("tab"), key("backspace"), key("backspace")]);
  assert.deepEqual(decode("\x01\x05\n\x15"), [
    key("a", { ctrl: true }),
    key("e", { ctrl: true }),
    key("j", { ctrl: true }),
    key("u", { ctrl: true }),
  ]);
  assert.deepEqual(decode("grüße €"), [{ kind: "text", text: "grüße €" }]);
});

void test("CSI and SS3 keys, with modifiers", () => {
  assert.deepEqual(decode("\x1b[A\x1b[B\x1b[C\x1b[D\x1bOH\x1bOF"), [
    key("up"),
    key("down"),
    key("right"),
    key("left"),
    key("home"),
    key("end"),
  ]);
  assert.deepEqual(decode("\x1b[5~\x1b[6~\x1b[3~\x1b[1~\x1b[4~\x1b[15~"), [
    key("pageup"),
    key("pagedown"),
    key("delete"),
    key("home"),
    key("end"),
    key("f5"),
  ]);
  assert.deepEqual(decode("\x1b[1;5C\x1b[1;3D\x1b[Z\x1bOP\x1b[3;5~"), [
    key("right", { ctrl: true }),
    key("left", { meta: true }),
    key("tab", { shift: true }),
    key("f1"),
    key("delete", { ctrl: true }),
  ]);
});

void test("Alt+key, Alt+Enter, Alt+Backspace", () => {
  assert.deepEqual(decode("\x1bb\x1b\r\x1b\x7f"), [
    key("b", { meta: true }),
    key("enter", { meta: true }),
    key("backspace", { meta: true }),
  ]);
});

void test("a lone ESC is held until flush(); split sequences wait for their end", () => {
  const d = new KeyDecoder();
  assert.deepEqual(d.push("x\x1b"), [{ kind: "text", text: "x" }]);
  assert.ok(d.holding);
  assert.deepEqual(d.push("[1;"), []);
  assert.deepEqual(d.push("5A"), [key("up", { ctrl: true })]);
  assert.ok(!d.holding);
  assert.deepEqual(d.push("\x1b"), []);
  assert.deepEqual(d.flush(), [key("escape")]);
  assert.deepEqual(d.flush(), []);
});

void test("bracketed paste: the text as pasted, line breaks and escapes kept, split anywhere", () => {
  const pasted = 'line one\r\n{"a": 1}\x1b[A\tend';
  const whole = `\x1b[200~${pasted}\x1b[201~`;
  assert.deepEqual(decode(whole), [{ kind: "paste", text: pasted }]);
  for (let cut = 1; cut < whole.length; cut++) {
    assert.deepEqual(
      decode(whole.slice(0, cut), whole.slice(cut), "q"),
      [
        { kind: "paste", text: pasted },
        { kind: "text", text: "q" },
      ],
      `cut at ${cut}`,
    );
  }
});

void test("the SGR mouse wheel (other buttons ignored); unknown sequences dropped", () => {
  assert.deepEqual(decode("\x1b[<64;10;5M\x1b[<65;1;1M\x1b[<0;3;3M\x1b[<0;3;3m"), [
    { kind: "wheel", direction: "up", row: 4, col: 9 },
    { kind: "wheel", direction: "down", row: 0, col: 0 },
  ]);
  assert.deepEqual(decode("\x1b[99~a\x1b[?1;2c"), [{ kind: "text", text: "a" }]);
});
