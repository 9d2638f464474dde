// Engine rules (SPEC §1) over real sockets and an in-memory duplex: runstate, addresses,
// connect failures, aborts, StateError, disconnect/destroy, writer backpressure.

import { linkSync, lstatSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import {
  ConnectError,
  DeserializationError,
  ExecInterruptedError,
  ProtocolError,
  QMPClient,
  type QMPClientOptions,
  Runstate,
  SessionEndedError,
  StateError,
} from "../../src/index.js";
import { FakePeer, FakeQMPServer, type FakeServerOptions } from "../../src/testing/index.js";
import { duplexPair } from "../helpers/duplex.js";
import {
  newClient,
  recordRunstates,
  rejection,
  watchUnhandledRejections,
} from "../helpers/common.js";

// Every unhandled rejection in this file is a failure (checked by the last test).
const unhandled = watchUnhandledRejections();

/** A subclass, to check that messages name the instance's class. */
class VMClient extends QMPClient {}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "qmp-engine-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function fakeServer(
  t: TestContext,
  options: FakeServerOptions = {},
  address?: string | { host: string; port: number },
): Promise<FakeQMPServer> {
  const server = await FakeQMPServer.listen(options, address);
  t.after(() => server.close());
  return server;
}

/** Wait (through runstateChanged, a bounded number of transitions) until `state`. */
async function untilState(client: QMPClient, state: Runstate): Promise<void> {
  for (let i = 0; i < 8 && client.runstate !== state; i++) await client.runstateChanged();
  assert.equal(client.runstate, state);
}

/** Connected client and fake peer on a UNIX socket. */
async function session(
  t: TestContext,
  serverOptions: FakeServerOptions = {},
  clientOptions: QMPClientOptions = {},
): Promise<{ server: FakeQMPServer; client: QMPClient; peer: FakePeer }> {
  const server = await fakeServer(t, serverOptions);
  const client = newClient(t, clientOptions);
  await client.connect(server.address);
  const peer = await server.peer();
  return { server, client, peer };
}

/** Whether this machine can listen on ::1. */
async function ipv6Available(): Promise<boolean> {
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen({ host: "::1", port: 0 }, resolve);
    });
    return true;
  } catch {
    return false;
  } finally {
    probe.close();
  }
}

/** A UNIX socket file nobody listens on (connecting is refused). */
async function staleSocket(dir: string, name: string): Promise<string> {
  const live = join(dir, `${name}.live`);
  const stale = join(dir, name);
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(live, resolve));
  // A hard link keeps the socket inode once the server unlinks its own path.
  linkSync(live, stale);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(lstatSync(stale).isSocket());
  return stale;
}

// ------------------------------------------------------------------ runstate

void test("runstate goes IDLE→CONNECTING→RUNNING→DISCONNECTING→IDLE with 'runstate' events", async (t) => {
  const server = await fakeServer(t);
  const client = newClient(t);
  const seen = recordRunstates(client);
  assert.equal(client.runstate, Runstate.IDLE);
  await client.connect(server.address);
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.deepEqual(seen, [
    [Runstate.CONNECTING, Runstate.IDLE],
    [Runstate.RUNNING, Runstate.CONNECTING],
  ]);
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
  assert.deepEqual(seen.slice(2), [
    [Runstate.DISCONNECTING, Runstate.RUNNING],
    [Runstate.IDLE, Runstate.DISCONNECTING],
  ]);
});

void test("runstateChanged() resolves at the next transition; a late watcher sees only later ones", async (t) => {
  const server = await fakeServer(t);
  const client = newClient(t);
  const early = client.runstateChanged();
  const connecting = client.connect(server.address);
  assert.equal(await early, Runstate.CONNECTING);
  const next = client.runstateChanged();
  await connecting;
  assert.equal(await next, Runstate.RUNNING);
  // Started while RUNNING: must not report RUNNING (already past), only what comes next.
  const late = client.runstateChanged();
  const disconnecting = client.disconnect();
  assert.equal(await late, Runstate.DISCONNECTING);
  const last = client.runstateChanged();
  await disconnecting;
  assert.equal(await last, Runstate.IDLE);
});

// ----------------------------------------------------------------- addresses

void test("connect() to a UNIX socket path string", async (t) => {
  const server = await fakeServer(t);
  const client = newClient(t);
  assert.equal(typeof server.address, "string");
  await client.connect(server.address);
  assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  await client.disconnect();
});

