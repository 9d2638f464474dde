// The TUI's app in-process, drawn on a headless xterm: layout (history, status bar, input),
// colours, keys (send, completion, focus, fold, prompts), errors shown and not sent, resize,
// and the terminal modes set on entry and undone on the way out.

import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { type TestContext, test } from "node:test";
import type { JsonObject } from "../../src/index.js";
import { App, type AppHost, toMessage } from "../../src/cli/tui/app.js";
import { Screen } from "../helpers/pty.js";

/** An app drawing on a headless xterm, with a host that answers every message with `{}`. */
function start(t: TestContext, cols = 80, rows = 12) {
  const screen = new Screen(cols, rows);
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      screen.write(chunk.toString());
      done();
    },
  });
  const sent: JsonObject[] = [];
  const remembered: string[] = [];
  let quits = 0;
  const host: AppHost = {
    send: (message) => {
      sent.push(message);
      return Promise.resolve({ return: {}, id: message["id"] ?? null });
    },
    complete: (line) => {
      const names = ["query-status", "query-version", "quit"];
      const word = line.split(" ").at(-1) ?? "";
      return [names.filter((n) => n.startsWith(word)), word];
    },
    remember: (line) => remembered.push(line),
    quit: () => quits++,
  };
  const app = new App({ out, cols, rows, history: ["earlier"], host });
  t.after(() => app.stop());
  app.start();
  const settled = async (): Promise<string[]> => {
    await new Promise((resolve) => setImmediate(resolve));
    app.draw();
    await screen.flushed();
    return screen.lines();
  };
  return { app, screen, sent, remembered, quits: () => quits, settled };
}

void test("layout: the history, the status bar, the input with its prompt and cursor", async (t) => {
  const { app, screen, settled } = start(t);
  app.setStatus("[Connected QEMU 10.0.2 at /x]");
  app.add({ kind: "note", text: "hello", time: 0 });
  const lines = await settled();
  assert.equal(lines.length, 12);
  assert.match(lines[9]!, /^ \d\d:\d\d:\d\d\.\d{3} · hello$/);
  assert.match(lines[10]!, /^\[Connected QEMU 10\.0\.2 at \/x\] +F1 help$/);
  assert.equal(lines[11], "›");
  assert.deepEqual(screen.cursor, { row: 11, col: 2 });
  assert.equal(screen.alternate, true);
  assert.equal(screen.terminal.modes.mouseTrackingMode, "vt200");
  assert.equal(screen.terminal.modes.bracketedPasteMode, true);
  app.stop();
  await screen.flushed();
  assert.equal(screen.alternate, false);
  assert.equal(screen.cursorHidden, false);
  assert.equal(screen.terminal.modes.mouseTrackingMode, "none");
  assert.equal(screen.terminal.modes.bracketedPasteMode, false);
});

void test("Enter sends a command with an id; the reply follows; JSON keys and strings in colour", async (t) => {
  const { app, screen, sent, remembered, settled } = start(t, 100);
  app.input("query-status\r");
  assert.deepEqual(sent, [{ execute: "query-status", id: "tui-1" }]);
  assert.deepEqual(remembered, ["query-status"]);
  const lines = await settled();
  assert.match(lines[8]!, / → \{"execute": "query-status", "id": "tui-1"\}$/);
  assert.match(lines[9]!, / ← \{"return": \{\}, "id": "tui-1"\}$/);
  assert.equal(lines[11], "›");
  // "execute" (a key) is cyan, "query-status" (a string) green: palette colours 6 and 2.
  const row = screen.terminal.buffer.active.getLine(8)!;
  const at = (text: string): number => lines[8]!.indexOf(text) + 1;
  assert.equal(row.getCell(at('"execute"'))!.getFgColor(), 6);
  assert.equal(row.getCell(at('"query-status"'))!.getFgColor(), 2);
});

void test("log lines in the colour of their level", async (t) => {
  const { app, screen, settled } = start(t);
  app.add({ kind: "log", level: "warn", text: "careful", time: 0 });
  app.add({ kind: "log", level: "error", text: "broken", time: 0 });
  const lines = await settled();
  const colour = (row: number, text: string): number =>
    screen.terminal.buffer.active.getLine(row)!.getCell(lines[row]!.indexOf(text))!.getFgColor();
  assert.equal(colour(8, "careful"), 3); // yellow
  assert.equal(colour(9, "broken"), 1); // red
});

