// Unit tests of EventListener on its own (SPEC §4), driven through the
// internal hooks the client uses (kPush, kSessionEnded, kSessionStarted).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  DEFAULT_MAX_PENDING,
  EventListener,
  kAttach,
  kPush,
  kSessionEnded,
  kSessionStarted,
} from "../../src/events.js";
import { ListenerError, QMPError, SessionEndedError } from "../../src/errors.js";
import * as pkg from "../../src/index.js";
import type { QMPEvent } from "../../src/message.js";

function ev(event: string, n = 0): QMPEvent {
  return { event, data: { n }, timestamp: { seconds: 1700000000, microseconds: n } };
}

/** What the client does with an incoming event: check, then push. */
function offer(listener: EventListener, event: QMPEvent): boolean {
  if (!listener.accepts(event)) return false;
  listener[kPush](event);
  return true;
}

/** The `n`s of a list of events made by {@link ev}. */
function ns(events: readonly QMPEvent[]): unknown[] {
  return events.map((e) => e.data?.["n"]);
}

/** Whether `promise` has settled, without waiting on timers. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  const marker = Symbol("pending");
  const winner = await Promise.race([
    promise.then(
      () => "done",
      () => "done",
    ),
    // Let every queued microtask run first.
    new Promise((resolve) => setImmediate(() => resolve(marker))),
  ]);
  return winner !== marker;
}

void describe("EventListener: construction and filtering", () => {
  void test("is exported from the package root, the internal hooks are not", () => {
    assert.equal(pkg.EventListener, EventListener);
    assert.equal(pkg.DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING);
    const names = Object.keys(pkg);
    for (const internal of ["kPush", "kSessionEnded", "kSessionStarted", "kAttach"]) {
      assert.ok(!names.includes(internal), internal);
    }
  });

  void test("defaults", () => {
    const l = new EventListener();
    assert.equal(l.names, undefined);
    assert.equal(l.filter, undefined);
    assert.equal(l.maxPending, DEFAULT_MAX_PENDING);
    assert.ok(DEFAULT_MAX_PENDING >= 10_000, "generous by default");
    assert.equal(l.overflow, "drop-oldest");
    assert.equal(l.dropped, 0);
    assert.equal(l.pending, 0);
    assert.equal(l.empty(), true);
    assert.deepEqual(l.history, []);
  });

  void test("names: a string, a list, a set, any iterable; empty means all", () => {
    assert.deepEqual([...new EventListener({ names: "STOP" }).names!], ["STOP"]);
    assert.deepEqual(
      [...new EventListener({ names: ["STOP", "RESUME", "STOP"] }).names!],
      ["STOP", "RESUME"],
    );
    assert.deepEqual([...new EventListener({ names: new Set(["A"]) }).names!], ["A"]);
    function* gen(): Generator<string> {
      yield "X";
      yield "Y";
    }
    assert.deepEqual([...new EventListener({ names: gen() }).names!], ["X", "Y"]);
    assert.equal(new EventListener({ names: [] }).names, undefined);
    assert.equal(new EventListener({ names: undefined }).names, undefined);
    const all = new EventListener({ names: [] });
    assert.equal(all.accepts(ev("ANYTHING")), true);
  });

  void test("accepts: names first, then the filter", () => {
    const calls: string[] = [];
    const l = new EventListener({
      names: ["DEVICE_DELETED", "STOP"],
      filter: (e) => {
        calls.push(e.event);
        return e.data?.["device"] === "net0" || e.event === "STOP";
      },
    });
    assert.equal(l.accepts({ ...ev("DEVICE_DELETED"), data: { device: "net0" } }), true);
    assert.equal(l.accepts({ ...ev("DEVICE_DELETED"), data: { device: "net1" } }), false);
    assert.equal(l.accepts(ev("STOP")), true);
    assert.equal(l.accepts(ev("RESUME")), false);
    assert.deepEqual(
      calls,
      ["DEVICE_DELETED", "DEVICE_DELETED", "STOP"],
      "no filter call for RESUME",
    );
  });

  void test("only accepted events are queued (as the client offers them)", () => {
    const l = new EventListener({ names: ["STOP", "RESUME"], filter: (e) => e.data?.["n"] !== 2 });
    const offered = [ev("STOP", 1), ev("SHUTDOWN", 1), ev("STOP", 2), ev("RESUME", 3)];
    assert.deepEqual(
      offered.map((e) => offer(l, e)),
      [true, false, false, true],
    );
    assert.deepEqual(
      l.clear().map((e) => [e.event, e.data?.["n"]]),
      [
        ["STOP", 1],
        ["RESUME", 3],
      ],
    );
    assert.deepEqual(ns(l.history), [1, 3]);
  });

  void test("a filter without names sees every event", () => {
    const l = new EventListener({ filter: (e) => e.event.startsWith("BLOCK_") });
    assert.equal(l.accepts(ev("BLOCK_JOB_COMPLETED")), true);
    assert.equal(l.accepts(ev("STOP")), false);
  });

  void test("bad bounds are RangeErrors", () => {
    for (const maxPending of [0, -1, 0.5, Number.NaN]) {
      assert.throws(() => new EventListener({ maxPending }), RangeError, String(maxPending));
    }
    for (const historySize of [-1, Number.NaN]) {
      assert.throws(() => new EventListener({ historySize }), RangeError, String(historySize));
    }
    assert.equal(new EventListener({ maxPending: 1 }).maxPending, 1);
    assert.deepEqual(new EventListener({ historySize: 0 }).history, []);
  });
});

void describe("EventListener: queue", () => {
  void test("get() returns queued events in order; empty, pending, clear", async () => {
    const l = new EventListener();
    for (let i = 1; i <= 3; i++) l[kPush](ev("E", i));
    assert.equal(l.pending, 3);
    assert.equal(l.empty(), false);
    assert.equal((await l.get()).data?.["n"], 1);
    assert.equal(l.pending, 2);
    assert.deepEqual(ns(l.clear()), [2, 3]);
    assert.equal(l.pending, 0);
    assert.equal(l.empty(), true);
    assert.deepEqual(l.clear(), []);
  });

  void test("get() hands over the very event pushed", async () => {
    const l = new EventListener();
    const e = ev("STOP");
    l[kPush](e);
    assert.equal(await l.get(), e);
  });

  void test("a waiting get() receives the next event, which is not queued", async () => {
    const l = new EventListener();
    const p = l.get();
    assert.equal(await settled(p), false);
    const e = ev("RESUME", 1);
    l[kPush](e);
    assert.equal(await p, e);
    assert.equal(l.pending, 0);
  });

  void test("each event goes to exactly one consumer, waiters in call order", async () => {
    const l = new EventListener();
    const a = l.get();
    const b = l.get();
    l[kPush](ev("E", 1));
    l[kPush](ev("E", 2));
    l[kPush](ev("E", 3));
    assert.deepEqual(ns([await a, await b]), [1, 2]);
    assert.deepEqual(ns(l.clear()), [3]);
  });

  void test("order is kept across thousands of events, consumed in bursts", async () => {
    const l = new EventListener({ maxPending: 100_000 });
    let next = 0;
    let expected = 0;
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 3000; i++) l[kPush](ev("E", next++));
      for (let i = 0; i < 2000; i++) {
        assert.equal((await l.get()).data?.["n"], expected++);
      }
    }
    const rest = l.clear();
    assert.deepEqual(
      ns(rest),
      Array.from({ length: next - expected }, (_, i) => expected + i),
    );
    assert.equal(l.dropped, 0);
  });
});

void describe("EventListener: overflow", () => {
  void test("drop-oldest keeps the newest events and counts the dropped", () => {
    const l = new EventListener({ maxPending: 3, overflow: "drop-oldest" });
    for (let i = 1; i <= 5; i++) l[kPush](ev("E", i));
    assert.equal(l.pending, 3);
    assert.equal(l.dropped, 2);
    assert.deepEqual(ns(l.clear()), [3, 4, 5]);
  });

  void test("drop-oldest after some events were consumed", async () => {
    const l = new EventListener({ maxPending: 2 });
    l[kPush](ev("E", 1));
    l[kPush](ev("E", 2));
    assert.equal((await l.get()).data?.["n"], 1);
    l[kPush](ev("E", 3));
    l[kPush](ev("E", 4));
    assert.equal(l.dropped, 1);
    assert.deepEqual(ns(l.clear()), [3, 4]);
  });

  void test("drop-newest keeps the oldest events and counts the dropped", () => {
    const l = new EventListener({ maxPending: 3, overflow: "drop-newest" });
    for (let i = 1; i <= 5; i++) l[kPush](ev("E", i));
    assert.equal(l.pending, 3);
    assert.equal(l.dropped, 2);
    assert.deepEqual(ns(l.clear()), [1, 2, 3]);
  });

  void test("error: drops the arrivals, the next get() throws once, then the kept events", async () => {
    const l = new EventListener({ maxPending: 3, overflow: "error" });
    for (let i = 1; i <= 5; i++) l[kPush](ev("E", i));
    assert.equal(l.pending, 3);
    assert.equal(l.dropped, 2);
    await assert.rejects(
      l.get(),
      (err: unknown) =>
        err instanceof ListenerError &&
        err instanceof QMPError &&
        err.code === "QMP_ERR_LISTENER" &&
        err.message.includes("2"),
    );
    assert.deepEqual(ns([await l.get(), await l.get(), await l.get()]), [1, 2, 3]);
    assert.equal(l.pending, 0);
  });

  void test("error: async iteration throws the ListenerError", async () => {
    const l = new EventListener({ maxPending: 1, overflow: "error" });
    l[kPush](ev("E", 1));
    l[kPush](ev("E", 2));
    const seen: QMPEvent[] = [];
    await assert.rejects(async () => {
      for await (const e of l) seen.push(e);
    }, ListenerError);
    assert.deepEqual(seen, []);
    assert.equal(l.dropped, 1);
  });

  void test("events handed to a waiting consumer never count against maxPending", async () => {
    const l = new EventListener({ maxPending: 1, overflow: "drop-newest" });
    for (let i = 0; i < 10; i++) {
      const p = l.get();
      l[kPush](ev("E", i));
      assert.equal((await p).data?.["n"], i);
    }
    assert.equal(l.dropped, 0);
  });

  void test("the dropped counter keeps growing across clear()", () => {
    const l = new EventListener({ maxPending: 1, overflow: "drop-newest" });
    l[kPush](ev("E", 1));
    l[kPush](ev("E", 2));
    assert.deepEqual(ns(l.clear()), [1]);
    l[kPush](ev("E", 3));
    l[kPush](ev("E", 4));
    assert.equal(l.dropped, 2);
    assert.deepEqual(ns(l.clear()), [3]);
  });
});

void describe("EventListener: history", () => {
  void test("a bounded ring of the last events, oldest first, consumed or not", async () => {
    const l = new EventListener({ historySize: 3 });
    l[kPush](ev("E", 1));
    l[kPush](ev("E", 2));
    assert.deepEqual(ns(l.history), [1, 2]);
    assert.equal((await l.get()).data?.["n"], 1);
    assert.deepEqual(ns(l.history), [1, 2]);
    for (let i = 3; i <= 10; i++) l[kPush](ev("E", i));
    assert.deepEqual(ns(l.history), [8, 9, 10]);
    l.clear();
    assert.deepEqual(ns(l.history), [8, 9, 10], "clear() leaves the history alone");
  });

  void test("includes events dropped by the overflow policy and those handed to waiters", async () => {
    const l = new EventListener({ historySize: 10, maxPending: 1, overflow: "drop-newest" });
    const p = l.get();
    l[kPush](ev("E", 1));
    await p;
    l[kPush](ev("E", 2));
    l[kPush](ev("E", 3));
    assert.deepEqual(ns(l.history), [1, 2, 3]);
    assert.equal(l.dropped, 1);
  });

  void test("the history is a copy", () => {
    const l = new EventListener({ historySize: 2 });
    l[kPush](ev("E", 1));
    const h = l.history;
    h.push(ev("X"));
    h.length = 0;
    assert.deepEqual(ns(l.history), [1]);
  });

  void test("historySize 0 keeps nothing; the default keeps 100", () => {
    const none = new EventListener({ historySize: 0 });
    const dflt = new EventListener();
    for (let i = 0; i < 150; i++) {
      none[kPush](ev("E", i));
      dflt[kPush](ev("E", i));
    }
    assert.deepEqual(none.history, []);
    assert.deepEqual(
      ns(dflt.history),
      Array.from({ length: 100 }, (_, i) => 50 + i),
    );
  });

  void test("historySize 1", () => {
    const l = new EventListener({ historySize: 1 });
    for (let i = 0; i < 5; i++) l[kPush](ev("E", i));
    assert.deepEqual(ns(l.history), [4]);
  });
});

void describe("EventListener: cancellation", () => {
  void test("get({ signal }) rejects with the signal's reason; the event is not lost", async () => {
    const l = new EventListener();
    const c = new AbortController();
    const p = l.get({ signal: c.signal });
    const reason = new Error("cancelled");
    c.abort(reason);
    await assert.rejects(p, (e) => e === reason);
    const e = ev("STOP", 9);
    l[kPush](e);
    assert.equal(l.pending, 1, "the aborted waiter no longer takes events");
    assert.equal(await l.get(), e);
  });

  void test("get() with an already-aborted signal and nothing queued rejects at once", async () => {
    const l = new EventListener();
    await assert.rejects(l.get({ signal: AbortSignal.abort("no") }), (e) => e === "no");
    l[kPush](ev("E", 1));
    assert.equal(l.pending, 1);
  });

  void test("get() with a signal still returns a queued event", async () => {
    const l = new EventListener();
    l[kPush](ev("E", 1));
    const c = new AbortController();
    assert.equal((await l.get({ signal: c.signal })).data?.["n"], 1);
  });

  void test("get({ timeout }) rejects with a TimeoutError when the timer fires", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const l = new EventListener();
    const p = l.get({ timeout: 1000 });
    t.mock.timers.tick(999);
    assert.equal(await settled(p), false);
    t.mock.timers.tick(1);
    await assert.rejects(p, (e: unknown) => e instanceof DOMException && e.name === "TimeoutError");
    l[kPush](ev("E", 1));
    assert.equal(l.pending, 1, "the timed-out waiter no longer takes events");
  });

  void test("get({ timeout }) that gets its event in time resolves", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const l = new EventListener();
    const p = l.get({ timeout: 1000 });
    l[kPush](ev("E", 5));
    assert.equal((await p).data?.["n"], 5);
    t.mock.timers.tick(5000);
    l[kPush](ev("E", 6));
    assert.equal(l.pending, 1);
  });
});

void describe("EventListener: session end", () => {
  void test("a waiting get() rejects with SessionEndedError carrying the cause", async () => {
    const l = new EventListener();
    const p = l.get();
    const cause = new Error("connection reset");
    l[kSessionEnded](cause);
    await assert.rejects(
      p,
      (e: unknown) =>
        e instanceof SessionEndedError && e.cause === cause && e.code === "QMP_ERR_SESSION_ENDED",
    );
  });

  void test("after the end, queued events come first, then SessionEndedError", async () => {
    const l = new EventListener();
    l[kPush](ev("E", 1));
    l[kPush](ev("E", 2));
    l[kSessionEnded](undefined);
    assert.deepEqual(ns([await l.get(), await l.get()]), [1, 2]);
    await assert.rejects(l.get(), SessionEndedError);
    await assert.rejects(l.get({ timeout: 10_000 }), SessionEndedError);
  });

  void test("iteration yields the queued events and ends when the session ends", async () => {
    const l = new EventListener();
    l[kPush](ev("E", 1));
    l[kPush](ev("E", 2));
    l[kSessionEnded](undefined);
    const seen: QMPEvent[] = [];
    for await (const e of l) {
      seen.push(e);
      assert.ok(seen.length <= 2);
    }
    assert.deepEqual(ns(seen), [1, 2]);
  });

  void test("a waiting iteration ends when the session ends", async () => {
    const l = new EventListener();
    const seen: QMPEvent[] = [];
    const loop = (async () => {
      for await (const e of l) {
        seen.push(e);
        if (seen.length > 10) break;
      }
      return "ended";
    })();
    l[kPush](ev("E", 1));
    await Promise.resolve();
    l[kPush](ev("E", 2));
    assert.equal(await settled(loop), false);
    l[kSessionEnded](new Error("eof"));
    assert.equal(await loop, "ended");
    assert.deepEqual(ns(seen), [1, 2]);
  });

  void test("iteration over an already-ended session with nothing queued ends at once", async () => {
    const l = new EventListener();
    l[kSessionEnded](undefined);
    let count = 0;
    for await (const _ of l) count++;
    assert.equal(count, 0);
  });

  void test("onSessionEnd: 'throw' makes iteration throw SessionEndedError after the queue", async () => {
    const l = new EventListener({ onSessionEnd: "throw" });
    l[kPush](ev("E", 1));
    const cause = new Error("gone");
    l[kSessionEnded](cause);
    const seen: QMPEvent[] = [];
    await assert.rejects(
      async () => {
        for await (const e of l) seen.push(e);
      },
      (e: unknown) => e instanceof SessionEndedError && e.cause === cause,
    );
    assert.deepEqual(ns(seen), [1]);
  });

  void test("every waiter is woken by the end", async () => {
    const l = new EventListener();
    const waiting = [l.get(), l.get(), l.get()];
    l[kSessionEnded](undefined);
    const results = await Promise.allSettled(waiting);
    assert.deepEqual(
      results.map((r) => r.status === "rejected" && r.reason instanceof SessionEndedError),
      [true, true, true],
    );
  });

  void test("a new session makes get() wait again", async () => {
    const l = new EventListener();
    l[kSessionEnded](new Error("old"));
    await assert.rejects(l.get(), SessionEndedError);
    l[kSessionStarted]();
    const p = l.get();
    assert.equal(await settled(p), false);
    l[kPush](ev("E", 3));
    assert.equal((await p).data?.["n"], 3);
    l[kSessionEnded](undefined);
    await assert.rejects(
      l.get(),
      (e: unknown) => e instanceof SessionEndedError && e.cause === undefined,
    );
  });
});

void describe("EventListener: disposal", () => {
  void test("[Symbol.dispose] calls every attached detacher once", () => {
    const l = new EventListener();
    const calls: string[] = [];
    l[kAttach](() => calls.push("a"));
    const forget = l[kAttach](() => calls.push("b"));
    l[kAttach](() => calls.push("c"));
    forget();
    l[Symbol.dispose]();
    assert.deepEqual(calls.sort(), ["a", "c"]);
  });
});
