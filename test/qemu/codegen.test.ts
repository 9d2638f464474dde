// `qmp codegen` against real QEMU and qemu-storage-daemon, and against a saved schema: the
// modules we ship are what the generator makes from the QEMU they name.

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { qmp } from "../helpers/cli.js";
import { ROOT } from "../helpers/cli.js";
import { qemuVersion, startQemu, storageDaemonBinary, testClient } from "../helpers/qemu.js";

const T = { timeout: 60_000 };

/** A module without its header comment (which names the exact build). */
function body(text: string): string {
  return text.replace(/^(\/\/[^\n]*\n)+/, "");
}

/** The module we ship for this version, if we ship one. */
function shipped(name: string): string | undefined {
  try {
    return readFileSync(join(ROOT, "generated/qapi", `${name}.ts`), "utf8");
  } catch {
    return undefined;
  }
}

void test("qmp codegen ADDRESS: QEMU's schema as a module, the one we ship", T, async (t) => {
  const vm = await startQemu(t);
  const [major, minor] = await qemuVersion();
  const out = join(vm.dir, "types.ts");
  const r = await qmp(t, ["codegen", vm.socketPath, "-o", out]);
  assert.equal(r.stderr, "");
  assert.equal(r.code, 0);
  const text = readFileSync(out, "utf8");
  assert.match(text, new RegExp(`^// QAPI types of QEMU ${major}\\.${minor}\\.\\d+`));
  assert.match(text, /"query-status": \{ args: undefined; returns: QueryStatusReturn \};/);
  const ours = shipped(`qemu-${major}.${minor}`);
  assert.ok(ours !== undefined, `no module shipped for QEMU ${major}.${minor}`);
  assert.equal(body(text), body(ours));

  // The same schema saved to a file (the whole reply) gives the same declarations.
  const client = testClient(t);
  await client.connect(vm.socketPath);
  const schema = await client.execute("query-qmp-schema");
  await client.disconnect();
  const file = join(vm.dir, "schema.json");
  writeFileSync(file, JSON.stringify({ return: schema }));
  const fromFile = await qmp(t, ["codegen", "--schema", file, "-n", "QEMU (saved)", "-o", "-"]);
  assert.equal(fromFile.code, 0);
  assert.match(fromFile.stdout, /^\/\/ QAPI types of QEMU \(saved\), generated/);
  assert.equal(body(fromFile.stdout), body(text));
});

void test("qmp codegen: qemu-storage-daemon's schema", T, async (t) => {
  const qsd = await startQemu(t, { storageDaemon: true });
  const out = join(qsd.dir, "qsd.ts");
  const r = await qmp(t, ["codegen", qsd.socketPath, "-o", out, "-n", "qemu-storage-daemon"]);
  assert.equal(r.code, 0, r.stderr);
  const text = readFileSync(out, "utf8");
  assert.match(text, /"query-block-exports": \{ args: undefined;/);
  assert.doesNotMatch(text, /"query-status"/);
  const [major, minor] = await qemuVersion(storageDaemonBinary());
  const ours = shipped(`qsd-${major}.${minor}`);
  if (ours !== undefined) assert.equal(body(text), body(ours));
});

void test("qmp codegen: a file that is no schema, a server that is not there", T, async (t) => {
  const vm = await startQemu(t, { qmpSocket: false });
  const bad = join(vm.dir, "bad.json");
  writeFileSync(bad, JSON.stringify([{ name: "x" }]));
  const r = await qmp(t, ["codegen", "--schema", bad, "-o", join(vm.dir, "x.ts")]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^qmp codegen: not a usable schema: .*entry 0/m);
  const gone = await qmp(t, ["codegen", join(vm.dir, "nothing.sock"), "-o", "-"]);
  assert.equal(gone.code, 2);
  assert.match(gone.stderr, /^qmp codegen: cannot connect to /m);
  const usage = await qmp(t, ["codegen", "x.sock"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /-o FILE\.ts is required/);
});
