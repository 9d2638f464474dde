// Real QEMU: `qmp exec … --wait` — a backup followed to its end with a progress bar on a terminal
// and plain lines on a pipe; a failing job exits 1 with QEMU's text; an interrupt cancels the
// job and exits 130; migrate --wait.

import assert from "node:assert/strict";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import type { QMPClient } from "../../src/index.js";
import { QMP_BIN, ROOT, qmp, runQmp, withoutSocket } from "../helpers/cli.js";
import { spawnInPty } from "../helpers/pty.js";
import { asObject, startQemu, startQemuWithControl, tempDir, testClient } from "../helpers/qemu.js";

const T = { timeout: 60_000 };
const MiB = 1024 * 1024;

/** A QEMU with a null-co `src` and a file `tgt` of `size`, its QMP socket, and a control client. */
async function backupSetUp(
  t: TestContext,
  size: number,
): Promise<{ sock: string; control: QMPClient }> {
  const { qemu, control: path } = await startQemuWithControl(t);
  const control = testClient(t);
  await control.connect(path);
  await control.execute("blockdev-add", {
    driver: "null-co",
    "node-name": "src",
    size,
    "read-zeroes": true,
  });
  const file = join(tempDir(t), "tgt.raw");
  await control.runJob("blockdev-create", { options: { driver: "file", filename: file, size } });
  await control.execute("blockdev-add", { driver: "file", filename: file, "node-name": "tgt" });
  return { sock: qemu.socketPath, control };
}

const backup = (sock: string, speed: number): string[] => [
  "exec",
  "--wait",
  sock,
  "blockdev-backup",
  "device=src",
  "target=tgt",
  "sync=full",
  `speed=${speed}`,
];

void test("--wait on a pipe: plain progress lines, the job as it ended on stdout", T, async (t) => {
  const { sock, control } = await backupSetUp(t, 16 * MiB);
  const r = await qmp(t, backup(sock, 8 * MiB));
  assert.equal(r.code, 0, r.stderr);
  const job = asObject(JSON.parse(r.stdout));
  assert.equal(job["status"], "concluded");
  assert.equal(job["current"], 16 * MiB);
  assert.match(r.stderr, /^blockdev-backup: running \d+% \(.* of 16\.0 MiB\)$/m);
  assert.doesNotMatch(r.stderr, /\r/);
  assert.deepEqual(await control.execute("query-jobs"), []);
});

void test(
  "--wait on a terminal: a bar with percentage, rate and ETA, redrawn in place",
  T,
  async (t) => {
    const { sock } = await backupSetUp(t, 32 * MiB);
    const pty = await spawnInPty(t, process.execPath, [QMP_BIN, ...backup(sock, 8 * MiB)], {
      env: withoutSocket(),
      cwd: ROOT,
    });
    await pty.waitFor(
      /^blockdev-backup \[#+-*\] +\d+% [\d.]+ MiB\/s ETA \d+:\d\d \d+:\d\d running$/m,
      {
        what: "the progress bar",
      },
    );
    assert.deepEqual(await pty.done, { code: 0, signal: null });
    assert.match(pty.screen.text(), /"status":"concluded"/);
    // One bar, redrawn in place: a single row of it.
    assert.equal(pty.screen.lines().filter((l) => l.startsWith("blockdev-backup [")).length, 1);
  },
);

void test("--wait: a job that fails exits 1 with QEMU's text", T, async (t) => {
  const { qemu } = await startQemuWithControl(t);
  const missing = join(tempDir(t), "none", "x.raw");
  const r = await qmp(t, [
    "exec",
    "--wait",
    qemu.socketPath,
    "blockdev-create",
    `options={"driver":"file","filename":"${missing}","size":1048576}`,
  ]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^qmp exec: blockdev-create: .*No such file or directory/m);
});

void test("--wait interrupted (SIGINT): the job is cancelled, exit 130", T, async (t) => {
  const { sock, control } = await backupSetUp(t, 64 * MiB);
  const run = runQmp(t, backup(sock, MiB));
  await run.waitStderr(/blockdev-backup: running/);
  run.child.kill("SIGINT");
  const r = await run.done;
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /^qmp exec: blockdev-backup: interrupted; cancelled$/m);
  assert.deepEqual(await control.execute("query-jobs"), []);
});

void test("migrate --wait: followed to completed", T, async (t) => {
  const src = await startQemu(t, { args: ["-m", "32"] });
  const incoming = join(tempDir(t), "in.sock");
  await startQemu(t, { args: ["-m", "32", "-incoming", `unix:${incoming}`] });
  const r = await qmp(t, ["exec", "--wait", src.socketPath, "migrate", `uri=unix:${incoming}`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(asObject(JSON.parse(r.stdout))["status"], "completed");
});
