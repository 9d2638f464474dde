// Real QEMU: `qmp shell` driven in a pseudo-terminal — prompt, Tab completion, events above the
// line being typed, transactions, Ctrl-C, Ctrl-D, history, HMP mode, hang-up and QEMU going away.

import assert from "node:assert/strict";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { QMP_BIN, ROOT, withoutSocket } from "../helpers/cli.js";
import { type PtyExit, type PtyProcess, spawnInPty } from "../helpers/pty.js";
import { startQga } from "../helpers/qga.js";
import {
  asObject,
  qemuVersionInfo,
  startQemu,
  startQemuWithControl,
  withHomeDir,
  tempDir,
  testClient,
  throwawayBinary,
} from "../helpers/qemu.js";

const T = { timeout: 30_000 };

/** The prompt as the screen shows it (trailing spaces trimmed). */
const PROMPT = "(QEMU)";

/** The usual reply of a command that returns nothing, e.g. query-name on an unnamed VM. */
const EMPTY_RETURN = /^\{"return": \{\}\}$/m;

/** The last non-empty row of a screen text (Screen.text() drops trailing empty rows). */
function lastRow(text: string): string {
  const rows = text.split("\n");
  return rows[rows.length - 1]!;
}

/** The screen's rows down to the last non-empty one. */
function rowsOf(pty: PtyProcess): string[] {
  return pty.screen.text().split("\n");
}

/** Resolves once the last non-empty row of the screen is exactly `row`. */
function waitForLastRow(pty: PtyProcess, row: string, what = JSON.stringify(row)): Promise<void> {
  return pty.waitFor((text) => lastRow(text) === row, { what: `the last row to be ${what}` });
}

/** Terminal output without its escape sequences and carriage returns. */
function plain(raw: string): string {
  // eslint-disable-next-line no-control-regex
  return raw.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "").replace(/\r/g, "");
}

/** A mark in the program's output, for {@link printedSince}. */
function mark(pty: PtyProcess): number {
  return pty.output().length;
}

/** What the program printed since `at` (a {@link mark}), escape sequences and CRs dropped. */
function printedSince(pty: PtyProcess, at: number): string {
  return plain(pty.output().slice(at));
}

/**
 * Type `line` and Enter, then wait until what was printed since matches
 * `reply` and the screen's last row is `prompt` again.
 *
 * @returns what was printed since the line was typed.
 */
async function enter(
  pty: PtyProcess,
  line: string,
  reply: RegExp,
  prompt = PROMPT,
): Promise<string> {
  const at = mark(pty);
  pty.write(`${line}\r`);
  await pty.waitFor(() => reply.test(printedSince(pty, at)), {
    what: `the reply to ${JSON.stringify(line)} to match ${String(reply)}`,
  });
  await waitForLastRow(pty, prompt, `the prompt ${prompt} after ${JSON.stringify(line)}`);
  return printedSince(pty, at);
}

/** Type `text` (no Enter) and wait until the last row is `row` (default: the prompt and `text`). */
async function type(pty: PtyProcess, text: string, row = `${PROMPT} ${text}`): Promise<void> {
  pty.write(text);
  await waitForLastRow(pty, row.trimEnd());
}

/**
 * Press Tab (alone, as the pty helper requires) and wait until the last row
 * is `row` and the cursor at column `col` (which tells whether a trailing
 * space was inserted: the screen trims it).
 */
async function tab(pty: PtyProcess, row: string, col = row.length): Promise<void> {
  pty.write("\t");
  await waitForLineAt(
    pty,
    row,
    col,
    `Tab to give ${JSON.stringify(row)} with the cursor at column ${col}`,
  );
}

/**
 * Wait until the shell has what Tab completion needs, without sleeping. It
 * fetches that (query-commands, then query-qmp-schema; HMP: help and help
 * info, both at once) on its own connection right before it shows the first
 * prompt, and a QMP monitor answers in order. So the reply to a command typed
 * at the prompt comes after the query-commands reply, and the shell sends
 * query-qmp-schema as soon as it has that reply, before it reads the next
 * line: the reply to a second command comes after the schema. (Tab at once after the first prompt: see the test below.)
 */
