// QMP client, session set-up (SPEC §3): greeting, events before it, negotiation.

import assert from "node:assert/strict";
import { after, describe, it, test } from "node:test";
import {
  ConnectError,
  GreetingError,
  NegotiationError,
  Runstate,
  SessionEndedError,
  StateError,
} from "../../src/index.js";
import { defaultGreeting } from "../../src/testing/index.js";
import { KINDS, T, openSession, startSession, watchUnhandledRejections } from "./client-harness.js";

const unhandled = watchUnhandledRejections();

/** Assert a failed connect: a session-phase ConnectError, caused by `cause`, back to IDLE. */
async function assertSessionFailure(
  connected: Promise<void>,
  cause: abstract new (...args: never[]) => Error,
): Promise<ConnectError> {
  let caught: unknown;
  await assert.rejects(connected, (err) => {
    caught = err;
    return true;
  });
  assert.ok(caught instanceof ConnectError, `expected a ConnectError, got ${String(caught)}`);
  assert.match(caught.message, /^Failed to establish session/);
  assert.ok(
    caught.cause instanceof cause,
    `expected cause ${cause.name}, got ${String(caught.cause)}`,
  );
  return caught;
}

for (const kind of KINDS) {
  void describe(`QMP session set-up over ${kind}`, () => {
    void it("stores the greeting in client.greeting", T, async (t) => {
      const greeting = {
        QMP: {
          version: { qemu: { micro: 3, minor: 2, major: 9 }, package: "v9.2.3-test" },
          capabilities: ["oob"],
        },
      };
      const { client } = await openSession(t, kind, { server: { greeting } });
      assert.equal(client.runstate, Runstate.RUNNING);
      assert.deepEqual(client.greeting, greeting);
    });

    void it("keeps events sent before the greeting and delivers them", T, async (t) => {
      const s = await startSession(t, kind, { server: { greeting: false } });
      s.peer.sendEvent("EARLY_ONE", { n: 1 });
      s.peer.sendEvent("EARLY_TWO", { n: 2 });
      s.peer.send(defaultGreeting());
      await s.connected;
      assert.equal(s.client.runstate, Runstate.RUNNING);
      assert.deepEqual(s.client.greeting, defaultGreeting());
      // Delivered before the greeting was even read: queued by now.
      assert.equal(s.client.events.pending, 2);
      const first = await s.client.events.get();
      const second = await s.client.events.get();
      assert.equal(first.event, "EARLY_ONE");
      assert.deepEqual(first.data, { n: 1 });
      assert.equal(second.event, "EARLY_TWO");
      assert.deepEqual(second.data, { n: 2 });
      // The session works normally afterwards.
      assert.deepEqual(await s.client.execute("query-status"), {
        status: "running",
        running: true,
      });
    });

    void it("fails on a greeting whose capabilities are not a list of strings", T, async (t) => {
      const bad = { QMP: { version: defaultGreeting().QMP.version, capabilities: [1, 2] } };
      const s = await startSession(t, kind, { server: { greeting: bad } });
      const err = await assertSessionFailure(s.connected, GreetingError);
      assert.deepEqual((err.cause as GreetingError).received, bad);
      assert.equal(s.client.runstate, Runstate.IDLE);
      assert.equal(s.peer.received.length, 0, "nothing may be sent after a bad greeting");
    });

    void it("fails on a greeting without version", T, async (t) => {
      const s = await startSession(t, kind, {
        server: { greeting: { QMP: { capabilities: [] } } },
      });
      await assertSessionFailure(s.connected, GreetingError);
      assert.equal(s.client.runstate, Runstate.IDLE);
    });

    void it("fails on a greeting whose QMP member is not an object", T, async (t) => {
      const s = await startSession(t, kind, { server: { greeting: { QMP: null } } });
      await assertSessionFailure(s.connected, GreetingError);
      assert.equal(s.client.runstate, Runstate.IDLE);
    });

    void it("can connect again after a malformed greeting", T, async (t) => {
      const s = await startSession(t, kind, { server: { greeting: { QMP: 1 } } });
      await assertSessionFailure(s.connected, GreetingError);
      assert.equal(s.client.runstate, Runstate.IDLE);
      const ok = await openSession(t, kind);
      assert.equal(ok.client.runstate, Runstate.RUNNING);
    });

    void it("fails with ConnectError on EOF before the greeting", T, async (t) => {
      const s = await startSession(t, kind, { server: { greeting: false } });
      s.peer.end();
      await assertSessionFailure(s.connected, SessionEndedError);
      assert.equal(s.client.runstate, Runstate.IDLE);
      assert.equal(s.client.greeting, undefined);
    });

    void it("fails with GreetingError when the first message is not a greeting", T, async (t) => {
      const s = await startSession(t, kind, { server: { greeting: false } });
      const first = { return: {}, id: 1 };
      s.peer.send(first);
      const err = await assertSessionFailure(s.connected, GreetingError);
      assert.deepEqual((err.cause as GreetingError).received, first);
      assert.equal(s.client.runstate, Runstate.IDLE);
      assert.equal(s.peer.received.length, 0);
    });

    void it("negotiates with enable: ['oob'] when the greeting offers oob", T, async (t) => {
      const s = await startSession(t, kind, { server: { capabilities: ["oob"] } });
      const negotiation = await s.peer.nextMessage();
      assert.deepEqual(negotiation, {
        execute: "qmp_capabilities",
        arguments: { enable: ["oob"] },
        id: 1,
      });
      await s.connected;
      assert.equal(s.wire(), JSON.stringify(negotiation));
    });

    void it("negotiates without arguments when the greeting offers no oob", T, async (t) => {
      const s = await startSession(t, kind, { server: { capabilities: [] } });
      const negotiation = await s.peer.nextMessage();
      assert.deepEqual(negotiation, { execute: "qmp_capabilities", id: 1 });
      assert.ok(!("arguments" in negotiation));
      await s.connected;
      assert.equal(s.wire(), '{"execute":"qmp_capabilities","id":1}');
    });

    void it("does not enable capabilities the greeting offers besides oob", T, async (t) => {
      const s = await startSession(t, kind, { server: { capabilities: ["future-cap"] } });
      assert.deepEqual(await s.peer.nextMessage(), { execute: "qmp_capabilities", id: 1 });
      await s.connected;
    });

    void it(
      "fails with ConnectError caused by NegotiationError on an error reply",
      T,
      async (t) => {
        const s = await startSession(t, kind, {
          server: {
            handlers: {
              qmp_capabilities: () => ({
                error: { class: "GenericError", desc: "no negotiation today" },
              }),
            },
          },
        });
        const err = await assertSessionFailure(s.connected, NegotiationError);
        const cause = err.cause as NegotiationError;
        assert.deepEqual(cause.received, {
          error: { class: "GenericError", desc: "no negotiation today" },
          id: 1,
        });
        assert.equal(s.client.runstate, Runstate.IDLE);
        await assert.rejects(s.client.execute("query-status"), StateError);
      },
    );

    void it(
      "delivers an event sent between qmp_capabilities and its reply as an event",
      T,
      async (t) => {
        const s = await startSession(t, kind, {
          server: {
            handlers: {
              qmp_capabilities: (_args, _msg, peer) => {
                peer.sendEvent("IN_BETWEEN", { x: 1 });
                // Even one that looks a bit like a reply must not be taken for it.
                peer.send({
                  event: "LOOKS_LIKE_REPLY",
                  data: { return: {} },
                  timestamp: { seconds: 1, microseconds: 2 },
                });
                return { return: {} };
              },
            },
          },
        });
        await s.connected;
        assert.equal(s.client.runstate, Runstate.RUNNING);
        assert.equal(s.client.events.pending, 2);
        const e1 = await s.client.events.get();
        const e2 = await s.client.events.get();
        assert.equal(e1.event, "IN_BETWEEN");
        assert.deepEqual(e1.data, { x: 1 });
        assert.equal(e2.event, "LOOKS_LIKE_REPLY");
        // The real reply was then taken as the reply: the next id is 2 and works.
        const result = await s.client.execute("query-status");
        assert.deepEqual(result, { status: "running", running: true });
        assert.equal((await s.peer.nextMessage())["id"], 1);
        assert.equal((await s.peer.nextMessage())["id"], 2);
      },
    );

    void it("ignores a second greeting mid-session, with a warning", T, async (t) => {
      const s = await openSession(t, kind);
      const original = structuredClone(s.client.greeting);
      const stale = {
        QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: "" }, capabilities: [] },
      };
      s.peer.send(stale);
      // Wire order: the greeting is handled before this reply.
      assert.deepEqual(await s.client.execute("query-status"), {
        status: "running",
        running: true,
      });
      assert.equal(s.client.runstate, Runstate.RUNNING);
      assert.deepEqual(s.client.greeting, original);
      const warnings = s.logger.at("warn");
      assert.equal(warnings.length, 1, `warnings: ${JSON.stringify(warnings)}`);
      assert.match(warnings[0]!, /greeting/i);
      assert.deepEqual(s.client.events.clear(), []);
    });
  });
}

void test("no unhandled rejection in this file", () => {
  assert.deepEqual(unhandled, []);
});

after(() => {
  assert.deepEqual(unhandled, [], "unhandled rejections after the last test");
});
