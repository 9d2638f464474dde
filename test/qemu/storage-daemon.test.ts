// Real qemu-storage-daemon: greeting, query-version, a block node, an error reply.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ExecuteError, Runstate } from "../../src/index.js";
import {
  asArray,
  asObject,
  qemuVersionInfo,
  startQemu,
  storageDaemonBinary,
  testClient,
} from "../helpers/qemu.js";

const T = { timeout: 30_000 };

void test("qemu-storage-daemon: greeting, query-version, blockdev-add, an error", T, async (t) => {
  const qsd = await startQemu(t, { storageDaemon: true });
  const client = testClient(t, { name: "qsd" });
  await client.connect(qsd.socketPath);
  assert.equal(client.runstate, Runstate.RUNNING);

  const greeting = client.greeting;
  assert.ok(greeting !== undefined);
  const expected = await qemuVersionInfo(storageDaemonBinary());
  const { major, minor, micro } = greeting.QMP.version.qemu;
  assert.deepEqual([major, minor, micro], [expected.major, expected.minor, expected.micro]);
  assert.ok(Array.isArray(greeting.QMP.capabilities));
  assert.deepEqual(await client.execute("query-version"), greeting.QMP.version);

  assert.deepEqual(
    await client.execute("blockdev-add", {
      driver: "null-co",
      "node-name": "null0",
      size: 1048576,
    }),
    {},
  );
  const nodes = asArray(await client.execute("query-named-block-nodes")).map((n) =>
    asObject(n, "block node"),
  );
  const node = nodes.find((n) => n["node-name"] === "null0");
  assert.ok(node !== undefined, `null0 missing: ${JSON.stringify(nodes)}`);
  assert.equal(node["drv"], "null-co");
  assert.equal(asObject(node["image"])["virtual-size"], 1048576);

  // The same node name again: an error reply, and the daemon goes on.
  await assert.rejects(
    client.execute("blockdev-add", { driver: "null-co", "node-name": "null0" }),
    (err: unknown) => {
      assert.ok(err instanceof ExecuteError, `got ${String(err)}`);
      assert.equal(err.errorClass, "GenericError");
      assert.match(err.desc, /null0/);
      return true;
    },
  );
  await assert.rejects(client.execute("query-status"), { errorClass: "CommandNotFound" });
  assert.equal(asArray(await client.execute("query-named-block-nodes")).length, nodes.length);

  assert.deepEqual(await client.execute("quit"), {});
  assert.deepEqual(await qsd.exited, { code: 0, signal: null });
  await client.disconnect();
});
