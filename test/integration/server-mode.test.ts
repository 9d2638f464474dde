// Server mode (SPEC §1): startServer/accept on UNIX and TCP sockets, with a fake QEMU that
// connects to us; one peer only, socket file mode and lifetime, stale and busy paths.

import {
  existsSync,
  lstatSync,
  linkSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  watch,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { type InetAddress, QMPClient, QMPError, Runstate, StateError } from "../../src/index.js";
import { FakeQMPServer, type FakePeer } from "../../src/testing/index.js";
import { rejection, watchUnhandledRejections } from "../helpers/common.js";
import { addressInUse } from "../helpers/listen.js";

const unhandled = watchUnhandledRejections();

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "qmp-server-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function newClient(t: TestContext): QMPClient {
  const client = new QMPClient();
  t.after(() => client.destroy());
  return client;
}

/** A fake QEMU connecting to our listening client; closed at the end of the test. */
async function connectPeer(t: TestContext, address: string | InetAddress): Promise<FakePeer> {
  const peer = await FakeQMPServer.connectTo(address);
  t.after(() => peer.socket.destroy());
  return peer;
}

/** Resolves once `name` exists in `dir` (the client renamed its socket into place). */
function whenCreated(t: TestContext, dir: string, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const watcher = watch(dir, (_event, file) => {
      if (file === name && existsSync(join(dir, name))) {
        watcher.close();
        resolve();
      }
    });
    watcher.on("error", reject);
    t.after(() => watcher.close());
  });
}

/** Outcome of a connection attempt that should not become a session. */
async function refusedOrClosed(address: string): Promise<string> {
  try {
    const peer = await FakeQMPServer.connectTo(address);
    await peer.closed;
    return "closed";
  } catch (err) {
    return `refused:${(err as NodeJS.ErrnoException).code}`;
  }
}

function listenUnix(t: TestContext, path: string): Promise<net.Server> {
  const server = net.createServer((s) => s.destroy());
  t.after(() => server.close());
  return new Promise((resolve) => server.listen(path, () => resolve(server)));
}

void test("startServer() on a UNIX path → CONNECTING; a fake QEMU connects; accept() → RUNNING", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  const seen: Runstate[] = [];
  client.on("runstate", (state) => seen.push(state));
  await client.startServer(path);
  assert.equal(client.runstate, Runstate.CONNECTING);
  assert.equal(client.serverAddress, path);
  const stat = lstatSync(path);
  assert.ok(stat.isSocket());
  assert.equal(stat.mode & 0o777, 0o600);
  const peer = await connectPeer(t, path);
  await client.accept();
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.deepEqual(seen, [Runstate.CONNECTING, Runstate.RUNNING]);
  assert.equal(client.greeting?.QMP.version.package, "fake");
  assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  assert.deepEqual(
    peer.received.map((m) => m["execute"]),
    ["qmp_capabilities", "query-status"],
  );
  // The socket file is gone once the peer is accepted.
  assert.equal(existsSync(path), false);
  assert.equal(client.serverAddress, undefined);
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
  await peer.closed;
});

void test("startServer() with { path } and a custom mode", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  await client.startServer({ path }, { mode: 0o660 });
  assert.equal(lstatSync(path).mode & 0o777, 0o660);
  await connectPeer(t, path);
  await client.accept();
  assert.equal(client.runstate, Runstate.RUNNING);
  await client.disconnect();
});

void test("startServerAndAccept() listens and accepts in one call", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  const created = whenCreated(t, dir, "qmp.sock");
  const accepting = client.startServerAndAccept(path);
  await created;
  assert.equal(lstatSync(path).mode & 0o777, 0o600);
  const peer = await connectPeer(t, path);
  await accepting;
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.deepEqual(await client.execute("query-version"), {
    qemu: { micro: 0, minor: 0, major: 10 },
    package: "fake",
  });
  assert.equal(existsSync(path), false);
  await client.disconnect();
  await peer.closed;
});

void test("startServerAndAccept() with a timeout and no peer: TimeoutError, IDLE, file removed", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  const err = await rejection(client.startServerAndAccept(path, { timeout: 50 }));
  assert.ok(err instanceof DOMException, String(err));
  assert.equal(err.name, "TimeoutError");
  assert.equal(client.runstate, Runstate.IDLE);
  assert.equal(existsSync(path), false);
});

