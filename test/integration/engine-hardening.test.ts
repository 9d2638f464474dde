// Regression tests for the engine rewrite (SPEC §1, §3, §4): teardown with fds in flight, the fd
// fence, disconnect() racing negotiation, option checks before any state change, late id-less
// replies, quit bookkeeping, bounded and cancellable outbound queues, the client-wide timeout,
// argument types, and what a TimeoutError says.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { once } from "node:events";
import { createRequire } from "node:module";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { fileURLToPath } from "node:url";
import { inspect } from "node:util";
import {
  ConnectCancelledError,
  ConnectError,
  DuplicateIdError,
  ExecInterruptedError,
  ListenerError,
  QMPClient,
  type QMPClientOptions,
  QMPError,
  QueueFullError,
  Runstate,
} from "../../src/index.js";
import { FakePeer, FakeQMPServer, type FakeServerOptions } from "../../src/testing/index.js";
import { recordRunstates, rejection, watchUnhandledRejections } from "../helpers/common.js";
import {
  type PlainPeer,
  type PlainPeerOptions,
  PlainQMPServer,
  writerBlocked,
} from "../helpers/plain-peer.js";
import { track } from "./client-harness.js";

// Every unhandled rejection in this file is a failure (checked by the last test).
const unhandled = watchUnhandledRejections();

/** Tests that could hang: a hang is a failure, not a stuck run. */
const T = { timeout: 10_000 } as const;

/** Tests that pass real fds: they need the optional dependency koffi. */
const FD = {
  ...T,
  skip: canLoad("koffi") ? false : "koffi (optional dependency) is not installed",
} as const;

function canLoad(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}

const STATUS = { status: "running", running: true };

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "qmp-hardening-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A real file descriptor (of /dev/null), closed when the test ends. */
function devNull(t: TestContext): number {
  const fd = openSync("/dev/null", "r");
  t.after(() => closeSync(fd));
  return fd;
}

/**
 * A client destroyed when the test ends, pass or fail. The clean-up waits for
 * destroy() at most 2 s: some defects pinned here make destroy() hang, and
 * that must fail one test, not stall every test after it.
 */
function newClient(t: TestContext, options: QMPClientOptions = {}): QMPClient {
  const client = new QMPClient(options);
  t.after(async () => {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)));
    await Promise.race([client.destroy(), bound]);
    clearTimeout(timer);
  });
  return client;
}

function isTimeout(err: unknown): err is DOMException {
  return err instanceof DOMException && err.name === "TimeoutError";
}

async function fakeServer(
  t: TestContext,
  options: FakeServerOptions = {},
  address?: { host: string; port: number },
): Promise<FakeQMPServer> {
  const server = await FakeQMPServer.listen(options, address);
  t.after(() => server.close());
  return server;
}

/**
 * A running client and its fake peer (UNIX socket, `oob` offered and
 * negotiated); the peer's `qmp_capabilities` is already consumed.
 */
async function fakeSession(
  t: TestContext,
  serverOptions: FakeServerOptions = {},
  clientOptions: QMPClientOptions = {},
  address?: { host: string; port: number },
): Promise<{ client: QMPClient; peer: FakePeer }> {
  const server = await fakeServer(t, serverOptions, address);
  const client = newClient(t, clientOptions);
  await client.connect(server.address);
  const peer = await server.peer();
  const negotiation = await peer.nextMessage();
  assert.equal(negotiation["execute"], "qmp_capabilities");
  assert.deepEqual(negotiation["arguments"], { enable: ["oob"] });
  assert.equal(negotiation["id"], 1);
  return { client, peer };
}

/** What the peer received, as `[execute or exec-oob, id]`. */
function wire(peer: FakePeer): [unknown, unknown][] {
  return peer.received.map((m) => [m["execute"] ?? m["exec-oob"], m["id"]]);
}

/**
 * A running client on a socket we hold (to watch its write buffer), talking
 * to a plain peer that stops reading right after negotiation.
 */
