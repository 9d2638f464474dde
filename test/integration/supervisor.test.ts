// QMPSupervisor against the fake server: a dropped session comes back on the same client,
// listeners stay, pending calls fail and are never resent, stop() ends it.

import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import {
  ConnectError,
  ExecInterruptedError,
  type Logger,
  QMPClient,
  QMPError,
  QMPSupervisor,
  Runstate,
  type SupervisorOptions,
} from "../../src/index.js";
import { FakePeer, FakeQMPServer } from "../../src/testing/index.js";
import { newClient, rejection, watchUnhandledRejections } from "../helpers/common.js";
import { recordMessages, tempDir } from "../helpers/qemu.js";

// Every unhandled rejection in this file is a failure (checked by the last test).
const unhandled = watchUnhandledRejections();

/** A logger that calls `onLine` with each debug line. */
function lineLogger(onLine: (line: string) => void = () => {}): Logger & { lines: string[] } {
  const lines: string[] = [];
  const ignore = (): void => {};
  return {
    lines,
    debug: (m) => {
      lines.push(m);
      onLine(m);
    },
    info: ignore,
    warn: ignore,
    error: ignore,
  };
}

function newSupervisor(
  t: TestContext,
  client: QMPClient,
  address: string,
  options: SupervisorOptions = {},
): QMPSupervisor {
  const supervisor = new QMPSupervisor(client, address, options);
  t.after(() => supervisor.stop());
  return supervisor;
}

/** A fake server on `path`, closed after the test (closing removes the socket file). */
async function serverAt(t: TestContext, path: string): Promise<FakeQMPServer> {
  const server = await FakeQMPServer.listen({}, path);
  t.after(() => server.close());
  return server;
}

/** The events a supervisor emitted, in order. */
function recordSupervisor(supervisor: QMPSupervisor): string[] {
  const seen: string[] = [];
  supervisor.on("disconnected", () => seen.push("disconnected"));
  supervisor.on("reconnected", () => seen.push("reconnected"));
  supervisor.on("reconnectFailed", () => seen.push("reconnectFailed"));
  return seen;
}

/** Resolves at the first debug line that matches `pattern` from now on. */
function lineSeen(logger: { lines: string[] }, pattern: RegExp): Promise<void> {
  const from = logger.lines.length;
  return new Promise((resolve) => {
    const check = (): void => {
      if (logger.lines.slice(from).some((l) => pattern.test(l))) resolve();
      else setImmediate(check);
    };
    check();
  });
}

/** Every test here ends in well under a second; a wait that is not cut short fails it. */
const T = { timeout: 20_000 };

const RETRYING = /retrying in \d+ ms/;

void test(
  "a dropped session comes back: disconnected, reconnected, listeners kept, ids increase",
  T,
  async (t) => {
    const path = join(tempDir(t), "qmp.sock");
    let server = await serverAt(t, path);
    const logger = lineLogger();
    const client = newClient(t, { name: "sup", logger });
    const sent = recordMessages(t, client, "send");
    const listener = client.listener("HELLO");
    const supervisor = newSupervisor(t, client, path, { retry: { delay: 5, maxDelay: 20 } });
    const seen = recordSupervisor(supervisor);

    await supervisor.start();
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.ok(supervisor.active);
    const peer1 = await server.peer();
    peer1.sendEvent("HELLO", { n: 1 });
    assert.deepEqual((await listener.get()).data, { n: 1 });
    await client.execute("query-status");

    // The server goes away (its socket file too): the supervisor backs off.
    const disconnected = once(supervisor, "disconnected");
    const retrying = lineSeen(logger, RETRYING);
    await server.close();
    assert.deepEqual(await disconnected, [undefined]);
    await retrying;
    assert.equal(client.runstate, Runstate.CONNECTING);

    // It comes back on the same path.
    const reconnected = once(supervisor, "reconnected");
    server = await serverAt(t, path);
    await reconnected;
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.deepEqual(seen, ["disconnected", "reconnected"]);

    const peer2 = await server.peer();
    peer2.sendEvent("HELLO", { n: 2 });
    assert.deepEqual((await listener.get()).data, { n: 2 });
    await client.execute("query-status");
    const ids = sent.map((m) => m["id"] as number);
    assert.equal(ids.length, 4);
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, JSON.stringify(ids));
    assert.equal(client.listenerCount("runstate"), 1);

    await supervisor.stop();
    assert.equal(client.runstate, Runstate.IDLE);
    assert.ok(!supervisor.active);
    assert.equal(client.listenerCount("runstate"), 0);
  },
);

void test(
  "a call pending when the session drops fails with ExecInterruptedError and is not resent",
  T,
  async (t) => {
    const path = join(tempDir(t), "qmp.sock");
    const server = await serverAt(t, path);
    const client = newClient(t);
    const supervisor = newSupervisor(t, client, path, { retry: { delay: 1 } });
    await supervisor.start();
    const peer1 = await server.peer();
    // Never answered.
    peer1.handle("slow", () => undefined);

    const pending = client.execute("slow");
    for (let i = 0; i < 4; i++) {
      if ((await peer1.nextMessage())["execute"] === "slow") break;
    }
    assert.equal(peer1.received.at(-1)?.["execute"], "slow");
    const reconnected = once(supervisor, "reconnected");
    // A reset, then the same server takes the next connection.
    peer1.reset();
    const err = await rejection(pending);
    assert.ok(err instanceof ExecInterruptedError, String(err));
    await reconnected;

    const peer2 = await server.peer();
    await client.execute("query-status");
    assert.deepEqual(
      peer2.received.map((m) => m["execute"]),
      ["qmp_capabilities", "query-status"],
    );
  },
);

