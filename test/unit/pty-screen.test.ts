// The terminal emulator of test/helpers/pty.ts: what a screen shows after some output.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Screen } from "../helpers/pty.js";

const ESC = "\x1b";
const CSI = `${ESC}[`;

/** A screen after `text` was written. */
function screenAfter(text: string, cols = 10, rows = 4): Screen {
  const screen = new Screen(cols, rows);
  screen.write(text);
  return screen;
}

void test("a new screen is empty, cursor at the top left", () => {
  const screen = new Screen(10, 3);
  assert.deepEqual(screen.lines(), ["", "", ""]);
  assert.equal(screen.text(), "");
  assert.deepEqual(screen.cursor, { row: 0, col: 0 });
  assert.throws(() => new Screen(0, 3), RangeError);
  assert.throws(() => new Screen(10, 1.5), RangeError);
});

void test("printable characters, UTF-8 included, one cell each", () => {
  const screen = screenAfter("héllo ✓");
  assert.deepEqual(screen.lines(), ["héllo ✓", "", "", ""]);
  assert.deepEqual(screen.cursor, { row: 0, col: 7 });
});

void test("text() trims trailing spaces and drops trailing empty rows only", () => {
  const screen = screenAfter("a  \r\n\r\nb   \r\n");
  assert.deepEqual(screen.lines(), ["a", "", "b", ""]);
  assert.equal(screen.text(), "a\n\nb");
});

void test("writing in the last column defers the wrap to the next character", () => {
  const screen = screenAfter("0123456789");
  assert.deepEqual(screen.cursor, { row: 0, col: 9 }, "cursor stays on the last column");
  assert.deepEqual(screen.lines(), ["0123456789", "", "", ""]);
  screen.write("a");
  assert.deepEqual(screen.lines(), ["0123456789", "a", "", ""]);
  assert.deepEqual(screen.cursor, { row: 1, col: 1 });
});

void test("CR or a cursor move cancels a pending wrap", () => {
  assert.deepEqual(screenAfter("0123456789\rX").lines(), ["X123456789", "", "", ""]);
  assert.deepEqual(screenAfter(`0123456789${CSI}DX`).lines(), ["01234567X9", "", "", ""]);
  assert.deepEqual(screenAfter(`0123456789${CSI}5GX`).lines(), ["0123X56789", "", "", ""]);
  // A line exactly as wide as the screen, then CRLF: one line, not an empty one between.
  assert.deepEqual(screenAfter("0123456789\r\nab").lines(), ["0123456789", "ab", "", ""]);
});

void test("long text wraps over several rows", () => {
  assert.deepEqual(screenAfter("abcdefghijklmnopqrstuvw").lines(), [
    "abcdefghij",
    "klmnopqrst",
    "uvw",
    "",
  ]);
});

void test("LF moves down without returning to column 0; CR returns", () => {
  const screen = screenAfter("ab\ncd\r\nef");
  assert.deepEqual(screen.lines(), ["ab", "  cd", "ef", ""]);
  assert.deepEqual(screen.cursor, { row: 2, col: 2 });
});

void test("LF on the bottom row scrolls the screen up", () => {
  const screen = screenAfter("1\r\n2\r\n3\r\n4\r\n5", 10, 4);
  assert.deepEqual(screen.lines(), ["2", "3", "4", "5"]);
  assert.deepEqual(screen.cursor, { row: 3, col: 1 });
  screen.write("\r\n");
  assert.deepEqual(screen.lines(), ["3", "4", "5", ""]);
});

void test("wrapping on the bottom row scrolls too", () => {
  const screen = screenAfter("1\r\n2\r\n3\r\n0123456789X", 10, 4);
  assert.deepEqual(screen.lines(), ["2", "3", "0123456789", "X"]);
});

void test("BS moves left and stops at column 0; TAB goes to the next multiple of 8", () => {
  assert.deepEqual(screenAfter("abc\b\bX").lines()[0], "aXc");
  assert.deepEqual(screenAfter("\b\bX").lines()[0], "X");
  const tabs = screenAfter("a\tb\tc", 20);
  assert.equal(tabs.lines()[0], "a       b       c");
  const end = screenAfter("\t\t\t", 20);
  assert.deepEqual(end.cursor, { row: 0, col: 19 }, "TAB stops at the last column");
});

void test("BEL, other controls and DEL print nothing", () => {
  assert.deepEqual(screenAfter("a\x07b\x00c\x7fd\x0ee").lines()[0], "abcde");
});

void test("CSI A B C D move the cursor, 1 by default, clamped to the screen", () => {
  const screen = new Screen(10, 4);
  screen.write(`${CSI}2B${CSI}3C`);
  assert.deepEqual(screen.cursor, { row: 2, col: 3 });
  screen.write(`${CSI}A`);
  assert.deepEqual(screen.cursor, { row: 1, col: 3 });
  screen.write(`${CSI}D${CSI}0D`);
  assert.deepEqual(screen.cursor, { row: 1, col: 1 }, "0 counts as 1");
  screen.write(`${CSI}99A${CSI}99D`);
  assert.deepEqual(screen.cursor, { row: 0, col: 0 });
  screen.write(`${CSI}99B${CSI}99C`);
  assert.deepEqual(screen.cursor, { row: 3, col: 9 });
  screen.write(`${CSI}B`);
  assert.deepEqual(screen.cursor, { row: 3, col: 9 }, "CSI B does not scroll");
  assert.equal(screen.text(), "");
});