async function stalled(
  t: TestContext,
  clientOptions: QMPClientOptions = {},
  peerOptions: PlainPeerOptions = {},
): Promise<{ client: QMPClient; socket: net.Socket; peer: PlainPeer }> {
  const server = await PlainQMPServer.listen({ pauseAfterNegotiation: true, ...peerOptions });
  t.after(() => server.close());
  const socket = net.connect(server.address);
  t.after(() => socket.destroy());
  const client = newClient(t, clientOptions);
  await client.connect(socket);
  const peer = await server.peer();
  await peer.negotiated;
  return { client, socket, peer };
}

/** A peer option that answers every command with `{"return": {}}` and records it in `log`. */
function answerAll(log: Record<string, unknown>[]): PlainPeerOptions {
  return {
    onMessage: (message, peer) => {
      log.push(message);
      peer.send({ return: {}, id: message["id"] });
    },
  };
}

/** A call whose rejection is expected later; never unhandled meanwhile. */
function later<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

const MiB = 1024 * 1024;

/**
 * A session whose first command ("hold") is never answered, with an fd
 * command ("getfd") queued behind it: the set-up of the teardown tests.
 */
async function heldWithFd(t: TestContext, options: QMPClientOptions) {
  const { client, peer } = await fakeSession(
    t,
    { handlers: { hold: () => undefined, getfd: () => ({ return: {} }) } },
    options,
  );
  const fd = devNull(t);
  const held = rejection(client.execute("hold"));
  const withFd = rejection(client.execute("getfd", { fdname: "x" }, { fds: [fd] }));
  assert.equal((await peer.nextMessage())["execute"], "hold");
  return { client, held, withFd };
}

// ------------------------------------------- 1. teardown with an fd command waiting on the fence

for (const disconnectTimeout of [undefined, 200]) {
  const label =
    disconnectTimeout === undefined ? "default disconnectTimeout" : "disconnectTimeout 200";
  void test(
    `disconnect() with an unanswered command and an fd command behind it resolves (${label})`,
    FD,
    async (t) => {
      const options: QMPClientOptions =
        disconnectTimeout === undefined ? {} : { disconnectTimeout };
      const { client, held, withFd } = await heldWithFd(t, options);
      await client.disconnect();
      assert.equal(client.runstate, Runstate.IDLE);
      const heldErr = await held;
      assert.ok(heldErr instanceof ExecInterruptedError, String(heldErr));
      const fdErr = await withFd;
      assert.ok(fdErr instanceof QMPError, String(fdErr));
    },
  );
}

void test(
  "destroy() with an unanswered command and an fd command behind it resolves",
  FD,
  async (t) => {
    // Only destroy() may end this test in time.
    const { client, held, withFd } = await heldWithFd(t, { disconnectTimeout: 60_000 });
    await client.destroy();
    assert.equal(client.runstate, Runstate.IDLE);
    assert.ok((await held) instanceof ExecInterruptedError);
    assert.ok((await withFd) instanceof QMPError);
  },
);

void test(
  "destroy() during a disconnect() that flushes to a peer that does not read: both end",
  T,
  async (t) => {
    const { client, socket } = await stalled(t, { disconnectTimeout: 60_000 });
    const big = "d".repeat(MiB);
    const calls = [0, 1, 2, 3].map((n) => rejection(client.execute("x", { n, big })));
    await writerBlocked(socket);
    const disconnecting = track(client.disconnect());
    await client.destroy();
    assert.equal(client.runstate, Runstate.IDLE);
    // The pending disconnect() settles too (either way), well before its 60 s flush bound.
    await disconnecting.promise.catch(() => {});
    for (const call of calls) assert.ok((await call) instanceof QMPError);
  },
);

