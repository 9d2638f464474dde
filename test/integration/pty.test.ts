// test/helpers/pty.ts driving a real readline program in a pseudo-terminal.

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { test, type TestContext } from "node:test";
import { type PtyProcess, spawnInPty } from "../helpers/pty.js";

/**
 * A little shell: a readline prompt "(QEMU) " with Tab completion of two
 * commands, that echoes each line as "got: <line>" and exits 0 on close
 * (Ctrl-D). Ctrl-C abandons the line as shells do; SIGUSR1 prints an
 * "event" line the way an asynchronous notification would, keeping the
 * half-typed line.
 */
const SHELL = `
const readline = require("node:readline");
const commands = ["query-status ", "query-commands "];
const rl = readline.createInterface({
  input: process.stdin,
  output: process.stdout,
  terminal: true,
  completer: (line) => {
    const hits = commands.filter((c) => c.startsWith(line));
    return [hits.length > 0 ? hits : commands, line];
  },
});
console.log("isTTY=" + process.stdin.isTTY + "/" + process.stdout.isTTY +
  " columns=" + process.stdout.columns + " rows=" + process.stdout.rows);
rl.setPrompt("(QEMU) ");
rl.on("line", (line) => {
  console.log("got: " + line);
  rl.prompt();
});
rl.on("SIGINT", () => {
  process.stdout.write("^C\\n");
  rl.write(null, { ctrl: true, name: "e" });
  rl.write(null, { ctrl: true, name: "u" });
});
rl.on("close", () => process.exit(0));
process.on("SIGUSR1", () => {
  readline.cursorTo(process.stdout, 0);
  readline.clearLine(process.stdout, 0);
  process.stdout.write("event: STOP\\n");
  rl.prompt(true);
});
rl.prompt();
`;

/** The shell in a pty, once its first prompt shows. */
async function startShell(
  t: TestContext,
  size: { cols?: number; rows?: number } = {},
): Promise<PtyProcess> {
  const pty = await spawnInPty(t, process.execPath, ["-e", SHELL], size);
  await pty.waitFor(/^\(QEMU\)$/m, { what: "the first prompt" });
  return pty;
}

/** The screen's rows down to the last non-empty one. */
function shownLines(pty: PtyProcess): string[] {
  return pty.screen.text().split("\n");
}

void test("the program sees a terminal of the configured size", async (t) => {
  const pty = await startShell(t, { cols: 73, rows: 21 });
  assert.deepEqual(shownLines(pty), ["isTTY=true/true columns=73 rows=21", "(QEMU)"]);
  assert.deepEqual(pty.screen.cursor, { row: 1, col: 7 });
  assert.equal(pty.screen.cols, 73);
  assert.equal(pty.screen.rows, 21);
});

void test("the default size is 100x30", async (t) => {
  const pty = await startShell(t);
  assert.match(pty.screen.text(), /^isTTY=true\/true columns=100 rows=30$/m);
});

void test("typing, Tab completion of a single match and Enter", async (t) => {
  const pty = await startShell(t);
  pty.write("query-s");
  await pty.waitFor(/^\(QEMU\) query-s$/m);
  pty.write("\t");
  await pty.waitFor(/^\(QEMU\) query-status$/m, { what: "the completion" });
  pty.write("\r");
  await pty.waitFor(/^got: query-status\n\(QEMU\)$/m);
  assert.deepEqual(shownLines(pty).slice(1), [
    "(QEMU) query-status",
    "got: query-status",
    "(QEMU)",
  ]);
  // The raw output has the completer's trailing space, and ONLCR's "\r\n".
  assert.match(pty.output(), /got: query-status \r\n/);
});

void test("Tab completes the common prefix, a second Tab lists the candidates", async (t) => {
  const pty = await startShell(t);
  pty.write("query");
  await pty.waitFor(/^\(QEMU\) query$/m);
  // readline completes only on the last character of a chunk it reads (a
  // pasted Tab is inserted as is), so each Tab goes alone, after the last
  // one's effect shows.
  pty.write("\t");
  await pty.waitFor(/^\(QEMU\) query-$/m, { what: "the common prefix" });
  pty.write("\t");
  await pty.waitFor(/^\(QEMU\) query-\nquery-status +query-commands\n+\(QEMU\) query-$/m, {
    what: "the list of candidates",
  });
  assert.deepEqual(pty.screen.cursor, { row: shownLines(pty).length - 1, col: 13 });
  pty.write("c");
  await pty.waitFor(/^\(QEMU\) query-c$/m);
  pty.write("\t");
  await pty.waitFor(/^\(QEMU\) query-commands$/m);
  pty.write("\r");
  await pty.waitFor(/^got: query-commands$/m);
});

