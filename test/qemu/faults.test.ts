// Real QEMU at its worst: it dies while the client negotiates, and its socket file is removed
// while a client is connected. Each case ends with the client IDLE (or still working) and a clear
// error, never a hang.

import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { test } from "node:test";
import { ConnectError, Runstate } from "../../src/index.js";
import { asObject, startQemu, testClient } from "../helpers/qemu.js";

const T = { timeout: 30_000 };

void test(
  "QEMU killed while the client waits for its greeting: ConnectError, IDLE",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    // Stopped, QEMU accepts no more than the kernel does: no greeting comes.
    qemu.process.kill("SIGSTOP");
    const client = testClient(t);
    const connecting = client.connect(qemu.socketPath);
    // CONNECTING at once; whether QEMU dies before or after taking the
    // connection from its backlog, no greeting comes and connect() must fail.
    assert.equal(client.runstate, Runstate.CONNECTING);
    qemu.process.kill("SIGKILL");
    const err = await connecting.then(
      () => assert.fail("connected to a dead QEMU"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConnectError, String(err));
    assert.match(err.message, /^Failed to establish (session|connection)/);
    assert.equal(client.runstate, Runstate.IDLE);
    assert.equal((await qemu.exited).signal, "SIGKILL");
  },
);

void test(
  "the socket file removed while connected: the session goes on; a reconnect fails clearly",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const client = testClient(t);
    await client.connect(qemu.socketPath);
    rmSync(qemu.socketPath);
    // The connection does not need the path any more.
    assert.equal(asObject(await client.execute("query-status"))["status"], "running");
    await client.disconnect();
    assert.equal(client.runstate, Runstate.IDLE);
    const err = await client.connect(qemu.socketPath).then(
      () => assert.fail("connected through a removed path"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConnectError);
    assert.match(err.message, /^Failed to establish connection: .*ENOENT/);
    assert.equal(client.runstate, Runstate.IDLE);
  },
);