void test(
  "destroy() during a disconnect() held up by an fd command waiting on the fence",
  FD,
  async (t) => {
    // Only destroy() may end this test in time.
    const { client, held, withFd } = await heldWithFd(t, { disconnectTimeout: 60_000 });
    const disconnecting = track(client.disconnect());
    await client.destroy();
    assert.equal(client.runstate, Runstate.IDLE);
    await disconnecting.promise.catch(() => {});
    assert.ok((await held) instanceof ExecInterruptedError);
    assert.ok((await withFd) instanceof QMPError);
  },
);

// ------------------------------------------------------------------ 3. the fd fence

void test(
  "with OOB, an fd command does not wait for an unrelated unanswered command",
  FD,
  async (t) => {
    const { client, peer } = await fakeSession(t, {
      handlers: { hold: () => undefined, getfd: () => ({ return: {} }) },
    });
    const fd = devNull(t);
    const held = later(client.execute("hold"));
    // Bounded, so that today's wait shows as a TimeoutError rather than a hang.
    const withFd = later(client.execute("getfd", { fdname: "x" }, { fds: [fd], timeout: 5000 }));
    const status = client.execute("query-status", undefined, { timeout: 5000 });
    const result = await status.catch((err: unknown) =>
      assert.fail(`query-status behind the fd command did not get through: ${String(err)}`),
    );
    assert.deepEqual(result, STATUS);
    assert.deepEqual(await withFd, {});
    assert.deepEqual(wire(peer), [
      ["qmp_capabilities", 1],
      ["hold", 2],
      ["getfd", 3],
      ["query-status", 4],
    ]);
    // "hold" is still unanswered.
    assert.equal(track(held).settled(), false);
  },
);

void test(
  "an fd command still waits for the reply to an earlier fd command (guard)",
  FD,
  async (t) => {
    let release!: () => void;
    const first = new Promise<void>((resolve) => (release = resolve));
    let released = false;
    const secondArrivedEarly: boolean[] = [];
    const { client, peer } = await fakeSession(t, {
      handlers: {
        getfd: async (args) => {
          if (args?.["fdname"] === "a") await first;
          else secondArrivedEarly.push(!released);
          return { return: {} };
        },
      },
    });
    const fd = devNull(t);
    const a = client.execute("getfd", { fdname: "a" }, { fds: [fd] });
    const b = client.execute("getfd", { fdname: "b" }, { fds: [fd] });
    assert.equal(((await peer.nextMessage())["arguments"] as { fdname: string }).fdname, "a");
    // Give a wrong engine ample turns to send "b" early; then answer "a".
    for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
    released = true;
    release();
    assert.deepEqual(await a, {});
    assert.deepEqual(await b, {});
    assert.deepEqual(secondArrivedEarly, [false]);
  },
);

// ------------------------------------------------- 4. disconnect() racing the end of negotiation

void test(
  "disconnect() from the qmp_capabilities reply's receive hook: connect() rejects, IDLE",
  T,
  async (t) => {
    const server = await fakeServer(t);
    const client = newClient(t);
    const seen = recordRunstates(client);
    let disconnecting: Promise<void> | undefined;
    const onReceive = (payload: unknown): void => {
      const { client: who, message } = payload as {
        client: unknown;
        message: Record<string, unknown>;
      };
      if (who !== client || disconnecting !== undefined || !("return" in message)) return;
      disconnecting = later(client.disconnect());
    };
    subscribe("qmp:message:receive", onReceive);
    t.after(() => unsubscribe("qmp:message:receive", onReceive));
    const err = await rejection(client.connect(server.address));
    assert.ok(disconnecting !== undefined, "the hook saw the qmp_capabilities reply");
    await disconnecting.catch(() => {});
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(client.runstate, Runstate.IDLE);
    const allowed = new Set([
      "IDLE→CONNECTING",
      "CONNECTING→RUNNING",
      "CONNECTING→DISCONNECTING",
      "RUNNING→DISCONNECTING",
      "DISCONNECTING→IDLE",
    ]);
    const steps = seen.map(([state, previous]) => `${previous}→${state}`);
    for (const step of steps)
      assert.ok(allowed.has(step), `illegal transition ${step} in ${steps.join(", ")}`);
    const states = seen.map(([state]) => state);
    const firstDisconnecting = states.indexOf(Runstate.DISCONNECTING);
    assert.ok(firstDisconnecting !== -1, `no DISCONNECTING in ${steps.join(", ")}`);
    assert.ok(
      !states.slice(firstDisconnecting).includes(Runstate.RUNNING),
      `RUNNING after DISCONNECTING: ${steps.join(", ")}`,
    );
    assert.equal(states.at(-1), Runstate.IDLE);
    // The attempt was cut short by disconnect(): that is what the cause says.
    assert.ok(err.cause instanceof ConnectCancelledError, `cause: ${String(err.cause)}`);
  },
);

