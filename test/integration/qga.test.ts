// QGAClient against the test kit's fake guest agent (FakeQMPServer, guestAgent: true): the resync skips stale output of every kind (an earlier
// client's replies, an unfinished message, garbage, a delimited reply with another id), fails
// with SyncError when the agent does not answer in time or goes away, and exact big integers.

import assert from "node:assert/strict";
import { type TestContext, test } from "node:test";
import {
  ConnectError,
  type JsonValue,
  QGAClient,
  SyncError,
  parseWithBigInts,
} from "../../src/index.js";
import { FakeQMPServer } from "../../src/testing/index.js";

const T = { timeout: 15_000 };

/**
 * The test kit's fake guest agent, its sync answered after `stale` output
 * (what an earlier client left: the reply to the sync comes after it), and
 * `guest-get-time` with nanoseconds beyond 2^53.
 */
async function fakeAgent(
  t: TestContext,
  stale: (id: unknown) => Buffer | string,
  sync = true,
): Promise<string> {
  const server = await FakeQMPServer.listen({
    guestAgent: true,
    handlers: {
      "guest-sync-delimited": (args, _message, peer) => {
        if (!sync) return undefined;
        peer.write(stale(args?.["id"]));
        peer.write(Buffer.of(0xff));
        return { return: (args?.["id"] ?? null) as JsonValue };
      },
      "guest-get-time": (_args, message, peer) => {
        // An exact 19-digit integer: written by hand, JSON.stringify would round it.
        peer.write(`{"return": 1796603775927048123, "id": ${JSON.stringify(message["id"])}}\n`);
        return undefined;
      },
    },
  });
  t.after(() => server.close());
  return server.address as string;
}

const STALE: [string, (id: unknown) => Buffer | string][] = [
  ["an earlier client's reply", () => '{"return": {}, "id": 7}\n'],
  ["qemu-ga's error for the 0xFF", () => '{"error": {"class": "GenericError", "desc": "stray"}}\n'],
  ["an unfinished message", () => '{"return": {"a": "unterminated'],
  ["a stray brace and control bytes", () => Buffer.from("}\x01\x02\x1b\x00\n")],
  [
    "a delimited reply with another id, then the error",
    () =>
      Buffer.concat([
        Buffer.of(0xff),
        Buffer.from('{"return": 12345}\n{"error": {"class": "GenericError", "desc": "x"}}\n'),
      ]),
  ],
  ["a line cut by the delimiter", () => Buffer.from('{"return": [1, 2,')],
];

for (const [what, stale] of STALE) {
  void test(`resync skips stale output: ${what}`, T, async (t) => {
    const path = await fakeAgent(t, stale);
    const ga = new QGAClient({ timeout: 5000 });
    t.after(() => ga.destroy());
    await ga.connect(path);
    await ga.ping();
    await ga.disconnect();
  });
}

void test("resync: no answer in time is a SyncError caused by the TimeoutError", T, async (t) => {
  const path = await fakeAgent(t, () => "", false);
  const ga = new QGAClient();
  t.after(() => ga.destroy());
  const err = await ga.connect(path, { timeout: 100 }).catch((e: unknown) => e);
  assert.ok(err instanceof SyncError, String(err));
  assert.ok(err instanceof ConnectError);
  assert.equal(err.name, "SyncError");
  assert.equal(err.code, "QMP_ERR_SYNC");
  assert.ok(err.cause instanceof DOMException && err.cause.name === "TimeoutError");
  assert.equal(ga.runstate, "IDLE");
});

void test(
  "resync: an agent that goes away is a SyncError; the caller's abort stays theirs",
  T,
  async (t) => {
    const gone = await FakeQMPServer.listen({
      guestAgent: true,
      handlers: {
        "guest-sync-delimited": (_args, _message, peer) => {
          peer.reset();
          return undefined;
        },
      },
    });
    t.after(() => gone.close());
    const ga = new QGAClient();
    t.after(() => ga.destroy());
    await assert.rejects(ga.connect(gone.address), SyncError);
    const silent = await fakeAgent(t, () => "", false);
    const controller = new AbortController();
    const connecting = ga.connect(silent, { signal: controller.signal });
    const reason = new Error("mine");
    setImmediate(() => controller.abort(reason));
    await assert.rejects(connecting, (e) => e === reason);
  },
);

void test("bigint: guest-get-time and execute(…, { bigint: true }) are exact", T, async (t) => {
  const path = await fakeAgent(t, () => "");
  const ga = new QGAClient({ timeout: 5000 });
  t.after(() => ga.destroy());
  await ga.connect(path);
  assert.equal(await ga.getTime(), 1796603775927048123n);
  assert.equal(
    await ga.execute("guest-get-time", undefined, { bigint: true }),
    1796603775927048123n,
  );
  assert.equal(await ga.execute("guest-get-time"), 1796603775927048200); // JSON.parse rounds
});

void test("parseWithBigInts: only unsafe integers outside strings", () => {
  assert.deepEqual(
    parseWithBigInts(
      '{"a": 9007199254740993, "b": -9007199254740993, "c": 12, "d": "9007199254740993", ' +
        '"e": 1.9007199254740993, "f": 90071992547409931e2, "g": [18446744073709551615]}',
    ),
    {
      a: 9007199254740993n,
      b: -9007199254740993n,
      c: 12,
      d: "9007199254740993",
      e: Number("1.9007199254740993"),
      f: Number("90071992547409931e2"),
      g: [18446744073709551615n],
    },
  );
});

void test(
  "the test kit's guest agent as it comes: sync, ping, guest-info, the 0xFF error",
  T,
  async (t) => {
    await using server = await FakeQMPServer.listen({ guestAgent: true });
    const ga = new QGAClient({ timeout: 5000 });
    t.after(() => ga.destroy());
    await ga.connect(server.address);
    const peer = await server.peer();
    await ga.ping();
    assert.equal(await ga.hasCommand("guest-ping"), true);
    assert.equal(await ga.hasCommand("query-status"), false, "no QMP commands");
    const info = await ga.info();
    assert.equal(info["version"], "fake");
    // What it got: the sync (after the 0xFF, whose id-less error the client skipped), then our
    // commands (hasCommand asks guest-info each time).
    assert.deepEqual(
      peer.received.map((m) => m["execute"]),
      ["guest-sync-delimited", "guest-ping", "guest-info", "guest-info", "guest-info"],
    );
    await ga.disconnect();
  },
);
