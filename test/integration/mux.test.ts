// QMPMux over a client of the test kit's fake server: what a client sends that QEMU would refuse,
// garbage, an oversized message, the upstream session ending with commands pending, bad options,
// and the mux's events.

import assert from "node:assert/strict";
import { once } from "node:events";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { QMPClient, QMPMux, type QMPMuxOptions } from "../../src/index.js";
import { type FakePeer, FakeQMPServer } from "../../src/testing/index.js";
import { LineClient } from "../helpers/line-client.js";
import { tempDir } from "../helpers/qemu.js";

const T = { timeout: 15_000 };

async function setUp(
  t: TestContext,
  options: QMPMuxOptions = {},
): Promise<{ mux: QMPMux; path: string; peer: FakePeer; upstream: QMPClient }> {
  const server = await FakeQMPServer.listen({ handlers: { hold: () => undefined } });
  t.after(() => server.close());
  const upstream = new QMPClient();
  t.after(() => upstream.destroy());
  await upstream.connect(server.address);
  const peer = await server.peer();
  const mux = new QMPMux(upstream, options);
  t.after(() => mux.close());
  const path = join(tempDir(t), "mux.sock");
  assert.equal(await mux.listen(path), path);
  return { mux, path, peer, upstream };
}

void test("a message without execute, garbage, an oversized message", T, async (t) => {
  const { path } = await setUp(t, { maxMessageSize: 1000 });
  const c = await LineClient.negotiated(t, path);
  c.send({ arguments: {}, id: 1 });
  assert.deepEqual(await c.reply(1), {
    error: { class: "GenericError", desc: "QMP input lacks member 'execute'" },
    id: 1,
  });
  c.send(`{"execute": "query-status", "id": 2, "pad": "${"x".repeat(2000)}"}\n`);
  assert.match(((await c.reply(2))["error"] as { desc: string }).desc, /too large/);
  c.send({ execute: "query-status", id: 3 });
  assert.ok("return" in (await c.reply(3)), "the client goes on after an oversized message");
  c.send("}{ nonsense\n");
  const err = await c.next((m) => "error" in m && !("id" in m));
  assert.match((err["error"] as { desc: string }).desc, /^JSON parse error, /);
  await c.closed;
});

void test(
  "the upstream session ends: pending commands get an error reply, then EOF",
  T,
  async (t) => {
    const { path, peer, mux } = await setUp(t);
    const c = await LineClient.negotiated(t, path);
    c.send({ execute: "hold", id: "h" });
    await peer.nextMessage(); // qmp_capabilities
    assert.equal((await peer.nextMessage())["execute"], "hold");
    const gone = once(mux, "disconnection");
    peer.end();
    const reply = await c.reply("h");
    assert.match((reply["error"] as { desc: string }).desc, /^qmp mux: /);
    await c.closed;
    await gone;
    assert.equal(mux.connections, 0);
  },
);

void test(
  "events: connection, negotiated, disconnection; an unknown capability is refused",
  T,
  async (t) => {
    const { path, mux } = await setUp(t);
    const seen: string[] = [];
    for (const e of ["connection", "negotiated", "disconnection"] as const) {
      mux.on(e, (info) => seen.push(`${e} ${info.id}`));
    }
    const c = await LineClient.connect(t, path);
    await c.next((m) => "QMP" in m);
    c.send({ execute: "qmp_capabilities", arguments: { enable: ["bogus"] }, id: 1 });
    assert.match(
      ((await c.reply(1))["error"] as { desc: string }).desc,
      /Capability 'bogus' not available/,
    );
    c.send({ execute: "qmp_capabilities", arguments: { enable: ["oob"] }, id: 2 });
    assert.deepEqual(await c.reply(2), { return: {}, id: 2 });
    const gone = once(mux, "disconnection");
    c.socket.destroy();
    await gone;
    assert.deepEqual(seen, ["connection 1", "negotiated 1", "disconnection 1"]);
  },
);

void test(
  "bad options and policies fail before anything listens; close() is final",
  T,
  async (t) => {
    const client = new QMPClient();
    assert.throws(() => new QMPMux(client, { clientQueue: 0 }), RangeError);
    assert.throws(() => new QMPMux(client, { slowClient: "x" as "drop" }), TypeError);
    const mux = new QMPMux(client);
    const path = join(tempDir(t), "m.sock");
    await assert.rejects(mux.listen(path, { allow: 1 as unknown as string }), TypeError);
    await assert.rejects(mux.listen(path, { mode: -1 }), TypeError);
    await mux.close();
    await assert.rejects(mux.listen(path), /closed/);
  },
);

void test(
  "a client that connects while the upstream client is not connected is closed",
  T,
  async (t) => {
    const client = new QMPClient();
    const mux = new QMPMux(client);
    t.after(() => mux.close());
    const path = join(tempDir(t), "m.sock");
    await mux.listen(path);
    const c = await LineClient.connect(t, path);
    await c.closed;
    assert.deepEqual(c.received, []);
  },
);

void test(
  "a TCP socket on loopback, port 0: the real port is returned and served",
  T,
  async (t) => {
    const { mux } = await setUp(t);
    const address = await mux.listen({ host: "127.0.0.1", port: 0 });
    assert.ok(typeof address === "object" && address.port > 0);
    const client = new QMPClient();
    t.after(() => client.destroy());
    await client.connect(address);
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
    assert.deepEqual(mux.addresses.length, 2);
  },
);
