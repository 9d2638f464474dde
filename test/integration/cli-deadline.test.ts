// `--timeout` of `qmp events` and `qmp exec` fires even when garbage collection runs all the time
// (on Node 20, AbortSignal.any() could lose an inner AbortSignal.timeout() to the collector).

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { pathToFileURL } from "node:url";
import { FakeQMPServer } from "../../src/testing/index.js";
import { deadline, isTimeout } from "../../src/cli/common.js";
import { heldReply, qmp } from "../helpers/cli.js";
import { tempDir } from "../helpers/qemu.js";

const T = { timeout: 20_000 };

/** Node options that make `qmp` collect garbage every few milliseconds. */
function collectingGarbage(t: TestContext): string[] {
  const hook = join(tempDir(t), "gc.mjs");
  writeFileSync(hook, "setInterval(() => globalThis.gc(), 5).unref();\n");
  return ["--expose-gc", "--import", pathToFileURL(hook).href];
}

void test("events --timeout on an idle monitor ends, with GC running all along", T, async (t) => {
  await using server = await FakeQMPServer.listen();
  const started = performance.now();
  const r = await qmp(t, ["events", server.address as string, "--timeout", "0.5"], {
    nodeArgs: collectingGarbage(t),
  });
  assert.ok(performance.now() - started >= 500);
  assert.deepEqual(r, { code: 1, signal: null, stdout: "", stderr: "" });
});

void test("exec --timeout on a command never answered ends, with GC running", T, async (t) => {
  const held = heldReply({ return: {} });
  await using server = await FakeQMPServer.listen({ handlers: { stop: held.handler } });
  t.after(held.release);
  const r = await qmp(t, ["exec", "--timeout", "0.5", server.address as string, "stop"], {
    nodeArgs: collectingGarbage(t),
  });
  assert.deepEqual(r, {
    code: 2,
    signal: null,
    stdout: "",
    stderr: "qmp exec: stop: no reply within 0.5 s\n",
  });
});

void test("deadline(): a timeout, a source's reason, and clear() stops both", async () => {
  const timed = deadline(10);
  await new Promise((resolve) => timed.signal.addEventListener("abort", resolve));
  assert.ok(isTimeout(timed.signal.reason));

  const source = new AbortController();
  const both = deadline(60_000, undefined, source.signal);
  const reason = new Error("stop");
  source.abort(reason);
  assert.equal(both.signal.reason, reason);

  const early = deadline(60_000, AbortSignal.abort("gone"));
  assert.equal(early.signal.reason, "gone");

  const cleared = new AbortController();
  const idle = deadline(5, cleared.signal);
  idle.clear();
  cleared.abort();
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(idle.signal.aborted, false);
});