void test("connect() to { path }", async (t) => {
  const server = await fakeServer(t);
  const client = newClient(t);
  await client.connect({ path: server.address as string });
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  await client.disconnect();
});

for (const host of ["127.0.0.1", "::1"]) {
  void test(`connect() to { host: '${host}', port }`, async (t) => {
    if (host === "::1" && !(await ipv6Available())) {
      t.skip("IPv6 loopback is not available");
      return;
    }
    const server = await fakeServer(t, {}, { host, port: 0 });
    const address = server.address as { host: string; port: number };
    assert.ok(address.port > 0);
    const client = newClient(t);
    await client.connect({ host, port: address.port });
    const peer = await server.peer();
    assert.equal(peer.socket.remoteAddress, host);
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
    await client.disconnect();
    await peer.closed;
  });
}

void test("connect() with an already-connected net.Socket", async (t) => {
  const server = await fakeServer(t);
  const client = newClient(t);
  const socket = net.connect(server.address as string);
  t.after(() => socket.destroy());
  await new Promise<void>((resolve) => socket.once("connect", resolve));
  assert.equal(socket.connecting, false);
  await client.connect(socket);
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  await client.disconnect();
  assert.ok(socket.destroyed);
});

void test("connect() with a net.Socket that is still connecting", async (t) => {
  const server = await fakeServer(t);
  const client = newClient(t);
  const socket = net.connect(server.address as string);
  t.after(() => socket.destroy());
  assert.equal(socket.connecting, true);
  await client.connect(socket);
  assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  await client.disconnect();
});

