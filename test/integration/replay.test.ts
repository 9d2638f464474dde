// Replaying transcripts (ReplayServer of qmp/testing): a session recorded against the fake server
// plays back to other clients (other ids, another random sync id of a guest agent), mismatches are
// answered and reported, an unfinished replay is told apart, redacted values match anything.

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import {
  ExecuteError,
  type JsonValue,
  QGAClient,
  type QMPClient,
  type TranscriptEntry,
  TranscriptError,
} from "../../src/index.js";
import { FakeQMPServer, ReplayServer, TranscriptMismatchError } from "../../src/testing/index.js";
import { newClient, rejection, watchUnhandledRejections } from "../helpers/common.js";
import { tempDir } from "../helpers/qemu.js";

const unhandled = watchUnhandledRejections();
const T = { timeout: 15_000 };
/** A bound on a done() that should settle at once. */
const SOON = { timeout: 5000 };

/** A fake QEMU with a few commands more, and an event. */
function fakeQemu(): Promise<FakeQMPServer> {
  return FakeQMPServer.listen({
    handlers: {
      stop: (_args, _message, peer) => {
        peer.sendEvent("STOP");
        return { return: {} };
      },
      "qom-get": (args) => ({ return: `value of ${String(args?.["path"])}` }),
      set_password: () => ({ return: {} }),
      "object-add": () => ({ return: {} }),
    },
  });
}

/** The client code under test: what it gets, to compare a live run with a replay. */
async function scenario(client: QMPClient): Promise<unknown[]> {
  const results: unknown[] = [];
  results.push(await client.execute("query-status"));
  const event = client.waitEvent("STOP");
  results.push(await client.execute("stop"));
  results.push((await event).event);
  results.push(await client.execute("qom-get", { path: "/machine", property: "type" }));
  const err = await rejection(client.execute("no-such-command"));
  results.push(err instanceof ExecuteError ? [err.errorClass, err.desc] : err);
  return results;
}

/** A client that records what it sends and receives into `entries`. */
function recordingClient(t: TestContext, entries: TranscriptEntry[]): QMPClient {
  return newClient(t, { timeout: 5000, record: (entry) => entries.push(entry) });
}

/** `scenario` recorded against the fake server: its results and its transcript. */
async function recordScenario(
  t: TestContext,
): Promise<{ results: unknown[]; entries: TranscriptEntry[] }> {
  await using server = await fakeQemu();
  const entries: TranscriptEntry[] = [];
  const client = recordingClient(t, entries);
  await client.connect(server.address);
  const results = await scenario(client);
  await client.disconnect();
  return { results, entries };
}

/** A recording client whose next id is not 1: it ran `calls` commands elsewhere first. */
async function clientWithUsedIds(
  t: TestContext,
  calls: number,
): Promise<{ client: QMPClient; entries: TranscriptEntry[] }> {
  const entries: TranscriptEntry[] = [];
  const client = recordingClient(t, entries);
  await using elsewhere = await FakeQMPServer.listen();
  await client.connect(elsewhere.address);
  for (let i = 0; i < calls; i++) await client.execute("query-status");
  await client.disconnect();
  entries.length = 0;
  return { client, entries };
}

/** The ids of the messages in direction `dir`. */
function ids(entries: readonly TranscriptEntry[], dir: "in" | "out"): unknown[] {
  return entries
    .filter((e) => e.dir === dir && e.msg?.["id"] !== undefined)
    .map((e) => e.msg!["id"]);
}

/** Whether `promise` is still pending once everything already due has run (I/O callbacks included). */
async function pending(promise: Promise<unknown>): Promise<boolean> {
  const marker = Symbol("pending");
  const settled = promise.then(
    () => "resolved",
    () => "rejected",
  );
  const next = new Promise<symbol>((resolve) => setImmediate(() => resolve(marker)));
  return (await Promise.race([settled, next])) === marker;
}

