// QGAClient against a scripted fake agent: the resync skips stale output of every kind (an earlier
// client's replies, an unfinished message, garbage, a delimited reply with another id), fails
// with SyncError when the agent does not answer in time or goes away, and exact big integers.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { JsonObjectScanner } from "../../src/framing.js";
import { ConnectError, QGAClient, SyncError, parseWithBigInts } from "../../src/index.js";

const T = { timeout: 15_000 };

/** What the fake agent does with each message it reads (0xFF bytes dropped). */
type Script = (socket: net.Socket, message: Record<string, unknown>) => void;

/** A fake qemu-ga on a UNIX socket: it hands each message it reads to `script`. */
async function fakeAgent(t: TestContext, script: Script): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "qmp-fake-qga-"));
  const path = join(dir, "qga.sock");
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    // Messages come without newlines, as QEMU's parser needs none: scan them.
    const scanner = new JsonObjectScanner();
    socket.on("data", (chunk: Buffer) => {
      // The resync's 0xFF is no JSON: drop it, as qemu-ga's parser resets on it.
      const bytes = Buffer.from(chunk.filter((b) => b !== 0xff));
      scanner.push(bytes, (frame) => {
        if (frame.kind === "message") script(socket, frame.value);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.after(async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await closed;
    rmSync(dir, { recursive: true, force: true });
  });
  return path;
}

function syncId(message: Record<string, unknown>): unknown {
  return (message["arguments"] as { id?: unknown } | undefined)?.id;
}

/** Answers guest-sync-delimited after `stale` bytes, and guest-ping. */
function agentWith(stale: (id: unknown) => Buffer | string): Script {
  return (socket, message) => {
    if (message["execute"] === "guest-sync-delimited") {
      const id = syncId(message);
      socket.write(stale(id));
      socket.write(Buffer.concat([Buffer.of(0xff), Buffer.from(`{"return": ${String(id)}}\n`)]));
    } else if (message["execute"] === "guest-ping") {
      socket.write(`{"return": {}, "id": ${JSON.stringify(message["id"])}}\n`);
    } else if (message["execute"] === "guest-get-time") {
      socket.write(`{"return": 1796603775927048123, "id": ${JSON.stringify(message["id"])}}\n`);
    }
  };
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
    const path = await fakeAgent(t, agentWith(stale));
    const ga = new QGAClient({ timeout: 5000 });
    t.after(() => ga.destroy());
    await ga.connect(path);
    await ga.ping();
    await ga.disconnect();
  });
}

void test("resync: no answer in time is a SyncError caused by the TimeoutError", T, async (t) => {
  const path = await fakeAgent(t, () => {});
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
    const path = await fakeAgent(t, (socket) => socket.destroy());
    const ga = new QGAClient();
    t.after(() => ga.destroy());
    await assert.rejects(ga.connect(path), SyncError);
    const silent = await fakeAgent(t, () => {});
    const controller = new AbortController();
    const connecting = ga.connect(silent, { signal: controller.signal });
    const reason = new Error("mine");
    setImmediate(() => controller.abort(reason));
    await assert.rejects(connecting, (e) => e === reason);
  },
);

void test("bigint: guest-get-time and execute(…, { bigint: true }) are exact", T, async (t) => {
  const path = await fakeAgent(
    t,
    agentWith(() => ""),
  );
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
