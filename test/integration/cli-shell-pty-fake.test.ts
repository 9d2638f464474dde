// `qmp shell` in a pseudo-terminal against the fake server: guest-agent completion, Ctrl-C while waiting.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { type FakePeer, FakeQMPServer } from "../../src/testing/index.js";
import { QMP_BIN, ROOT, heldReply, listenGuestAgent, withoutSocket } from "../helpers/cli.js";
import { type PtyProcess, spawnInPty } from "../helpers/pty.js";
import { tempDir, withHomeDir } from "../helpers/qemu.js";

const T = { timeout: 20_000 };

/** A shell in a pty (`qmp shell ...args address`) with HOME in a temp dir (or `home`), at its prompt. */
async function fakeShell(
  t: TestContext,
  address: string,
  options: { home?: string; args?: string[] } = {},
): Promise<PtyProcess> {
  const args = [QMP_BIN, "shell", ...(options.args ?? []), address];
  const spawn = (home: string): Promise<PtyProcess> =>
    spawnInPty(t, process.execPath, args, { env: withoutSocket({ HOME: home }), cwd: ROOT });
  const pty = await (options.home === undefined ? withHomeDir(t, spawn) : spawn(options.home));
  await pty.waitFor(/^\(QEMU\)$/m, { what: "the prompt" });
  return pty;
}

void test("shell -N on a guest agent: Tab completes from guest-info", T, async (t) => {
  await using server = await listenGuestAgent(["guest-exec"]);
  const pty = await fakeShell(t, server.address as string, { args: ["-N"] });
  // The command list comes from guest-info, asked for in the background.
  const peer = await server.peer();
  await waitForCommand(peer, "guest-info");
  pty.write("guest-p");
  await pty.waitFor(/^\(QEMU\) guest-p$/m);
  pty.write("\t");
  await pty.waitFor(/^\(QEMU\) guest-ping$/m, { what: "guest-ping completed" });
  pty.write("\r");
  await pty.waitFor(/^\{"return": \{\}\}\n\(QEMU\)$/m);
  pty.write("\x04");
  await pty.waitFor(/^Disconnected$/m);
  assert.deepEqual(await pty.done, { code: 0, signal: null });
});

void test(
  "shell: Ctrl-C while waiting for a reply gives the prompt back; the late reply is dropped",
  T,
  async (t) => {
    const status = heldReply({ return: { status: "running", running: true } });
    await using server = await FakeQMPServer.listen({
      handlers: {
        "query-status": status.handler,
        "query-name": () => ({ return: { name: "vm1" } }),
      },
    });
    const pty = await fakeShell(t, server.address as string);
    pty.write("query-status\r");
    const peer = await server.peer();
    await waitForCommand(peer, "query-status");
    pty.write("\x03");
    await pty.waitFor(/^\^C \(the reply will be ignored\)\n\(QEMU\)$/m);
    status.release();
    pty.write("query-name\r");
    await pty.waitFor(/^\{"return": \{"name": "vm1"\}\}\n\(QEMU\)$/m);
    assert.ok(!pty.screen.text().includes('"status"'), pty.screen.text());
    pty.write("\x04");
    assert.deepEqual(await pty.done, { code: 0, signal: null });
  },
);

void test(
  "two Tabs in one read (a paste, a slow link) list the candidates like two keypresses",
  T,
  async (t) => {
    const names = ["query-name", "query-status", "query-uuid"];
    await using server = await FakeQMPServer.listen({
      handlers: { "query-commands": () => ({ return: names.map((name) => ({ name })) }) },
    });
    const pty = await fakeShell(t, server.address as string);
    pty.write("query-\t\t");
    await pty.waitFor(/^query-name +query-status +query-uuid *\n+\(QEMU\) query-$/m, {
      what: "the candidates, then the prompt with the line as typed",
    });
    assert.ok(!pty.output().includes("query-\t"), "a literal tab was inserted");
    // Ctrl-D leaves on an empty line only: Ctrl-U empties it first.
    pty.write("\x15");
    await pty.waitFor(/^\(QEMU\)$/m);
    pty.write("\x04");
    assert.deepEqual(await pty.done, { code: 0, signal: null });
  },
);