void test(
  "a recorded session replays: the same client code gets the same results, with other ids",
  T,
  async (t) => {
    const recorded = await recordScenario(t);
    await using server = await ReplayServer.listen(recorded.entries);
    assert.equal(server.remaining, recorded.entries.length);
    const { client, entries } = await clientWithUsedIds(t, 3);
    await client.connect(server.address);
    assert.deepEqual(await scenario(client), recorded.results);
    await server.done(SOON);
    assert.equal(server.remaining, 0);
    await client.disconnect();
    assert.deepEqual(server.mismatches, []);
    // The recorded client used the ids 1…5, the replaying one 5…9; the replies carried the latter.
    assert.deepEqual(ids(recorded.entries, "out"), [1, 2, 3, 4, 5]);
    assert.deepEqual(ids(entries, "out"), [5, 6, 7, 8, 9]);
    assert.deepEqual(ids(entries, "in"), [5, 6, 7, 8, 9]);
    // Otherwise the replaying client received just what was recorded.
    const withoutIds = (list: TranscriptEntry[]): unknown[] =>
      list.map((e) => {
        const { id: _id, ...rest } = e.msg!;
        return [e.dir, rest];
      });
    assert.deepEqual(withoutIds(entries), withoutIds(recorded.entries));
  },
);

void test(
  "a transcript file replays; a second connection replays it from the start",
  T,
  async (t) => {
    const path = join(tempDir(t), "session.jsonl");
    await using live = await fakeQemu();
    const recorder = newClient(t, { record: path });
    await recorder.connect(live.address);
    const results = await scenario(recorder);
    await recorder.disconnect();

    await using server = await ReplayServer.listen(path);
    for (let i = 0; i < 2; i++) {
      const client = newClient(t, { timeout: 5000 });
      await client.connect(server.address);
      assert.deepEqual(await scenario(client), results);
      await client.disconnect();
    }
    await server.done(SOON);
    assert.deepEqual(server.mismatches, []);
  },
);

void test(
  "a different command: an error reply, and done() rejects with the mismatch",
  T,
  async (t) => {
    const path = join(tempDir(t), "session.jsonl");
    const recorded = await recordScenario(t);
    writeFileSync(path, recorded.entries.map((e) => JSON.stringify(e) + "\n").join(""));
    await using server = await ReplayServer.listen(path);
    const done = server.done();
    const client = newClient(t, { timeout: 5000 });
    await client.connect(server.address);
    await client.execute("query-status");
    // The transcript has "stop" next.
    const err = await rejection(client.execute("cont"));
    assert.ok(err instanceof ExecuteError, String(err));
    assert.equal(err.errorClass, "GenericError");
    assert.equal(
      err.desc,
      'replay: expected {"execute":"stop","id":3}, got {"execute":"cont","id":3}',
    );
    const mismatch = await rejection(done);
    assert.ok(mismatch instanceof TranscriptMismatchError, String(mismatch));
    assert.equal(mismatch.code, "QMP_ERR_TRANSCRIPT_MISMATCH");
    // Entries 0-4: greeting, qmp_capabilities and its reply, query-status and its reply.
    assert.deepEqual(
      [mismatch.index, mismatch.line, mismatch.expected, mismatch.actual],
      [5, 6, { execute: "stop", id: 3 }, { execute: "cont", id: 3 }],
    );
    assert.match(
      mismatch.message,
      /^Transcript mismatch at entry 5 \(line 6\): expected .*stop.*, got .*cont/,
    );
    // The replay has stopped: what comes next is refused too, and the client is not left waiting.
    const next = await rejection(client.execute("stop"));
    assert.ok(next instanceof ExecuteError);
    assert.equal(next.desc, "replay: stopped at the mismatch at entry 5");
    assert.deepEqual(server.mismatches, [mismatch]);
  },
);

void test("different arguments are a mismatch; so is a message after the end", T, async (t) => {
  const recorded = await recordScenario(t);
  {
    await using server = await ReplayServer.listen(recorded.entries);
    const client = newClient(t, { timeout: 5000 });
    await client.connect(server.address);
    await client.execute("query-status");
    await client.execute("stop");
    const err = await rejection(client.execute("qom-get", { path: "/machine", property: "kind" }));
    assert.ok(err instanceof ExecuteError);
    assert.match(err.desc, /^replay: expected .*"property":"type".*, got .*"property":"kind"/);
    const mismatch = await rejection(server.done(SOON));
    assert.ok(mismatch instanceof TranscriptMismatchError);
    // Entries given as an array: no line.
    assert.deepEqual([mismatch.index, mismatch.line], [8, undefined]);
  }
  {
    await using server = await ReplayServer.listen(recorded.entries);
    const client = newClient(t, { timeout: 5000 });
    await client.connect(server.address);
    await scenario(client);
    await server.done(SOON);
    const err = await rejection(client.execute("query-status"));
    assert.ok(err instanceof ExecuteError);
    assert.match(err.desc, /^replay: expected nothing more \(the transcript has ended\), got /);
    assert.equal(server.mismatches.length, 1);
    const [after] = server.mismatches;
    assert.deepEqual([after!.index, after!.expected], [recorded.entries.length, undefined]);
    assert.match(after!.message, /^Transcript mismatch after its end/);
  }
});