// ---------------------------------------------------- 6. options checked before any state change

void test("execute() with timeout -1: RangeError, nothing sent, no id used", T, async (t) => {
  const { client, peer } = await fakeSession(t);
  await assert.rejects(client.execute("query-status", undefined, { timeout: -1 }), RangeError);
  assert.deepEqual(await client.execute("query-status"), STATUS);
  assert.deepEqual(wire(peer), [
    ["qmp_capabilities", 1],
    ["query-status", 2],
  ]);
});

void test(
  "accept() with timeout -1: RangeError, and a following accept() still works",
  T,
  async (t) => {
    const dir = tempDir(t);
    const address = join(dir, "qmp.sock");
    const client = newClient(t);
    await client.startServer(address);
    await assert.rejects(client.accept({ timeout: -1 }), RangeError);
    assert.equal(client.runstate, Runstate.CONNECTING);
    const accepting = later(client.accept());
    const peer = await FakeQMPServer.connectTo(address);
    t.after(() => peer.socket.destroy());
    await accepting;
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.deepEqual(await client.execute("query-status"), STATUS);
  },
);

void test("connect() with timeout -1: RangeError, still IDLE, no transition", T, async (t) => {
  const server = await fakeServer(t);
  const client = newClient(t);
  const seen = recordRunstates(client);
  await assert.rejects(client.connect(server.address, { timeout: -1 }), RangeError);
  assert.equal(client.runstate, Runstate.IDLE);
  assert.deepEqual(seen, []);
  await client.connect(server.address);
  assert.equal(client.runstate, Runstate.RUNNING);
});

// ------------------------------------------------ 7. the late reply of an abandoned id-less call

void test(
  "a late id-less error to an abandoned id-less call is dropped; the session goes on",
  T,
  async (t) => {
    const { client, peer } = await fakeSession(t, {
      handlers: { x: () => undefined, z: () => ({ return: { z: true } }) },
    });
    const seen = recordRunstates(client);
    const err = await rejection(client.raw({ execute: "x" }, { assignId: false, timeout: 50 }));
    assert.ok(isTimeout(err), String(err));
    const x = await peer.nextMessage();
    assert.equal(x["execute"], "x");
    assert.ok(!("id" in x));
    peer.send({ error: { class: "GenericError", desc: "late" } });
    // Its reply comes after the late error on the wire.
    assert.deepEqual(await client.execute("query-status"), STATUS);
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.deepEqual(seen, []);
    // The late reply came: the id-less slot is free again.
    assert.deepEqual(await client.raw({ execute: "z" }, { assignId: false }), {
      return: { z: true },
    });
    await client.disconnect();
  },
);

void test(
  "while an abandoned id-less reply is due, another id-less call is a DuplicateIdError",
  T,
  async (t) => {
    const { client, peer } = await fakeSession(t, {
      handlers: { x: () => undefined, y: () => undefined },
    });
    const err = await rejection(client.raw({ execute: "x" }, { assignId: false, timeout: 50 }));
    assert.ok(isTimeout(err), String(err));
    // Bounded, so that today's acceptance shows as a TimeoutError rather than a hang.
    const dup = await rejection(client.raw({ execute: "y" }, { assignId: false, timeout: 2000 }));
    assert.ok(dup instanceof DuplicateIdError, String(dup));
    assert.deepEqual(await client.execute("query-status"), STATUS);
    assert.deepEqual(wire(peer), [
      ["qmp_capabilities", 1],
      ["x", undefined],
      ["query-status", 2],
    ]);
  },
);

