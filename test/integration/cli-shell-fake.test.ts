// `qmp shell` and `qmp wrap` without QEMU: a guest agent (-N), a peer that breaks the protocol,
// TCP, a reset, a terminal that goes away, stand-in QEMUs that fail or ignore SIGTERM.

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { QMPClient, Runstate } from "../../src/index.js";
import { launchQemu } from "../../src/cli/launch.js";
import { runShell } from "../../src/cli/shell.js";
import { FakeQMPServer } from "../../src/testing/index.js";
import { listenGuestAgent, qmp } from "../helpers/cli.js";
import { tempDir } from "../helpers/qemu.js";

const T = { timeout: 20_000 };

void test(
  "shell -N on a guest agent: nothing before the first command, replies printed",
  T,
  async (t) => {
    await using server = await listenGuestAgent();
    const r = await qmp(t, ["shell", "-N", server.address as string], {
      stdin: "guest-ping\nguest-sync id=7\n",
    });
    assert.deepEqual(r, {
      code: 1,
      signal: null,
      stdout: '{"return": {}}\n',
      stderr: "line 2: CommandNotFound: The command guest-sync has not been found\n",
    });
    const peer = await server.peer();
    // Exactly what was typed: no qmp_capabilities, and no queries for Tab
    // completion, which a pipe does not have.
    assert.deepEqual(peer.received, [
      { execute: "guest-ping", id: 1 },
      { execute: "guest-sync", arguments: { id: 7 }, id: 2 },
    ]);
  },
);

void test(
  "shell: a peer that sends garbage — 'Disconnected: why', exit 1, no stack trace",
  T,
  async (t) => {
    await using server = await FakeQMPServer.listen({
      handlers: {
        garble: (_args, _msg, peer) => {
          peer.write("this is not JSON\r\n");
          return undefined;
        },
      },
    });
    const r = await qmp(t, ["shell", server.address as string], {
      stdin: "query-nothing\ngarble\nquery-nothing\n",
    });
    assert.equal(r.stdout, "");
    assert.equal(r.code, 1);
    const lines = r.stderr.split("\n");
    assert.deepEqual(lines.slice(0, 2), [
      "line 1: CommandNotFound: The command query-nothing has not been found",
      "line 2: (no reply: the connection closed first)",
    ]);
    assert.match(lines[2]!, /^Disconnected: Received invalid JSON: .+$/);
    // Said once: not also as a log line; and nothing after it.
    assert.equal(lines.filter((l) => l.includes("invalid JSON")).length, 1, r.stderr);
    assert.deepEqual(lines.slice(3), [""]);
  },
);

void test("shell over TCP on loopback (HOST:PORT)", T, async (t) => {
  await using server = await FakeQMPServer.listen(
    { handlers: { "query-name": () => ({ return: { name: "vm1" } }) } },
    { host: "127.0.0.1", port: 0 },
  );
  const { port } = server.address as { port: number };
  const r = await qmp(t, ["shell", `127.0.0.1:${port}`], { stdin: "query-name\n" });
  assert.deepEqual(r, {
    code: 0,
    signal: null,
    stdout: '{"return": {"name": "vm1"}}\n',
    stderr: "",
  });
});

void test(
  "shell: a connection reset by the peer (QEMU killed) is an ordinary end: exit 0",
  T,
  async (t) => {
    await using server = await FakeQMPServer.listen(
      {
        handlers: {
          die: (_args, _msg, peer) => {
            peer.reset();
            return undefined;
          },
        },
      },
      { host: "127.0.0.1", port: 0 },
    );
    const { port } = server.address as { port: number };
    const r = await qmp(t, ["shell", `127.0.0.1:${port}`], { stdin: "die\n" });
    assert.deepEqual(r, {
      code: 1,
      signal: null,
      stdout: "",
      // The line failed (no reply), but the session did not break: no "Disconnected: why".
      stderr: "line 1: (no reply: the connection closed first)\n",
    });
  },
);

void test(
  "shell on a terminal whose input ends (it went away): the half-typed line is not run",
  T,
  async () => {
    await using server = await FakeQMPServer.listen({ handlers: { stop: () => ({ return: {} }) } });
    // A terminal as the shell sees one: TTY streams; raw mode is a no-op here.
    const stdin = Object.assign(new PassThrough(), { isTTY: true, setRawMode: () => stdin });
    const stdout = Object.assign(new PassThrough(), { isTTY: true, columns: 100, rows: 30 });
    let shown = "";
    stdout.on("data", (chunk: Buffer) => (shown += chunk.toString()));
    const stderr = new PassThrough();
    const run = runShell(["--history", "", server.address as string], {
      stdin,
      stdout,
      stderr,
      env: {},
    });
    const peer = await server.peer();
    await peer.nextMessage(); // qmp_capabilities: the session is up
    stdin.write("stop");
    stdin.end();
    assert.equal(await run, 0);
    assert.ok(!peer.received.some((m) => m["execute"] === "stop"), JSON.stringify(peer.received));
    // Nothing is said to a terminal that is gone.
    assert.ok(!shown.includes("Disconnected"), shown);
  },
);

void test(
  "wrap: a QEMU that exits before connecting — its last 20 lines of output",
  T,
  async (t) => {
    const script = "for i in $(seq 30); do echo line$i >&2; done; exit 3";
    const r = await qmp(t, ["wrap", "--", "sh", "-c", script], { stdin: "" });
    const tail = Array.from({ length: 20 }, (_, i) => `line${i + 11}`).join("\n");
    assert.deepEqual(r, {
      code: 2,
      signal: null,
      stdout: "",
      stderr: `qmp wrap: sh exited with code 3 before it connected:\n${tail}\n`,
    });
  },
);

void test(
  "launchQemu: a QEMU that ignores SIGTERM gets SIGKILL when the shell stops it",
  { timeout: 30_000 },
  async (t) => {
    // A stand-in QEMU: connects to the socket of its -chardev, speaks QMP, ignores SIGTERM.
    const dir = tempDir(t);
    const fake = join(dir, "fake-qemu.mjs");
    const testing = new URL("../../src/testing/index.js", import.meta.url).href;
    writeFileSync(
      fake,
      `import { FakeQMPServer } from ${JSON.stringify(testing)};\n` +
        `process.on("SIGTERM", () => {});\n` +
        `const spec = process.argv.find((a) => a.startsWith("socket,"));\n` +
        `const path = /path=([^,]+)/.exec(spec)[1];\n` +
        `await FakeQMPServer.connectTo(path);\n` +
        `setInterval(() => {}, 1000);\n`,
    );
    const client = new QMPClient();
    t.after(() => client.destroy());
    const qemu = await launchQemu(client, [process.execPath, fake]);
    assert.equal(client.runstate, Runstate.RUNNING);
    await client.disconnect();
    await qemu.stop();
    assert.equal(qemu.child.signalCode, "SIGKILL");
  },
);