void test("after the accept, the listener is gone: a later connection is refused", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  await client.startServer(path);
  const first = await connectPeer(t, path);
  await client.accept();
  assert.equal(await refusedOrClosed(path), "refused:ENOENT");
  // The session with the first peer is unaffected.
  assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  assert.equal(first.received.at(-1)?.["execute"], "query-status");
  await client.disconnect();
});

void test("two peers connect before accept(): exactly one is accepted, the other closed", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  await client.startServer(path);
  const first = await connectPeer(t, path);
  let second: FakePeer | undefined;
  let secondRefused: string | undefined;
  try {
    second = await connectPeer(t, path);
  } catch (err) {
    // The listener may already have stopped after the first connection.
    secondRefused = (err as NodeJS.ErrnoException).code;
  }
  await client.accept();
  assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  const talked = [first, second].filter((p) =>
    p?.received.some((m) => m["execute"] === "query-status"),
  );
  assert.equal(talked.length, 1);
  if (second !== undefined) {
    const other = talked[0] === first ? second : first;
    await other.closed;
    assert.deepEqual(other.received, []);
  } else {
    assert.ok(secondRefused === "ENOENT" || secondRefused === "ECONNREFUSED", secondRefused);
  }
  await client.disconnect();
});

void test("a stale socket file (nobody listening) is replaced", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const old = net.createServer();
  await new Promise<void>((resolve) => old.listen(join(dir, "old.sock"), resolve));
  // Keep the socket inode at `path` once the old server unlinks its own name.
  linkSync(join(dir, "old.sock"), path);
  await new Promise<void>((resolve) => old.close(() => resolve()));
  const staleIno = lstatSync(path).ino;
  assert.equal(await refusedOrClosed(path), "refused:ECONNREFUSED");
  const client = newClient(t);
  await client.startServer(path);
  const stat = lstatSync(path);
  assert.ok(stat.isSocket());
  assert.notEqual(stat.ino, staleIno);
  assert.equal(stat.mode & 0o777, 0o600);
  await connectPeer(t, path);
  await client.accept();
  assert.equal(client.runstate, Runstate.RUNNING);
  await client.disconnect();
});

void test("a path with a live listener: ConnectError caused by AddressInUseError; the listener still works", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const other = await listenUnix(t, path);
  const client = newClient(t);
  const err = await rejection(client.startServer(path));
  assert.match(addressInUse(err, path).message, /a live listener owns it/);
  assert.equal(client.runstate, Runstate.IDLE);
  assert.equal(client.serverAddress, undefined);
  assert.ok(lstatSync(path).isSocket());
  // The other listener still accepts connections at its path.
  const accepted = new Promise<void>((resolve) => other.once("connection", () => resolve()));
  const probe = net.connect(path);
  t.after(() => probe.destroy());
  await accepted;
  assert.ok(other.listening);
});

void test("a TCP port with a live listener: ConnectError caused by AddressInUseError (EADDRINUSE)", async (t) => {
  const other = net.createServer((s) => s.destroy());
  t.after(() => other.close());
  await new Promise<void>((resolve) => other.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const { port } = other.address() as net.AddressInfo;
  const client = newClient(t);
  const err = await rejection(client.startServer({ host: "127.0.0.1", port }));
  const cause = addressInUse(err, `127.0.0.1:${port}`);
  assert.equal((cause.cause as NodeJS.ErrnoException).code, "EADDRINUSE");
  assert.equal(client.runstate, Runstate.IDLE);
  assert.ok(other.listening);
});

void test("a regular file at the path: ConnectError, and the file is left untouched", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  writeFileSync(path, "precious data\n", { mode: 0o644 });
  const before = lstatSync(path);
  const client = newClient(t);
  const err = await rejection(client.startServer(path));
  assert.match(addressInUse(err, path).message, /a file that is not a socket is in the way/);
  assert.equal(client.runstate, Runstate.IDLE);
  const after = lstatSync(path);
  assert.ok(after.isFile());
  assert.equal(after.ino, before.ino);
  assert.equal(after.mode, before.mode);
  assert.equal(readFileSync(path, "utf8"), "precious data\n");
});

void test("a directory at the path: ConnectError, and the directory is left untouched", async (t) => {
  const dir = tempDir(t);
  const inner = mkdtempSync(join(dir, "sub-"));
  writeFileSync(join(inner, "keep"), "x");
  const client = newClient(t);
  const err = await rejection(client.startServer(inner));
  assert.match(addressInUse(err, inner).message, /a file that is not a socket is in the way/);
  assert.equal(client.runstate, Runstate.IDLE);
  assert.ok(lstatSync(inner).isDirectory());
  assert.equal(readFileSync(join(inner, "keep"), "utf8"), "x");
});

