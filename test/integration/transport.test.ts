// The transport under startServer()/accept() and connect(): peers that die before accept()
// takes them, and the checks that keep a UNIX socket path from being stolen or overwritten.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { once } from "node:events";
import {
  linkSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import tls from "node:tls";
import { ConnectError, type InetAddress, Runstate, TransportError } from "../../src/index.js";
import { FakePeer, FakeQMPServer } from "../../src/testing/index.js";
import { listenHooks } from "../../src/listener.js";
import { newClient, rejection, watchUnhandledRejections } from "../helpers/common.js";
import { addressInUse } from "../helpers/listen.js";
import { type TestPki, makePki } from "../helpers/tls.js";

const unhandled = watchUnhandledRejections();

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "qmp-transport-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Set the placement hook for one test. */
function hookBeforePlace(t: TestContext, hook: (path: string) => void | Promise<void>): void {
  listenHooks.beforePlace = hook;
  t.after(() => delete listenHooks.beforePlace);
}

/**
 * The server side of the next connection made to any listener of this
 * process, as Node's `net.server.socket` channel reports it. No 'error'
 * listener is added to it: that must be the listener's own.
 */
function nextServerSocket(t: TestContext): Promise<net.Socket> {
  return new Promise((resolve) => {
    const onSocket = (message: unknown): void => {
      unsubscribe("net.server.socket", onSocket);
      resolve((message as { socket: net.Socket }).socket);
    };
    subscribe("net.server.socket", onSocket);
    t.after(() => unsubscribe("net.server.socket", onSocket));
  });
}

/**
 * Connect a raw TCP socket to `address` and reset it once the listener has
 * the connection; resolves once the listener's side of it is closed.
 */
async function connectAndReset(t: TestContext, address: InetAddress): Promise<void> {
  const serverSide = nextServerSocket(t);
  const socket = net.connect(address.port, address.host);
  t.after(() => socket.destroy());
  await once(socket, "connect");
  const accepted = await serverSide;
  // Not events.once(): it would listen for 'error' too, hiding a missing listener.
  const closed = new Promise((resolve) => accepted.once("close", resolve));
  socket.resetAndDestroy();
  await closed;
}

/** Nothing but `names` in `dir`: no private bind directory left behind. */
function assertOnly(dir: string, names: string[]): void {
  assert.deepEqual(readdirSync(dir).sort(), names.sort());
}

/**
 * A socket file at `path` whose listener is gone (connecting is refused):
 * a second link to a listener's socket, which outlives the listener's own
 * name (Node removes that when it closes).
 */
async function staleSocket(dir: string, path: string): Promise<number> {
  const old = net.createServer();
  const scratch = join(dir, `old-${process.hrtime.bigint()}.sock`);
  await new Promise<void>((resolve) => old.listen(scratch, resolve));
  linkSync(scratch, path);
  await new Promise<void>((resolve) => old.close(() => resolve()));
  return lstatSync(path).ino;
}

void describe("a peer that resets before accept() takes it", () => {
  let pki: TestPki;
  before(async () => {
    pki = await makePki();
  });
  after(() => pki?.remove());

  void test("TCP: no crash; it is dropped and accept() takes the next peer", async (t) => {
    const client = newClient(t);
    await client.startServer({ host: "127.0.0.1", port: 0 });
    const address = client.serverAddress as InetAddress;
    await connectAndReset(t, address);
    assert.equal(client.runstate, Runstate.CONNECTING);
    // The listener still listens: the next peer is the one accept() takes.
    const peer = await FakeQMPServer.connectTo(address);
    t.after(() => peer.socket.destroy());
    await client.accept({ timeout: 5000 });
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
    await client.disconnect();
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void test("TCP: with no next peer, accept() runs into its timeout, then IDLE", async (t) => {
    const client = newClient(t);
    await client.startServer({ host: "127.0.0.1", port: 0 });
    await connectAndReset(t, client.serverAddress as InetAddress);
    const err = await rejection(client.accept({ timeout: 50 }));
    assert.ok(err instanceof DOMException, String(err));
    assert.equal(err.name, "TimeoutError");
    assert.equal(client.runstate, Runstate.IDLE);
    await client.disconnect();
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void test("TLS: a reset before the handshake is dropped; the next TLS peer is taken", async (t) => {
    const client = newClient(t);
    await client.startServer({ host: "127.0.0.1", port: 0 }, { tls: pki.server });
    const address = client.serverAddress as InetAddress;
    await connectAndReset(t, address);
    const socket = tls.connect({ ...address, ca: pki.ca });
    t.after(() => socket.destroy());
    await once(socket, "secureConnect");
    const peer = new FakePeer(socket);
    await client.accept({ timeout: 5000 });
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
    assert.deepEqual(
      peer.received.map((m) => m["execute"]),
      ["qmp_capabilities", "query-status"],
    );
    await client.disconnect();
    assert.equal(client.runstate, Runstate.IDLE);
  });
});

void describe("startServer() on a UNIX path: what is already there", () => {
  void test("a live listener with a full backlog (EAGAIN) is in use, not replaced", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "qmp.sock");
    // A listener that never accepts: its event loop is blocked after listen().
    const child = spawn(
      process.execPath,
      [
        "-e",
        `require("node:net").createServer().listen({ path: process.argv[1], backlog: 1 }, () => {
          process.stdout.write("listening\\n");
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
        });`,
        path,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    t.after(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await once(child, "exit");
      }
    });
    await once(child.stdout, "data");
    const ino = lstatSync(path).ino;
    // Fill its backlog until connecting fails with EAGAIN.
    let full: unknown;
    for (let i = 0; i < 64 && full === undefined; i++) {
      const s = net.connect(path);
      t.after(() => s.destroy());
      full = await new Promise<unknown>((resolve) => {
        s.once("connect", () => resolve(undefined));
        s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code));
      });
    }
    assert.equal(full, "EAGAIN");

    const client = newClient(t);
    const err = await rejection(client.startServer(path));
    const cause = addressInUse(err, path);
    assert.match(cause.message, /a live listener owns it \(its backlog is full\)/);
    assert.equal((cause.cause as NodeJS.ErrnoException).code, "EAGAIN");
    assert.equal(client.runstate, Runstate.IDLE);
    assert.equal(lstatSync(path).ino, ino, "the live listener's socket file was replaced");
    assertOnly(dir, ["qmp.sock"]);
  });

  void test("a regular file appearing after the check is not overwritten", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "qmp.sock");
    hookBeforePlace(t, (p) => writeFileSync(p, "precious data\n"));
    const client = newClient(t);
    const err = await rejection(client.startServer(path));
    assert.match(addressInUse(err, path).message, /a file that is not a socket is in the way/);
    assert.equal(client.runstate, Runstate.IDLE);
    assert.ok(lstatSync(path).isFile());
    assert.equal(readFileSync(path, "utf8"), "precious data\n");
    assertOnly(dir, ["qmp.sock"]);
  });

  void test("a regular file replacing the stale socket after the check is left in place", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "qmp.sock");
    await staleSocket(dir, path);
    let ino: number | undefined;
    hookBeforePlace(t, (p) => {
      unlinkSync(p);
      writeFileSync(p, "precious data\n");
      ino = lstatSync(p).ino;
    });
    const client = newClient(t);
    const err = await rejection(client.startServer(path));
    assert.match(addressInUse(err, path).message, /a file that is not a socket is in the way/);
    assert.equal(client.runstate, Runstate.IDLE);
    assert.equal(lstatSync(path).ino, ino);
    assert.equal(readFileSync(path, "utf8"), "precious data\n");
    assertOnly(dir, ["qmp.sock"]);
  });

  for (const [what, stale] of [
    ["appearing after the check", false],
    ["replacing the stale socket after the check (moved aside, then put back)", true],
  ] as const) {
    void test(`a live listener ${what} keeps its path`, async (t) => {
      const dir = tempDir(t);
      const path = join(dir, "qmp.sock");
      if (stale) await staleSocket(dir, path);
      const other = net.createServer((s) => s.end());
      t.after(() => other.close());
      hookBeforePlace(t, (p) => {
        if (stale) unlinkSync(p);
        return new Promise<void>((resolve) => other.listen(p, resolve));
      });
      const client = newClient(t);
      const err = await rejection(client.startServer(path));
      assert.match(addressInUse(err, path).message, /a live listener owns it/);
      assert.equal(client.runstate, Runstate.IDLE);
      // Still reachable at its path.
      const accepted = once(other, "connection");
      const probe = net.connect(path);
      t.after(() => probe.destroy());
      await accepted;
      assertOnly(dir, ["qmp.sock"]);
    });
  }

  void test("a stale socket file is replaced by ours, which a peer can connect to", async (t) => {
    const dir = tempDir(t);
    const path = join(dir, "qmp.sock");
    const staleIno = await staleSocket(dir, path);
    const client = newClient(t);
    await client.startServer(path);
    const stat = lstatSync(path);
    assert.ok(stat.isSocket());
    assert.notEqual(stat.ino, staleIno);
    assert.equal(stat.mode & 0o777, 0o600);
    assert.equal(stat.nlink, 1, "the private link is gone");
    const peer = await FakeQMPServer.connectTo(path);
    t.after(() => peer.socket.destroy());
    await client.accept({ timeout: 5000 });
    assert.equal(client.runstate, Runstate.RUNNING);
    await client.disconnect();
    assertOnly(dir, []);
  });
});

void test("connect() to a destroyed stream: ConnectError caused by TransportError", async (t) => {
  const socket = new net.Socket();
  socket.destroy();
  const client = newClient(t);
  const err = await rejection(client.connect(socket));
  assert.ok(err instanceof ConnectError, String(err));
  assert.ok(err.cause instanceof TransportError, String(err.cause));
  assert.equal(err.cause.code, "QMP_ERR_TRANSPORT");
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("no unhandled rejection happened in this file", async () => {
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(unhandled, []);
});