void test("connect() with an in-memory Duplex", async (t) => {
  const [mine, theirs] = duplexPair();
  t.after(() => {
    mine.destroy();
    theirs.destroy();
  });
  // The fake peer only uses the stream side of its socket.
  const peer = new FakePeer(theirs as unknown as net.Socket);
  const client = newClient(t);
  await client.connect(mine);
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.equal(client.greeting?.QMP.version.package, "fake");
  assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  assert.deepEqual(
    peer.received.map((m) => m["execute"]),
    ["qmp_capabilities", "query-status"],
  );
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("over a plain Duplex, the peer's end of stream is answered with ours", async (t) => {
  const [mine, theirs] = duplexPair();
  t.after(() => {
    mine.destroy();
    theirs.destroy();
  });
  const peer = new FakePeer(theirs as unknown as net.Socket);
  const client = newClient(t);
  await client.connect(mine);
  const theirsEnded = new Promise<void>((resolve) => theirs.once("end", resolve));
  theirs.resume();
  peer.end();
  // No disconnect() yet: the client closes its side as soon as it sees the EOF.
  await theirsEnded;
  assert.equal(client.runstate, Runstate.DISCONNECTING);
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
});

// ----------------------------------------------------------- connect failures

void test("connect() to a missing socket file: ConnectError caused by ENOENT, back to IDLE", async (t) => {
  const dir = tempDir(t);
  const client = newClient(t);
  const seen = recordRunstates(client);
  const err = await rejection(client.connect(join(dir, "missing.sock")));
  assert.ok(err instanceof ConnectError, String(err));
  assert.match(err.message, /^Failed to establish connection/);
  assert.equal((err.cause as NodeJS.ErrnoException).code, "ENOENT");
  assert.equal(client.runstate, Runstate.IDLE);
  assert.deepEqual(seen[0], [Runstate.CONNECTING, Runstate.IDLE]);
  assert.deepEqual(seen.at(-1)?.[0], Runstate.IDLE);
});

void test("connect() to a stale UNIX socket: ConnectError caused by ECONNREFUSED, back to IDLE", async (t) => {
  const dir = tempDir(t);
  const path = await staleSocket(dir, "stale.sock");
  const client = newClient(t);
  const err = await rejection(client.connect({ path }));
  assert.ok(err instanceof ConnectError, String(err));
  assert.match(err.message, /^Failed to establish connection/);
  assert.equal((err.cause as NodeJS.ErrnoException).code, "ECONNREFUSED");
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("connect() to a closed TCP port: ConnectError caused by ECONNREFUSED, back to IDLE", async (t) => {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const client = newClient(t);
  const err = await rejection(client.connect({ host: "127.0.0.1", port }));
  assert.ok(err instanceof ConnectError, String(err));
  assert.match(err.message, /^Failed to establish connection/);
  assert.equal((err.cause as NodeJS.ErrnoException).code, "ECONNREFUSED");
  assert.equal(client.runstate, Runstate.IDLE);
  // The client is reusable after a failure.
  const server = await fakeServer(t);
  await client.connect(server.address);
  assert.equal(client.runstate, Runstate.RUNNING);
  await client.disconnect();
});

void test("a peer that closes before its greeting: 'Failed to establish session', back to IDLE", async (t) => {
  const server = await fakeServer(t, { greeting: false });
  const client = newClient(t);
  const connecting = rejection(client.connect(server.address));
  const peer = await server.peer();
  peer.end();
  const err = await connecting;
  assert.ok(err instanceof ConnectError, String(err));
  assert.match(err.message, /^Failed to establish session/);
  assert.ok(err.cause instanceof Error);
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("connect() aborted while waiting for the greeting rejects with the signal's reason, IDLE", async (t) => {
  const server = await fakeServer(t, { greeting: false });
  const client = newClient(t);
  const controller = new AbortController();
  const reason = new Error("user gave up");
  const connecting = rejection(client.connect(server.address, { signal: controller.signal }));
  const peer = await server.peer();
  assert.equal(client.runstate, Runstate.CONNECTING);
  controller.abort(reason);
  assert.equal(await connecting, reason);
  assert.equal(client.runstate, Runstate.IDLE);
  await peer.closed;
});

void test("connect() with an already-aborted signal rejects with its reason and stays usable", async (t) => {
  const server = await fakeServer(t);
  const client = newClient(t);
  const reason = new Error("aborted before start");
  const err = await rejection(
    client.connect(server.address, { signal: AbortSignal.abort(reason) }),
  );
  assert.equal(err, reason);
  assert.equal(client.runstate, Runstate.IDLE);
  await client.connect(server.address);
  assert.equal(client.runstate, Runstate.RUNNING);
  await client.disconnect();
});

void test("connect() with a timeout and no greeting rejects with a TimeoutError DOMException, IDLE", async (t) => {
  const server = await fakeServer(t, { greeting: false });
  const client = newClient(t);
  const err = await rejection(client.connect(server.address, { timeout: 50 }));
  assert.ok(err instanceof DOMException, String(err));
  assert.equal(err.name, "TimeoutError");
  assert.equal(client.runstate, Runstate.IDLE);
  const peer = await server.peer();
  await peer.closed;
});

// ---------------------------------------------------------------- StateError

function assertStateError(
  err: unknown,
  message: string,
  state: Runstate,
  required: Runstate,
): void {
  assert.ok(err instanceof StateError, String(err));
  assert.equal(err.message, message);
  assert.equal(err.state, state);
  assert.equal(err.required, required);
  assert.equal(err.name, "StateError");
}

void test("StateError while CONNECTING names the subclass", async (t) => {
  const server = await fakeServer(t, { greeting: false });
  const client = new VMClient();
  t.after(() => client.destroy());
  const connecting = rejection(client.connect(server.address));
  await untilState(client, Runstate.CONNECTING);
  const msg = "VMClient is currently connecting.";
  assertStateError(
    await rejection(client.connect(server.address)),
    msg,
    Runstate.CONNECTING,
    Runstate.IDLE,
  );
  assertStateError(
    await rejection(client.execute("query-status")),
    msg,
    Runstate.CONNECTING,
    Runstate.RUNNING,
  );
  assertStateError(
    await rejection(client.startServer(join(tempDir(t), "s.sock"))),
    msg,
    Runstate.CONNECTING,
    Runstate.IDLE,
  );
  await client.disconnect();
  assert.ok((await connecting) instanceof Error);
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("StateError while RUNNING names the subclass", async (t) => {
  const server = await fakeServer(t);
  const client = new VMClient();
  t.after(() => client.destroy());
  await client.connect(server.address);
  const msg = "VMClient is already connected and running.";
  assertStateError(
    await rejection(client.connect(server.address)),
    msg,
    Runstate.RUNNING,
    Runstate.IDLE,
  );
  assertStateError(await rejection(client.accept()), msg, Runstate.RUNNING, Runstate.CONNECTING);
  // The failed calls did not disturb the session.
  assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  await client.disconnect();
});

void test("StateError while DISCONNECTING names the subclass", async (t) => {
  const server = await fakeServer(t);
  const client = new VMClient();
  t.after(() => client.destroy());
  await client.connect(server.address);
  const peer = await server.peer();
  peer.end();
  await untilState(client, Runstate.DISCONNECTING);
  const msg = "VMClient is disconnecting. Call disconnect() to return to IDLE state.";
  assertStateError(
    await rejection(client.execute("query-status")),
    msg,
    Runstate.DISCONNECTING,
    Runstate.RUNNING,
  );
  assertStateError(
    await rejection(client.connect(server.address)),
    msg,
    Runstate.DISCONNECTING,
    Runstate.IDLE,
  );
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("StateError while IDLE names the subclass", async (t) => {
  const client = new VMClient();
  t.after(() => client.destroy());
  const msg = "VMClient is disconnected and idle.";
  assertStateError(
    await rejection(client.execute("query-status")),
    msg,
    Runstate.IDLE,
    Runstate.RUNNING,
  );
  assertStateError(await rejection(client.accept()), msg, Runstate.IDLE, Runstate.CONNECTING);
  assert.equal(client.runstate, Runstate.IDLE);
});

// ---------------------------------------------------------------- disconnect

void test("disconnect() flushes a command sent just before it", async (t) => {
  const { client, peer } = await session(t, {
    handlers: { marker: () => undefined },
  });
  assert.equal((await peer.nextMessage())["execute"], "qmp_capabilities");
  const pending = rejection(client.execute("marker", { n: 1 }));
  await client.disconnect();
  const m = await peer.nextMessage();
  assert.equal(m["execute"], "marker");
  assert.deepEqual(m["arguments"], { n: 1 });
  assert.ok((await pending) instanceof ExecInterruptedError);
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("disconnect() twice, concurrently and then again, is harmless", async (t) => {
  const { client, peer } = await session(t);
  const seen = recordRunstates(client);
  const results = await Promise.allSettled([client.disconnect(), client.disconnect()]);
  assert.deepEqual(
    results.map((r) => r.status),
    ["fulfilled", "fulfilled"],
  );
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
  assert.deepEqual(seen, [
    [Runstate.DISCONNECTING, Runstate.RUNNING],
    [Runstate.IDLE, Runstate.DISCONNECTING],
  ]);
  await peer.closed;
});

void test("disconnect() while IDLE resolves and changes nothing", async (t) => {
  const client = newClient(t);
  const seen = recordRunstates(client);
  await client.disconnect();
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
  assert.deepEqual(seen, []);
});

void test("disconnect() during a pending connect: the connect fails, both end in IDLE", async (t) => {
  const server = await fakeServer(t, { greeting: false });
  const client = newClient(t);
  const connecting = rejection(client.connect(server.address));
  const peer = await server.peer();
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
  const err = await connecting;
  assert.ok(err instanceof ConnectError, String(err));
  assert.equal(client.runstate, Runstate.IDLE);
  await peer.closed;
  // Usable again.
  const good = await fakeServer(t);
  await client.connect(good.address);
  assert.equal(client.runstate, Runstate.RUNNING);
  await client.disconnect();
});

void test("disconnect() after startServer() before accept(): IDLE, socket file removed", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  await client.startServer(path);
  assert.equal(client.runstate, Runstate.CONNECTING);
  assert.ok(lstatSync(path).isSocket());
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
  assert.throws(() => lstatSync(path), { code: "ENOENT" });
  assert.ok((await rejection(client.accept())) instanceof StateError);
  // The path is free again.
  await client.startServer(path);
  await client.disconnect();
});

void test("disconnect() during a pending accept(): accept fails, IDLE, socket file removed", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  await client.startServer(path);
  const accepting = rejection(client.accept());
  await client.disconnect();
  assert.ok((await accepting) instanceof ConnectError);
  assert.equal(client.runstate, Runstate.IDLE);
  assert.throws(() => lstatSync(path), { code: "ENOENT" });
});

void test("disconnect() after a protocol error rejects with it once, then resolves", async (t) => {
  const { client, peer } = await session(t, { handlers: { hang: () => undefined } });
  const pending = rejection(client.execute("hang"));
  assert.equal((await peer.nextMessage())["execute"], "qmp_capabilities");
  assert.equal((await peer.nextMessage())["execute"], "hang");
  peer.write("this is not json\r\n");
  await untilState(client, Runstate.DISCONNECTING);
  const interrupted = await pending;
  assert.ok(interrupted instanceof ExecInterruptedError, String(interrupted));
  const root = await rejection(client.disconnect());
  assert.ok(root instanceof DeserializationError, String(root));
  assert.ok(root instanceof ProtocolError);
  assert.equal(interrupted.cause, root);
  assert.equal(client.runstate, Runstate.IDLE);
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("disconnect() after a TCP reset rejects with ECONNRESET once, then resolves", async (t) => {
  const server = await fakeServer(t, {}, { host: "127.0.0.1", port: 0 });
  const client = newClient(t);
  await client.connect(server.address);
  const peer = await server.peer();
  peer.reset();
  await untilState(client, Runstate.DISCONNECTING);
  const err = await rejection(client.disconnect());
  assert.equal((err as NodeJS.ErrnoException).code, "ECONNRESET");
  assert.equal(client.runstate, Runstate.IDLE);
  await client.disconnect();
});

void test("a clean end of stream is not an error; a cut inside a message is", async (t) => {
  await t.test("clean EOF at a message boundary", async (t) => {
    const { client, peer } = await session(t, { handlers: { hang: () => undefined } });
    const pending = rejection(client.execute("hang"));
    await peer.nextMessage();
    await peer.nextMessage();
    peer.end();
    await untilState(client, Runstate.DISCONNECTING);
    assert.ok((await pending) instanceof ExecInterruptedError);
    await client.disconnect();
    assert.equal(client.runstate, Runstate.IDLE);
  });
  await t.test("EOF inside a message", async (t) => {
    const { client, peer } = await session(t, { handlers: { hang: () => undefined } });
    const pending = rejection(client.execute("hang"));
    await peer.nextMessage();
    await peer.nextMessage();
    peer.write('{"return": {"half');
    peer.end();
    await untilState(client, Runstate.DISCONNECTING);
    assert.ok((await pending) instanceof ExecInterruptedError);
    const err = await rejection(client.disconnect());
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(client.runstate, Runstate.IDLE);
  });
});

// ------------------------------------------------------------------- destroy

void test("destroy() tears down at once and never throws, even after a background error", async (t) => {
  const { client, peer } = await session(t, { handlers: { hang: () => undefined } });
  const pending = rejection(client.execute("hang"));
  peer.write("garbage\r\n");
  await untilState(client, Runstate.DISCONNECTING);
  await client.destroy();
  assert.equal(client.runstate, Runstate.IDLE);
  assert.ok((await pending) instanceof ExecInterruptedError);
  await client.destroy();
  // A later disconnect() has nothing left to report.
  await client.disconnect();
});

void test("destroy() of a running session: pending calls interrupted, peer sees the close", async (t) => {
  const { client, peer } = await session(t, { handlers: { hang: () => undefined } });
  const pending = rejection(client.execute("hang"));
  await client.destroy();
  assert.equal(client.runstate, Runstate.IDLE);
  assert.ok((await pending) instanceof ExecInterruptedError);
  await peer.closed;
});

void test("`await using` tears the client down at the end of the scope", async (t) => {
  const server = await fakeServer(t);
  let escaped: QMPClient | undefined;
  {
    await using client = new QMPClient();
    escaped = client;
    await client.connect(server.address);
    assert.equal(client.runstate, Runstate.RUNNING);
  }
  assert.equal(escaped.runstate, Runstate.IDLE);
  const peer = await server.peer();
  await peer.closed;
});

// -------------------------------------------------------------- backpressure

const BLOB_SIZE = 256 * 1024;
const BLOB_COUNT = 40;

/** A client on a socket we hold, so we can watch its write buffer; the peer stops reading. */
async function stalledSession(t: TestContext): Promise<{
  client: QMPClient;
  peer: FakePeer;
  socket: net.Socket;
  calls: Promise<unknown>[];
  maxBuffered: number;
}> {
  const server = await fakeServer(t, { handlers: { blob: () => ({ return: {} }) } });
  const socket = net.connect(server.address as string);
  t.after(() => socket.destroy());
  const client = newClient(t);
  await client.connect(socket);
  const peer = await server.peer();
  assert.equal((await peer.nextMessage())["execute"], "qmp_capabilities");
  peer.socket.pause();
  const payload = "x".repeat(BLOB_SIZE);
  const calls: Promise<unknown>[] = [];
  let maxBuffered = 0;
  for (let seq = 0; seq < BLOB_COUNT; seq++) {
    const call = client.execute("blob", { seq, payload });
    call.catch(() => {});
    calls.push(call);
    maxBuffered = Math.max(maxBuffered, socket.writableLength);
  }
  return { client, peer, socket, calls, maxBuffered };
}

/** Resume the peer and wait until it has received `count` blobs; check the order. */
async function receiveBlobs(peer: FakePeer, count: number): Promise<void> {
  for (let seq = 0; seq < count; seq++) {
    const m = await peer.nextMessage();
    assert.equal(m["execute"], "blob");
    assert.equal((m["arguments"] as { seq: number }).seq, seq);
  }
}

void test("writer backpressure: a peer that does not read keeps the socket buffer bounded", async (t) => {
  const { peer, socket, calls, maxBuffered } = await stalledSession(t);
  const total = BLOB_SIZE * BLOB_COUNT;
  const bound = 2 * BLOB_SIZE + socket.writableHighWaterMark;
  assert.ok(
    maxBuffered <= bound,
    `socket buffered ${maxBuffered} bytes of ${total} (bound ${bound}): no backpressure`,
  );
  // Sample the client's buffer each time the peer gets bytes, until all blobs are in.
  let peak = 0;
  peer.socket.on("data", () => {
    peak = Math.max(peak, socket.writableLength);
  });
  peer.socket.resume();
  await receiveBlobs(peer, BLOB_COUNT);
  assert.ok(peak <= bound, `socket buffered up to ${peak} bytes while draining (bound ${bound})`);
  // Every call got its reply.
  for (const call of calls) assert.deepEqual(await call, {});
});

void test("disconnect() flushes writes still queued behind backpressure, in call order", async (t) => {
  const { client, peer, calls } = await stalledSession(t);
  const disconnecting = client.disconnect();
  peer.socket.resume();
  await receiveBlobs(peer, BLOB_COUNT);
  await disconnecting;
  assert.equal(client.runstate, Runstate.IDLE);
  for (const call of calls) {
    const err = await rejection(call);
    assert.ok(err instanceof ExecInterruptedError, String(err));
  }
});

void test("destroy() does not flush writes queued behind backpressure", async (t) => {
  const { client, peer, calls } = await stalledSession(t);
  await client.destroy();
  assert.equal(client.runstate, Runstate.IDLE);
  peer.socket.resume();
  await peer.closed;
  const blobs = peer.received.filter((m) => m["execute"] === "blob");
  assert.ok(blobs.length < BLOB_COUNT, `the peer got all ${blobs.length} blobs`);
  blobs.forEach((m, seq) => assert.equal((m["arguments"] as { seq: number }).seq, seq));
  for (const call of calls) assert.ok((await rejection(call)) instanceof ExecInterruptedError);
});

// ------------------------------------------------------ unhandled rejections

void test("a reset with pending calls and no disconnect() leaves no unhandled rejection", async (t) => {
  const server = await fakeServer(
    t,
    { handlers: { hang: () => undefined } },
    { host: "127.0.0.1", port: 0 },
  );
  const client = new QMPClient();
  await client.connect(server.address);
  const peer = await server.peer();
  const listener = client.listener("NEVER");
  const waiting = rejection(listener.get());
  const pending = rejection(client.execute("hang"));
  await peer.nextMessage();
  await peer.nextMessage();
  peer.reset();
  await untilState(client, Runstate.DISCONNECTING);
  assert.ok((await pending) instanceof ExecInterruptedError);
  assert.ok((await waiting) instanceof SessionEndedError);
  // The user walks away: no disconnect(), no destroy().
});

void test("a protocol error and no disconnect() leaves no unhandled rejection", async (t) => {
  const server = await fakeServer(t);
  const client = new QMPClient();
  await client.connect(server.address);
  const peer = await server.peer();
  const changed = client.runstateChanged();
  peer.write("[1, 2, 3]\r\n");
  assert.equal(await changed, Runstate.DISCONNECTING);
  // The client drops the connection on a protocol error; the user walks away.
  await peer.closed;
});

void test("no unhandled rejection happened in this file", async () => {
  // Let rejections from the previous tests be tracked.
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(unhandled, []);
});
