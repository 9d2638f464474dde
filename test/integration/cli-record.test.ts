// `qmp shell --record` and `qmp exec --record` (also with --ga) against the fake server: the
// transcript they write replays with ReplayServer to the same output; bad --record values.

import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { type JsonValue, readTranscript } from "../../src/index.js";
import { FakeQMPServer, ReplayServer } from "../../src/testing/index.js";
import { qmp } from "../helpers/cli.js";
import { tempDir } from "../helpers/qemu.js";

const T = { timeout: 20_000 };
const SOON = { timeout: 5000 };

void test("shell --record: the transcript replays to the same output", T, async (t) => {
  const file = join(tempDir(t), "shell.jsonl");
  await using server = await FakeQMPServer.listen({
    handlers: {
      stop: (_args, _message, peer) => {
        peer.sendEvent("STOP");
        return { return: {} };
      },
      set_password: () => ({ return: {} }),
    },
  });
  const input = "query-status\nstop\nset_password protocol=vnc password=hunter2\nno-such-command\n";
  const live = await qmp(t, ["shell", "--record", file, server.address as string], {
    stdin: input,
  });
  assert.equal(live.code, 1, live.stderr);
  assert.match(live.stdout, /"event": "STOP"/);
  assert.equal(
    live.stderr,
    "line 4: CommandNotFound: The command no-such-command has not been found\n",
  );
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.ok(!readFileSync(file, "utf8").includes("hunter2"));
  const entries = await readTranscript(file);
  assert.deepEqual(
    entries.filter((e) => e.dir === "out").map((e) => e.msg?.["execute"]),
    ["qmp_capabilities", "query-status", "stop", "set_password", "no-such-command"],
  );

  await using replay = await ReplayServer.listen(file);
  const again = await qmp(t, ["shell", replay.address as string], { stdin: input });
  // Events carry their recorded timestamps: the output is the same, byte for byte.
  assert.deepEqual(again, live);
  await replay.done(SOON);
});

void test(
  "exec --record, and exec --ga --record: transcripts that replay to the same output",
  T,
  async (t) => {
    const dir = tempDir(t);
    await using server = await FakeQMPServer.listen();
    const qmpFile = join(dir, "exec.jsonl");
    const live = await qmp(t, [
      "exec",
      "--record",
      qmpFile,
      server.address as string,
      "query-status",
    ]);
    assert.deepEqual(live, {
      code: 0,
      signal: null,
      stdout: '{"status":"running","running":true}\n',
      stderr: "",
    });
    await using replay = await ReplayServer.listen(qmpFile);
    assert.deepEqual(await qmp(t, ["exec", replay.address as string, "query-status"]), live);
    await replay.done(SOON);

    await using agent = await FakeQMPServer.listen({
      guestAgent: true,
      handlers: { "guest-get-osinfo": () => ({ return: { id: "debian" } as JsonValue }) },
    });
    const gaFile = join(dir, "ga.jsonl");
    const gaLive = await qmp(t, [
      "exec",
      "--ga",
      agent.address as string,
      "--record",
      gaFile,
      "guest-get-osinfo",
    ]);
    assert.deepEqual(gaLive, { code: 0, signal: null, stdout: '{"id":"debian"}\n', stderr: "" });
    const gaEntries = await readTranscript(gaFile);
    assert.equal(gaEntries[0]?.msg?.["execute"], "guest-sync-delimited");
    await using gaReplay = await ReplayServer.listen(gaFile, { guestAgent: true });
    assert.deepEqual(
      await qmp(t, ["exec", "--ga", gaReplay.address as string, "guest-get-osinfo"]),
      gaLive,
    );
    await gaReplay.done(SOON);
  },
);

void test("--record FILE that cannot be written: exit 2 before connecting", T, async (t) => {
  const dir = tempDir(t);
  await using server = await FakeQMPServer.listen();
  const exec = await qmp(t, ["exec", "--record", dir, server.address as string, "query-status"]);
  assert.equal(exec.code, 2);
  assert.equal(exec.stdout, "");
  assert.match(exec.stderr, /^qmp exec: cannot write the transcript: .*\n$/);
  const shell = await qmp(
    t,
    ["shell", "--record", join(dir, "no", "such"), server.address as string],
    {
      stdin: "query-status\n",
    },
  );
  assert.equal(shell.code, 2);
  assert.match(shell.stderr, /^qmp shell: cannot write the transcript: .*ENOENT.*\n$/);
  // Neither connected.
  const first = await Promise.race([
    server.peer().then(() => "connected"),
    new Promise<string>((resolve) => setImmediate(() => resolve("none"))),
  ]);
  assert.equal(first, "none");
});