/** Resolves once the peer has received `command`. */
async function waitForCommand(peer: FakePeer, command: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if (peer.received.some((m) => m["execute"] === command)) return;
    const message = await peer.nextMessage();
    if (message["execute"] === command) return;
  }
  throw new Error(`${command} never came`);
}

void test(
  "keys typed while a command runs: kept, shown after the reply, cursor at their end",
  T,
  async (t) => {
    const status = heldReply({ return: { status: "paused", running: false } });
    await using server = await FakeQMPServer.listen({
      handlers: {
        "query-status": status.handler,
      },
    });
    const pty = await fakeShell(t, server.address as string);
    pty.write("query-status\r");
    await waitForCommand(await server.peer(), "query-status");
    pty.write("query-na");
    await pty.waitFor(/^query-na$/m, { what: "the keys typed ahead, echoed" });
    status.release();
    await pty.waitFor(
      /^\{"return": \{"status": "paused", "running": false\}\}\n\(QEMU\) query-na$/m,
    );
    // The cursor is at the end of what was typed: more typing goes after it.
    pty.write("me\r");
    await pty.waitFor(
      /^\(QEMU\) query-name\nCommandNotFound: The command query-name has not been found\n\(QEMU\)$/m,
    );
    const rows = pty.screen.text().split("\n");
    assert.ok(!rows.some((r) => /^query-na$/.test(r)), pty.screen.text());
  },
);

void test("Ctrl-C while a command runs drops the keys typed ahead too", T, async (t) => {
  await using server = await FakeQMPServer.listen({
    handlers: { "query-status": () => new Promise(() => {}) },
  });
  const pty = await fakeShell(t, server.address as string);
  pty.write("query-status\r");
  const peer = await server.peer();
  await waitForCommand(peer, "query-status");
  pty.write("abc");
  await pty.waitFor(/^abc$/m);
  pty.write("\x03");
  await pty.waitFor(/^\^C \(the reply will be ignored\)\n\(QEMU\)$/m);
  assert.equal(pty.screen.cursor.col, "(QEMU) ".length);
  pty.write("\r");
  pty.write("\x04");
  assert.deepEqual(await pty.done, { code: 0, signal: null });
  // Of what was typed, only query-status reached the server: not "abc", not an empty line.
  const typed = peer.received
    .map((m) => m["execute"])
    .filter((c) => c !== "query-commands" && c !== "query-qmp-schema");
  assert.deepEqual(typed, ["qmp_capabilities", "query-status"]);
});

void test("pasted lines: each reply on its own row, none on a prompt row", T, async (t) => {
  await using server = await FakeQMPServer.listen({
    handlers: {
      "query-name": () => ({ return: { name: "vm1" } }),
      "query-uuid": () => ({ return: { UUID: "u" } }),
    },
  });
  const pty = await fakeShell(t, server.address as string);
  pty.write("query-name\rquery-uuid\r");
  await pty.waitFor(/\{"return": \{"UUID": "u"\}\}\n\(QEMU\)$/);
  const rows = pty.screen.text().split("\n");
  assert.ok(rows.includes('{"return": {"name": "vm1"}}'), pty.screen.text());
  assert.ok(!rows.some((r) => r.startsWith("(QEMU) {")), pty.screen.text());
});

void test("two shells at once: the history file keeps the lines of both", T, async (t) => {
  await using server = await FakeQMPServer.listen({
    handlers: { "query-name": () => ({ return: {} }), "query-uuid": () => ({ return: {} }) },
  });
  await using other = await FakeQMPServer.listen({
    handlers: { "query-version": () => ({ return: {} }) },
  });
  const home = tempDir(t);
  const a = await fakeShell(t, server.address as string, { home });
  const b = await fakeShell(t, other.address as string, { home });
  a.write("query-name\r");
  await a.waitFor(/^\{"return": \{\}\}\n\(QEMU\)$/m);
  b.write("query-version\r");
  await b.waitFor(/^\{"return": \{\}\}\n\(QEMU\)$/m);
  a.write("query-uuid\r");
  await a.waitFor(/^\(QEMU\) query-uuid\n\{"return": \{\}\}\n\(QEMU\)$/m);
  a.write("\x04");
  await a.done;
  b.write("\x04");
  await b.done;
  const lines = readFileSync(join(home, ".qmp_history"), "utf8").split("\n");
  assert.deepEqual(lines, ["query-name", "query-version", "query-uuid", ""]);
});
