// validate: true and the live schema (SPEC §5): the schema is fetched at connect, a bad call is
// rejected with every bad path before anything is sent, deprecated use is warned once, and
// hasCommand / hasEvent / commandInfo answer from the same schema, fetched once per session.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import {
  ConnectError,
  ExecuteError,
  StateError,
  QMPClient,
  ValidationError,
} from "../../src/index.js";
import type { FakeServerOptions } from "../../src/testing/index.js";
import { T, openSession, startSession } from "./client-harness.js";
import type { JsonValue } from "../../src/index.js";

const SCHEMA = JSON.parse(
  readFileSync(new URL("../../../test/fixtures/qapi/mini-schema.json", import.meta.url), "utf8"),
) as JsonValue;

/** A fake QEMU with the mini schema; `blockdev-add` and `x-old` succeed. */
function server(): FakeServerOptions {
  return {
    handlers: {
      "query-qmp-schema": () => ({ return: SCHEMA }),
      "blockdev-add": () => ({ return: {} }),
      "x-old": () => ({ return: 1 }),
    },
  };
}

/** The commands the peer received, in order (negotiation included). */
function commands(received: Record<string, unknown>[]): unknown[] {
  return received.map((m) => m["execute"] ?? m["exec-oob"]);
}

void test("validate: the schema comes at connect; bad calls are refused unsent", T, async (t) => {
  const s = await openSession(t, "unix", { client: { validate: true }, server: server() });
  assert.deepEqual(commands(s.peer.received), ["qmp_capabilities", "query-qmp-schema"]);

  const bad = await s.client
    .execute("blockdev-add", { driver: "file", filename: 3, bogus: true })
    .catch((e: unknown) => e);
  assert.ok(bad instanceof ValidationError);
  assert.equal(bad.name, "ValidationError");
  assert.equal(bad.code, "QMP_ERR_VALIDATION");
  assert.equal(
    bad.message,
    "Invalid arguments for 'blockdev-add': filename: expected string, got integer; " +
      "bogus: unknown member",
  );
  assert.deepEqual(bad.problems, [
    { path: "filename", message: "expected string, got integer" },
    { path: "bogus", message: "unknown member" },
  ]);
  await assert.rejects(s.client.execute("no-such-command"), {
    name: "ValidationError",
    message: "QEMU has no command 'no-such-command'",
  });
  await assert.rejects(
    s.client.executeMsg({ execute: "blockdev-add", arguments: { driver: "file" } }),
    { name: "ValidationError", message: /filename: missing/ },
  );
  // Valid calls go through; the bad ones never reached the wire.
  assert.deepEqual(await s.client.execute("blockdev-add", { driver: "file", filename: "/x" }), {});
  assert.deepEqual(commands(s.peer.received), [
    "qmp_capabilities",
    "query-qmp-schema",
    "blockdev-add",
  ]);
  // raw() is the unchecked way.
  const reply = await s.client.raw({ execute: "no-such-command" });
  assert.ok("error" in reply);
});

void test("validate: a deprecated command is warned about once per client", T, async (t) => {
  const s = await openSession(t, "duplex", { client: { validate: true }, server: server() });
  await s.client.execute("x-old", { value: 1 });
  await s.client.execute("x-old", { value: 2 });
  const warnings = s.logger.lines.filter((l) => l.level === "warn").map((l) => l.message);
  assert.deepEqual(warnings, ["The command 'x-old' is deprecated in this QEMU"]);
});

void test("validate: a peer without query-qmp-schema fails the connect", T, async (t) => {
  const s = await startSession(t, "duplex", { client: { validate: true } });
  const err = await s.connected.catch((e: unknown) => e);
  assert.ok(err instanceof ConnectError);
  assert.match(err.message, /Failed to establish session/);
  assert.ok(err.cause instanceof ExecuteError);
  assert.equal(err.cause.errorClass, "CommandNotFound");
});

void test("hasCommand, hasEvent, commandInfo: one fetch per session", T, async (t) => {
  const s = await openSession(t, "unix", { server: server() });
  const [a, b, c] = await Promise.all([
    s.client.hasCommand("blockdev-add"),
    s.client.hasCommand("query-stat"),
    s.client.hasEvent("STOP"),
  ]);
  assert.deepEqual([a, b, c], [true, false, true]);
  assert.equal(await s.client.hasEvent("NOPE"), false);
  const info = await s.client.commandInfo("query-block");
  assert.deepEqual(info?.args, [{ name: "flat", type: "boolean", optional: true, features: [] }]);
  assert.equal(await s.client.commandInfo("nope"), undefined);
  assert.equal(commands(s.peer.received).filter((c) => c === "query-qmp-schema").length, 1);
  // Without validate, calls are not checked: this one goes to QEMU as it is.
  await s.client.execute("blockdev-add", { bogus: 1 });
  assert.deepEqual(s.peer.received.at(-1)?.["arguments"], { bogus: 1 });
});

void test("the live schema needs a session; a bad option is a TypeError", T, async () => {
  const client = new QMPClient();
  await assert.rejects(client.hasCommand("stop"), StateError);
  assert.throws(() => new QMPClient({ validate: "yes" as unknown as boolean }), {
    name: "TypeError",
    message: 'validate must be a boolean, got the string "yes"',
  });
});
