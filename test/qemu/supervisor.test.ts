// Real QEMU: connect retry while QEMU starts (or fails to), and a supervisor that outlives a
// QEMU killed with SIGKILL and restarted on the same socket.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import {
  ConnectError,
  type Logger,
  ProcessExitedError,
  QMPSupervisor,
  Runstate,
} from "../../src/index.js";
import {
  QEMU_BASE_ARGS,
  asObject,
  qemuBinary,
  qemuDataArgs,
  recordMessages,
  startQemu,
  tempDir,
  testClient,
  qmpArgs,
} from "../helpers/qemu.js";

const T = { timeout: 30_000 };

/** Spawn QEMU with stderr piped, without waiting for it; killed after the test. */
function spawnQemu(t: TestContext, args: string[]): ChildProcess {
  const binary = qemuBinary();
  const child = spawn(binary, [...qemuDataArgs(binary), ...QEMU_BASE_ARGS, ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await closed;
  });
  return child;
}

/** A logger that calls `onRetry` at each retry line of connect(). */
function retryLogger(onRetry: () => void = () => {}): Logger & { retries: number } {
  const ignore = (): void => {};
  const logger = {
    retries: 0,
    debug: (m: string) => {
      if (/Connect attempt \d+ failed .*; retrying in \d+ ms$/.test(m)) {
        logger.retries++;
        onRetry();
      }
    },
    info: ignore,
    warn: ignore,
    error: ignore,
  };
  return logger;
}

void test("connect with retry started before QEMU exists, then QEMU is spawned", T, async (t) => {
  const path = join(tempDir(t), "qmp.sock");
  let spawned: ChildProcess | undefined;
  const logger = retryLogger(() => {
    spawned ??= spawnQemu(t, qmpArgs(path));
  });
  const client = testClient(t, { logger });
  await client.connect(path, { retry: { delay: 10, maxDelay: 100 }, timeout: 20_000 });
  assert.ok(spawned !== undefined);
  assert.ok(logger.retries >= 1);
  assert.equal(asObject(await client.execute("query-status"))["status"], "running");
  await client.disconnect();
});

void test(
  "connect with retry watching a QEMU ChildProcess spawned a moment before",
  T,
  async (t) => {
    const path = join(tempDir(t), "qmp.sock");
    const child = spawnQemu(t, qmpArgs(path));
    const exitListeners = child.listenerCount("exit");
    const dataListeners = child.stderr!.listenerCount("data");
    const logger = retryLogger();
    const client = testClient(t, { logger });
    // QEMU cannot have made its socket yet: the first attempts fail with ENOENT.
    await client.connect(path, { retry: { delay: 10, process: child }, timeout: 20_000 });
    assert.ok(logger.retries >= 1, "connected at the first attempt: nothing was retried");
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.ok(client.greeting !== undefined);
    await client.disconnect();
    // Watching stopped with the connect: QEMU's exit later is none of its business.
    assert.equal(child.listenerCount("exit"), exitListeners);
    assert.equal(child.stderr!.listenerCount("data"), dataListeners);
  },
);

void test("a QEMU that fails to start: ProcessExitedError with its stderr", T, async (t) => {
  const path = join(tempDir(t), "qmp.sock");
  const child = spawnQemu(t, [...qmpArgs(path), "-no-such-option"]);
  const client = testClient(t);
  const err = await client.connect(path, { retry: { delay: 60_000, process: child } }).then(
    () => assert.fail("connected"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConnectError, String(err));
  const exited = err.cause;
  assert.ok(exited instanceof ProcessExitedError, String(exited));
  assert.equal(exited.exitCode, 1);
  assert.equal(exited.signal, null);
  assert.match(exited.stderr ?? "", /-no-such-option/);
  assert.match(err.message, /-no-such-option/);
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("supervisor: QEMU killed with SIGKILL and restarted on the same socket", T, async (t) => {
  const path = join(tempDir(t), "qmp.sock");
  const first = await startQemu(t, { qmpSocket: false, args: qmpArgs(path) });
  const client = testClient(t, { name: "supervised" });
  const sent = recordMessages(t, client, "send");
  const stops = client.listener("STOP");
  const supervisor = new QMPSupervisor(client, path, { retry: { delay: 10, maxDelay: 200 } });
  t.after(() => supervisor.stop());
  const seen: string[] = [];
  supervisor.on("disconnected", () => seen.push("disconnected"));
  supervisor.on("reconnected", () => seen.push("reconnected"));

  await supervisor.start();
  await client.execute("stop");
  assert.equal((await stops.get()).event, "STOP");

  const disconnected = once(supervisor, "disconnected");
  await first.kill();
  const [cause] = (await disconnected) as [unknown];
  t.diagnostic(`disconnected: ${String(cause)}`);
  assert.ok(supervisor.active);
  assert.notEqual(client.runstate, Runstate.RUNNING);

  // A new QEMU on the same path (the dead one's socket file is still there: refused, then replaced).
  const reconnected = once(supervisor, "reconnected");
  await startQemu(t, { qmpSocket: false, args: qmpArgs(path) });
  await reconnected;
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.deepEqual(seen, ["disconnected", "reconnected"]);

  // The listener registered before the kill gets the new QEMU's events.
  assert.equal(asObject(await client.execute("query-status"))["status"], "running");
  await client.execute("stop");
  assert.equal((await stops.get()).event, "STOP");

  const ids = sent.map((m) => m["id"] as number);
  assert.deepEqual(
    sent.map((m) => m["execute"]),
    ["qmp_capabilities", "stop", "qmp_capabilities", "query-status", "stop"],
  );
  for (let i = 1; i < ids.length; i++) assert.ok(ids[i]! > ids[i - 1]!, JSON.stringify(ids));

  await supervisor.stop();
  assert.equal(client.runstate, Runstate.IDLE);
});