// --------------------------------------------------------- 8. a quit that was never sent

void test(
  "a quit refused before sending does not turn a later reset into a clean end",
  T,
  async (t) => {
    const { client, peer } = await fakeSession(
      t,
      { handlers: { hold: () => undefined } },
      {},
      { host: "127.0.0.1", port: 0 },
    );
    const held = rejection(client.raw({ execute: "hold", id: "a" }));
    assert.equal((await peer.nextMessage())["id"], "a");
    const dup = await rejection(client.raw({ execute: "quit", id: "a" }));
    assert.ok(dup instanceof DuplicateIdError, String(dup));
    const changed = client.runstateChanged();
    peer.reset();
    assert.equal(await changed, Runstate.DISCONNECTING);
    const err = await rejection(client.disconnect());
    assert.equal((err as NodeJS.ErrnoException).code, "ECONNRESET", String(err));
    assert.equal(client.runstate, Runstate.IDLE);
    assert.ok((await held) instanceof ExecInterruptedError);
    assert.ok(!peer.received.some((m) => m["execute"] === "quit"));
  },
);

// ------------------------------------------------ 9. overflow "error" is forgotten by clear()

void test(
  'a listener with overflow "error": after clear(), get() waits instead of throwing',
  T,
  async (t) => {
    const { client, peer } = await fakeSession(t);
    using listener = client.listener("TICK", undefined, { overflow: "error", maxPending: 1 });
    peer.sendEvent("TICK", { n: 1 });
    peer.sendEvent("TICK", { n: 2 });
    // The reply comes after both events: they are in the listener once it resolves.
    assert.deepEqual(await client.execute("query-status"), STATUS);
    assert.equal(listener.dropped, 1);
    assert.deepEqual(
      listener.clear().map((e) => e.data?.["n"]),
      [1],
    );
    const err = await rejection(listener.get({ timeout: 100 }));
    assert.ok(!(err instanceof ListenerError), `ListenerError after clear(): ${String(err)}`);
    assert.ok(isTimeout(err), String(err));
  },
);

// ---------------------------------------------------------------- 10. backpressure

const fixture = fileURLToPath(new URL("../fixtures/backpressure.js", import.meta.url));

/** Run the backpressure fixture in a child process (with --expose-gc); its JSON result. */
async function runFixture(t: TestContext, scenario: string): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, ["--expose-gc", fixture, scenario], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  const [code, signal] = (await once(child, "close")) as [number | null, string | null];
  assert.equal(code, 0, `fixture '${scenario}' failed (signal ${signal}): ${err}`);
  const line = out.trim().split("\n").at(-1) ?? "";
  return JSON.parse(line) as Record<string, unknown>;
}

void test(
  "1,000 queued commands sharing one 256 KiB argument: memory stays bounded",
  { timeout: 120_000 },
  async (t) => {
    const r = await runFixture(t, "memory");
    const growth = r["rssGrowth"] as number;
    assert.ok(
      growth < 64 * MiB,
      `RSS grew by ${(growth / MiB).toFixed(1)} MiB (heap ${((r["heapGrowth"] as number) / MiB).toFixed(1)} MiB) ` +
        "while 1,000 commands waited: each queued command was copied",
    );
  },
);

void test(
  "20,000 commands queued behind backpressure all resolve, ids in order without gaps",
  { timeout: 120_000 },
  async (t) => {
    const r = await runFixture(t, "ordering");
    assert.equal(r["seenWhileBlocked"], 0);
    assert.equal(r["resolved"], 20_000, `first rejection: ${String(r["firstRejection"])}`);
    assert.equal(r["idsSeen"], 20_000);
    assert.equal(r["firstId"], (r["negotiationId"] as number) + 1);
    assert.equal(r["lastId"], (r["negotiationId"] as number) + 20_000);
    assert.equal(r["gaps"], 0);
  },
);

