// runJob() against the test kit's fake server, for the job states real QEMU is slow to show:
// ready (completed with job-complete, or returned), pending with auto-finalize off (finalized),
// a job that dismisses itself between concluded and our job-dismiss, and auto-dismiss sent.

import assert from "node:assert/strict";
import { type TestContext, test } from "node:test";
import { type JobInfo, type JsonValue, QMPClient } from "../../src/index.js";
import { type CommandHandler, FakeQMPServer } from "../../src/testing/index.js";

const T = { timeout: 15_000 };

/**
 * A fake QEMU whose one job walks through `statuses` (one step per
 * query-jobs, or per job-complete/job-finalize when it waits for that) and
 * then is gone once dismissed. `sent` collects the commands.
 */
async function fakeJob(
  t: TestContext,
  statuses: string[],
  extra: Record<string, CommandHandler> = {},
): Promise<{ client: QMPClient; sent: Record<string, unknown>[] }> {
  const sent: Record<string, unknown>[] = [];
  let step = 0;
  let id = "";
  let dismissed = false;
  const job = (): Record<string, unknown> => ({
    id,
    type: "mirror",
    status: statuses[Math.min(step, statuses.length - 1)],
    "current-progress": step,
    "total-progress": statuses.length,
  });
  const record = (message: Record<string, unknown>): void => {
    sent.push(message);
  };
  const server = await FakeQMPServer.listen({
    handlers: {
      "blockdev-mirror": (args, message) => {
        record(message);
        id = String(args?.["job-id"]);
        return { return: {} };
      },
      "query-jobs": () => {
        if (dismissed) return { return: [] };
        const current = job();
        if (!["ready", "pending"].includes(String(current["status"]))) step++;
        return { return: [current] as JsonValue };
      },
      "job-complete": (args, message) => {
        record(message);
        step++;
        return { return: {} };
      },
      "job-finalize": (args, message) => {
        record(message);
        step++;
        return { return: {} };
      },
      "job-dismiss": (args, message) => {
        record(message);
        dismissed = true;
        return { return: {} };
      },
      ...extra,
    },
  });
  t.after(() => server.close());
  const client = new QMPClient();
  t.after(() => client.destroy());
  await client.connect(server.address);
  return { client, sent };
}

const commands = (sent: Record<string, unknown>[]): unknown[] => sent.map((m) => m["execute"]);

void test(
  "ready: job-complete, then concluded and dismissed; auto-dismiss is sent off",
  T,
  async (t) => {
    const { client, sent } = await fakeJob(t, [
      "created",
      "running",
      "ready",
      "waiting",
      "concluded",
    ]);
    const seen: string[] = [];
    const info: JobInfo = await client.runJob(
      "blockdev-mirror",
      { device: "d", target: "t", sync: "full" },
      { interval: 5, onProgress: (p) => seen.push(p.status) },
    );
    assert.equal(info.status, "concluded");
    assert.deepEqual(commands(sent), ["blockdev-mirror", "job-complete", "job-dismiss"]);
    assert.equal((sent[0]!["arguments"] as Record<string, unknown>)["auto-dismiss"], false);
    assert.ok(seen.includes("ready"), seen.join());
  },
);

void test("complete: false returns the job once it is ready", T, async (t) => {
  const { client, sent } = await fakeJob(t, ["created", "running", "ready"]);
  const info = await client.runJob(
    "blockdev-mirror",
    { device: "d", target: "t", sync: "full" },
    { interval: 5, complete: false },
  );
  assert.equal(info.status, "ready");
  assert.deepEqual(commands(sent), ["blockdev-mirror"]);
});

void test("auto-finalize false: finalized when pending", T, async (t) => {
  const { client, sent } = await fakeJob(t, ["created", "running", "pending", "concluded"]);
  await client.runJob(
    "blockdev-mirror",
    { device: "d", target: "t", sync: "full", "auto-finalize": false, "job-id": "given" },
    { interval: 5 },
  );
  assert.deepEqual(commands(sent), ["blockdev-mirror", "job-finalize", "job-dismiss"]);
  assert.equal((sent[1]!["arguments"] as Record<string, unknown>)["id"], "given");
});

void test("a job that dismissed itself before our job-dismiss is no error", T, async (t) => {
  let gone = false;
  const { client } = await fakeJob(t, ["running", "concluded"], {
    "job-dismiss": () => {
      gone = true;
      return { error: { class: "GenericError", desc: "Job not found" } };
    },
    "query-jobs": () =>
      gone
        ? { return: [] }
        : {
            return: [
              {
                id: "j",
                type: "mirror",
                status: "concluded",
                "current-progress": 1,
                "total-progress": 1,
              },
            ],
          },
  });
  const info = await client.runJob("blockdev-mirror", {
    device: "d",
    target: "t",
    sync: "full",
    "job-id": "j",
  });
  assert.equal(info.status, "concluded");
});
