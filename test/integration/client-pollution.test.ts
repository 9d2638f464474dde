// Security: `__proto__` and `constructor` keys in what the peer sends pollute nothing, in replies
// and in events (which listeners get copies of).

import assert from "node:assert/strict";
import { test } from "node:test";
import { EventListener } from "../../src/index.js";
import { T, openSession } from "./client-harness.js";

const POISON =
  '{"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}, ' +
  '"nested": {"__proto__": {"polluted": true}}}';

void test("__proto__ and constructor keys in replies and events pollute nothing", T, async (t) => {
  const s = await openSession(t, "duplex", {
    server: { capabilities: [], handlers: { poison: () => undefined } },
  });
  const second = new EventListener();
  s.client.registerListener(second);
  const call = s.client.execute("poison");
  let id: unknown;
  for (;;) {
    const m = await s.peer.nextMessage();
    if (m["execute"] === "poison") {
      id = m["id"];
      break;
    }
  }
  s.peer.write(
    `{"event": "POISON", "data": ${POISON}, "timestamp": {"seconds": 1, "microseconds": 2}}\n`,
  );
  s.peer.write(`{"return": ${POISON}, "id": ${JSON.stringify(id)}}\n`);
  const value = (await call) as Record<string, unknown>;
  // The keys are plain own properties of the parsed objects.
  assert.ok(Object.hasOwn(value, "__proto__"));
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
  const event = await s.client.events.get();
  const copy = await second.get();
  assert.ok(Object.hasOwn(event.data!, "__proto__"));
  assert.ok(Object.hasOwn(copy.data!, "__proto__"), "the listener's copy keeps the key as data");
  for (const o of [{}, Object.create(null) as object, value, event, copy]) {
    assert.equal((o as { polluted?: unknown }).polluted, undefined);
  }
  assert.equal(({} as { polluted?: unknown }).polluted, undefined);
  assert.equal((Object.prototype as { polluted?: unknown }).polluted, undefined);
});