void test("retry.onRetry is told of each reconnect attempt that failed", T, async (t) => {
  const path = join(tempDir(t), "qmp.sock");
  const server = await serverAt(t, path);
  const client = newClient(t);
  const attempts: number[] = [];
  let third!: () => void;
  const thirdSeen = new Promise<void>((resolve) => (third = resolve));
  const onRetry = ({ attempt }: { attempt: number }): void => {
    attempts.push(attempt);
    if (attempt === 3) third();
  };
  const supervisor = newSupervisor(t, client, path, { retry: { delay: 1, maxDelay: 5, onRetry } });
  await supervisor.start();
  assert.deepEqual(attempts, []);
  await server.close();
  await thirdSeen;
  const reconnected = once(supervisor, "reconnected");
  await serverAt(t, path);
  await reconnected;
  assert.deepEqual(attempts.slice(0, 3), [1, 2, 3]);
});

void test("stop() during the back-off ends it at once; the client stays IDLE", T, async (t) => {
  const path = join(tempDir(t), "qmp.sock");
  const server = await serverAt(t, path);
  const logger = lineLogger();
  const client = newClient(t, { logger });
  const supervisor = newSupervisor(t, client, path, { retry: { delay: 60_000 } });
  const seen = recordSupervisor(supervisor);
  await supervisor.start();

  const retrying = lineSeen(logger, RETRYING);
  await server.close();
  await retrying;
  const started = performance.now();
  await supervisor.stop();
  assert.ok(performance.now() - started < 5000, "stop() waited for the back-off");
  assert.equal(client.runstate, Runstate.IDLE);
  assert.ok(!supervisor.active);
  assert.deepEqual(seen, ["disconnected"]);
  assert.equal(client.listenerCount("runstate"), 0);
  // Harmless twice.
  await supervisor.stop();
});

void test(
  "retry.attempts run out: reconnectFailed, the supervisor stops, the client is IDLE",
  T,
  async (t) => {
    const path = join(tempDir(t), "qmp.sock");
    const server = await serverAt(t, path);
    const client = newClient(t);
    const supervisor = newSupervisor(t, client, path, { retry: { delay: 1, attempts: 3 } });
    const seen = recordSupervisor(supervisor);
    await supervisor.start();

    const failed = once(supervisor, "reconnectFailed");
    await server.close();
    const [err] = (await failed) as [unknown];
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal((err.cause as { code?: string }).code, "ENOENT");
    assert.deepEqual(seen, ["disconnected", "reconnectFailed"]);
    assert.ok(!supervisor.active);
    assert.equal(client.runstate, Runstate.IDLE);
    assert.equal(client.listenerCount("runstate"), 0);
  },
);

void test("a session cut while being established is tried again", T, async (t) => {
  const path = join(tempDir(t), "qmp.sock");
  // The first connection is closed before any greeting; later ones get a fake QMP peer.
  let connections = 0;
  const peers: FakePeer[] = [];
  const server = net.createServer((socket) => {
    if (++connections === 1) socket.destroy();
    else peers.push(new FakePeer(socket));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.after(() => {
    for (const p of peers) p.socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const logger = lineLogger();
  const client = newClient(t, { logger });
  const supervisor = newSupervisor(t, client, path, { retry: { delay: 1 } });

  await supervisor.start();
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.equal(connections, 2);
  assert.ok(
    logger.lines.some((l) => /Supervisor: Connecting failed .*SessionEndedError/.test(l)),
    logger.lines.join("\n"),
  );
});

void test(
  "start() gives up like a connect with retry; the supervisor is then stopped",
  T,
  async (t) => {
    const path = join(tempDir(t), "never.sock");
    const client = newClient(t);
    const supervisor = newSupervisor(t, client, path, { retry: { delay: 1, attempts: 2 } });
    const err = await rejection(supervisor.start());
    assert.ok(err instanceof ConnectError, String(err));
    assert.ok(!supervisor.active);
    assert.equal(client.listenerCount("runstate"), 0);
    assert.equal(client.runstate, Runstate.IDLE);
  },
);

void test(
  "start() twice is an error; stop() during start() rejects it with an AbortError",
  T,
  async (t) => {
    const path = join(tempDir(t), "never.sock");
    const logger = lineLogger();
    const client = newClient(t, { logger });
    const supervisor = newSupervisor(t, client, path, { retry: { delay: 60_000 } });
    const retrying = lineSeen(logger, RETRYING);
    const starting = supervisor.start();
    await assert.rejects(supervisor.start(), QMPError);
    await retrying;
    await supervisor.stop();
    const err = await rejection(starting);
    assert.ok(err instanceof DOMException && err.name === "AbortError", String(err));
    assert.equal(client.runstate, Runstate.IDLE);
    assert.ok(!supervisor.active);
  },
);

void test("after quit the supervisor keeps trying until stop()", T, async (t) => {
  const path = join(tempDir(t), "qmp.sock");
  const server = await serverAt(t, path);
  const logger = lineLogger();
  const client = newClient(t, { logger });
  const supervisor = newSupervisor(t, client, path, { retry: { delay: 5, maxDelay: 5 } });
  await supervisor.start();
  // The fake peer closes after answering quit; the server stays but stops listening next.
  const disconnected = once(supervisor, "disconnected");
  const retrying = lineSeen(logger, RETRYING);
  await client.execute("quit");
  await server.close();
  assert.deepEqual(await disconnected, [undefined]);
  await retrying;
  assert.ok(supervisor.active);
  await supervisor.stop();
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("retry.process is refused", T, (t) => {
  const client = newClient(t);
  assert.throws(
    () =>
      new QMPSupervisor(client, "/x", { retry: { process: 1 } as unknown as { delay: number } }),
    TypeError,
  );
});

void test("no unhandled rejections in this file", () => {
  assert.deepEqual(unhandled, []);
});
