// Real QEMU behind QMPMux: clients with colliding ids, pipelined; events to all; negotiation
// answered as QEMU answers it; a client that never reads; policies; a client leaving mid-command;
// QEMU going away; quit; getfd refused; exec-oob; the CLI tools against a mux address.

import assert from "node:assert/strict";
import { once } from "node:events";
import { statSync } from "node:fs";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { QMPClient, QMPMux, type QMPMuxOptions, Runstate } from "../../src/index.js";
import { qmp } from "../helpers/cli.js";
import { LineClient } from "../helpers/line-client.js";
import {
  asObject,
  recordMessages,
  startQemu,
  startQemuWithControl,
  tempDir,
  testClient,
} from "../helpers/qemu.js";

const T = { timeout: 60_000 };

/** A QEMU, a client connected to it, and a mux on a socket in a temp dir. */
async function setUp(
  t: TestContext,
  options: QMPMuxOptions = {},
): Promise<{ mux: QMPMux; path: string; upstream: QMPClient; dir: string }> {
  const qemu = await startQemu(t);
  const upstream = testClient(t);
  await upstream.connect(qemu.socketPath);
  const mux = new QMPMux(upstream, options);
  t.after(() => mux.close());
  const dir = tempDir(t);
  const path = join(dir, "mux.sock");
  await mux.listen(path);
  return { mux, path, upstream, dir };
}

/** A QMPClient connected to `path`, destroyed after the test. */
async function clientOf(t: TestContext, path: string): Promise<QMPClient> {
  const client = testClient(t);
  await client.connect(path);
  return client;
}

/** The error desc of a failed call. */
async function errorOf(call: Promise<unknown>): Promise<{ class: unknown; desc: unknown }> {
  try {
    await call;
  } catch (err) {
    const e = err as { errorClass?: unknown; desc?: unknown; message: string };
    return { class: e.errorClass, desc: e.desc ?? e.message };
  }
  assert.fail("the call succeeded");
}

void test(
  "two and ten clients with the same ids, pipelined: each gets its own replies",
  T,
  async (t) => {
    const { path, mux } = await setUp(t);
    for (const n of [2, 10]) {
      const clients = await Promise.all(Array.from({ length: n }, () => clientOf(t, path)));
      assert.equal(mux.connections, n + (n === 10 ? 2 : 0));
      // Every client numbers its calls 1, 2, 3, …: the ids collide on purpose. Each asks about a
      // path of its own, and QEMU's error names it.
      await Promise.all(
        clients.map(async (client, c) => {
          const calls = Array.from({ length: 20 }, (_, i) =>
            errorOf(client.execute("qom-list", { path: `/nowhere-${n}-${c}-${i}` })),
          );
          const errors = await Promise.all(calls);
          errors.forEach((e, i) =>
            assert.match(String(e.desc), new RegExp(`/nowhere-${n}-${c}-${i}\\b`)),
          );
        }),
      );
    }
  },
);

void test("raw ids of any kind come back as sent; no id, no id", T, async (t) => {
  const { path } = await setUp(t);
  const a = await LineClient.negotiated(t, path);
  const b = await LineClient.negotiated(t, path);
  const ids = [1, "x", { deep: [1, 2] }, null, 1.5];
  for (const id of ids) {
    a.send({ execute: "query-status", id });
    b.send({ execute: "qom-list", arguments: { path: "/nope" }, id });
  }
  for (const id of ids) {
    assert.equal(((await a.reply(id))["return"] as { status: string }).status, "running");
    assert.ok("error" in (await b.reply(id)));
  }
  a.send({ execute: "query-status" });
  const reply = await a.next((m) => "return" in m);
  assert.ok(!("id" in reply), JSON.stringify(reply));
});

void test("negotiation is answered as QEMU answers it", T, async (t) => {
  const { qemu, control } = await startQemuWithControl(t);
  void qemu;
  const upstream = testClient(t);
  await upstream.connect(control);
  const mux = new QMPMux(upstream);
  t.after(() => mux.close());
  const path = join(tempDir(t), "mux.sock");
  await mux.listen(path);
  // The same conversation with QEMU's own monitor and with the mux.
  const talk = async (where: string): Promise<unknown[]> => {
    const c = await LineClient.connect(t, where);
    const greeting = await c.next();
    c.send({ execute: "query-status", id: 1 });
    const early = await c.reply(1);
    c.send({ execute: "qmp_capabilities", id: 2 });
    const ok = await c.reply(2);
    c.send({ execute: "qmp_capabilities", id: 3 });
    const again = await c.reply(3);
    c.send({ "exec-oob": "query-status", id: 4 });
    const oob = await c.reply(4);
    c.socket.destroy();
    return [Object.keys(greeting["QMP"] as object), early, ok, again, oob];
  };
  assert.deepEqual(await talk(path), await talk(qemu.socketPath));
});

