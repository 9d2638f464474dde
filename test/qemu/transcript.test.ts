// Real QEMU and qemu-ga: transcripts recorded against them (`qmp exec --record`, the `record`
// option of QMPClient and QGAClient) replay with ReplayServer to the same results.

import assert from "node:assert/strict";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import {
  ExecuteError,
  QGAClient,
  type QMPClient,
  type TranscriptEntry,
  readTranscript,
} from "../../src/index.js";
import { FakeQMPServer, ReplayServer } from "../../src/testing/index.js";
import { qmp } from "../helpers/cli.js";
import { startQga } from "../helpers/qga.js";
import { startQemu, tempDir, testClient } from "../helpers/qemu.js";

const T = { timeout: 30_000 };
const SOON = { timeout: 5000 };

void test(
  "qmp exec --record against QEMU: the transcript replays to the same stdout",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const file = join(tempDir(t), "exec.jsonl");
    const live = await qmp(t, ["exec", "--record", file, qemu.socketPath, "query-status"]);
    assert.equal(live.code, 0, live.stderr);
    const entries = await readTranscript(file);
    assert.ok(entries[0]?.msg !== undefined && "QMP" in entries[0].msg, JSON.stringify(entries[0]));
    assert.deepEqual(
      entries.map((e) => e.dir),
      ["in", "out", "in", "out", "in"],
    );

    await using server = await ReplayServer.listen(file);
    const replayed = await qmp(t, ["exec", server.address as string, "query-status"]);
    assert.deepEqual(replayed, live);
    await server.done(SOON);
  },
);

/** Client code run live and replayed: what it gets back. */
async function scenario(client: QMPClient): Promise<unknown[]> {
  const results: unknown[] = [];
  results.push(await client.execute("query-status"));
  const stopped = client.waitEvent("STOP");
  results.push(await client.execute("stop"));
  results.push((await stopped).event);
  results.push(await client.execute("query-status"));
  const resumed = client.waitEvent("RESUME");
  await client.execute("cont");
  results.push((await resumed).event);
  results.push(await client.execute("qom-get", { path: "/machine", property: "type" }));
  results.push(await client.execute("human-monitor-command", { "command-line": "info status" }));
  // The schema: a reply of some hundred KiB.
  results.push(await client.hasCommand("query-status"));
  try {
    await client.execute("no-such-command");
  } catch (err) {
    results.push(err instanceof ExecuteError ? [err.errorClass, err.desc] : String(err));
  }
  return results;
}

/**
 * A client whose ids do not start at 1 (it ran commands on a fake server
 * first), recording into `seen` from its next session on.
 */
async function usedClient(t: TestContext, seen: TranscriptEntry[]): Promise<QMPClient> {
  let recording = false;
  const client = testClient(t, { timeout: 10_000, record: (e) => recording && seen.push(e) });
  await using fake = await FakeQMPServer.listen();
  await client.connect(fake.address);
  await client.execute("query-status");
  await client.execute("query-status");
  await client.disconnect();
  recording = true;
  return client;
}

/** The ids the client sent. */
function sentIds(entries: readonly TranscriptEntry[]): unknown[] {
  return entries.filter((e) => e.dir === "out").map((e) => e.msg?.["id"]);
}

void test("a QMPClient session recorded against QEMU replays, with other ids", T, async (t) => {
  const qemu = await startQemu(t);
  const file = join(tempDir(t), "session.jsonl");
  const client = testClient(t, { timeout: 10_000, record: file });
  await client.connect(qemu.socketPath);
  const results = await scenario(client);
  await client.disconnect();
  const entries = await readTranscript(file);
  assert.ok(
    entries.some((e) => e.dir === "in" && e.msg?.["event"] === "STOP"),
    "the STOP event is recorded",
  );

  await using server = await ReplayServer.listen(file);
  const seen: TranscriptEntry[] = [];
  const other = await usedClient(t, seen);
  await other.connect(server.address);
  assert.deepEqual(await scenario(other), results);
  await server.done(SOON);
  await other.disconnect();
  assert.deepEqual(server.mismatches, []);
  const recordedIds = sentIds(entries);
  assert.deepEqual(recordedIds.slice(0, 2), [1, 2]);
  assert.deepEqual(
    sentIds(seen),
    recordedIds.map((id) => (id as number) + 3),
  );
});

void test("a QGAClient session recorded against qemu-ga replays", T, async (t) => {
  const qga = await startQga(t);
  const entries: TranscriptEntry[] = [];
  const ga = new QGAClient({ timeout: 10_000, record: (e) => entries.push(e) });
  t.after(() => ga.destroy());
  const run = async (client: QGAClient, address: string): Promise<unknown[]> => {
    await client.connect(address);
    const results: unknown[] = [];
    await client.ping();
    results.push((await client.info())["version"]);
    results.push(await client.osInfo());
    results.push(await client.hasCommand("guest-ping"));
    await client.disconnect();
    return results;
  };
  const results = await run(ga, qga.socketPath);
  // The 0xFF is not recorded, nor what qemu-ga answers to it: the client skips that unread.
  assert.equal(entries[0]?.msg?.["execute"], "guest-sync-delimited");
  assert.ok(
    !entries.some((e) => e.msg !== undefined && "error" in e.msg),
    JSON.stringify(entries.slice(0, 3)),
  );

  await using server = await ReplayServer.listen(entries, { guestAgent: true });
  const again = new QGAClient({ timeout: 10_000 });
  t.after(() => again.destroy());
  assert.deepEqual(await run(again, server.address as string), results);
  await server.done(SOON);
});