void test(
  "a client that stops early: done() stays pending, remaining tells; close() rejects it",
  T,
  async (t) => {
    const recorded = await recordScenario(t);
    const server = await ReplayServer.listen(recorded.entries);
    t.after(() => server.close());
    const done = server.done();
    const client = newClient(t, { timeout: 5000 });
    await client.connect(server.address);
    await client.execute("query-status");
    // query-status answered; "stop" is due (entry 5) and never comes.
    assert.equal(server.remaining, recorded.entries.length - 5);
    assert.equal(await pending(done), true);
    await server.close();
    const err = await rejection(done);
    assert.ok(err instanceof TranscriptMismatchError, String(err));
    assert.equal(err.actual, undefined);
    assert.deepEqual(err.expected, { execute: "stop", id: 3 });
    assert.match(
      err.message,
      /^Transcript not finished: the server was closed at entry 5 of 12, which expects /,
    );
    // A done() asked only now says the same; so does close() again (harmlessly).
    assert.equal(await rejection(server.done()), err);
    await server.close();
  },
);

void test(
  "a client that disconnects early: done() rejects, the transcript not finished",
  T,
  async (t) => {
    const recorded = await recordScenario(t);
    await using server = await ReplayServer.listen(recorded.entries);
    const client = newClient(t, { timeout: 5000 });
    await client.connect(server.address);
    await client.execute("query-status");
    await client.disconnect();
    const err = await rejection(server.done(SOON));
    assert.ok(err instanceof TranscriptMismatchError, String(err));
    assert.match(err.message, /^Transcript not finished: the connection closed at entry 5 of 12/);
  },
);

void test("done() takes a timeout and a signal", T, async (t) => {
  const recorded = await recordScenario(t);
  await using server = await ReplayServer.listen(recorded.entries);
  const err = await rejection(server.done({ timeout: 1 }));
  assert.ok(err instanceof DOMException && err.name === "TimeoutError", String(err));
  const reason = new Error("enough");
  assert.equal(await rejection(server.done({ signal: AbortSignal.abort(reason) })), reason);
  assert.throws(() => void server.done({ timeout: -1 }), RangeError);
  // No client ever came.
  await server.close();
  assert.match(String(await rejection(server.done())), /not finished: no client connected/);
});

void test("a recorded <redacted> matches any value", T, async (t) => {
  const entries: TranscriptEntry[] = [];
  await using live = await fakeQemu();
  const recorder = recordingClient(t, entries);
  await recorder.connect(live.address);
  await recorder.execute("set_password", { protocol: "vnc", password: "first" });
  await recorder.execute("object-add", { "qom-type": "secret", id: "s0", data: "first" });
  await recorder.disconnect();
  assert.ok(!JSON.stringify(entries).includes("first"));

  await using server = await ReplayServer.listen(entries);
  const client = newClient(t, { timeout: 5000 });
  await client.connect(server.address);
  await client.execute("set_password", { protocol: "vnc", password: "second" });
  await client.execute("object-add", { "qom-type": "secret", id: "s0", data: "second" });
  await server.done(SOON);
  // Only the redacted values are free: another protocol is a mismatch.
  await using strict = await ReplayServer.listen(entries);
  const other = newClient(t, { timeout: 5000 });
  await other.connect(strict.address);
  const err = await rejection(other.execute("set_password", { protocol: "spice", password: "x" }));
  assert.ok(err instanceof ExecuteError);
  assert.ok(err.desc.includes(`"protocol":"vnc","password":"<redacted>"`), err.desc);
});

