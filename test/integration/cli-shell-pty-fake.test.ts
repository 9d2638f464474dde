// `qmp shell` in a pseudo-terminal against the fake server: guest-agent completion, Ctrl-C while waiting.

import assert from "node:assert/strict";
import { test } from "node:test";
import { type FakePeer, FakeQMPServer } from "../../src/testing/index.js";
import { QMP_BIN, ROOT, withoutSocket } from "../helpers/cli.js";
import { spawnInPty } from "../helpers/pty.js";
import { tempDir } from "../helpers/qemu.js";

const T = { timeout: 20_000 };

void test("shell -N on a guest agent: Tab completes from guest-info", T, async (t) => {
  await using server = await FakeQMPServer.listen({
    greeting: false,
    lineEnding: "\n",
    handlers: {
      "guest-ping": () => ({ return: {} }),
      "guest-info": () => ({
        return: {
          version: "9.2",
          supported_commands: [
            { name: "guest-ping", enabled: true },
            { name: "guest-info", enabled: true },
            { name: "guest-exec", enabled: true },
          ],
        },
      }),
    },
  });
  const env = withoutSocket({ HOME: tempDir(t) });
  const pty = await spawnInPty(
    t,
    process.execPath,
    [QMP_BIN, "shell", "-N", server.address as string],
    {
      env,
      cwd: ROOT,
    },
  );
  await pty.waitFor(/^\(QEMU\)$/m, { what: "the prompt" });
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
    let release: (() => void) | undefined;
    await using server = await FakeQMPServer.listen({
      handlers: {
        // Answers only when the test says so, like a stopped QEMU.
        "query-status": () =>
          new Promise((resolve) => {
            release = () => resolve({ return: { status: "running", running: true } });
          }),
        "query-name": () => ({ return: { name: "vm1" } }),
      },
    });
    const env = withoutSocket({ HOME: tempDir(t) });
    const pty = await spawnInPty(
      t,
      process.execPath,
      [QMP_BIN, "shell", server.address as string],
      {
        env,
        cwd: ROOT,
      },
    );
    await pty.waitFor(/^\(QEMU\)$/m, { what: "the prompt" });
    pty.write("query-status\r");
    const peer = await server.peer();
    await waitForCommand(peer, "query-status");
    pty.write("\x03");
    await pty.waitFor(/^\^C \(the reply will be ignored\)\n\(QEMU\)$/m);
    release!();
    pty.write("query-name\r");
    await pty.waitFor(/^\{"return": \{"name": "vm1"\}\}\n\(QEMU\)$/m);
    assert.ok(!pty.screen.text().includes('"status"'), pty.screen.text());
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