async function untilCompletionLoaded(pty: PtyProcess, hmp = false): Promise<void> {
  if (hmp) {
    await enter(pty, "info version", /^\d+\.\d+\.\d+/m);
    return;
  }
  await enter(pty, "query-name", EMPTY_RETURN);
  await enter(pty, "query-uuid", /^\{"return": \{"UUID": "[-0-9a-f]+"\}\}$/m);
}

/** Fails unless the process `pid` is gone (exited and reaped). */
function assertGone(pid: number): void {
  assert.throws(
    () => process.kill(pid, 0),
    (err: NodeJS.ErrnoException) => err.code === "ESRCH",
    `process ${pid} still exists`,
  );
}

/** Whether the shell ended the way a hang-up should end it: by SIGHUP, or exit code 0. */
function endedQuietly(end: PtyExit): boolean {
  return end.signal === "SIGHUP" || (end.signal === null && end.code === 0);
}

/** Resolves once the last row is `row` with the cursor at its end (col `col`). */
function waitForLineAt(pty: PtyProcess, row: string, col: number, what: string): Promise<void> {
  return pty.waitFor(
    (text) =>
      lastRow(text) === row &&
      pty.screen.cursor.row === text.split("\n").length - 1 &&
      pty.screen.cursor.col === col,
    { what },
  );
}

/** Options of {@link startShell}. */
interface StartShellOptions {
  cols?: number;
  rows?: number;
  /** The shell's HOME (also its TMPDIR); default: a new temp dir. */
  home?: string;
}

/**
 * `qmp shell ...args` in a pty, with a temp HOME (so ~/.qmp_history is the
 * test's own) and TMPDIR (where a throwaway QEMU's socket dir goes), once the
 * first prompt shows.
 */
async function startShell(
  t: TestContext,
  args: string[],
  options: StartShellOptions = {},
): Promise<PtyProcess> {
  const spawn = (home: string): Promise<PtyProcess> =>
    spawnInPty(t, process.execPath, [QMP_BIN, "shell", ...args], {
      env: withoutSocket({ HOME: home, TMPDIR: home }),
      cwd: ROOT,
      ...(options.cols === undefined ? {} : { cols: options.cols }),
      ...(options.rows === undefined ? {} : { rows: options.rows }),
    });
  const pty = await (options.home === undefined ? withHomeDir(t, spawn) : spawn(options.home));
  await pty.waitFor((text) => lastRow(text) === PROMPT, {
    what: "the first prompt",
    timeout: 20_000,
  });
  return pty;
}

/** The QEMU version and pid the banner of a throwaway shell shows. */
function bannerOf(pty: PtyProcess): { version: string; pid: number } {
  const m = /^Connected to QEMU (\d+\.\d+\.\d+) \(pid (\d+)\)\.$/m.exec(pty.screen.text());
  assert.ok(m !== null, `no "Connected to QEMU x.y.z (pid N)." line:\n${pty.screen.text()}`);
  return { version: m[1]!, pid: Number(m[2]) };
}

