// EventListener with `overflow: "error"` (SPEC §4): clear() drops the backlog and the overflow
// report with it, so the next get() waits for new events instead of throwing ListenerError.

import assert from "node:assert/strict";
import { test } from "node:test";
import { EventListener, kPush } from "../../src/events.js";
import { ListenerError } from "../../src/index.js";
import type { QMPEvent } from "../../src/index.js";

function ev(n: number): QMPEvent {
  return { event: "TICK", data: { n }, timestamp: { seconds: 1700000000, microseconds: n } };
}

/** Push as the client does: check, then push. */
function offer(listener: EventListener, event: QMPEvent): void {
  if (listener.accepts(event)) listener[kPush](event);
}

function overflowed(): EventListener {
  const listener = new EventListener({ overflow: "error", maxPending: 1 });
  offer(listener, ev(1));
  offer(listener, ev(2));
  assert.equal(listener.dropped, 1);
  return listener;
}

void test(
  "overflow 'error', then clear(): the next get() times out, no ListenerError",
  { timeout: 10_000 },
  async () => {
    const listener = overflowed();
    assert.deepEqual(
      listener.clear().map((e) => e.data?.["n"]),
      [1],
    );
    const err = await listener.get({ timeout: 100 }).then(
      (e) => assert.fail(`got an event ${JSON.stringify(e)}`),
      (e: unknown) => e,
    );
    assert.ok(!(err instanceof ListenerError), `ListenerError after clear(): ${String(err)}`);
    assert.ok(err instanceof DOMException && err.name === "TimeoutError", String(err));
  },
);

void test(
  "overflow 'error', then clear(): the next get() returns a later event",
  { timeout: 10_000 },
  async () => {
    const listener = overflowed();
    listener.clear();
    offer(listener, ev(3));
    const event = await listener.get({ timeout: 100 });
    assert.equal(event.data?.["n"], 3);
  },
);
