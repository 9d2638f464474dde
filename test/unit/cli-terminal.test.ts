// The shell terminal's arithmetic: Tabs split off the end of a read, where a drawn line ends.

import assert from "node:assert/strict";
import { test } from "node:test";
import { displayEnd, splitTrailingTabs } from "../../src/cli/shell-terminal.js";

const split = (text: string): string[] =>
  splitTrailingTabs(Buffer.from(text)).map((b) => b.toString());

void test("splitTrailingTabs: two or more Tabs that end a read become one per piece", () => {
  assert.deepEqual(split("\t\t"), ["\t", "\t"]);
  assert.deepEqual(split("qco\t\t"), ["qco\t", "\t"]);
  assert.deepEqual(split("x\t\t\t"), ["x\t", "\t", "\t"]);
  // One Tab at the end already completes; Tabs inside a paste stay text.
  assert.deepEqual(split("qco\t"), ["qco\t"]);
  assert.deepEqual(split("a\t\tb"), ["a\t\tb"]);
  assert.deepEqual(split("abc"), ["abc"]);
});

void test("displayEnd counts rows and columns as readline does", () => {
  assert.deepEqual(displayEnd("(QEMU) abc", 80), { rows: 0, cols: 10 });
  assert.deepEqual(displayEnd("x".repeat(80), 80), { rows: 1, cols: 0 });
  assert.deepEqual(displayEnd("x".repeat(85), 80), { rows: 1, cols: 5 });
  assert.deepEqual(displayEnd("a\tb", 80), { rows: 0, cols: 5 });
  assert.deepEqual(displayEnd("\x1b[1mab\x1b[0m", 80), { rows: 0, cols: 2 });
  // A wide character does not straddle the margin.
  assert.deepEqual(displayEnd(`${"x".repeat(9)}漢`, 10), { rows: 1, cols: 2 });
  assert.deepEqual(displayEnd("e\u0301", 80), { rows: 0, cols: 1 });
  assert.deepEqual(displayEnd("abc", Infinity), { rows: 0, cols: 3 });
});
