// Real QEMU: greeting, negotiation, queries, error replies, big replies, many concurrent calls.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ConnectError,
  ExecuteError,
  MessageTooLargeError,
  DEFAULT_MAX_MESSAGE_SIZE,
  Runstate,
} from "../../src/index.js";
import {
  asArray,
  asObject,
  qemuVersionInfo,
  recordMessages,
  startQemu,
  testClient,
} from "../helpers/qemu.js";

const T = { timeout: 30_000 };

function assertStatus(value: unknown): void {
  const status = asObject(value, "query-status");
  assert.equal(typeof status["status"], "string");
  assert.equal(typeof status["running"], "boolean");
}

function assertVersion(value: unknown): void {
  const version = asObject(value, "query-version");
  const qemu = asObject(version["qemu"], "query-version qemu");
  for (const k of ["major", "minor", "micro"]) assert.equal(typeof qemu[k], "number", k);
  assert.equal(typeof version["package"], "string");
}

void test("greeting matches --version, offers oob, and negotiation enables it", T, async (t) => {
  const qemu = await startQemu(t);
  const client = testClient(t, { name: "greeting" });
  const sent = recordMessages(t, client, "send");
  await client.connect(qemu.socketPath);
  assert.equal(client.runstate, Runstate.RUNNING);

  const greeting = client.greeting;
  assert.ok(greeting !== undefined, "no greeting recorded");
  const expected = await qemuVersionInfo();
  const { major, minor, micro } = greeting.QMP.version.qemu;
  t.diagnostic(`QEMU ${major}.${minor}.${micro} (${greeting.QMP.version.package})`);
  assert.deepEqual([major, minor, micro], [expected.major, expected.minor, expected.micro]);
  assert.equal(greeting.QMP.version.package.trim(), expected.package.trim());
  assert.ok(
    greeting.QMP.capabilities.includes("oob"),
    `capabilities: ${greeting.QMP.capabilities.join(", ")}`,
  );

  // Exactly one message went out while connecting: the negotiation, asking for oob.
  assert.equal(sent.length, 1);
  const negotiation = sent[0]!;
  assert.equal(negotiation["execute"], "qmp_capabilities");
  assert.deepEqual(negotiation["arguments"], { enable: ["oob"] });
  assert.equal(typeof negotiation["id"], "number");

  // Out of capabilities-negotiation mode: ordinary commands are accepted.
  assertStatus(await client.execute("query-status"));
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("query-status, query-version and query-commands", T, async (t) => {
  const qemu = await startQemu(t);
  const client = testClient(t);
  await client.connect(qemu.socketPath);

  const status = asObject(await client.execute("query-status"));
  assert.equal(status["status"], "running");
  assert.equal(status["running"], true);

  const version = await client.execute("query-version");
  assertVersion(version);
  assert.deepEqual(version, client.greeting!.QMP.version);

  const commands = asArray(await client.execute("query-commands")).map(
    (c) => asObject(c, "query-commands entry")["name"],
  );
  assert.ok(commands.length > 100, `only ${commands.length} commands`);
  for (const name of [
    "qmp_capabilities",
    "query-status",
    "query-version",
    "query-commands",
    "quit",
  ]) {
    assert.ok(commands.includes(name), `${name} missing from query-commands`);
  }
  assert.ok(commands.every((c) => typeof c === "string"));
});

void test("CommandNotFound is an ExecuteError and the client stays usable", T, async (t) => {
  const qemu = await startQemu(t);
  const client = testClient(t);
  await client.connect(qemu.socketPath);

  const err = await client.execute("no-such-command", { a: 1 }).then(
    () => assert.fail("no-such-command succeeded"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ExecuteError, `got ${String(err)}`);
  assert.equal(err.errorClass, "CommandNotFound");
  assert.match(err.desc, /no-such-command/);
  assert.equal(err.message, err.desc);
  const sent = asObject(err.sent);
  assert.equal(sent["execute"], "no-such-command");
  assert.deepEqual(sent["arguments"], { a: 1 });
  assert.equal(typeof sent["id"], "number");
  assert.equal(asObject(err.received)["id"], sent["id"]);

  assert.equal(client.runstate, Runstate.RUNNING);
  assertStatus(await client.execute("query-status"));
  assertVersion(await client.execute("query-version"));
});

void test("a bad argument gives a GenericError", T, async (t) => {
  const qemu = await startQemu(t);
  const client = testClient(t);
  await client.connect(qemu.socketPath);

  await assert.rejects(client.execute("query-status", { bogus: true }), (err: unknown) => {
    assert.ok(err instanceof ExecuteError, `got ${String(err)}`);
    assert.equal(err.errorClass, "GenericError");
    assert.match(err.desc, /bogus/);
    return true;
  });
  // A wrong type for a real argument, too.
  await assert.rejects(
    client.execute("query-command-line-options", { option: 5 }),
    (err: unknown) => {
      assert.ok(err instanceof ExecuteError, `got ${String(err)}`);
      assert.equal(err.errorClass, "GenericError");
      assert.match(err.desc, /option/);
      return true;
    },
  );
  assertStatus(await client.execute("query-status"));
});

void test("query-qmp-schema (> 200 KB) and maxMessageSize below it", T, async (t) => {
  const qemu = await startQemu(t);

  // A client with a limit below the schema: only that call fails.
  const small = testClient(t, { name: "small", maxMessageSize: 64 * 1024 });
  await small.connect(qemu.socketPath);
  const [schemaResult, versionResult] = await Promise.allSettled([
    small.execute("query-qmp-schema"),
    small.execute("query-version"),
  ]);
  assert.equal(schemaResult.status, "rejected");
  const tooLarge: unknown = schemaResult.reason;
  assert.ok(tooLarge instanceof MessageTooLargeError, `got ${String(tooLarge)}`);
  assert.equal(tooLarge.limit, 64 * 1024);
  assert.ok(tooLarge.size > 200 * 1024, `the schema reply is only ${tooLarge.size} bytes`);
  assert.ok(tooLarge.size < DEFAULT_MAX_MESSAGE_SIZE);
  assert.match(tooLarge.message, /maxMessageSize/);
  assert.equal(versionResult.status, "fulfilled");
  assertVersion(versionResult.value);
  assert.equal(small.runstate, Runstate.RUNNING);
  assertStatus(await small.execute("query-status"));
  await small.disconnect();

  // The default limit takes the whole schema.
  const client = testClient(t, { name: "default" });
  await client.connect(qemu.socketPath);
  const schema = asArray(await client.execute("query-qmp-schema"));
  assert.ok(schema.length > 500, `only ${schema.length} schema entries`);
  const names = new Set(
    schema.map((e) => {
      const entry = asObject(e, "schema entry");
      assert.equal(typeof entry["meta-type"], "string");
      return entry["name"];
    }),
  );
  assert.ok(names.has("query-qmp-schema"));
  assert.ok(names.has("STOP"));
  assert.ok(JSON.stringify(schema).length > 150 * 1024);
  assertStatus(await client.execute("query-status"));
});

void test("500 concurrent executes each get their own reply", T, async (t) => {
  const qemu = await startQemu(t);
  const client = testClient(t);
  await client.connect(qemu.socketPath);

  const calls = Array.from({ length: 500 }, (_, i) =>
    client.execute(i % 2 === 0 ? "query-status" : "query-version"),
  );
  const results = await Promise.all(calls);
  assert.equal(results.length, 500);
  results.forEach((result, i) => {
    const r = asObject(result, `result ${i}`);
    if (i % 2 === 0) {
      assert.ok(
        "status" in r && !("qemu" in r),
        `result ${i} is not a status: ${JSON.stringify(r)}`,
      );
      assertStatus(r);
    } else {
      assert.ok(
        "qemu" in r && !("status" in r),
        `result ${i} is not a version: ${JSON.stringify(r)}`,
      );
      assertVersion(r);
    }
  });
  assertStatus(await client.execute("query-status"));
});

void test("connecting to a QEMU that was killed is a ConnectError", T, async (t) => {
  const qemu = await startQemu(t);
  await qemu.kill();
  const { signal } = await qemu.exited;
  assert.equal(signal, "SIGKILL");

  const client = testClient(t);
  await assert.rejects(client.connect(qemu.socketPath), (err: unknown) => {
    assert.ok(err instanceof ConnectError, `got ${String(err)}`);
    assert.match(err.message, /^Failed to establish connection/);
    const cause = err.cause as NodeJS.ErrnoException;
    assert.ok(cause.code === "ECONNREFUSED" || cause.code === "ENOENT", `cause: ${String(cause)}`);
    return true;
  });
  assert.equal(client.runstate, Runstate.IDLE);
});