void test("CSI G sets the column (1-based, as readline's cursorTo writes it)", () => {
  const screen = screenAfter(`abcdef${CSI}3GX${CSI}GY${CSI}99GZ`);
  assert.equal(screen.lines()[0], "YbXdef   Z");
  assert.deepEqual(screen.cursor, { row: 0, col: 9 });
});

void test("CSI H and f set row and column (1-based; missing means 1)", () => {
  const screen = new Screen(10, 4);
  screen.write(`${CSI}2;3HX${CSI}4;1fY${CSI}HZ${CSI};5HW${CSI}3HV`);
  assert.deepEqual(screen.lines(), ["Z   W", "  X", "V", "Y"]);
  screen.write(`${CSI}99;99H`);
  assert.deepEqual(screen.cursor, { row: 3, col: 9 });
});

void test("CSI K erases in the line: 0 to the end, 1 to the start, 2 all", () => {
  const at4 = (seq: string): string => screenAfter(`0123456789${CSI}5G${seq}`).lines()[0]!;
  assert.equal(at4(`${CSI}K`), "0123");
  assert.equal(at4(`${CSI}0K`), "0123");
  assert.equal(at4(`${CSI}1K`), "     56789");
  assert.equal(at4(`${CSI}2K`), "");
  const screen = screenAfter(`abc\r\ndef${CSI}A${CSI}2K`);
  assert.deepEqual(screen.lines(), ["", "def", "", ""], "only the cursor's line");
  assert.deepEqual(screen.cursor, { row: 0, col: 3 }, "the cursor does not move");
});

void test("CSI J erases in the display: 0 below, 1 above, 2 all", () => {
  const full = "aaaa\r\nbbbb\r\ncccc\r\ndddd";
  const after = (seq: string): string[] => screenAfter(`${full}${CSI}2;3H${seq}`).lines();
  assert.deepEqual(after(`${CSI}J`), ["aaaa", "bb", "", ""]);
  assert.deepEqual(after(`${CSI}0J`), ["aaaa", "bb", "", ""]);
  assert.deepEqual(after(`${CSI}1J`), ["", "   b", "cccc", "dddd"]);
  assert.deepEqual(after(`${CSI}2J`), ["", "", "", ""]);
  const screen = screenAfter(`${full}${CSI}2;3H${CSI}2J`);
  assert.deepEqual(screen.cursor, { row: 1, col: 2 }, "the cursor does not move");
});

void test("SGR, private modes and other CSI sequences are ignored", () => {
  const screen = screenAfter(
    `${CSI}?2004h${CSI}1;31ma${CSI}0m${CSI}38:2:1:2:3mb${CSI}>1uc${CSI}6n${CSI}?25l`,
  );
  assert.deepEqual(screen.lines()[0], "abc");
  assert.deepEqual(screen.cursor, { row: 0, col: 3 });
});

void test("OSC strings (ended by BEL or ST) and other escapes are ignored", () => {
  const screen = screenAfter(`${ESC}]0;title\x07a${ESC}]2;t${ESC}\\b${ESC}7${ESC}(Bc${ESC}=d`);
  assert.equal(screen.lines()[0], "abcd");
});

void test("a sequence split across writes keeps its state", () => {
  const screen = new Screen(10, 4);
  for (const part of ["abcdef", ESC, "[", "3", "G", "X", `${ESC}[1`, ";", "31", "mY"]) {
    screen.write(part);
  }
  screen.write(`${ESC}]0;ti`);
  screen.write("tle");
  screen.write(ESC);
  screen.write("\\Z");
  assert.equal(screen.lines()[0], "abXYZf");
});

void test("readline's refresh of a prompt line: CR/cursorTo, clear, rewrite", () => {
  // What Node's readline writes when redrawing "(QEMU) query-s" after typing "s".
  const screen = new Screen(40, 3);
  screen.write("(QEMU) query-");
  screen.write(`${CSI}1G${CSI}0J(QEMU) query-s${CSI}15G`);
  assert.deepEqual(screen.lines(), ["(QEMU) query-s", "", ""]);
  assert.deepEqual(screen.cursor, { row: 0, col: 14 });
  // Moving back over a wrapped line (moveCursor with dy < 0) and clearing down.
  const wrapped = new Screen(10, 3);
  wrapped.write("> 0123456789ab");
  wrapped.write(`${CSI}1A${CSI}1G${CSI}0J> xy${CSI}5G`);
  assert.deepEqual(wrapped.lines(), ["> xy", "", ""]);
  assert.deepEqual(wrapped.cursor, { row: 0, col: 4 });
});