void test("throwaway QEMU: banner, Tab, a command, Ctrl-D stops QEMU", T, async (t) => {
  const binary = throwawayBinary(t);
  const pty = await startShell(t, ["--qemu", binary]);
  const rows = rowsOf(pty);
  assert.equal(
    rows[0],
    `Starting a throwaway QEMU: ${binary} -machine none -nodefaults -display none`,
  );
  assert.match(pty.screen.text(), /^Welcome to the QMP shell of qmp \S+!$/m);
  assert.match(pty.screen.text(), /^Tab completes; Ctrl-D leaves\.$/m);
  const { version, pid } = bannerOf(pty);
  const expected = await qemuVersionInfo();
  assert.equal(version, `${expected.major}.${expected.minor}.${expected.micro}`);
  process.kill(pid, 0); // it runs

  await untilCompletionLoaded(pty);
  await type(pty, "query-statu");
  await tab(pty, "(QEMU) query-status", "(QEMU) query-status ".length);
  const reply = await enter(pty, "", /^\{"return": \{"status": .*\}\}$/m);
  const line = /^\{"return": .*$/m.exec(reply)![0];
  // 7.2 adds "singlestep" (between the two): compare the two that every version has.
  const { status, running } = asObject(asObject(JSON.parse(line))["return"], "query-status");
  assert.deepEqual({ status, running }, { status: "running", running: true });
  assert.match(line, /^\{"return": \{"status": "running", (?:.*, )?"running": true\b/);

  pty.write("\x04");
  await pty.waitFor(/^Disconnected$/m, { what: "Disconnected" });
  assert.deepEqual(await pty.done, { code: 0, signal: null });
  assert.deepEqual(rowsOf(pty).slice(-2), [PROMPT, "Disconnected"]);
  assertGone(pid);
});

void test("Tab completes at the first prompt, without a command run before", T, async (t) => {
  // The shell fetches the schema after it connects but draws the prompt at
  // once; a Tab that comes before the schema must still complete (now, or
  // once the schema is there), not be dropped.
  const qemu = await startQemu(t);
  const pty = await startShell(t, ["--history", "", qemu.socketPath]);
  await type(pty, "query-statu");
  await tab(pty, "(QEMU) query-status", "(QEMU) query-status ".length);
  pty.write("\r");
  await pty.waitFor(/^\{"return": \{"status": "running"/m);
});

void test("Tab completes argument names and enum values from the schema", T, async (t) => {
  const qemu = await startQemu(t);
  const pty = await startShell(t, [qemu.socketPath]);
  await untilCompletionLoaded(pty);

  await type(pty, "blockdev-add driver=qco");
  // The candidates (qcow, qcow2) share "qcow": the first Tab adds that much.
  await tab(pty, "(QEMU) blockdev-add driver=qcow");
  // The second lists them, then shows the line again below (readline leaves a blank row).
  const listed = (text: string): string[] | undefined => {
    const rows = text.split("\n").filter((r) => r !== "");
    if (rows[rows.length - 1] !== "(QEMU) blockdev-add driver=qcow") return undefined;
    return rows[rows.length - 2]?.trim().split(/ +/);
  };
  pty.write("\t");
  await pty.waitFor((text) => listed(text)?.includes("qcow2") === true, {
    what: "qcow and qcow2 listed above the line",
  });
  assert.deepEqual(listed(pty.screen.text()), ["qcow", "qcow2"]);
  assert.deepEqual(pty.screen.cursor, {
    row: rowsOf(pty).length - 1,
    col: "(QEMU) blockdev-add driver=qcow".length,
  });

  pty.write("\x15"); // Ctrl-U: drop the line
  await waitForLastRow(pty, PROMPT);
  await type(pty, "blockdev-add dri");
  await tab(pty, "(QEMU) blockdev-add driver=");
  pty.write("\x15");
  await waitForLastRow(pty, PROMPT);
  // device_add's drivers are no enum in the schema: they come from qom-list-types.
  await type(pty, "device_add driver=virtio-balloon-pci-tr");
  await tab(
    pty,
    "(QEMU) device_add driver=virtio-balloon-pci-transitional",
    "(QEMU) device_add driver=virtio-balloon-pci-transitional ".length,
  );
  pty.write("\x15");
  await waitForLastRow(pty, PROMPT);
  // An object member is filled in key by key: offered as `cache.`, not `cache=`.
  await type(pty, "blockdev-add driver=null-co cach");
  await tab(pty, "(QEMU) blockdev-add driver=null-co cache.");
  pty.write("\x15");
  await waitForLastRow(pty, PROMPT);
  pty.write("\x04");
  assert.deepEqual(await pty.done, { code: 0, signal: null });
});

void test("an event is printed above the line being typed, which stays intact", T, async (t) => {
  const { qemu, control } = await startQemuWithControl(t);
  const client = testClient(t);
  await client.connect(control);
  const pty = await startShell(t, [qemu.socketPath]);
  assert.match(
    pty.screen.text(),
    new RegExp(`^Connected to QEMU \\d+\\.\\d+\\.\\d+ at .+\\.$`, "m"),
  );

  await type(pty, "query-na");
  await client.execute("stop");
  await pty.waitFor(/"event": "STOP"/, { what: "the STOP event" });
  await waitForLineAt(pty, "(QEMU) query-na", 15, "the line, again below the event");
  let rows = rowsOf(pty);
  assert.match(rows[rows.length - 2]!, /^\{.*"event": "STOP".*\}$/);
  // Still readline's line, not just what the screen shows: finishing it works.
  const reply = await enter(pty, "me", EMPTY_RETURN);
  assert.match(reply, /^me\n\{"return": \{\}\}\n\(QEMU\) $/);

  // A half-typed line that wraps: 7 + 150 cells on a 100-column terminal.
  const p = "p".repeat(119);
  const line = `qom-get path=/machine property=${p}`;
  assert.equal(line.length, 150);
  pty.write(line);
  const full = `(QEMU) ${line}`;
  const wrapped = [full.slice(0, 100), full.slice(100)];
  const shows = (text: string): boolean =>
    text.endsWith(`\n${wrapped.join("\n")}`) &&
    pty.screen.cursor.row === text.split("\n").length - 1 &&
    pty.screen.cursor.col === full.length - 100;
  await pty.waitFor(shows, { what: "the long line, wrapped" });
  await client.execute("cont");
  await pty.waitFor(/"event": "RESUME"/, { what: "the RESUME event" });
  await pty.waitFor(shows, { what: "the long line, wrapped, after the event" });
  rows = rowsOf(pty);
  assert.match(rows[rows.length - 3]!, /^\{.*"event": "RESUME".*\}$/);
  assert.deepEqual(rows.slice(-2), wrapped);
  // QEMU names the property it did not find: the whole line reached it.
  const error = await enter(pty, "", /GenericError: /);
  assert.ok(
    error.replace(/\n/g, "").includes(`GenericError: Property 'none-machine.${p}' not found`),
    error,
  );
  assert.equal(printedSince(pty, 0).split("RESUME").length, 2, "one RESUME line, not repeated");
});

void test("transaction( ... ) and Ctrl-C dropping an open transaction", T, async (t) => {
  const qemu = await startQemu(t);
  const pty = await startShell(t, [qemu.socketPath]);
  await enter(pty, "transaction(", /^transaction\($/m, "TRANS>");
  await enter(pty, "abort", /^abort$/m, "TRANS>");
  const reply = await enter(pty, ")", /^GenericError: /m);
  assert.match(reply, /^\)\nGenericError: Transaction aborted using Abort action\n\(QEMU\) $/);
  assert.deepEqual(rowsOf(pty).slice(-5), [
    "(QEMU) transaction(",
    "TRANS> abort",
    "TRANS> )",
    "GenericError: Transaction aborted using Abort action",
    PROMPT,
  ]);

  await enter(pty, "transaction(", /^transaction\($/m, "TRANS>");
  await type(pty, "abo", "TRANS> abo");
  pty.write("\x03");
  await waitForLastRow(pty, PROMPT, "the QMP prompt after Ctrl-C");
  assert.deepEqual(rowsOf(pty).slice(-4), [
    "(QEMU) transaction(",
    "TRANS> abo^C",
    "(transaction dropped)",
    PROMPT,
  ]);
  // The transaction is gone: a command runs at once, and ")" is no longer the end of one
  // (a lone ")" is then a syntax error, not a command for QEMU).
  await enter(pty, "query-name", EMPTY_RETURN);
  const closing = await enter(pty, ")", /^Error: No transaction is open/m);
  assert.doesNotMatch(closing, /Transaction aborted|\{"return"/);
  pty.write("\x04");
  assert.deepEqual(await pty.done, { code: 0, signal: null });
});

void test(
  "Ctrl-C drops a half-typed line; Enter on the fresh prompt sends nothing",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const log = join(tempDir(t), "log.jsonl");
    const pty = await startShell(t, ["--log", log, qemu.socketPath]);
    await type(pty, "query-st");
    pty.write("\x03");
    await pty.waitFor((text) => text.endsWith("\n(QEMU) query-st^C\n(QEMU)"), {
      what: "^C after the line and a fresh prompt below",
    });
    assert.deepEqual(pty.screen.cursor, { row: rowsOf(pty).length - 1, col: "(QEMU) ".length });
    pty.write("\r");
    await pty.waitFor((text) => text.endsWith("\n(QEMU) query-st^C\n(QEMU)\n(QEMU)"), {
      what: "another prompt after Enter",
    });
    // Something that is sent, to know the log is up to date when it is read.
    await enter(pty, "query-name", EMPTY_RETURN);
    pty.write("\x04");
    assert.deepEqual(await pty.done, { code: 0, signal: null });
    const sent = readFileSync(log, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => (JSON.parse(l) as { command?: unknown }).command)
      .filter((c) => c !== undefined);
    assert.deepEqual(sent, [{ execute: "query-name" }]);
  },
);

void test(
  "history: recalled with Up, capped at 1000 lines, no secrets, mode 0600",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const home = tempDir(t);
    const file = join(home, ".qmp_history");
    const old = Array.from({ length: 1500 }, (_, i) => `echo-${i}`);
    writeFileSync(file, `${old.join("\n")}\n`, { mode: 0o644 });
    const pty = await startShell(t, [qemu.socketPath], { home });

    pty.write("\x1b[A");
    await waitForLastRow(pty, "(QEMU) echo-1499", "the newest line of the file");
    pty.write("\x1b[A");
    await waitForLastRow(pty, "(QEMU) echo-1498", "the line before it");
    pty.write("\x15"); // Ctrl-U
    await waitForLastRow(pty, PROMPT);
    await enter(pty, "query-version", /^\{"return": \{.*"qemu"/m);
    await enter(pty, "object-add qom-type=secret id=s0 data=xyz", EMPTY_RETURN);
    // Kept in memory for this session, though.
    pty.write("\x1b[A");
    await waitForLastRow(pty, "(QEMU) object-add qom-type=secret id=s0 data=xyz");
    pty.write("\x15");
    await waitForLastRow(pty, PROMPT);
    pty.write("\x04");
    assert.deepEqual(await pty.done, { code: 0, signal: null });

    const text = readFileSync(file, "utf8");
    assert.ok(text.endsWith("\n"));
    const lines = text.slice(0, -1).split("\n");
    assert.ok(lines.length <= 1000, `${lines.length} lines`);
    assert.deepEqual(lines.slice(-2), ["echo-1499", "query-version"]);
    assert.ok(!text.includes("data=xyz"), "the secret was written");
    assert.ok(!text.includes("secret"), "the secret's line was written");
    assert.equal(statSync(file).mode & 0o777, 0o600);
  },
);

void test("HMP mode: completion from help, info status, a bad cpu", T, async (t) => {
  const pty = await startShell(t, ["-H", "--qemu", throwawayBinary(t)]);
  assert.match(pty.screen.text(), /^Welcome to the HMP shell of qmp \S+!$/m);
  const { pid } = bannerOf(pty);
  await untilCompletionLoaded(pty, true);
  await type(pty, "inf");
  await tab(pty, "(QEMU) info", "(QEMU) info ".length);
  await type(pty, "statu", "(QEMU) info statu");
  await tab(pty, "(QEMU) info status", "(QEMU) info status ".length);
  const status = await enter(pty, "", /^VM status: running$/m);
  assert.match(status, /^\nVM status: running\n\(QEMU\) $/);
  const cpu = await enter(pty, "cpu 7", /^cpu: no CPU 7\b/m);
  assert.match(cpu, /^cpu 7\ncpu: no CPU 7 \(this machine has no CPUs\)\n\(QEMU\) $/);
  pty.write("\x04");
  assert.deepEqual(await pty.done, { code: 0, signal: null });
  assert.equal(lastRow(pty.screen.text()), "Disconnected");
  assertGone(pid);
});

void test("SIGHUP (the terminal went away) ends the shell quietly and stops QEMU", T, async (t) => {
  const pty = await startShell(t, ["--qemu", throwawayBinary(t)]);
  const { pid } = bannerOf(pty);
  await type(pty, "query-st");
  pty.child.kill("SIGHUP");
  const end = await pty.done;
  assert.ok(endedQuietly(end), `ended with ${JSON.stringify(end)}`);
  const output = printedSince(pty, 0);
  assert.doesNotMatch(output, /Error|^ {4}at /m);
  assertGone(pid);
});

void test("the terminal closes at the prompt: the shell ends, QEMU is stopped", T, async (t) => {
  const pty = await startShell(t, ["--qemu", throwawayBinary(t)]);
  const { pid } = bannerOf(pty);
  pty.hangUp();
  const end = await pty.done;
  assert.ok(endedQuietly(end), `ended with ${JSON.stringify(end)}`);
  assertGone(pid);
});

void test("the terminal closes on a half-typed line: it is not run, no crash", T, async (t) => {
  const { qemu, control } = await startQemuWithControl(t);
  const client = testClient(t);
  await client.connect(control);
  const pty = await startShell(t, [qemu.socketPath]);
  await type(pty, "stop");
  pty.hangUp();
  const end = await pty.done;
  const status = asObject(await client.execute("query-status"), "query-status")["status"];
  // Neither the line sent to QEMU (it never got its Enter) nor a crash (SIGSEGV, SIGABRT).
  assert.deepEqual(
    { status, end: endedQuietly(end) ? "quiet" : end },
    { status: "running", end: "quiet" },
  );
});

void test("quit: the reply, then Disconnected, exit 0", T, async (t) => {
  const qemu = await startQemu(t);
  const pty = await startShell(t, [qemu.socketPath]);
  const at = mark(pty);
  pty.write("quit\r");
  assert.deepEqual(await pty.done, { code: 0, signal: null });
  const printed = printedSince(pty, at);
  // QEMU's SHUTDOWN event may come before the reply or after it.
  assert.match(printed, /^quit\n(?:\{"timestamp".*"event": "SHUTDOWN".*\n)?\{"return": \{\}\}\n/);
  assert.match(printed, /\n\{"return": \{\}\}\n(?:\{"timestamp".*\n)?Disconnected\n$/);
  assert.doesNotMatch(printed, /Error/);
  assert.equal(lastRow(pty.screen.text()), "Disconnected");
  assert.deepEqual(await qemu.exited, { code: 0, signal: null });
});

void test("QEMU killed under the shell: Disconnected, exit 0", T, async (t) => {
  const qemu = await startQemu(t);
  const pty = await startShell(t, [qemu.socketPath]);
  // Idle: not even the shell's own requests for completion data in flight (QEMU killed with
  // unread requests makes the shell read ECONNRESET: "Disconnected: read ECONNRESET", exit 1).
  await untilCompletionLoaded(pty);
  await qemu.kill();
  const end = await pty.done;
  assert.deepEqual(
    { end, last: lastRow(pty.screen.text()) },
    { end: { code: 0, signal: null }, last: "Disconnected" },
  );
  assert.doesNotMatch(printedSince(pty, 0), /Error|^ {4}at /m);
});

void test("--ga: the shell on a real qemu-ga, completion from guest-info", T, async (t) => {
  const qga = await startQga(t);
  const pty = await startShell(t, ["--ga", qga.socketPath]);
  const text = pty.screen.text();
  assert.match(text, /^Welcome to the guest agent shell of qmp \S+!$/m);
  assert.match(text, new RegExp(`^Connected to the guest agent at ${qga.socketPath}\\.$`, "m"));
  // The reply to a command comes after guest-info, which completion asks for first.
  await enter(pty, "guest-ping", EMPTY_RETURN);
  await type(pty, "guest-get-os");
  await tab(pty, "(QEMU) guest-get-osinfo", "(QEMU) guest-get-osinfo ".length);
  await enter(pty, "", /"kernel-release"/);
  const err = await enter(pty, "guest-get-users", /^CommandNotFound: /m);
  assert.match(err, /has been disabled/);
  pty.write("\x04");
  assert.deepEqual(await pty.done, { code: 0, signal: null });
  assert.ok(qga.alive(), qga.log());
});

void test("QOM: Tab completes paths and property names; qom-tree prints the tree", T, async (t) => {
  const qemu = await startQemu(t);
  const pty = await startShell(t, ["--history", "", qemu.socketPath]);
  await untilCompletionLoaded(pty);
  await type(pty, "qom-list path=/mach");
  await tab(pty, "(QEMU) qom-list path=/machine");
  await type(pty, "/periph", "(QEMU) qom-list path=/machine/periph");
  // peripheral and peripheral-anon: their common part.
  await tab(pty, "(QEMU) qom-list path=/machine/peripheral");
  await enter(pty, "", /"name": "type"/);
  await type(pty, "qom-get path=/machine property=typ");
  await tab(
    pty,
    "(QEMU) qom-get path=/machine property=type",
    "(QEMU) qom-get path=/machine property=type ".length,
  );
  await enter(pty, "", /^\{"return": "none-machine"\}$/m);
  await type(pty, "qom-tr");
  await tab(pty, "(QEMU) qom-tree", "(QEMU) qom-tree ".length);
  await type(pty, "/mach", "(QEMU) qom-tree /mach");
  await tab(pty, "(QEMU) qom-tree /machine");
  const tree = await enter(pty, "", /^\/machine\/unattached \(container\)$/m);
  assert.match(tree, /^\/machine \(none-machine\)$/m);
});
