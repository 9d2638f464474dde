// File-descriptor passing (SPEC §3): ordering through the writer, the fence, SCM_RIGHTS as the
// peer receives it (recvmsg through koffi on a socketpair), and every way it can be unavailable.

import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { constants as osConstants, tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { type TestContext, test } from "node:test";
import tls from "node:tls";
import {
  ExecInterruptedError,
  FdPassingError,
  QMPClient,
  QMPError,
  Runstate,
  StateError,
} from "../../src/index.js";
import {
  type FdSender,
  cmsgLayout,
  cmsgLen,
  cmsgSpace,
  koffiLoader,
  scmRights,
  setFdSenderLoaderForTests,
  unixSocketFd,
} from "../../src/fd-passing.js";
import { FakeQMPServer, type FakePeer } from "../../src/testing/index.js";
import { rejection, watchUnhandledRejections } from "../helpers/common.js";
import { duplexPair } from "../helpers/duplex.js";

const unhandled = watchUnhandledRejections();

// koffi is an optional dependency: the tests that need a real sendmsg/recvmsg skip without it.
const require = createRequire(import.meta.url);
let koffi: KoffiForTests | undefined;
try {
  koffi = require("koffi") as KoffiForTests;
} catch {
  koffi = undefined;
}
const needsKoffi = koffi === undefined ? "koffi (optional dependency) is not installed" : false;

interface KoffiForTests {
  load(path: string): { func(decl: string): KoffiFn };
  struct(name: string, members: Record<string, unknown>): unknown;
  errno(): number;
}
type KoffiFn = ((...args: unknown[]) => unknown) & {
  async: (...args: unknown[]) => void;
};

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "qmp-fd-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A temp file opened read-only; the fd is closed after the test. */
function openTemp(t: TestContext, dir: string, name: string): { path: string; fd: number } {
  const path = join(dir, name);
  writeFileSync(path, name);
  const fd = openSync(path, "r");
  t.after(() => closeSync(fd));
  return { path, fd };
}

function newClient(t: TestContext, options: ConstructorParameters<typeof QMPClient>[0] = {}) {
  const client = new QMPClient(options);
  t.after(() => client.destroy());
  return client;
}

async function fakeSession(
  t: TestContext,
  address?: string | { host: string; port: number },
): Promise<{ client: QMPClient; peer: FakePeer }> {
  const server = await FakeQMPServer.listen({}, address);
  t.after(() => server.close());
  const client = newClient(t);
  await client.connect(server.address);
  const peer = await server.peer();
  return { client, peer };
}

function commandsOf(peer: FakePeer): unknown[] {
  return peer.received.map((m) => m["execute"]);
}

// ----------------------------------------------------------------- the control message

void test("CMSG_LEN / CMSG_SPACE and the SCM_RIGHTS bytes match Linux's macros", () => {
  const lp64 = cmsgLayout(8);
  assert.equal(lp64.header, 16);
  assert.equal(cmsgLen(4, lp64), 20);
  assert.equal(cmsgSpace(4, lp64), 24);
  assert.equal(cmsgSpace(8, lp64), 24);
  assert.equal(cmsgSpace(12, lp64), 32);
  const ilp32 = cmsgLayout(4);
  assert.equal(ilp32.header, 12);
  assert.equal(cmsgLen(4, ilp32), 16);
  assert.equal(cmsgSpace(4, ilp32), 16);

  const one = scmRights([7], lp64);
  assert.deepEqual(
    [...one],
    [20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0],
  );
  const two = scmRights([3, 0x01020304], lp64);
  assert.equal(two.length, 24);
  assert.equal(two.readBigUInt64LE(0), 24n);
  assert.equal(two.readInt32LE(16), 3);
  assert.equal(two.readInt32LE(20), 0x01020304);
});

// ----------------------------------------------------------------- the transport

void test("unixSocketFd() tells a UNIX socket from TCP, TLS and other streams", async (t) => {
  assert.match((unixSocketFd(new PassThrough()) as { reason: string }).reason, /not a socket/);
  assert.match((unixSocketFd(undefined) as { reason: string }).reason, /no connection/);
  const tlsSocket = new tls.TLSSocket(new net.Socket());
  t.after(() => tlsSocket.destroy());
  assert.match((unixSocketFd(tlsSocket) as { reason: string }).reason, /TLS/);
  assert.match((unixSocketFd(new net.Socket()) as { reason: string }).reason, /no open descriptor/);

  const { client: unix } = await fakeSession(t);
  const tcp = await fakeSession(t, { host: "127.0.0.1", port: 0 });
  const unixStream = Reflect.get(unix, "stream") as net.Socket;
  const tcpStream = Reflect.get(tcp.client, "stream") as net.Socket;
  const fd = unixSocketFd(unixStream);
  assert.equal(typeof fd, "number");
  // It is this process's descriptor of that very socket.
  assert.match(readlinkSync(`/proc/self/fd/${fd as number}`), /^socket:\[\d+\]$/);
  assert.match((unixSocketFd(tcpStream) as { reason: string }).reason, /TCP/);
});

void test("over TCP: FdPassingError at once, nothing is sent and no id is used", async (t) => {
  const { client, peer } = await fakeSession(t, { host: "127.0.0.1", port: 0 });
  const dir = tempDir(t);
  const { fd } = openTemp(t, dir, "f");
  const err = await rejection(client.execute("getfd", { fdname: "x" }, { fds: [fd] }));
  assert.ok(err instanceof FdPassingError, `got ${String(err)}`);
  assert.ok(err instanceof QMPError);
  assert.equal(err.code, "QMP_ERR_FD_PASSING");
  assert.match(err.message, /TCP/);
  assert.match(err.message, /UNIX socket/);
  const scm = await rejection(client.sendFdScm(fd));
  assert.ok(scm instanceof FdPassingError);
  assert.match(scm.message, /TCP/);
  // The session is fine; the next command takes the next id.
  await client.execute("query-status");
  assert.deepEqual(commandsOf(peer), ["qmp_capabilities", "query-status"]);
  assert.deepEqual(
    peer.received.map((m) => m["id"]),
    [1, 2],
  );
});

void test("over a stream that is not a socket: FdPassingError", async (t) => {
  const [ours, theirs] = duplexPair();
  const client = newClient(t, { awaitGreeting: false, negotiate: false });
  await client.connect(ours);
  const sent: string[] = [];
  theirs.on("data", (chunk: Buffer) => sent.push(chunk.toString()));
  const err = await rejection(client.execute("getfd", { fdname: "x" }, { fds: [0] }));
  assert.ok(err instanceof FdPassingError, `got ${String(err)}`);
  assert.match(err.message, /not a socket/);
  await assert.rejects(client.sendFdScm(0), /not a socket/);
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.deepEqual(sent, []);
});

void test("not on Linux: FdPassingError naming the platform", async (t) => {
  const { client, peer } = await fakeSession(t);
  const real = Object.getOwnPropertyDescriptor(process, "platform")!;
  Object.defineProperty(process, "platform", { ...real, value: "darwin" });
  t.after(() => Object.defineProperty(process, "platform", real));
  const err = await rejection(client.execute("getfd", { fdname: "x" }, { fds: [0] }));
  assert.ok(err instanceof FdPassingError, `got ${String(err)}`);
  assert.match(err.message, /Linux only.*darwin/);
  Object.defineProperty(process, "platform", real);
  await client.execute("query-status");
  assert.deepEqual(commandsOf(peer), ["qmp_capabilities", "query-status"]);
});

void test("bad fds are a TypeError; not RUNNING is a StateError", async (t) => {
  const { client } = await fakeSession(t);
  for (const fds of [[], [-1], [1.5], ["3"], [2 ** 31]] as unknown[]) {
    await assert.rejects(
      client.execute("getfd", {}, { fds: fds as number[] }),
      TypeError,
      JSON.stringify(fds),
    );
  }
  await assert.rejects(client.sendFdScm(-1), TypeError);
  await client.disconnect();
  await assert.rejects(client.sendFdScm(0), StateError);
  await assert.rejects(client.execute("getfd", {}, { fds: [0] }), StateError);
});

// ----------------------------------------------------------------- koffi missing

void test("koffi missing: a clear FdPassingError, the command is not sent, the session goes on", async (t) => {
  const notFound = Object.assign(new Error("Cannot find package 'koffi' imported from qmp"), {
    code: "ERR_MODULE_NOT_FOUND",
  });
  let imports = 0;
  setFdSenderLoaderForTests(
    koffiLoader(() => {
      imports++;
      return Promise.reject(notFound);
    }),
  );
  t.after(() => setFdSenderLoaderForTests(undefined));
  const { client, peer } = await fakeSession(t);
  const dir = tempDir(t);
  const { fd } = openTemp(t, dir, "f");

  // Queued in one tick: the commands around the failed one still go out, in order.
  const before = client.execute("query-status");
  const failed = client.execute("getfd", { fdname: "x" }, { fds: [fd] });
  const after = client.execute("query-version");
  const err = await rejection(failed);
  assert.ok(err instanceof FdPassingError, `got ${String(err)}`);
  assert.match(err.message, /install the optional dependency koffi/i);
  assert.match(err.message, /Cannot find package 'koffi'/);
  assert.equal(err.cause, notFound);
  await before;
  await after.catch(() => {}); // the fake answers CommandNotFound: what matters is it was sent
  assert.deepEqual(commandsOf(peer), ["qmp_capabilities", "query-status", "query-version"]);

  const scm = await rejection(client.sendFdScm(fd));
  assert.ok(scm instanceof FdPassingError);
  assert.match(scm.message, /koffi/);
  assert.equal(imports, 1, "the outcome of loading is kept");
  assert.equal(client.runstate, Runstate.RUNNING);
  await client.execute("query-status");
});

// ----------------------------------------------------------------- the writer, with a fake sender

/** A sender that records calls and answers from a script of errnos (0 = sent). */
function scriptedSender(script: number[]): { sender: FdSender; calls: number[][] } {
  const calls: number[][] = [];
  const sender: FdSender = {
    sendmsg(_socketFd, data, fds) {
      assert.equal(data.toString(), " ");
      calls.push([...fds]);
      const errno = script.shift() ?? 0;
      return errno === 0 ? { sent: 1, errno: 0 } : { sent: -1, errno };
    },
  };
  return { sender, calls };
}

void test("EAGAIN is retried until the kernel takes the fds, then the command goes", async (t) => {
  const { EAGAIN, EINTR } = osConstants.errno;
  const { sender, calls } = scriptedSender([EAGAIN, EINTR, EAGAIN, 0]);
  setFdSenderLoaderForTests(() => Promise.resolve(sender));
  t.after(() => setFdSenderLoaderForTests(undefined));
  const { client, peer } = await fakeSession(t);
  await client.execute("query-status", undefined, { fds: [5] }).catch(() => {});
  assert.deepEqual(calls, [[5], [5], [5], [5]]);
  assert.deepEqual(commandsOf(peer), ["qmp_capabilities", "query-status"]);
});

void test("a refused fd (EBADF) fails that call only; the session goes on", async (t) => {
  const { sender } = scriptedSender([osConstants.errno.EBADF]);
  setFdSenderLoaderForTests(() => Promise.resolve(sender));
  t.after(() => setFdSenderLoaderForTests(undefined));
  const { client, peer } = await fakeSession(t);
  const err = await rejection(client.execute("getfd", { fdname: "x" }, { fds: [12345] }));
  assert.ok(err instanceof FdPassingError, `got ${String(err)}`);
  assert.match(err.message, /EBADF/);
  assert.equal((err.cause as NodeJS.ErrnoException).code, "EBADF");
  await client.execute("query-status");
  assert.deepEqual(commandsOf(peer), ["qmp_capabilities", "query-status"]);
});

void test("a lost connection (EPIPE) while passing fds ends the session", async (t) => {
  const { sender } = scriptedSender([osConstants.errno.EPIPE]);
  setFdSenderLoaderForTests(() => Promise.resolve(sender));
  t.after(() => setFdSenderLoaderForTests(undefined));
  const { client } = await fakeSession(t);
  const err = await rejection(client.execute("getfd", { fdname: "x" }, { fds: [3] }));
  assert.ok(err instanceof ExecInterruptedError, `got ${String(err)}`);
  assert.equal((err.cause as NodeJS.ErrnoException).code, "EPIPE");
  assert.equal(client.runstate, Runstate.DISCONNECTING);
  await assert.rejects(client.disconnect(), { code: "EPIPE" });
});

/** A fake QMP server whose "slow" command answers when `release()` is called. */
async function heldServer(t: TestContext, capabilities?: string[]) {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const server = await FakeQMPServer.listen({
    ...(capabilities !== undefined ? { capabilities } : {}),
    handlers: {
      slow: async () => {
        await held;
        return { return: {} };
      },
      fast: () => ({ return: {} }),
    },
  });
  t.after(() => server.close());
  return { server, release };
}

/** A client on a held fake server, with a scripted fd sender that records what it passed. */
async function heldSession(t: TestContext, capabilities?: string[]) {
  const { sender, calls } = scriptedSender([]);
  setFdSenderLoaderForTests(() => Promise.resolve(sender));
  t.after(() => setFdSenderLoaderForTests(undefined));
  const { server, release } = await heldServer(t, capabilities);
  const client = newClient(t);
  await client.connect(server.address);
  return { calls, client, release, peer: await server.peer() };
}

void test("with oob, fds wait for the replies to earlier fd commands (the fence)", async (t) => {
  const { calls, client, release, peer } = await heldSession(t);

  const slow = client.execute("slow", undefined, { fds: [8] });
  const withFd = client.execute("fast", undefined, { fds: [9] });
  const after = client.execute("fast");
  // QEMU reads ahead with oob: fds 9 must not replace fds 8 before "slow" took them.
  await peer.nextMessage(); // qmp_capabilities
  assert.equal((await peer.nextMessage())["execute"], "slow");
  assert.deepEqual(calls, [[8]]);
  assert.equal(peer.received.length, 2);
  release();
  await Promise.all([slow, withFd, after]);
  assert.deepEqual(calls, [[8], [9]]);
  assert.deepEqual(commandsOf(peer), ["qmp_capabilities", "slow", "fast", "fast"]);
});

void test("with oob, the command after a lone sendFdScm() is one the fence waits for", async (t) => {
  const { calls, client, release, peer } = await heldSession(t);

  const scm = client.sendFdScm(5);
  const takes = client.execute("slow"); // takes fd 5, as getfd would
  const withFd = client.execute("fast", undefined, { fds: [6] });
  await peer.nextMessage(); // qmp_capabilities
  assert.equal((await peer.nextMessage())["execute"], "slow");
  await scm;
  assert.deepEqual(calls, [[5]]);
  release();
  await Promise.all([takes, withFd]);
  assert.deepEqual(calls, [[5], [6]]);
});

void test("fds never wait for unrelated commands, nor for anything without oob", async (t) => {
  for (const capabilities of [["oob"], []]) {
    const { calls, client, release } = await heldSession(t, capabilities);
    // Without oob, QEMU reads nothing while a command runs: no fence is needed.
    const slow = client.execute("slow", undefined, capabilities.length === 0 ? { fds: [7] } : {});
    const withFd = client.execute("fast", undefined, { fds: [9] });
    const after = client.execute("fast");
    await Promise.all([withFd, after]);
    assert.deepEqual(calls.at(-1), [9]);
    release();
    await slow;
    await client.disconnect();
  }
});

void test("a session that ends while fds wait: the calls fail, nothing is unhandled", async (t) => {
  const { sender, calls } = scriptedSender([]);
  setFdSenderLoaderForTests(() => Promise.resolve(sender));
  t.after(() => setFdSenderLoaderForTests(undefined));
  const server = await FakeQMPServer.listen({ handlers: { slow: () => undefined } });
  t.after(() => server.close());
  const client = newClient(t);
  await client.connect(server.address);
  const peer = await server.peer();
  const slow = client.execute("slow", undefined, { fds: [3] });
  const scm = client.sendFdScm(4);
  const withFd = client.execute("getfd", { fdname: "x" }, { fds: [4] });
  await peer.nextMessage();
  await peer.nextMessage();
  peer.socket.end();
  await assert.rejects(slow, { code: "QMP_ERR_EXEC_INTERRUPTED" });
  await assert.rejects(scm, QMPError);
  await assert.rejects(withFd, { code: "QMP_ERR_EXEC_INTERRUPTED" });
  assert.deepEqual(calls, [[3]]);
  await client.disconnect();
});

// ----------------------------------------------------------------- real SCM_RIGHTS on a socketpair

/** libc through koffi, for the peer's side of a socketpair. */
function peerLibc(k: KoffiForTests) {
  const libc = k.load("libc.so.6");
  k.struct("qmp_test_iovec", { iov_base: "void *", iov_len: "size_t" });
  k.struct("qmp_test_msghdr", {
    msg_name: "void *",
    msg_namelen: "uint32_t",
    msg_iov: "qmp_test_iovec *",
    msg_iovlen: "size_t",
    msg_control: "void *",
    msg_controllen: "size_t",
    msg_flags: "int",
  });
  return {
    socketpair: libc.func("int socketpair(int, int, int, _Out_ int *sv)"),
    recvmsg: libc.func("intptr_t recvmsg(int fd, _Inout_ qmp_test_msghdr *msg, int flags)"),
    write: libc.func("intptr_t write(int fd, const void *buf, size_t n)"),
  };
}

interface Received {
  data: string;
  fds: number[];
}

void test(
  "sendFdScm and { fds } over a real socket: in order, one space byte each, the right files",
  { skip: needsKoffi },
  async (t) => {
    const libc = peerLibc(koffi!);
    const sv = [-1, -1];
    assert.equal(libc.socketpair(1 /* AF_UNIX */, 1 /* SOCK_STREAM */, 0, sv), 0);
    const [ours, theirs] = sv as [number, number];
    // Ours becomes a net.Socket (a Pipe handle) the client connects through; theirs stays raw.
    const socket = new net.Socket({ fd: ours, readable: true, writable: true });
    t.after(() => closeSync(theirs));
    const recvAsync = (fd: number, msg: object, flags: number): Promise<number> =>
      new Promise((resolve, reject) =>
        libc.recvmsg.async(fd, msg, flags, (err: Error | null, n: unknown) =>
          err ? reject(err) : resolve(Number(n)),
        ),
      );
    const received: Received[] = [];
    const recvOne = async (): Promise<Received | undefined> => {
      const buf = Buffer.alloc(2 * 1024 * 1024);
      const control = Buffer.alloc(256);
      const msg = {
        msg_name: null,
        msg_namelen: 0,
        msg_iov: { iov_base: buf, iov_len: buf.length },
        msg_iovlen: 1,
        msg_control: control,
        msg_controllen: control.length,
        msg_flags: 0,
      };
      // A blocking recvmsg on a worker thread: resolves when data comes (or 0 at EOF).
      const n = Number(await recvAsync(theirs, msg, 0x40000000 /* MSG_CMSG_CLOEXEC */));
      if (n <= 0) return undefined;
      const fds: number[] = [];
      const controllen = Number(msg.msg_controllen);
      if (controllen >= 20) {
        assert.equal(control.readInt32LE(8), 1, "SOL_SOCKET");
        assert.equal(control.readInt32LE(12), 1, "SCM_RIGHTS");
        const len = Number(control.readBigUInt64LE(0));
        for (let off = 16; off + 4 <= len; off += 4) fds.push(control.readInt32LE(off));
      }
      for (const fd of fds) t.after(() => closeSync(fd));
      const r = { data: buf.subarray(0, n).toString(), fds };
      received.push(r);
      return r;
    };
    /** Read until the bytes seen so far end with `suffix`. */
    const readUntil = async (suffix: string): Promise<void> => {
      while (
        !received
          .map((r) => r.data)
          .join("")
          .endsWith(suffix)
      ) {
        if ((await recvOne()) === undefined) assert.fail(`EOF before ${suffix}`);
      }
    };
    const reply = (id: number): void => {
      const b = Buffer.from(`{"return": {}, "id": ${id}}\r\n`);
      assert.equal(Number(libc.write(theirs, b, b.length)), b.length);
    };

    const dir = tempDir(t);
    const a = openTemp(t, dir, "a");
    const b = openTemp(t, dir, "b");
    const c = openTemp(t, dir, "c");
    const client = newClient(t, { awaitGreeting: false, negotiate: false });
    await client.connect(socket);

    // A command big enough to fill the socket buffer, then the fds: they must not overtake it.
    const big = "x".repeat(1024 * 1024);
    const first = client.execute("big", { big });
    const scm = client.sendFdScm(a.fd);
    const withFd = client.execute("getfd", { fdname: "b" }, { fds: [b.fd] });
    const two = client.execute("add-fd", undefined, { fds: [c.fd, a.fd] });
    const bigText = JSON.stringify({ execute: "big", arguments: { big }, id: 1 });
    const getfd = JSON.stringify({ execute: "getfd", arguments: { fdname: "b" }, id: 2 });
    const addfd = JSON.stringify({ execute: "add-fd", id: 3 });
    // No oob negotiated (QEMU reads nothing while a command runs): no fence, only the byte order.
    const all = `${bigText}  ${getfd} ${addfd}`;
    await readUntil(all);
    assert.equal(received.map((r) => r.data).join(""), all);
    reply(1);
    reply(2);
    reply(3);
    await Promise.all([first, scm, withFd, two]);

    // Each batch of fds came with exactly one space byte, the last byte of its read, at its place.
    let offset = 0;
    const places: number[] = [];
    for (const r of received) {
      offset += r.data.length;
      if (r.fds.length === 0) continue;
      assert.ok(r.data.endsWith(" "), JSON.stringify(r.data.slice(-20)));
      places.push(offset);
    }
    const first1 = bigText.length + 1;
    assert.deepEqual(places, [first1, first1 + 1, first1 + 1 + getfd.length + 1]);
    const withFds = received.filter((r) => r.fds.length > 0);
    const files = withFds.map((r) => r.fds.map((fd) => readlinkSync(`/proc/self/fd/${fd}`)));
    // sendFdScm(a); { fds: [b] }; { fds: [c, a] } in one message, in that order.
    assert.deepEqual(files, [[a.path], [b.path], [c.path, a.path]]);
    await client.disconnect();
    assert.equal(await recvOne(), undefined, "EOF after disconnect");
  },
);

void test("no unhandled rejections", () => {
  assert.deepEqual(unhandled, []);
});
