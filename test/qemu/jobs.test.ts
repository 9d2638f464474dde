// Real QEMU: runJob() — blockdev-create and blockdev-backup followed to their end with progress,
// the job gone afterwards; a job that fails mid-run gives JobError with QEMU's text; an abort
// cancels the job; executeAndWait still works.

import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { JobError, type JobProgress, type QMPClient } from "../../src/index.js";
import { startQemu, tempDir, testClient } from "../helpers/qemu.js";

const T = { timeout: 60_000 };
const MiB = 1024 * 1024;

/** A QEMU with a null-co source node `src` of `size` bytes, and a connected client. */
async function withSource(t: TestContext, size: number): Promise<QMPClient> {
  const qemu = await startQemu(t);
  const client = testClient(t);
  await client.connect(qemu.socketPath);
  await client.execute("blockdev-add", {
    driver: "null-co",
    "node-name": "src",
    size,
    "read-zeroes": true,
  });
  return client;
}

/** Create a raw image file at `path` through a blockdev-create job, and add it as node `name`. */
async function target(client: QMPClient, path: string, size: number, name: string): Promise<void> {
  const created = await client.runJob("blockdev-create", {
    options: { driver: "file", filename: path, size },
  });
  assert.equal(created.status, "concluded");
  assert.equal(created.type, "create");
  await client.execute("blockdev-add", { driver: "file", filename: path, "node-name": name });
}

void test(
  "blockdev-create then blockdev-backup: progress reported, the job gone after",
  T,
  async (t) => {
    const size = 16 * MiB;
    const client = await withSource(t, size);
    const file = join(tempDir(t), "backup.raw");
    await target(client, file, size, "tgt");
    assert.equal(statSync(file).size, size);
    const seen: JobProgress[] = [];
    const info = await client.runJob(
      "blockdev-backup",
      { device: "src", target: "tgt", sync: "full", speed: 8 * MiB },
      { interval: 50, onProgress: (p) => seen.push(p) },
    );
    assert.equal(info.status, "concluded");
    assert.equal(info.type, "backup");
    assert.equal(info.current, size);
    assert.equal(info.total, size);
    assert.ok(info.id.startsWith("qmp-job-"), info.id);
    assert.ok(
      seen.some((p) => p.status === "running" && p.current < size),
      JSON.stringify(seen),
    );
    assert.ok(
      seen.every((p, i) => i === 0 || p.current >= seen[i - 1]!.current),
      "progress only grows",
    );
    assert.deepEqual(await client.execute("query-jobs"), []);
  },
);

void test(
  "a job that fails mid-run: JobError with QEMU's error text, the job dismissed",
  T,
  async (t) => {
    const client = await withSource(t, MiB);
    const missing = join(tempDir(t), "no-such-dir", "x.raw");
    const err = await client
      .runJob("blockdev-create", {
        "job-id": "mine",
        options: { driver: "file", filename: missing, size: MiB },
      })
      .then(
        () => assert.fail("the job succeeded"),
        (e: unknown) => e,
      );
    assert.ok(err instanceof JobError, String(err));
    assert.equal(err.jobId, "mine");
    assert.equal(err.jobType, "create");
    assert.match(err.desc, /No such file or directory/);
    assert.equal(err.code, "QMP_ERR_JOB");
    assert.ok(!existsSync(missing));
    assert.deepEqual(await client.execute("query-jobs"), []);
  },
);

void test("a refused command is an ExecuteError, not a job", T, async (t) => {
  const client = await withSource(t, MiB);
  await assert.rejects(
    client.runJob("blockdev-backup", { device: "src", target: "nowhere", sync: "full" }),
    { name: "ExecuteError" },
  );
  assert.deepEqual(await client.execute("query-jobs"), []);
});

void test(
  "aborting cancels the job and waits for it; the abort's reason comes back",
  T,
  async (t) => {
    const size = 64 * MiB;
    const client = await withSource(t, size);
    await target(client, join(tempDir(t), "slow.raw"), size, "tgt");
    const controller = new AbortController();
    const reason = new Error("enough");
    const err = await client
      .runJob(
        "blockdev-backup",
        { device: "src", target: "tgt", sync: "full", speed: MiB },
        {
          interval: 50,
          signal: controller.signal,
          onProgress: (p) => {
            if (p.status === "running" && p.current > 0) controller.abort(reason);
          },
        },
      )
      .then(
        () => assert.fail("the job finished"),
        (e: unknown) => e,
      );
    assert.equal(err, reason);
    assert.deepEqual(await client.execute("query-jobs"), []);
  },
);

void test("a timeout cancels the job too", T, async (t) => {
  const size = 64 * MiB;
  const client = await withSource(t, size);
  await target(client, join(tempDir(t), "slow.raw"), size, "tgt");
  await assert.rejects(
    client.runJob(
      "blockdev-backup",
      { device: "src", target: "tgt", sync: "full", speed: MiB },
      { timeout: 300 },
    ),
    { name: "TimeoutError" },
  );
  assert.deepEqual(await client.execute("query-jobs"), []);
});

void test("bad arguments are refused before anything is sent", T, async (t) => {
  const client = await withSource(t, MiB);
  await assert.rejects(client.untyped.runJob("blockdev-backup", { "job-id": 3 }), TypeError);
  await assert.rejects(client.runJob("blockdev-backup", {}, { interval: 0 }), RangeError);
  assert.deepEqual(await client.execute("query-jobs"), []);
});