void test("an explicit id is kept; invalid JSON stays in the input and is not sent", async (t) => {
  const { app, sent, settled } = start(t);
  app.input('{"execute": "x", "id": 7}\r');
  assert.deepEqual(sent, [{ execute: "x", id: 7 }]);
  app.input('{"execute": }\r');
  assert.equal(sent.length, 1);
  const lines = await settled();
  assert.ok(
    lines.some((l) => /! Invalid JSON, not sent: /.test(l)),
    lines.join("\n"),
  );
  assert.equal(app.editor.text, '{"execute": }');
});

void test("Tab completes a single candidate, the common prefix, else lists them", async (t) => {
  const { app, settled } = start(t);
  app.input("query-s\t");
  assert.equal(app.editor.text, "query-status");
  app.editor.clear();
  app.input("q\t");
  assert.equal(app.editor.text, "qu");
  app.input("\t");
  const lines = await settled();
  assert.ok(lines.includes("query-status  query-version  quit"), lines.join("\n"));
});

void test("Shift+Tab: the history has the focus, the cursor is hidden; Esc and Ctrl+C quit", async (t) => {
  const { app, screen, quits, settled } = start(t);
  app.add({ kind: "received", message: { return: "x".repeat(5000) }, time: 0 });
  app.input("\x1b[Z");
  let lines = await settled();
  assert.match(lines[10]!, /\[history\]/);
  assert.ok(screen.cursorHidden);
  assert.ok(lines.some((l) => l.startsWith("▶") && l.endsWith("Enter unfolds")));
  app.input("\r");
  lines = await settled();
  assert.ok(!lines.some((l) => l.includes("Enter unfolds")));
  // A letter that is no key of the history goes to the input.
  app.input("x");
  assert.equal(app.editor.text, "x");
  app.input("\x03");
  assert.equal(quits(), 1);
  app.input("\x1b");
  await new Promise((resolve) => setTimeout(resolve, 100)); // the Esc timer (40 ms) is what is tested
  assert.equal(quits(), 2);
});

void test("Ctrl+D quits on an empty input only; F1 shows the keys", async (t) => {
  const { app, quits, settled } = start(t, 100, 40);
  app.input("a\x04");
  assert.equal(quits(), 0);
  app.input("\x01\x0b\x04");
  assert.equal(quits(), 1);
  app.input("\x1bOP");
  const lines = await settled();
  assert.ok(
    lines.some((l) => l.includes("Alt+Enter, Ctrl+J")),
    lines.join("\n"),
  );
});

void test("a resize redraws at the new size; the input grows with its lines", async (t) => {
  const { app, screen, settled } = start(t);
  app.add({ kind: "note", text: "n", time: 0 });
  app.input("{\r1\r");
  let lines = await settled();
  assert.deepEqual(
    lines.slice(-3),
    ["› {", "  1", "  "].map((l) => l.trimEnd()),
  );
  screen.terminal.resize(60, 8);
  app.resize(60, 8);
  lines = await settled();
  assert.equal(lines.length, 8);
  // A third of the rows at most for the input (2 of 8): the rows with the cursor.
  assert.match(lines[5]!, /^\[Connecting\] +F1 help$/);
  assert.equal(lines[5]!.length, 60);
  assert.deepEqual(lines.slice(-2), ["  1", ""]);
});

void test("toMessage: JSON objects, the shell syntax, transactions over lines", () => {
  assert.deepEqual(toMessage(' {"execute": "x"} '), { execute: "x" });
  assert.deepEqual(toMessage("block_resize node-name=d0 size=1024"), {
    execute: "block_resize",
    arguments: { "node-name": "d0", size: 1024 },
  });
  const tx = toMessage("transaction(\nblock-dirty-bitmap-add node=d0 name=b\n)");
  assert.equal(tx["execute"], "transaction");
  assert.throws(() => toMessage("[1]"), /a QMP message is a JSON object/);
  assert.throws(() => toMessage('"x"'), /a QMP message is a JSON object/);
  assert.throws(() => toMessage("transaction(\nx a=1"), /not closed/);
});
