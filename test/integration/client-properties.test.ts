// Property-based tests of the client (fast-check) over a fake peer: replies in any order with
// events between them reach exactly their calls; calls aborted at random points reject with the
// abort's reason, their late replies are dropped quietly, and nothing is left pending.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";

import { fuzzRuns } from "../helpers/common.js";
import { T, openSession } from "./client-harness.js";

/** Cases per property (each runs a few calls over a real socket; `QMP_FUZZ_RUNS` overrides). */
const RUNS = fuzzRuns(60);

/** The fake peer holds `hold` calls: the test answers them itself, in the order it picks. */
const SERVER = { server: { capabilities: [], handlers: { hold: () => undefined } } };

/** The next `hold` message the peer received (negotiation's come first). */
async function nextHold(peer: {
  nextMessage(): Promise<Record<string, unknown>>;
}): Promise<Record<string, unknown>> {
  for (;;) {
    const m = await peer.nextMessage();
    if (m["execute"] === "hold") return m;
  }
}

void test(
  "replies in any order, events between them: each call gets its own",
  { timeout: Math.max(60_000, RUNS * 500) },
  async (t) => {
    await fc.assert(
      fc.asyncProperty(
        fc
          .integer({ min: 1, max: 12 })
          .chain((n) =>
            fc.tuple(
              fc.shuffledSubarray([...Array(n).keys()], { minLength: n, maxLength: n }),
              fc.array(fc.boolean(), { minLength: n, maxLength: n }),
            ),
          ),
        async ([order, events]) => {
          const s = await openSession(t, "duplex", SERVER);
          const n = order.length;
          const calls = [...Array(n).keys()].map((i) => s.client.execute("hold", { i }));
          const ids: unknown[] = [];
          for (let i = 0; i < n; i++) ids.push((await nextHold(s.peer))["id"]);
          let sent = 0;
          order.forEach((i, k) => {
            if (events[k] === true) {
              s.peer.sendEvent("TICK", { k });
              sent++;
            }
            s.peer.send({ return: { i }, id: ids[i] });
          });
          assert.deepEqual(
            await Promise.all(calls),
            [...Array(n).keys()].map((i) => ({ i })),
          );
          // Events go to the listener before the next message is read: all are queued by now.
          assert.equal(s.client.events.pending, sent);
          assert.deepEqual(
            s.logger.lines.filter((l) => l.level === "warn"),
            [],
          );
          await s.client.disconnect();
        },
      ),
      { numRuns: RUNS, timeout: 2000 },
    );
  },
);

void test(
  "calls aborted at random points: their reason, late replies dropped quietly, nothing pending",
  { timeout: Math.max(T.timeout, RUNS * 500) },
  async (t) => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom("keep", "abort-before-send", "abort-after-send", "timeout"), {
          minLength: 1,
          maxLength: 10,
        }),
        async (plan) => {
          const s = await openSession(t, "duplex", SERVER);
          const reason = new Error("given up");
          const controllers = plan.map(() => new AbortController());
          const calls = plan.map((what, i) => {
            const options =
              what === "timeout" ? { timeout: 1 } : { signal: controllers[i]!.signal };
            return s.client.execute("hold", { i }, options).then(
              (value) => ({ ok: value }),
              (err: unknown) => ({ err }),
            );
          });
          // Aborted before the writer got to it: never sent at all.
          plan.forEach((what, i) => {
            if (what === "abort-before-send") controllers[i]!.abort(reason);
          });
          // Timeouts fire on their own (before or after the writer wrote the
          // call, as the socket lets it); then the other aborts, at that point.
          await Promise.all(calls.filter((_, i) => plan[i] === "timeout"));
          plan.forEach((what, i) => {
            if (what === "abort-after-send") controllers[i]!.abort(reason);
          });
          // A last call marks the end: what was sent came before it. Answer all, in order.
          const last = s.client.execute("hold", { i: -1 });
          for (;;) {
            const m = await nextHold(s.peer);
            const i = (m["arguments"] as { i: number }).i;
            // A call aborted before the writer got to it never reaches the wire.
            assert.notEqual(plan[i], "abort-before-send", `call ${i} was sent`);
            s.peer.send({ return: { i }, id: m["id"] });
            if (i === -1) break;
          }
          assert.deepEqual(await last, { i: -1 });
          const results = await Promise.all(calls);
          plan.forEach((what, i) => {
            const r = results[i]!;
            if (what === "keep") assert.deepEqual(r, { ok: { i } });
            else if (what === "timeout") {
              assert.ok(
                "err" in r && r.err instanceof DOMException && r.err.name === "TimeoutError",
              );
            } else assert.deepEqual(r, { err: reason });
          });
          // The late replies were expected: dropped at debug level, no "unknown id" warning.
          assert.deepEqual(
            s.logger.lines.filter((l) => l.level === "warn"),
            [],
          );
          await s.client.disconnect();
        },
      ),
      { numRuns: RUNS, timeout: 2000 },
    );
  },
);
