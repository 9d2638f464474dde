// Real QEMU: `qmp tui` driven in a pseudo-terminal and read through a headless xterm — the
// status bar, commands in both syntaxes, events, invalid JSON, scrolling, folding, completion,
// reconnecting after QEMU is killed and restarted, and the terminal given back on the way out.

import assert from "node:assert/strict";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { QMP_BIN, ROOT, withoutSocket } from "../helpers/cli.js";
import { type PtyProcess, spawnInPty } from "../helpers/pty.js";
import {
  qemuVersionInfo,
  startQemu,
  tempDir,
  withHomeDir,
  throwawayBinary,
  qmpArgs,
} from "../helpers/qemu.js";

const T = { timeout: 60_000 };

/** ESC: a lone one is the Esc key; "\x1b\r" is Alt+Enter. */
const ESC = "\x1b";

/** The status bar: the row that starts with "[". */
function statusBar(pty: PtyProcess): string {
  return (
    pty.screen
      .lines()
      .find((row) => /^\[(Connected|Connecting|Retry|Disconnected|Error|Starting)/.test(row)) ?? ""
  );
}

/** The history pane's rows: those above the status bar. */
function paneText(pty: PtyProcess): string {
  const lines = pty.screen.lines();
  const bar = lines.findIndex((row) =>
    /^\[(Connected|Connecting|Retry|Disconnected|Error|Starting)/.test(row),
  );
  return lines.slice(0, bar === -1 ? lines.length : bar).join("\n");
}

/** Resolves once the status bar matches `pattern`. */
function waitForStatus(pty: PtyProcess, pattern: RegExp, timeout = 20_000): Promise<void> {
  return pty.waitFor(() => pattern.test(statusBar(pty)), {
    what: `the status bar to match ${String(pattern)}`,
    timeout,
  });
}

/** Resolves once the pane matches `pattern`. */
function waitForPane(pty: PtyProcess, pattern: RegExp, timeout = 10_000): Promise<void> {
  return pty.waitFor(() => pattern.test(paneText(pty)), {
    what: `the history to match ${String(pattern)}`,
    timeout,
  });
}

/** `qmp tui ...args` in a pty with a temp HOME (its own history file), once connected. */
async function startTui(
  t: TestContext,
  args: string[],
  size: { cols?: number; rows?: number } = {},
  connected: RegExp | undefined = /^\[Connected /,
): Promise<PtyProcess> {
  const pty = await withHomeDir(t, (home) =>
    spawnInPty(t, process.execPath, [QMP_BIN, "tui", ...args], {
      env: withoutSocket({ HOME: home, TMPDIR: home }),
      cwd: ROOT,
      cols: size.cols ?? 160,
      rows: size.rows ?? 40,
    }),
  );
  if (connected !== undefined) await waitForStatus(pty, connected);
  return pty;
}

/** Leave with `keys`; the exit status must be 0 and the terminal as it was. */
async function leave(pty: PtyProcess, keys: string): Promise<void> {
  pty.write(keys);
  assert.deepEqual(await pty.done, { code: 0, signal: null });
  await pty.screen.flushed();
  const { screen } = pty;
  assert.equal(screen.alternate, false, "still on the alternate screen");
  assert.equal(screen.cursorHidden, false, "the cursor is still hidden");
  assert.equal(screen.terminal.modes.mouseTrackingMode, "none", "mouse tracking left on");
  assert.equal(screen.terminal.modes.bracketedPasteMode, false, "bracketed paste left on");
}

void test(
  "a throwaway QEMU: status bar, greeting, a command, Esc leaves and restores",
  T,
  async (t) => {
    const pty = await startTui(t, ["--qemu", throwawayBinary(t)]);
    const { major, minor, micro } = await qemuVersionInfo();
    assert.equal(
      statusBar(pty).split("  ")[0],
      `[Connected QEMU ${major}.${minor}.${micro} at a throwaway QEMU]`,
    );
    assert.equal(pty.screen.alternate, true);
    await waitForPane(pty, /← \{\s*"QMP": \{/);
    pty.write("query-status\r");
    await waitForPane(pty, /→ \{"execute": "query-status", "id": "tui-1"\}/);
    await waitForPane(pty, /← \{"return": \{.*"status": "running".*\}, "id": "tui-1"\}/);
    await leave(pty, ESC);
  },
);

void test(
  "raw JSON gets an id; invalid JSON and a non-object are shown as errors, not sent",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const pty = await startTui(t, ["--history", "", qemu.socketPath]);
    assert.match(
      statusBar(pty),
      new RegExp(`^\\[Connected QEMU \\d+\\.\\d+\\.\\d+ at ${qemu.socketPath}\\]`),
    );
    // Alt+Enter sends as typed.
    pty.write(`{"execute": "query-name"}${ESC}\r`);
    await waitForPane(pty, /→ \{"execute": "query-name", "id": "tui-1"\}/);
    await waitForPane(pty, /← \{"return": \{\}, "id": "tui-1"\}/);
    // A JSON object whose braces are not closed: Enter is a new line; Alt+Enter sends it, and it fails.
    pty.write(`{"execute":\r`);
    await pty.waitFor(() => pty.screen.lines().some((r) => r === '› {"execute":'), {
      what: "the first input line",
    });
    pty.write(`${ESC}\r`);
    await waitForPane(pty, /! Invalid JSON, not sent: /);
    // What failed stays in the input to be fixed; Ctrl+U, Up and Ctrl+K clear it line by line.
    pty.write("\x05\x15\x1b[A\x05\x15");
    pty.write(`[1, 2]${ESC}\r`);
    await waitForPane(pty, /! Not sent: a QMP message is a JSON object/);
    assert.doesNotMatch(paneText(pty), /→ \[1/);
    assert.equal(paneText(pty).match(/→ /g)?.length, 1, "only the good message was sent");
    await leave(pty, "\x03");
  },
);

void test(
  "the qmp-shell syntax, Tab completion from the schema, multi-line JSON, history",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const pty = await startTui(t, [qemu.socketPath]);
    // Completion needs the schema, fetched after connecting: Tab until it completes.
    for (let i = 0; i < 50; i++) {
      pty.write("query-versi\t");
      const done = await pty
        .waitFor(() => pty.screen.lines().includes("› query-version"), { timeout: 200 })
        .then(
          () => true,
          () => false,
        );
      if (done) break;
      pty.write("\x15"); // Ctrl+U: start again
    }
    pty.write("\r");
    await waitForPane(pty, /→ \{"execute": "query-version", "id": "tui-1"\}/);
    await waitForPane(pty, /← \{"return": \{"qemu": \{/);
    pty.write("human-monitor-command command-line='info version'\r");
    await waitForPane(
      pty,
      /→ \{"execute": "human-monitor-command", "arguments": \{"command-line": "info version"\}, "id": "tui-2"\}/,
    );
    // JSON over three lines: Enter sends once the braces close.
    pty.write('{\r"execute": "query-status"\r}\r');
    await waitForPane(pty, /→ \{"execute": "query-status", "id": "tui-3"\}/);
    // Up recalls the last input, all three lines of it.
    pty.write("\x1b[A");
    await pty.waitFor(
      () => pty.screen.lines().slice(-3).join("\n") === '› {\n  "execute": "query-status"\n  }',
      {
        what: "the recalled input",
      },
    );
    await leave(pty, "\x03");
  },
);

void test("events: shown with a count, hidden, filtered; search; PgUp scrolls", T, async (t) => {
  const qemu = await startQemu(t);
  const pty = await startTui(t, ["--history", "", qemu.socketPath], { rows: 20 });
  pty.write("stop\r");
  await waitForPane(pty, /← \{"event": "STOP", /);
  pty.write("cont\r");
  await waitForPane(pty, /← \{"event": "RESUME", /);
  await waitForStatus(pty, /STOP 1 · RESUME 1 {2}F1 help$/);
  // The history gets the focus (Shift+Tab): e hides events, e shows them again.
  pty.write("\x1b[Z");
  await waitForStatus(pty, /\[history\]/);
  pty.write("e");
  await waitForStatus(pty, /\[events hidden\]/);
  assert.doesNotMatch(paneText(pty), /"event": "STOP"/);
  pty.write("e");
  await waitForPane(pty, /"event": "STOP"/);
  // f filters events by name.
  pty.write("fres\r");
  await waitForStatus(pty, /\[events: \*res\*\]/);
  assert.doesNotMatch(paneText(pty), /"event": "STOP"/);
  assert.match(paneText(pty), /"event": "RESUME"/);
  pty.write("f\r");
  await waitForPane(pty, /"event": "STOP"/);
  // / searches back from the newest entry and selects the hit.
  pty.write('/"execute": "stop"\r');
  await waitForPane(pty, /^▶\d\d:\d\d:\d\d\.\d{3} → \{"execute": "stop"/m);
  // Enough entries to scroll: PgUp leaves the newest line, End comes back.
  pty.write("\x1b[Z");
  for (let i = 0; i < 12; i++) pty.write("query-status\r");
  await waitForPane(pty, /"id": "tui-14"\}$/m);
  pty.write("\x1b[5~");
  await waitForStatus(pty, /\[scrolled\]/);
  assert.doesNotMatch(paneText(pty), /"id": "tui-14"\}$/m);
  // The wheel scrolls too (SGR mouse: button 65 is down).
  for (let i = 0; i < 10; i++) pty.write("\x1b[<65;10;5M");
  await pty.waitFor(() => !/\[scrolled\]/.test(statusBar(pty)), {
    what: "back at the newest line",
  });
  assert.match(paneText(pty), /"id": "tui-14"\}$/m);
  await leave(pty, ESC);
});

void test("a 200 KB reply is folded to one line; Enter in the history unfolds it", T, async (t) => {
  const qemu = await startQemu(t);
  const pty = await startTui(t, ["--history", "", qemu.socketPath]);
  pty.write("query-qmp-schema\r");
  await waitForPane(
    pty,
    /^ \d\d:\d\d:\d\d\.\d{3} ← \{"return": \[\{.* … \d+\.\d KB, Enter unfolds$/m,
  );
  const folded = paneText(pty)
    .split("\n")
    .filter((r) => r.includes("Enter unfolds"));
  assert.equal(folded.length, 1);
  assert.ok(folded[0]!.length <= 160);
  pty.write("\x1b[Z\r");
  // Unfolded: its first lines at the top, one member a line.
  await pty.waitFor(() => !paneText(pty).includes("Enter unfolds"), { what: "the reply unfolded" });
  assert.match(paneText(pty), /^▶\d\d:\d\d:\d\d\.\d{3} ← \{$/m);
  assert.match(paneText(pty), /^ {18}"return": \[$/m);
  // Still usable: a command after it shows at the bottom.
  pty.write("\x1b[Zquery-status\r");
  await waitForPane(pty, /→ \{"execute": "query-status", "id": "tui-2"\}/);
  await leave(pty, ESC);
});

void test(
  "QEMU killed: [Disconnected], [Retry #1 …], then connected again to a QEMU restarted on the socket",
  T,
  async (t) => {
    const path = join(tempDir(t), "qmp.sock");
    const first = await startQemu(t, { qmpSocket: false, args: qmpArgs(path) });
    const pty = await startTui(t, [
      "--history",
      "",
      "--retry-delay",
      "0.2",
      "--num-retries",
      "1000",
      path,
    ]);
    const seen: string[] = [];
    const watch = (): void => {
      const bar = statusBar(pty).split("  ")[0]!;
      if (seen.at(-1) !== bar) seen.push(bar);
    };
    const timer = setInterval(watch, 5);
    t.after(() => clearInterval(timer));
    await first.kill();
    await waitForStatus(pty, /^\[Retry #1 in 0\.2s\]/);
    await startQemu(t, { qmpSocket: false, args: qmpArgs(path) });
    await waitForStatus(pty, /^\[Connected QEMU /);
    watch();
    const connected = seen.filter((s) => s.startsWith("[Connected"));
    assert.ok(
      seen.includes("[Disconnected]") || seen.some((s) => s.startsWith("[Retry")),
      seen.join("\n"),
    );
    assert.ok(connected.length >= 2, seen.join("\n"));
    await waitForPane(pty, /· Disconnected/);
    pty.write("query-status\r");
    await waitForPane(pty, /← \{"return": \{.*"status": "running"/);
    await leave(pty, ESC);
  },
);

void test("SIGTERM leaves gracefully and restores the terminal", T, async (t) => {
  const qemu = await startQemu(t);
  const pty = await startTui(t, ["--history", "", qemu.socketPath]);
  pty.child.kill("SIGTERM");
  await leave(pty, "");
});

void test("--log-file: the library's log lines go to the file, not the history", T, async (t) => {
  const qemu = await startQemu(t);
  const log = join(tempDir(t), "tui.log");
  const pty = await startTui(t, ["--history", "", "-v", "--log-file", log, qemu.socketPath]);
  pty.write("query-status\r");
  await waitForPane(pty, /← \{"return": /);
  await leave(pty, ESC);
  const { readFileSync, statSync } = await import("node:fs");
  assert.match(readFileSync(log, "utf8"), /DEBUG Transitioning from 'CONNECTING' to 'RUNNING'/);
  assert.equal(statSync(log).mode & 0o777, 0o600);
  assert.doesNotMatch(pty.screen.text(), /Transitioning/);
});

void test(
  "leaving restores cooked mode: stty after qmp tui shows icanon and echo",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const quote = (w: string): string => `'${w.replace(/'/g, `'\\''`)}'`;
    const command = [process.execPath, QMP_BIN, "tui", "--history", "", qemu.socketPath]
      .map(quote)
      .join(" ");
    const pty = await withHomeDir(t, (home) =>
      spawnInPty(
        t,
        "/bin/sh",
        ["-c", `stty -a | grep -o -- '-icanon' ; ${command}; echo "exit $?"; stty -a`],
        {
          env: withoutSocket({ HOME: home, TMPDIR: home }),
          cwd: ROOT,
          cols: 160,
          rows: 40,
        },
      ),
    );
    await waitForStatus(pty, /^\[Connected /);
    pty.write(ESC);
    assert.deepEqual(await pty.done, { code: 0, signal: null });
    const text = pty.screen.text();
    assert.match(text, /^exit 0$/m);
    const after = text.slice(text.indexOf("exit 0"));
    assert.match(after, /(^|[ ;])icanon( |;|$)/m, after);
    assert.match(after, /(^|[ ;])echo( |;|$)/m, after);
    assert.doesNotMatch(after, /-icanon/);
  },
);

void test(
  "a failure inside the console: the terminal is restored, the error shown, exit 1",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const app = new URL("../../src/cli/tui/app.js", import.meta.url).href;
    const main = new URL("../../src/cli/main.js", import.meta.url).href;
    // The bug under test: the app fails on the first key.
    const script = `
    const { App } = await import(${JSON.stringify(app)});
    App.prototype.input = () => { throw new Error("boom in the UI"); };
    const { main } = await import(${JSON.stringify(main)});
    process.exitCode = await main(["tui", "--history", "", ${JSON.stringify(qemu.socketPath)}]);
  `;
    const pty = await withHomeDir(t, (home) =>
      spawnInPty(t, process.execPath, ["--input-type=module", "-e", script], {
        env: withoutSocket({ HOME: home, TMPDIR: home }),
        cwd: ROOT,
        cols: 160,
        rows: 40,
      }),
    );
    await waitForStatus(pty, /^\[Connected /);
    pty.write("x");
    assert.deepEqual(await pty.done, { code: 1, signal: null });
    await pty.screen.flushed();
    assert.equal(pty.screen.alternate, false);
    assert.equal(pty.screen.cursorHidden, false);
    assert.match(pty.screen.text(), /^qmp tui: Error: boom in the UI$/m);
  },
);

void test(
  "the history file: inputs kept (not a secret), recalled with Up next time",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const file = join(tempDir(t), "history");
    let pty = await startTui(t, ["--history", file, qemu.socketPath]);
    pty.write("query-status\r");
    await waitForPane(pty, /"id": "tui-1"\}/);
    pty.write("set_password protocol=vnc password=hunter2\r");
    await waitForPane(pty, /"id": "tui-2"\}/);
    await leave(pty, ESC);
    const { readFileSync, statSync } = await import("node:fs");
    assert.equal(readFileSync(file, "utf8"), "query-status\n");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    pty = await startTui(t, ["--history", file, qemu.socketPath]);
    pty.write("\x1b[A");
    await pty.waitFor(() => pty.screen.lines().includes("› query-status"), {
      what: "the recalled line",
    });
    await leave(pty, ESC);
  },
);
