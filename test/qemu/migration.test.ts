// Real QEMU: migrate() — a local migration to a second QEMU started with -incoming on a UNIX
// socket, completing with progress; one held at pre-switchover and cancelled by an abort; one
// that fails (nobody listening) with QEMU's error.

import assert from "node:assert/strict";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { MigrationError, type MigrationProgress, type QMPClient } from "../../src/index.js";
import { asObject, qemuVersion, startQemu, tempDir, testClient } from "../helpers/qemu.js";

const T = { timeout: 60_000 };

/** A source QEMU with RAM (`-m 32`), its client, and where a destination would listen. */
async function source(t: TestContext): Promise<{ client: QMPClient; incoming: string }> {
  const qemu = await startQemu(t, { args: ["-m", "32"] });
  const client = testClient(t);
  await client.connect(qemu.socketPath);
  return { client, incoming: join(tempDir(t), "incoming.sock") };
}

/** A destination QEMU waiting for a migration on `path`, and its client. */
async function destination(t: TestContext, path: string): Promise<QMPClient> {
  const qemu = await startQemu(t, { args: ["-m", "32", "-incoming", `unix:${path}`] });
  const client = testClient(t);
  await client.connect(qemu.socketPath);
  return client;
}

void test("a local migration completes, with progress; the destination runs", T, async (t) => {
  const { client, incoming } = await source(t);
  const dest = await destination(t, incoming);
  const seen: MigrationProgress[] = [];
  const info = await client.migrate(`unix:${incoming}`, {
    interval: 20,
    onProgress: (p) => seen.push(p),
  });
  assert.equal(info.status, "completed");
  assert.ok(info.total >= 32 * 1024 * 1024, JSON.stringify(info));
  assert.equal(typeof info.totalTime, "number");
  assert.equal(seen.at(-1)?.status, "completed");
  assert.equal(asObject(await client.execute("query-status"))["status"], "postmigrate");
  const events = dest.listener("RESUME");
  const status = asObject(await dest.execute("query-status"))["status"];
  if (status !== "running") await events.get({ timeout: 10_000 });
  assert.equal(asObject(await dest.execute("query-status"))["status"], "running");
});

void test(
  "an abort cancels the migration (held at pre-switchover) and waits for it",
  T,
  async (t) => {
    const { client, incoming } = await source(t);
    await destination(t, incoming);
    await client.execute("migrate-set-capabilities", {
      capabilities: [{ capability: "pause-before-switchover", state: true }],
    });
    const controller = new AbortController();
    const reason = new Error("changed my mind");
    const err = await client
      .migrate(`unix:${incoming}`, {
        interval: 20,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.status === "pre-switchover") controller.abort(reason);
        },
      })
      .then(
        () => assert.fail("the migration completed"),
        (e: unknown) => e,
      );
    assert.equal(err, reason);
    const after = asObject(await client.execute("query-migrate"));
    assert.ok(["cancelled", "cancelling"].includes(String(after["status"])), JSON.stringify(after));
  },
);

void test("a migration that fails: MigrationError with QEMU's description", T, async (t) => {
  const { client, incoming } = await source(t);
  // Nobody listens there.
  const err = await client.migrate(`unix:${incoming}`, { interval: 20 }).then(
    () => assert.fail("the migration completed"),
    (e: unknown) => e,
  );
  if (err instanceof MigrationError) {
    assert.equal(err.status, "failed");
    assert.ok(err.desc.length > 0);
    assert.equal(err.code, "QMP_ERR_MIGRATION");
  } else {
    // Some versions refuse the URI at once: the command's own error.
    assert.equal((err as Error).name, "ExecuteError", String(err));
  }
  assert.equal(asObject(await client.execute("query-status"))["status"], "running");
});

void test("channels instead of a URI (QEMU 8.2+; refused by older ones)", T, async (t) => {
  const { client, incoming } = await source(t);
  await destination(t, incoming);
  const channels = [
    { "channel-type": "main", addr: { transport: "socket", type: "unix", path: incoming } },
  ];
  const [major, minor] = await qemuVersion();
  if (major > 8 || (major === 8 && minor >= 2)) {
    assert.equal((await client.migrate(channels, { interval: 20 })).status, "completed");
  } else {
    await assert.rejects(client.migrate(channels), { name: "ExecuteError" });
  }
});