void test(
  "maxQueuedMessages bounds the outbound queue: QueueFullError, the client stays usable",
  T,
  async (t) => {
    const log: Record<string, unknown>[] = [];
    // `maxQueuedMessages` is new: a variable (not a literal) compiles before the option exists.
    const options = { name: "bounded", maxQueuedMessages: 10 };
    const { client, socket, peer } = await stalled(t, options, answerAll(log));
    const big = "q".repeat(MiB);
    // The socket takes the first command and cannot drain it.
    const first = later(client.execute("x", { n: 0, big }));
    await writerBlocked(socket);
    assert.ok(socket.writableLength > 0);
    // Queue calls one by one until one is refused; a refusal shows within one turn.
    const waiting: Promise<unknown>[] = [];
    let err: unknown;
    for (let n = 1; n <= 12 && err === undefined; n++) {
      const call = track(later(client.execute("x", { n, big })));
      await new Promise((resolve) => setImmediate(resolve));
      if (call.settled()) err = await rejection(call.promise);
      else waiting.push(call.promise);
    }
    assert.ok(err !== undefined, "12 calls queued behind a blocked writer, none refused");
    assert.ok(err instanceof QueueFullError, inspect(err));
    assert.equal(err.code, "QMP_ERR_QUEUE_FULL");
    assert.equal(waiting.length, 10, `refused after ${waiting.length} waiting calls`);
    assert.equal(client.runstate, Runstate.RUNNING);
    peer.resumeReading();
    assert.deepEqual(await first, {});
    for (const call of waiting) assert.deepEqual(await call, {});
    assert.deepEqual(await client.execute("x", { n: "after" }), {});
    // The refused call was never sent.
    assert.deepEqual(
      log.map((m) => (m["arguments"] as { n: unknown }).n),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, "after"],
    );
  },
);

// ------------------------------------------------- 11. abandoned calls leave the queue unsent

void test(
  "a call that times out or is aborted before it is written is never sent",
  T,
  async (t) => {
    const log: Record<string, unknown>[] = [];
    const { client, socket, peer } = await stalled(t, {}, answerAll(log));
    const big = "a".repeat(MiB);
    const calls = [0, 1, 2, 3].map((n) => later(client.execute("x", { n, big })));
    await writerBlocked(socket);
    const timedOut = await rejection(client.execute("x", { marker: "timed-out" }, { timeout: 50 }));
    assert.ok(isTimeout(timedOut), String(timedOut));
    const controller = new AbortController();
    const aborting = rejection(
      client.execute("x", { marker: "aborted" }, { signal: controller.signal }),
    );
    controller.abort();
    assert.equal(((await aborting) as Error).name, "AbortError");
    const last = client.execute("x", { marker: "last" });
    peer.resumeReading();
    for (const call of calls) assert.deepEqual(await call, {});
    assert.deepEqual(await last, {});
    const markers = log.map((m) => (m["arguments"] as { marker?: unknown }).marker);
    assert.ok(!markers.includes("timed-out"), "the timed-out command was sent");
    assert.ok(!markers.includes("aborted"), "the aborted command was sent");
    assert.equal(markers.filter((m) => m === undefined).length, 4);
  },
);

// ------------------------------------------------------- 13. the client-wide default timeout

void test(
  "client-wide timeout covers connect(): no greeting → TimeoutError, IDLE",
  T,
  async (t) => {
    const server = await fakeServer(t, { greeting: false });
    const client = newClient(t, { timeout: 200 });
    const err = await rejection(client.connect(server.address));
    assert.ok(isTimeout(err), String(err));
    assert.equal(client.runstate, Runstate.IDLE);
  },
);

