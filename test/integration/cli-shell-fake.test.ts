// `qmp shell` against the fake server: a guest agent (-N), a peer that breaks the protocol, TCP.

import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeQMPServer } from "../../src/testing/index.js";
import { qmp } from "../helpers/cli.js";

const T = { timeout: 20_000 };

void test(
  "shell -N on a guest agent: nothing before the first command, replies printed",
  T,
  async (t) => {
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
            ],
          },
        }),
      },
    });
    const r = await qmp(t, ["shell", "-N", server.address as string], {
      stdin: "guest-ping\nguest-sync id=7\n",
    });
    assert.deepEqual(r, {
      code: 1,
      signal: null,
      stdout: '{"return": {}}\n',
      stderr: "line 2: CommandNotFound: The command guest-sync has not been found\nDisconnected\n",
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
    stderr: "Disconnected\n",
  });
});