void test("a TCP server on 127.0.0.1 port 0: serverAddress gives the real port", async (t) => {
  const client = newClient(t);
  await client.startServer({ host: "127.0.0.1", port: 0 });
  assert.equal(client.runstate, Runstate.CONNECTING);
  const address = client.serverAddress;
  assert.ok(typeof address === "object" && address !== undefined);
  assert.equal(address.host, "127.0.0.1");
  assert.ok(address.port > 0 && address.port <= 65535);
  const peer = await connectPeer(t, address);
  await client.accept();
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  // The port no longer listens.
  const refused = await new Promise<string | undefined>((resolve) => {
    const s = net.connect(address.port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(undefined);
    });
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code));
  });
  assert.equal(refused, "ECONNREFUSED");
  await client.disconnect();
  await peer.closed;
});

void test("accept() aborted with no peer: the signal's reason, IDLE, socket file removed", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  await client.startServer(path);
  const controller = new AbortController();
  const reason = new Error("no QEMU today");
  const accepting = rejection(client.accept({ signal: controller.signal }));
  assert.equal(client.runstate, Runstate.CONNECTING);
  controller.abort(reason);
  assert.equal(await accepting, reason);
  assert.equal(client.runstate, Runstate.IDLE);
  assert.equal(existsSync(path), false);
  assert.equal(client.serverAddress, undefined);
});

void test("startServer() with an aborted signal: its reason, IDLE, nothing left listening", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  const reason = new Error("not now");
  const err = await rejection(client.startServer(path, { signal: AbortSignal.abort(reason) }));
  assert.equal(err, reason);
  assert.equal(client.runstate, Runstate.IDLE);
  assert.equal(client.serverAddress, undefined);
  assert.equal(existsSync(path), false);
  assert.deepEqual(
    readdirSync(dir).filter((f) => f !== "qmp.sock"),
    [],
    "no private bind directory left behind",
  );
  // The path is free for the next attempt.
  await client.startServer(path);
  await connectPeer(t, path);
  await client.accept();
  assert.equal(client.runstate, Runstate.RUNNING);
  await client.disconnect();
});

void test("accept() with a timeout and no peer: TimeoutError DOMException, IDLE, file removed", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  await client.startServer(path);
  const err = await rejection(client.accept({ timeout: 50 }));
  assert.ok(err instanceof DOMException, String(err));
  assert.equal(err.name, "TimeoutError");
  assert.equal(client.runstate, Runstate.IDLE);
  assert.equal(existsSync(path), false);
  // The client can listen again at once.
  await client.startServer(path);
  await connectPeer(t, path);
  await client.accept();
  assert.equal(client.runstate, Runstate.RUNNING);
  await client.disconnect();
});

void test("accept() before startServer(): StateError when IDLE and while connect() runs", async (t) => {
  const client = newClient(t);
  const idle = await rejection(client.accept());
  assert.ok(idle instanceof StateError, String(idle));
  assert.equal(idle.message, "QMPClient is disconnected and idle.");
  assert.equal(idle.state, Runstate.IDLE);
  assert.equal(idle.required, Runstate.CONNECTING);
  // CONNECTING through connect(), not startServer(): no listener to accept from.
  const server = await FakeQMPServer.listen({ greeting: false });
  t.after(() => server.close());
  const connecting = rejection(client.connect(server.address));
  assert.equal(client.runstate, Runstate.CONNECTING);
  const noListener = await rejection(client.accept());
  assert.ok(noListener instanceof StateError, String(noListener));
  assert.match(noListener.message, /startServer/);
  assert.equal(client.runstate, Runstate.CONNECTING);
  await client.disconnect();
  await connecting;
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("a second accept() while one is pending is refused", async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "qmp.sock");
  const client = newClient(t);
  await client.startServer(path);
  const first = client.accept();
  const second = await rejection(client.accept());
  assert.ok(second instanceof QMPError, String(second));
  await connectPeer(t, path);
  await first;
  assert.equal(client.runstate, Runstate.RUNNING);
  await client.disconnect();
});

void test("no unhandled rejection happened in this file", async () => {
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(unhandled, []);
});