void test(
  "guest agent: a QGAClient session recorded on the fake qemu-ga replays with another sync id",
  T,
  async (t) => {
    await using agent = await FakeQMPServer.listen({
      guestAgent: true,
      handlers: {
        "guest-get-osinfo": () => ({ return: { id: "debian", "kernel-release": "6.1" } }),
      },
    });
    const entries: TranscriptEntry[] = [];
    const ga = new QGAClient({ timeout: 5000, record: (e) => entries.push(e) });
    t.after(() => ga.destroy());
    const run = async (client: QGAClient): Promise<unknown[]> => {
      await client.connect(agent.address);
      const results = [await client.osInfo(), await client.execute("guest-ping")];
      results.push(await rejection(client.execute("guest-shutdown")).then((e) => String(e)));
      return results;
    };
    const results = await run(ga);
    await ga.disconnect();

    // The 0xFF is no message, and qemu-ga's error for it is skipped unread: neither is recorded.
    const first = entries[0]!;
    assert.equal(first.dir, "out");
    assert.equal(first.msg?.["execute"], "guest-sync-delimited");
    const syncId = (first.msg["arguments"] as Record<string, JsonValue>)["id"];
    assert.deepEqual(entries[1]!.msg, { return: syncId });
    assert.ok(
      !entries.some((e) => e.msg !== undefined && "error" in e.msg && !("id" in e.msg)),
      JSON.stringify(entries),
    );

    await using server = await ReplayServer.listen(entries, { guestAgent: true });
    const replayed: TranscriptEntry[] = [];
    const again = new QGAClient({ timeout: 5000, record: (e) => replayed.push(e) });
    t.after(() => again.destroy());
    await again.connect(server.address);
    assert.deepEqual(
      [
        await again.osInfo(),
        await again.execute("guest-ping"),
        String(await rejection(again.execute("guest-shutdown"))),
      ],
      results,
    );
    await again.disconnect();
    await server.done(SOON);
    // Its own sync id, drawn at random, was answered.
    const replayedId = (replayed[0]!.msg!["arguments"] as Record<string, JsonValue>)["id"];
    assert.notEqual(replayedId, syncId);
    assert.deepEqual(replayed[1]!.msg, { return: replayedId });
  },
);

void test("guest agent: stale output the resync parsed is recorded, and replays", T, async (t) => {
  // An earlier client's delimited reply (with its 0xFF), then qemu-ga's error for our 0xFF.
  await using agent = await FakeQMPServer.listen({
    guestAgent: true,
    handlers: {
      "guest-sync-delimited": (args, _message, peer) => {
        peer.write(Buffer.of(0xff));
        peer.write('{"return": 12345}\n{"error": {"class": "GenericError", "desc": "stray"}}\n');
        peer.write(Buffer.of(0xff));
        return { return: (args?.["id"] ?? null) as JsonValue };
      },
    },
  });
  const entries: TranscriptEntry[] = [];
  const ga = new QGAClient({ timeout: 5000, record: (e) => entries.push(e) });
  t.after(() => ga.destroy());
  await ga.connect(agent.address);
  await ga.ping();
  await ga.disconnect();
  // What the client parsed (the stale reply) is in; what it skipped unread (the error) is not.
  const syncId = (entries[0]!.msg!["arguments"] as Record<string, JsonValue>)["id"];
  assert.deepEqual(
    entries.slice(1, 3).map((e) => e.msg),
    [{ return: 12345 }, { return: syncId }],
  );
  assert.equal(entries.length, 5);

  await using server = await ReplayServer.listen(entries, { guestAgent: true });
  const again = new QGAClient({ timeout: 5000 });
  t.after(() => again.destroy());
  await again.connect(server.address);
  await again.ping();
  await again.disconnect();
  await server.done(SOON);
});

void test("listen(): a malformed transcript or bad options fail before anything listens", async (t) => {
  await assert.rejects(
    ReplayServer.listen([{ dir: "in", t: 0, msg: {} }, { dir: "up" } as never]),
    (err: unknown) => err instanceof TranscriptError && /^entry 1: "dir"/.test(err.message),
  );
  await assert.rejects(ReplayServer.listen(42 as never), TypeError);
  await assert.rejects(ReplayServer.listen([], { guestAgent: "yes" as never }), TypeError);
  await assert.rejects(ReplayServer.listen(join(tempDir(t), "missing.jsonl")), { code: "ENOENT" });
});

void test("no unhandled rejections", () => {
  assert.deepEqual(unhandled, []);
});
