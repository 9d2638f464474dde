// The TUI's text and history pane: JSON laid out to the width with syntax styles, wrapping,
// painting, folding long messages, events hidden and filtered, search, scrolling, bounds.

import assert from "node:assert/strict";
import { test } from "node:test";
import { FOLD_SIZE, MAX_ENTRIES, Pane } from "../../src/cli/tui/pane.js";
import {
  type StyledLine,
  jsonLines,
  jsonPreview,
  paint,
  plainText,
  wrap,
} from "../../src/cli/tui/style.js";

const texts = (lines: StyledLine[]): string[] => lines.map((l) => plainText(l).trimEnd());

void test("jsonLines: one line when it fits, else spread; 0 is JSON.stringify(v, null, 2)", () => {
  const v = { a: 1, b: [true, null, "x"], c: { d: {} } };
  assert.deepEqual(texts(jsonLines(v, Infinity)), [
    '{"a": 1, "b": [true, null, "x"], "c": {"d": {}}}',
  ]);
  assert.deepEqual(texts(jsonLines(v, 30)), [
    "{",
    '  "a": 1,',
    '  "b": [true, null, "x"],',
    '  "c": {"d": {}}',
    "}",
  ]);
  assert.equal(texts(jsonLines(v, 0)).join("\n"), JSON.stringify(v, null, 2));
  const styles = jsonLines({ k: "s", n: 2, t: false }, Infinity)[0]!.map((s) => s.style);
  assert.deepEqual(
    styles.filter((s) => s !== "punct" && s !== "plain"),
    ["key", "string", "key", "number", "key", "literal"],
  );
});

void test("jsonPreview stops early, even inside a huge value", () => {
  const big = { return: Array.from({ length: 100_000 }, (_, i) => ({ name: `n${i}` })) };
  const line = jsonPreview(big, 40);
  assert.equal(plainText(line), '{"return": [{"name": "n0"}, {"name": "n1');
});

void test("wrap cuts at the width and shows control characters; paint pads and cuts", () => {
  assert.deepEqual(texts(wrap([{ text: "abcdef", style: "plain" }], 4)), ["abcd", "ef"]);
  assert.deepEqual(texts(wrap([{ text: "a\x1b[2Jb\tc", style: "plain" }], 80)), ["a^[[2Jb  c"]);
  // eslint-disable-next-line no-control-regex
  const visible = (s: string): string => s.replace(/\x1b\[[0-9;]*m/g, "");
  assert.equal(visible(paint([{ text: "abc", style: "key" }], 5)), "abc  ");
  assert.equal(visible(paint([{ text: "abcdef", style: "key" }], 4)), "abcd");
});

void test("the pane: direction marks, time, a long message folded, Enter unfolds it", () => {
  const pane = new Pane();
  const time = new Date(2026, 0, 1, 12, 34, 56, 789).getTime();
  pane.add({ kind: "sent", time, message: { execute: "query-status", id: "tui-1" } });
  pane.add({ kind: "received", time, message: { return: {}, id: "tui-1" } });
  pane.add({ kind: "error", time, text: "Invalid JSON" });
  const big = { return: "x".repeat(FOLD_SIZE), id: "tui-2" };
  pane.add({ kind: "received", time, message: big });
  const rows = texts(pane.render(80, 4));
  assert.deepEqual(rows.slice(0, 3), [
    ' 12:34:56.789 → {"execute": "query-status", "id": "tui-1"}',
    ' 12:34:56.789 ← {"return": {}, "id": "tui-1"}',
    " 12:34:56.789 ! Invalid JSON",
  ]);
  assert.match(rows[3]!, /^ 12:34:56\.789 ← \{"return": "x+ … 2\.0 KB, Enter unfolds$/);
  assert.ok(rows[3]!.length <= 80);
  assert.ok(pane.toggleFold(), "the newest folded entry unfolds");
  assert.equal(texts(pane.render(80, 100)).filter((r) => r.includes("xxxx")).length, 26);
});

void test("events: counted, hidden, filtered by name; the name comes first", () => {
  const pane = new Pane();
  const event = (name: string) => ({
    event: name,
    timestamp: { seconds: 1, microseconds: 0 },
    data: { n: 1 },
  });
  for (const name of ["STOP", "RESUME", "STOP"])
    pane.add({ kind: "event", time: 0, message: event(name) });
  pane.add({ kind: "sent", time: 0, message: { execute: "x", id: 1 } });
  assert.deepEqual(
    [...pane.eventCounts],
    [
      ["STOP", 2],
      ["RESUME", 1],
    ],
  );
  assert.match(
    texts(pane.render(120, 4))[0]!,
    /← \{"event": "STOP", "data": \{"n": 1\}, "timestamp": \{/,
  );
  pane.setFilter("res");
  assert.equal(texts(pane.render(120, 4)).filter((r) => r !== "").length, 2);
  pane.setFilter("");
  pane.toggleEvents();
  assert.deepEqual(
    texts(pane.render(120, 4))
      .filter((r) => r !== "")
      .map((r) => r.slice(14)),
    ['→ {"execute": "x", "id": 1}'],
  );
});

void test("search selects the newest hit before the selection, case-insensitive; n goes on", () => {
  const pane = new Pane();
  for (let i = 0; i < 5; i++)
    pane.add({ kind: "sent", time: 0, message: { execute: i % 2 ? "Stop" : "cont", id: i } });
  pane.render(80, 3);
  assert.ok(pane.find("stop"));
  assert.equal(pane.selected?.message?.["id"], 3);
  assert.ok(pane.find("stop"));
  assert.equal(pane.selected?.message?.["id"], 1);
  assert.ok(!pane.find("stop"));
  assert.ok(pane.find("stop", false));
  assert.equal(pane.selected?.message?.["id"], 3);
  assert.match(texts(pane.render(80, 3)).join("\n"), /▶/);
});

void test("scrolling: up, clamped at the top, new lines keep a scrolled view still", () => {
  const pane = new Pane();
  for (let i = 0; i < 10; i++) pane.add({ kind: "note", time: 0, text: `line ${i}` });
  assert.match(texts(pane.render(40, 3)).at(-1)!, /line 9$/);
  pane.scrollBy(2);
  assert.match(texts(pane.render(40, 3)).at(-1)!, /line 7$/);
  pane.add({ kind: "note", time: 0, text: "line 10" });
  assert.match(texts(pane.render(40, 3)).at(-1)!, /line 7$/);
  assert.ok(!pane.following);
  pane.scrollBy(1000);
  assert.match(texts(pane.render(40, 3))[0]!, /line 0$/);
  pane.scrollToEnd();
  assert.ok(pane.following);
});

void test("the pane keeps at most MAX_ENTRIES entries", () => {
  const pane = new Pane();
  for (let i = 0; i < MAX_ENTRIES + 5; i++) pane.add({ kind: "note", time: 0, text: String(i) });
  assert.equal(pane.entries.length, MAX_ENTRIES);
  assert.equal(pane.dropped, 5);
  assert.equal(pane.entries[0]!.text, "5");
});
