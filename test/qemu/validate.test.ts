// validate: true against real QEMU (7.2 and 10.0): bad arguments are refused with their paths
// before anything is sent, inside transaction and inside blockdev-add's flat union; valid calls
// go through; the live schema answers feature detection.

import assert from "node:assert/strict";
import { test } from "node:test";
import { type QMPClient, ValidationError } from "../../src/index.js";
import { recordMessages, startQemu, testClient } from "../helpers/qemu.js";

const T = { timeout: 30_000 };

/** The problems `call` is refused with, as `path: message` lines. */
async function refused(call: Promise<unknown>): Promise<string[]> {
  const err = await call.then(
    () => assert.fail("the call went through"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ValidationError, String(err));
  return err.problems.map((p) => `${p.path}: ${p.message}`);
}

async function connected(t: Parameters<typeof startQemu>[0]): Promise<{
  client: QMPClient;
  sent: Record<string, unknown>[];
}> {
  const vm = await startQemu(t);
  const client = testClient(t, { validate: true });
  const sent = recordMessages(t, client, "send");
  await client.connect(vm.socketPath);
  return { client, sent };
}

void test(
  "validate: real QEMU refuses nothing we let through, and we send nothing bad",
  T,
  async (t) => {
    const { client, sent } = await connected(t);
    assert.deepEqual(
      sent.map((m) => m["execute"]),
      ["qmp_capabilities", "query-qmp-schema"],
    );
    const before = sent.length;

    // A wrong type, a missing member, an unknown member, a bad enum value.
    assert.deepEqual(await refused(client.execute("qom-list", { path: 1 })), [
      "path: expected string, got integer",
    ]);
    assert.deepEqual(await refused(client.execute("qom-get", { path: "/machine" })), [
      "property: missing",
    ]);
    assert.deepEqual(await refused(client.execute("query-status", { verbose: true })), [
      "verbose: unknown member",
    ]);
    const badEnum = await refused(
      client.execute("blockdev-add", { driver: "qcow9", "node-name": "d0" }),
    );
    assert.match(badEnum[0]!, /^driver: expected one of "blkdebug", .*"file", .* got "qcow9"$/);

    // Nested paths: inside transaction's actions, inside blockdev-add's flat union.
    assert.deepEqual(
      await refused(
        client.execute("transaction", {
          actions: [
            { type: "block-dirty-bitmap-add", data: { node: "d0", name: 7 } },
            { type: "block-dirty-bitmap-clear", data: { node: "d0" } },
          ],
        }),
      ),
      ["actions[0].data.name: expected string, got integer", "actions[1].data.name: missing"],
    );
    assert.deepEqual(
      await refused(
        client.execute("blockdev-add", {
          driver: "qcow2",
          "node-name": "q0",
          file: { driver: "file", filename: 42, "no-such": true },
        }),
      ),
      ["file.filename: expected string, got integer", "file.no-such: unknown member"],
    );
    // device_add takes the device's properties beyond its schema; its own members still count.
    assert.deepEqual(await refused(client.execute("device_add", { id: "x", drive: "n0" })), [
      "driver: missing",
    ]);
    assert.equal(sent.length, before, "nothing was sent for a refused call");
    await assert.rejects(
      client.execute("device_add", { driver: "virtio-blk-pci", id: "vd0", drive: "n0" }),
      { name: "ExecuteError" }, // sent: QEMU itself refuses (no PCI bus on -machine none)
    );
    assert.equal(sent.at(-1)?.["execute"], "device_add");

    // Valid calls go through, and QEMU agrees.
    assert.deepEqual(
      await client.execute("blockdev-add", { driver: "null-co", "node-name": "n0", size: 4096 }),
      {},
    );
    assert.deepEqual(
      await client.execute("transaction", {
        actions: [{ type: "block-dirty-bitmap-add", data: { node: "n0", name: "bm0" } }],
      }),
      {},
    );
    assert.ok(Array.isArray(await client.execute("qom-list", { path: "/machine" })));
  },
);

void test("feature detection from the live schema", T, async (t) => {
  const { client } = await connected(t);
  assert.equal(await client.hasCommand("query-status"), true);
  assert.equal(await client.hasCommand("query-sta"), false);
  assert.equal(await client.hasEvent("SHUTDOWN"), true);
  const info = await client.commandInfo("blockdev-add");
  assert.equal(info?.union?.tag, "driver");
  assert.ok(info?.union?.cases.includes("qcow2"));
  assert.ok(info?.args.some((m) => m.name === "node-name" && m.optional && m.type === "string"));
});