void test("Ctrl-C abandons the line, Ctrl-D ends the program with code 0", async (t) => {
  const pty = await startShell(t);
  pty.write("query-st");
  await pty.waitFor(/^\(QEMU\) query-st$/m);
  pty.write("\x03");
  await pty.waitFor(/^\(QEMU\) query-st\^C\n\(QEMU\)$/m, { what: "the fresh prompt" });
  pty.write("\r");
  await pty.waitFor(/^got:$/m, { what: "an empty line" });
  pty.write("\x04");
  assert.deepEqual(await pty.done, { code: 0, signal: null });
  assert.throws(() => pty.write("x"), /the pty is closed/);
});

void test("output printed while a line is half-typed leaves that line on the last row", async (t) => {
  const pty = await startShell(t, { cols: 60, rows: 10 });
  pty.write("query-st");
  await pty.waitFor(/^\(QEMU\) query-st$/m);
  pty.child.kill("SIGUSR1");
  await pty.waitFor(
    (text) =>
      /\nevent: STOP\n\(QEMU\) query-st$/.test(text) &&
      pty.screen.cursor.row === text.split("\n").length - 1 &&
      pty.screen.cursor.col === 15,
    { what: "the event above the restored line" },
  );
  assert.deepEqual(shownLines(pty).slice(1), ["event: STOP", "(QEMU) query-st"]);
  // The line is still readline's, not just pixels: finishing it works.
  pty.write("atus\r");
  await pty.waitFor(/^got: query-status$/m);
});

void test("the screen scrolls when output reaches the bottom", async (t) => {
  const pty = await startShell(t, { cols: 40, rows: 5 });
  for (const n of [1, 2, 3, 4]) {
    pty.write(`line ${n}\r`);
    await pty.waitFor(new RegExp(`^got: line ${n}\\n`, "m"));
  }
  await pty.waitFor(/\(QEMU\)$/);
  assert.deepEqual(pty.screen.lines(), [
    "(QEMU) line 3",
    "got: line 3",
    "(QEMU) line 4",
    "got: line 4",
    "(QEMU)",
  ]);
  assert.deepEqual(pty.screen.cursor, { row: 4, col: 7 });
});

void test("waitFor fails with the screen when the program ends first, or on timeout", async (t) => {
  const pty = await startShell(t);
  await assert.rejects(pty.waitFor(/never shown/g, { timeout: 200 }), (err: Error) => {
    assert.match(err.message, /^Timed out after 200 ms waiting for \/never shown\/g/);
    assert.match(err.message, /\n\(QEMU\)\n/);
    return true;
  });
  const waiting = pty.waitFor(/never shown/, { what: "a miracle" });
  pty.write("\x04");
  await assert.rejects(waiting, (err: Error) => {
    assert.match(err.message, /^The program exited with code 0 before a miracle;/);
    assert.match(err.message, /isTTY=true/);
    return true;
  });
  await assert.rejects(pty.waitFor(/never/), /exited with code 0 before \/never\//);
  // A pattern that matches the final screen still resolves after the end.
  await pty.waitFor(/\(QEMU\)/);
});

void test("a program killed by a signal, and one that does not exist", async (t) => {
  const pty = await spawnInPty(t, process.execPath, ["-e", "setInterval(() => {}, 1000)"]);
  pty.child.kill("SIGTERM");
  assert.deepEqual(await pty.done, { code: null, signal: "SIGTERM" });
  await assert.rejects(spawnInPty(t, "/nonexistent/program", []), { code: "ENOENT" });
});

void test("no file descriptor is left open", async (t) => {
  const fds = (): string[] => readdirSync("/proc/self/fd").sort();
  await (
    await spawnInPty(t, process.execPath, ["-e", "1"])
  ).done; // koffi loaded
  const before = fds();
  const ended = await spawnInPty(t, process.execPath, ["-e", "console.log('bye')"]);
  assert.deepEqual(await ended.done, { code: 0, signal: null });
  assert.match(ended.output(), /^bye\r\n$/);
  assert.deepEqual(fds(), before, "after done");
  const failed = spawnInPty(t, "/nonexistent/program", []);
  await assert.rejects(failed);
  assert.deepEqual(fds(), before, "after a failed start");
  await t.test("cleanup of a running program", async (st) => {
    const running = await spawnInPty(st, process.execPath, ["-e", "setInterval(() => {}, 1000)"]);
    assert.notDeepEqual(fds(), before);
    assert.equal(running.child.exitCode, null);
  });
  assert.deepEqual(fds(), before, "after the subtest's cleanup");
});