void test("events go to every negotiated client, not to one still negotiating", T, async (t) => {
  const { path } = await setUp(t);
  const clients = await Promise.all([1, 2, 3].map(() => clientOf(t, path)));
  const raw = await LineClient.connect(t, path);
  await raw.next((m) => "QMP" in m);
  const listeners = clients.map((c) => c.listener("STOP"));
  await clients[0]!.execute("stop");
  for (const l of listeners) assert.equal((await l.get()).event, "STOP");
  raw.send({ execute: "qmp_capabilities", id: "n" });
  await raw.reply("n");
  await clients[1]!.execute("cont");
  const first = await raw.next((m) => "event" in m);
  assert.equal(first["event"], "RESUME", "the STOP before its negotiation must not reach it");
});

void test(
  "a client that never reads holds nobody up; it gets MUX_EVENTS_DROPPED later",
  T,
  async (t) => {
    const { path, upstream } = await setUp(t, { clientQueue: 5 });
    const stalled = await LineClient.negotiated(t, path);
    stalled.socket.pause();
    // Its replies (200 KB each) fill its socket: from then on its events are held, 5 at most.
    for (let i = 0; i < 20; i++) stalled.send({ execute: "query-qmp-schema", id: i });
    const other = await clientOf(t, path);
    const events = other.listener(["STOP", "RESUME"]);
    for (let i = 0; i < 50; i++) {
      await other.execute("stop");
      await other.execute("cont");
    }
    for (let i = 0; i < 100; i++) await events.get();
    assert.equal(upstream.runstate, Runstate.RUNNING);
    // Now it reads: every reply, the events written before it filled up, then the notice and
    // the 5 newest events, which were kept.
    stalled.socket.resume();
    const got = stalled.received;
    const isEvent = (m: Record<string, unknown>): boolean =>
      m["event"] === "STOP" || m["event"] === "RESUME";
    const notice = (): Record<string, unknown> | undefined =>
      got.find((m) => m["event"] === "MUX_EVENTS_DROPPED");
    const dropped = (): number => (notice()?.["data"] as { count: number } | undefined)?.count ?? 0;
    await stalled.until(
      () =>
        got.filter((m) => "return" in m && typeof m["id"] === "number").length === 20 &&
        notice() !== undefined &&
        got.filter(isEvent).length + dropped() === 100,
    );
    // After the notice come the 5 newest events, which were kept (replies may come between).
    const after = got.slice(got.indexOf(notice()!) + 1).filter(isEvent);
    assert.equal(after.length, 5, JSON.stringify(after));
    assert.ok(dropped() >= 50, `dropped ${dropped()}`);
  },
);

void test("slowClient disconnect: a client that does not read is closed", T, async (t) => {
  const { path, mux } = await setUp(t, { clientQueue: 2, slowClient: "disconnect" });
  const stalled = await LineClient.negotiated(t, path);
  stalled.socket.pause();
  for (let i = 0; i < 20; i++) stalled.send({ execute: "query-qmp-schema", id: i });
  const other = await clientOf(t, path);
  const gone = once(stalled.socket, "close");
  for (let i = 0; i < 20 && !stalled.socket.destroyed; i++) {
    await other.execute("stop");
    await other.execute("cont");
    if (mux.connections === 1) break;
  }
  assert.equal(mux.connections, 1);
  stalled.socket.resume();
  await gone;
});

