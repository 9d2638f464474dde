// Real QEMU: reconnect, quit, a stopped QEMU and timeouts, a killed QEMU, server mode.

import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { ExecInterruptedError, type Logger, Runstate } from "../../src/index.js";
import { asObject, recordMessages, startQemu, tempDir, testClient } from "../helpers/qemu.js";

const T = { timeout: 30_000 };

/** A logger that keeps every line, by level. */
function memoryLogger(): Logger & { lines: Record<keyof Logger, string[]> } {
  const lines: Record<keyof Logger, string[]> = { debug: [], info: [], warn: [], error: [] };
  return {
    lines,
    debug: (m) => lines.debug.push(m),
    info: (m) => lines.info.push(m),
    warn: (m) => lines.warn.push(m),
    error: (m) => lines.error.push(m),
  };
}

void test("disconnect and reconnect to the same QEMU: ids keep increasing", T, async (t) => {
  const qemu = await startQemu(t);
  const logger = memoryLogger();
  const client = testClient(t, { name: "again", logger, trace: true });
  const sent = recordMessages(t, client, "send");

  await client.connect(qemu.socketPath);
  assert.equal(asObject(await client.execute("query-status"))["status"], "running");
  await client.execute("query-version");
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
  const firstSession = sent.length;
  assert.equal(firstSession, 3);

  await client.connect(qemu.socketPath);
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.equal(asObject(await client.execute("query-status"))["status"], "running");
  assert.ok("qemu" in asObject(await client.execute("query-version")));
  await client.disconnect();

  const ids = sent.map((m) => m["id"]);
  assert.equal(ids.length, 6);
  const session = ["qmp_capabilities", "query-status", "query-version"];
  assert.deepEqual(
    sent.map((m) => m["execute"]),
    [...session, ...session],
  );
  for (const id of ids)
    assert.ok(Number.isInteger(id), `id ${JSON.stringify(id)} is not an integer`);
  for (let i = 1; i < ids.length; i++) {
    assert.ok(
      (ids[i] as number) > (ids[i - 1] as number),
      `ids not increasing: ${JSON.stringify(ids)}`,
    );
  }
  // The trace shows the same ids going out.
  const traced = logger.lines.debug
    .filter((l) => l.includes("--> "))
    .map((l) => asObject(JSON.parse(l.slice(l.indexOf("--> ") + 4)))["id"]);
  assert.deepEqual(traced, ids);
  assert.deepEqual(logger.lines.error, []);
});

void test("quit resolves and QEMU exits with code 0", T, async (t) => {
  const qemu = await startQemu(t);
  const client = testClient(t);
  await client.connect(qemu.socketPath);

  assert.deepEqual(await client.execute("quit"), {});
  assert.deepEqual(await qemu.exited, { code: 0, signal: null });
  // QEMU said why it went away, then closed the connection cleanly.
  const shutdown = await client.events.get();
  assert.equal(shutdown.event, "SHUTDOWN");
  assert.equal(asObject(shutdown.data)["guest"], false);
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("a stopped QEMU: the call times out, its late reply is dropped", T, async (t) => {
  const qemu = await startQemu(t);
  const logger = memoryLogger();
  const client = testClient(t, { logger });
  const sent = recordMessages(t, client, "send");
  let lateReply!: () => void;
  const lateReplyArrived = new Promise<void>((resolve) => (lateReply = resolve));
  let abandonedId: unknown = undefined;
  const received = recordMessages(t, client, "receive", (m) => {
    if (abandonedId !== undefined && m["id"] === abandonedId) lateReply();
  });
  await client.connect(qemu.socketPath);

  qemu.process.kill("SIGSTOP");
  // The timeout is the behaviour under test: QEMU cannot answer while stopped.
  await assert.rejects(client.execute("query-version", undefined, { timeout: 300 }), {
    name: "TimeoutError",
  });
  abandonedId = sent.at(-1)!["id"];
  assert.equal(sent.at(-1)!["execute"], "query-version");
  assert.equal(client.runstate, Runstate.RUNNING);

  qemu.process.kill("SIGCONT");
  const status = asObject(await client.execute("query-status"));
  assert.equal(status["status"], "running");
  assert.ok(!("qemu" in status), "got the late query-version reply");
  await lateReplyArrived;
  // The late reply came first (QEMU answers in order) and was dropped quietly.
  const replies = received.filter((m) => "id" in m).map((m) => m["id"]);
  assert.deepEqual(replies.slice(-2), [abandonedId, sent.at(-1)!["id"]]);
  assert.deepEqual(logger.lines.warn, []);
  assert.ok(
    logger.lines.debug.some((l) => l.includes(`abandoned call ${String(abandonedId)}`)),
    "the late reply was not recognised as the abandoned call's",
  );
  assert.ok("qemu" in asObject(await client.execute("query-version")));
});

void test(
  "QEMU killed with a call pending: ExecInterruptedError, disconnect() ends IDLE",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const client = testClient(t);
    await client.connect(qemu.socketPath);

    // Stopped, QEMU cannot answer: the call is surely pending when it dies.
    qemu.process.kill("SIGSTOP");
    const pending = client.execute("query-status");
    const ended = client.runstateChanged();
    qemu.process.kill("SIGKILL");
    const interrupted = await pending.then(
      () => assert.fail("the call succeeded"),
      (e: unknown) => e,
    );
    assert.ok(interrupted instanceof ExecInterruptedError, `got ${String(interrupted)}`);
    assert.ok(interrupted.cause !== undefined);
    assert.equal(await ended, Runstate.DISCONNECTING);
    assert.equal((await qemu.exited).signal, "SIGKILL");

    // disconnect() may report the root cause (a reset), but it ends IDLE.
    const error = await client.disconnect().then(
      () => undefined,
      (e: unknown) => e,
    );
    if (error !== undefined) {
      t.diagnostic(`disconnect() reported: ${(error as Error).message}`);
      assert.equal(
        interrupted.cause,
        error,
        "disconnect() and the call disagree on the root cause",
      );
    }
    assert.equal(client.runstate, Runstate.IDLE);
    await client.disconnect();
    assert.equal(client.runstate, Runstate.IDLE);
  },
);

void test("server mode: QEMU connects to our socket", T, async (t) => {
  const path = join(tempDir(t), "server.sock");
  const client = testClient(t, { name: "server" });
  await client.startServer(path);
  assert.equal(client.runstate, Runstate.CONNECTING);
  assert.equal(client.serverAddress, path);

  const [qemu] = await Promise.all([
    startQemu(t, {
      qmpSocket: false,
      args: ["-chardev", `socket,id=c,path=${path}`, "-mon", "chardev=c,mode=control"],
    }),
    client.accept(),
  ]);
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.ok(client.greeting?.QMP.capabilities.includes("oob"));
  assert.equal(asObject(await client.execute("query-status"))["status"], "running");
  assert.deepEqual(await client.execute("query-version"), client.greeting!.QMP.version);
  await assert.rejects(client.execute("no-such-command"), { errorClass: "CommandNotFound" });
  const { event } = await client.executeAndWait("stop", undefined, { event: "STOP" });
  assert.equal(event.event, "STOP");

  assert.deepEqual(await client.execute("quit"), {});
  assert.deepEqual(await qemu.exited, { code: 0, signal: null });
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
});
