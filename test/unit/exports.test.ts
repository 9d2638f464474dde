// The package's entry points, resolved by name as a user's import would be.

import assert from "node:assert/strict";
import { test } from "node:test";

void test("the root exports the client API, not the framing scanner", async () => {
  const root = (await import("qmp")) as Record<string, unknown>;
  assert.equal(typeof root["QMPClient"], "function");
  assert.equal(typeof root["DEFAULT_MAX_MESSAGE_SIZE"], "number");
  assert.equal(root["JsonObjectScanner"], undefined);
});

void test("qmp/framing exports the scanner; qmp/testing the fake server", async () => {
  const framing = (await import("qmp/framing")) as Record<string, unknown>;
  assert.equal(typeof framing["JsonObjectScanner"], "function");
  const testing = (await import("qmp/testing")) as Record<string, unknown>;
  assert.equal(typeof testing["FakeQMPServer"], "function");
});

void test("greeting is read-only", async () => {
  const { QMPClient } = await import("qmp");
  const client = new QMPClient();
  assert.throws(() => {
    (client as unknown as { greeting: unknown }).greeting = {};
  }, TypeError);
});