void test(
  "client-wide timeout covers accept(): nobody connects → TimeoutError, IDLE",
  T,
  async (t) => {
    const dir = tempDir(t);
    const client = newClient(t, { timeout: 200 });
    await client.startServer(join(dir, "qmp.sock"));
    const err = await rejection(client.accept());
    assert.ok(isTimeout(err), String(err));
    assert.equal(client.runstate, Runstate.IDLE);
  },
);

void test(
  "client-wide timeout covers waitEvent(): no event → TimeoutError, still RUNNING",
  T,
  async (t) => {
    const { client } = await fakeSession(t, {}, { timeout: 200 });
    const err = await rejection(client.waitEvent("STOP"));
    assert.ok(isTimeout(err), String(err));
    assert.equal(client.runstate, Runstate.RUNNING);
  },
);

// ---------------------------------------------------------------- 15. argument types

// Wrong types on purpose (`as never` gets them past the compiler).
const badCalls: [string, (c: QMPClient) => Promise<unknown>][] = [
  // A bound, so that a command sent today fails by timeout instead of hanging.
  ["execute(42)", (c) => c.execute(42 as never, undefined, { timeout: 2000 })],
  ['execute(cmd, "x")', (c) => c.execute("query-status", "x" as never)],
  ["execute(cmd, [1])", (c) => c.execute("query-status", [1])],
  ['timeout: "100"', (c) => c.execute("query-status", undefined, { timeout: "100" as never })],
  ["signal: {}", (c) => c.execute("query-status", undefined, { signal: {} as never })],
  ['oob: "yes"', (c) => c.execute("query-status", undefined, { oob: "yes" as never })],
];

for (const [label, call] of badCalls) {
  void test(`${label} is a TypeError; nothing is sent, no id is used`, T, async (t) => {
    const { client, peer } = await fakeSession(t);
    const err = await rejection(call(client));
    assert.ok(err instanceof TypeError, String(err));
    assert.deepEqual(await client.execute("query-status"), STATUS);
    assert.deepEqual(wire(peer), [
      ["qmp_capabilities", 1],
      ["query-status", 2],
    ]);
  });
}

// --------------------------------------------------------- 16. what a TimeoutError says

void test("an execute() TimeoutError names the command and the milliseconds", T, async (t) => {
  const { client } = await fakeSession(t, { handlers: { "query-status": () => undefined } });
  const err = await rejection(client.execute("query-status", undefined, { timeout: 100 }));
  assert.ok(isTimeout(err), String(err));
  assert.match(err.message, /query-status/);
  assert.match(err.message, /100 ?ms/);
});

void test("a waitEvent() TimeoutError names the event and the milliseconds", T, async (t) => {
  const { client } = await fakeSession(t);
  const err = await rejection(client.waitEvent("STOP", undefined, { timeout: 100 }));
  assert.ok(isTimeout(err), String(err));
  assert.match(err.message, /STOP/);
  assert.match(err.message, /100 ?ms/);
});

// ------------------------------------------------------------------ unhandled rejections

void test("no unhandled rejection happened in this file", async () => {
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(unhandled, []);
});

void test("disconnectTimeout: Infinity means no deadline, not setTimeout's 1 ms", T, async (t) => {
  const received: Record<string, unknown>[] = [];
  const { client, socket, peer } = await stalled(
    t,
    { disconnectTimeout: Infinity },
    { onMessage: (m) => received.push(m) },
  );
  const big = "i".repeat(MiB);
  const call = rejection(client.execute("x", { big }));
  await writerBlocked(socket);
  const disconnecting = client.disconnect();
  // Well past 1 ms with the flush still blocked: a timer that fired would have cut it.
  await new Promise((resolve) => setTimeout(resolve, 50));
  peer.resumeReading();
  await disconnecting;
  await peer.closed;
  assert.equal(received.length, 1);
  assert.equal((received[0]!["arguments"] as { big: string }).big.length, MiB);
  assert.ok((await call) instanceof ExecInterruptedError);
});
