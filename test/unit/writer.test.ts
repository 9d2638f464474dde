// Unit tests of the MessageWriter: batching, lazy serialization under backpressure, cancelling, abort.

import assert from "node:assert/strict";
import { Duplex } from "node:stream";
import { test } from "node:test";

import { SessionEndedError } from "../../src/errors.js";
import { MessageWriter, type OutboundRequest } from "../../src/writer.js";

/** A Duplex whose writes are recorded; `hold` keeps them unfinished (a peer that does not read). */
function sink(options: { hold?: boolean; highWaterMark?: number } = {}) {
  const writes: string[] = [];
  const held: (() => void)[] = [];
  const stream = new Duplex({
    highWaterMark: options.highWaterMark ?? 16 * 1024,
    read() {},
    write(chunk: Buffer, _enc, done) {
      writes.push(chunk.toString());
      if (options.hold) held.push(() => done());
      else done();
    },
  });
  return { stream, writes, release: () => held.splice(0).forEach((f) => f()) };
}

function request(message: object, log: string[]): OutboundRequest<object> {
  return {
    message,
    fds: undefined,
    fence: undefined,
    writing: () => log.push("writing"),
    failed: (err) => log.push(`failed ${(err as Error).name}`),
    writeState: "new",
  };
}

function writer(stream: Duplex, serialized: object[], maxQueued = 1000) {
  return new MessageWriter<object>(
    stream,
    {
      serialize: (m) => {
        serialized.push(m);
        return JSON.stringify(m);
      },
      onWrite: () => {},
      passFds: () => Promise.reject(new Error("no fds here")),
      onError: () => {},
    },
    maxQueued,
  );
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

void test("a tick's messages go out in one write, in order", async () => {
  const { stream, writes } = sink();
  const serialized: object[] = [];
  const w = writer(stream, serialized);
  const log: string[] = [];
  for (let i = 0; i < 500; i++) w.enqueue(request({ execute: "x", id: i }, log));
  assert.equal(serialized.length, 0, "nothing is serialized before the writer runs");
  await tick();
  assert.equal(writes.length, 1);
  assert.equal(
    writes[0],
    Array.from({ length: 500 }, (_, i) => `{"execute":"x","id":${i}}`).join(""),
  );
  assert.equal(log.length, 500);
});

void test("while the stream is full, nothing more is serialized; 'drain' resumes", async () => {
  const { stream, writes, release } = sink({ hold: true, highWaterMark: 1024 });
  const serialized: object[] = [];
  const w = writer(stream, serialized);
  stream.on("drain", () => w.drained());
  const big = "y".repeat(100 * 1024);
  const log: string[] = [];
  for (let i = 0; i < 50; i++) w.enqueue(request({ execute: "x", arguments: { big }, id: i }, log));
  await tick();
  // The first batch filled the buffer: the rest wait as objects.
  assert.equal(serialized.length, 1);
  for (let round = 0; round < 200 && serialized.length < 50; round++) {
    release();
    await tick();
  }
  release();
  assert.equal(serialized.length, 50);
  const expected = Array.from({ length: 50 }, (_, i) =>
    JSON.stringify({ execute: "x", arguments: { big }, id: i }),
  ).join("");
  assert.equal(writes.join(""), expected);
});

void test("cancel() takes a request back before it is written; the queue bound counts the waiting", async () => {
  const { stream, writes } = sink();
  const w = writer(stream, [], 2);
  const log: string[] = [];
  const a = request({ n: 1 }, log);
  w.enqueue(a);
  w.enqueue(request({ n: 2 }, log));
  assert.throws(() => w.enqueue(request({ n: 3 }, log)), { code: "QMP_ERR_QUEUE_FULL" });
  assert.equal(w.cancel(a), true);
  assert.equal(w.cancel(a), false);
  w.enqueue(request({ n: 4 }, log));
  await tick();
  assert.deepEqual(writes, ['{"n":2}{"n":4}']);
  assert.deepEqual(log, ["writing", "writing"]);
});

void test("abort() fails every waiting request once; later enqueues are refused", async () => {
  const { stream } = sink({ hold: true, highWaterMark: 1 });
  const w = writer(stream, []);
  const log: string[] = [];
  w.enqueue(request({ n: 1 }, log));
  await tick();
  w.enqueue(request({ n: 2 }, log));
  w.enqueue(request({ n: 3 }, log));
  w.abort(new SessionEndedError("gone"));
  w.abort(new SessionEndedError("again"));
  assert.deepEqual(log, ["writing", "failed SessionEndedError", "failed SessionEndedError"]);
  assert.throws(() => w.enqueue(request({ n: 4 }, log)), SessionEndedError);
});

void test("a message that cannot be serialized fails alone", async () => {
  const { stream, writes } = sink();
  const w = writer(stream, []);
  const log: string[] = [];
  w.enqueue(request({ n: 1 }, log));
  w.enqueue(request({ n: 2n }, log));
  w.enqueue(request({ n: 3 }, log));
  await tick();
  assert.deepEqual(writes, ['{"n":1}{"n":3}']);
  assert.deepEqual(log, ["writing", "writing", "failed TypeError", "writing"]);
});

void test("requests taken back behind a full socket do not pile up", async () => {
  const { stream } = sink({ hold: true, highWaterMark: 1 });
  const w = writer(stream, [], 10);
  const log: string[] = [];
  w.enqueue(request({ n: 0 }, log));
  await tick(); // the socket is full from here on
  for (let i = 1; i <= 5000; i++) {
    const r = request({ n: i }, log);
    w.enqueue(r);
    assert.equal(w.cancel(r), true);
  }
  assert.ok(w.held <= 1100, `held ${w.held}`);
  const last = request({ n: -1 }, log);
  w.enqueue(last);
  assert.ok(w.held >= 1);
});
