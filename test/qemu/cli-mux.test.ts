// Real QEMU: the `qmp mux` command — per-socket policies from the command line, the shell and
// exec through it, quit (exit 0), QEMU killed (exit 1), --reconnect to a QEMU restarted on the
// same socket, --launch and SIGTERM.

import assert from "node:assert/strict";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { parseMuxArgs } from "../../src/cli/mux.js";
import { type CliRun, QMP_BIN, ROOT, qmp, runQmp, withoutSocket } from "../helpers/cli.js";
import { spawnInPty } from "../helpers/pty.js";
import { LineClient } from "../helpers/line-client.js";
import {
  QEMU_BASE_ARGS,
  qemuBinary,
  qemuDataArgs,
  qmpArgs,
  startQemu,
  tempDir,
  withHomeDir,
} from "../helpers/qemu.js";

const T = { timeout: 60_000 };

/** `qmp mux -v ...args`, once it listens on every socket it was given. */
async function startMux(t: TestContext, args: string[], sockets: number): Promise<CliRun> {
  const run = runQmp(t, ["mux", "-v", ...args]);
  await run.waitStderr(new RegExp(`(?:listening on .*\\n[^]*){${sockets}}`));
  return run;
}

void test("policies apply to the --listen before them, or before any to all", () => {
  const parsed = parseMuxArgs(
    [
      "--deny",
      "quit",
      "up.sock",
      "-l",
      "a.sock",
      "--read-only",
      "-l",
      "b.sock",
      "--allow",
      "query-*",
      "--mode",
      "660",
    ],
    {},
  );
  assert.ok(parsed !== "help");
  assert.deepEqual(
    parsed.listens.map((l) => [l.text, l.options]),
    [
      ["a.sock", { deny: "quit", readOnly: true }],
      ["b.sock", { deny: "quit", allow: "query-*", mode: 0o660 }],
    ],
  );
  assert.throws(() => parseMuxArgs(["up.sock"], {}), /no --listen address given/);
  assert.throws(
    () => parseMuxArgs(["-l", "a", "--launch"], {}),
    /--launch needs the QEMU command after --/,
  );
  assert.throws(
    () => parseMuxArgs(["-l", "a", "--mode", "9"], {}),
    /--mode needs an octal file mode/,
  );
  assert.throws(
    () => parseMuxArgs(["u", "-l", "a", "--slow-client", "x"], {}),
    /drop or disconnect/,
  );
});

void test(
  "qmp mux: a read-only socket and a full one; shell and exec through it; quit exits 0",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const dir = tempDir(t);
    const [full, ro] = [join(dir, "full.sock"), join(dir, "ro.sock")];
    const mux = await startMux(t, [qemu.socketPath, "-l", full, "-l", ro, "--read-only"], 2);
    const refused = await qmp(t, ["exec", ro, "stop"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /The command stop is not allowed on this socket/);
    const shell = await qmp(t, ["shell", "--history", "", full], { stdin: "query-status\nstop\n" });
    assert.equal(shell.code, 0, shell.stderr);
    assert.match(shell.stdout, /"status": "running"/);
    const status = await qmp(t, ["exec", ro, "query-status"]);
    assert.match(status.stdout, /"status":"paused"/);
    const watcher = await LineClient.negotiated(t, ro);
    assert.equal((await qmp(t, ["exec", full, "quit"])).code, 0);
    await watcher.next((m) => m["event"] === "SHUTDOWN");
    await watcher.closed;
    const r = await mux.done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /QEMU quit/);
  },
);

void test("qmp mux: QEMU killed without --reconnect: clients see the end, exit 1", T, async (t) => {
  const qemu = await startQemu(t);
  const path = join(tempDir(t), "mux.sock");
  const mux = await startMux(t, [qemu.socketPath, "-l", path], 1);
  const client = await LineClient.negotiated(t, path);
  await qemu.kill();
  await client.closed;
  const r = await mux.done;
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /the connection to QEMU ended/);
});

void test(
  "qmp mux --reconnect: QEMU killed and restarted on its socket; clients served again",
  T,
  async (t) => {
    const upstream = join(tempDir(t), "qemu.sock");
    const first = await startQemu(t, { qmpSocket: false, args: qmpArgs(upstream) });
    const path = join(tempDir(t), "mux.sock");
    const mux = await startMux(t, ["--reconnect", upstream, "-l", path], 1);
    const before = await LineClient.negotiated(t, path);
    await first.kill();
    await before.closed;
    await mux.waitStderr(/QEMU went away/);
    // Meanwhile a new connection is closed at once, with nothing said.
    const refused = await LineClient.connect(t, path);
    await refused.closed;
    assert.deepEqual(refused.received, []);
    await startQemu(t, { qmpSocket: false, args: qmpArgs(upstream) });
    await mux.waitStderr(/QEMU is back/);
    const after = await qmp(t, ["exec", path, "query-status"]);
    assert.equal(after.code, 0, after.stderr);
    mux.child.kill("SIGTERM");
    assert.equal((await mux.done).code, 0);
  },
);

void test(
  "qmp mux --launch: QEMU started with the mux's monitor; SIGTERM stops both",
  T,
  async (t) => {
    const path = join(tempDir(t), "mux.sock");
    const binary = qemuBinary();
    const mux = await startMux(
      t,
      ["-l", path, "--launch", "--", binary, ...qemuDataArgs(binary), ...QEMU_BASE_ARGS],
      1,
    );
    const status = await qmp(t, ["exec", path, "query-status"]);
    assert.match(status.stdout, /"running":true/);
    mux.child.kill("SIGTERM");
    const r = await mux.done;
    assert.equal(r.code, 0, r.stderr);
    const gone = await qmp(t, ["exec", "--timeout", "1", path, "query-status"]);
    assert.equal(gone.code, 2);
  },
);

void test(
  "qmp mux: a listen address in use, and an upstream nobody listens on: exit 2",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const busy = await qmp(t, ["mux", qemu.socketPath, "-l", qemu.socketPath]);
    assert.equal(busy.code, 2);
    assert.match(busy.stderr, /^qmp mux: cannot (connect to|listen on) /m);
    const nobody = await qmp(t, [
      "mux",
      join(tempDir(t), "none.sock"),
      "-l",
      join(tempDir(t), "m.sock"),
    ]);
    assert.equal(nobody.code, 2);
    assert.match(nobody.stderr, /^qmp mux: cannot connect to .*none\.sock/);
  },
);

void test("qmp tui through a mux address", T, async (t) => {
  const qemu = await startQemu(t);
  const path = join(tempDir(t), "mux.sock");
  await startMux(t, [qemu.socketPath, "-l", path], 1);
  const pty = await withHomeDir(t, (home) =>
    spawnInPty(t, process.execPath, [QMP_BIN, "tui", "--history", "", path], {
      env: withoutSocket({ HOME: home }),
      cwd: ROOT,
      cols: 160,
      rows: 30,
    }),
  );
  await pty.waitFor(/^\[Connected QEMU /m, { what: "connected" });
  pty.write("query-status\r");
  await pty.waitFor(/← \{"return": \{.*"status": "running".*\}, "id": "tui-1"\}/, {
    what: "the reply",
  });
  pty.write("\x03");
  assert.deepEqual(await pty.done, { code: 0, signal: null });
});