void test(
  "policies: allow, deny, read-only; a refusal is a QMP error and nothing runs",
  T,
  async (t) => {
    const { mux, dir, upstream } = await setUp(t);
    const ro = join(dir, "ro.sock");
    const some = join(dir, "some.sock");
    await mux.listen(ro, { readOnly: true });
    await mux.listen(some, { allow: "query-*,stop", deny: "query-qmp-*", mode: 0o660 });
    assert.equal(statSync(ro).mode & 0o777, 0o600);
    assert.equal(statSync(some).mode & 0o777, 0o660);
    const reader = await clientOf(t, ro);
    assert.equal(asObject(await reader.execute("query-status"))["status"], "running");
    assert.deepEqual(await errorOf(reader.execute("stop")), {
      class: "GenericError",
      desc: "The command stop is not allowed on this socket",
    });
    assert.equal(asObject(await upstream.execute("query-status"))["status"], "running");
    const partial = await clientOf(t, some);
    await partial.execute("stop");
    assert.match(String((await errorOf(partial.execute("cont"))).desc), /not allowed/);
    assert.match(String((await errorOf(partial.execute("query-qmp-schema"))).desc), /not allowed/);
    await upstream.execute("cont");
  },
);

void test("getfd is refused clearly; exec-oob passes through", T, async (t) => {
  const { path } = await setUp(t);
  const c = await LineClient.negotiated(t, path, ["oob"]);
  c.send({ execute: "getfd", arguments: { fdname: "x" }, id: 1 });
  const refused = (await c.reply(1))["error"] as { desc: string };
  assert.match(
    refused.desc,
    /getfd needs a file descriptor passed with it, which qmp mux does not pass on/,
  );
  c.send({ "exec-oob": "migrate-pause", id: 2 });
  const oob = (await c.reply(2))["error"] as { desc: string };
  // QEMU's own answer to the out-of-band command (there is no migration to pause).
  assert.doesNotMatch(oob.desc, /out-of-band first/);
});

void test(
  "a client that leaves mid-command: its reply is dropped, the others go on",
  T,
  async (t) => {
    const { path, mux } = await setUp(t);
    const leaving = await LineClient.negotiated(t, path);
    const staying = await clientOf(t, path);
    leaving.send({ execute: "query-qmp-schema", id: 1 });
    leaving.socket.destroy();
    await leaving.closed;
    assert.equal(asObject(await staying.execute("query-status"))["status"], "running");
    assert.equal(mux.connections, 1);
  },
);

void test(
  "QEMU killed: pending commands get an error reply, then EOF; new clients are closed",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const upstream = testClient(t);
    await upstream.connect(qemu.socketPath);
    const mux = new QMPMux(upstream);
    t.after(() => mux.close());
    const path = join(tempDir(t), "mux.sock");
    await mux.listen(path);
    const c = await LineClient.negotiated(t, path);
    let forwarded!: () => void;
    const sent = new Promise<void>((resolve) => (forwarded = resolve));
    recordMessages(t, upstream, "send", (m) => {
      if (m["execute"] === "query-status") forwarded();
    });
    const down = new Promise<void>((resolve) =>
      upstream.on("runstate", (state) => {
        if (state !== Runstate.RUNNING) resolve();
      }),
    );
    qemu.process.kill("SIGSTOP");
    c.send({ execute: "query-status", id: "p" });
    await sent;
    // SIGKILL while stopped: QEMU must not get to answer (qemu.kill() sends SIGCONT first).
    qemu.process.kill("SIGKILL");
    await qemu.exited;
    const reply = await c.reply("p");
    assert.match((reply["error"] as { desc: string }).desc, /^qmp mux: /);
    await c.closed;
    await down;
    const late = await LineClient.connect(t, path);
    await late.closed;
    assert.deepEqual(late.received, []);
  },
);

void test("quit from a client: QEMU quits, every client sees the end", T, async (t) => {
  const { path } = await setUp(t);
  const a = await clientOf(t, path);
  const b = await LineClient.negotiated(t, path);
  await a.execute("quit");
  await b.next((m) => m["event"] === "SHUTDOWN");
  await b.closed;
});

void test("qmp exec and qmp events against a mux address", T, async (t) => {
  const { path, mux } = await setUp(t);
  const negotiated = once(mux, "negotiated");
  const events = qmp(t, ["events", "--name", "STOP", "--count", "1", "--timeout", "20", path]);
  await negotiated;
  const status = await qmp(t, ["exec", path, "query-status"]);
  assert.equal(status.code, 0);
  assert.match(status.stdout, /"status":"running"/);
  assert.equal((await qmp(t, ["exec", path, "stop"])).code, 0);
  const r = await events;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /"event":"STOP"/);
});
