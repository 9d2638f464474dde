// QMP client, what the peer may get wrong (SPEC §2 session rules and §3):
// bad replies, unknown ids, id-less errors, EOF, resets, bad JSON, oversize messages.

import assert from "node:assert/strict";
import { after, describe, it, test } from "node:test";
import {
  BadReplyError,
  DeserializationError,
  ExecInterruptedError,
  type JsonValue,
  MessageTooLargeError,
  type QMPClient,
  Runstate,
  ServerParseError,
  SessionEndedError,
  StateError,
  UnexpectedTypeError,
} from "../../src/index.js";
import type { FakeServerOptions, HandlerResult } from "../../src/testing/index.js";
import {
  type Kind,
  KINDS,
  T,
  openSession,
  track,
  watchUnhandledRejections,
  skipNegotiation,
} from "./client-harness.js";
import { rejection } from "../helpers/common.js";

const unhandled = watchUnhandledRejections();

const handlers: NonNullable<FakeServerOptions["handlers"]> = {
  echo: (args) => ({ return: (args ?? null) as JsonValue }),
  hang: () => undefined,
  // Replies the fake sends as given (plus the id), malformed on purpose.
  "no-return-no-error": () => ({ unexpected: true }) as unknown as HandlerResult,
  "error-is-string": () => ({ error: "boom" }) as unknown as HandlerResult,
  "error-without-desc": () => ({ error: { class: "GenericError" } }) as unknown as HandlerResult,
  "error-class-not-string": () => ({ error: { class: 7, desc: "x" } }) as unknown as HandlerResult,
};

const STATUS = { status: "running", running: true };

/**
 * The session died of `cause`: the pending call got an ExecInterruptedError
 * caused by it, the runstate is DISCONNECTING, further calls get StateError,
 * and disconnect() rejects with that same root cause, ending in IDLE.
 */
async function assertSessionDiedOf(
  s: { client: QMPClient },
  pending: Promise<unknown>,
  check: (cause: unknown) => void,
): Promise<unknown> {
  const interrupted = await rejection(pending);
  assert.ok(interrupted instanceof ExecInterruptedError, `got ${String(interrupted)}`);
  const cause = interrupted.cause;
  check(cause);
  assert.equal(s.client.runstate, Runstate.DISCONNECTING);
  await assert.rejects(s.client.execute("query-status"), StateError);
  const reported = await rejection(s.client.disconnect());
  assert.equal(reported, cause, "disconnect() reports the root cause itself");
  assert.equal(s.client.runstate, Runstate.IDLE);
  // Reported once: a second disconnect() is harmless.
  await s.client.disconnect();
  return cause;
}

for (const kind of KINDS) {
  void describe(`QMP client with a misbehaving peer over ${kind}`, () => {
    // ------------------------------------------------------------------ malformed replies

    void it(
      "BadReplyError for a reply with neither return nor error; session goes on",
      T,
      async (t) => {
        const s = await openSession(t, kind, { server: { handlers } });
        const err = await rejection(s.client.execute("no-return-no-error"));
        assert.ok(err instanceof BadReplyError, String(err));
        assert.deepEqual(err.sent, { execute: "no-return-no-error", id: 2 });
        assert.deepEqual(err.received, { unexpected: true, id: 2 });
        assert.equal(s.client.runstate, Runstate.RUNNING);
        assert.deepEqual(await s.client.execute("query-status"), STATUS);
        // raw() hands such a reply over as it is.
        assert.deepEqual(await s.client.raw({ execute: "no-return-no-error" }), {
          unexpected: true,
          id: 4,
        });
      },
    );

    for (const command of ["error-is-string", "error-without-desc", "error-class-not-string"]) {
      void it(
        `BadReplyError for a malformed error object (${command}); session goes on`,
        T,
        async (t) => {
          const s = await openSession(t, kind, { server: { handlers } });
          const err = await rejection(s.client.execute(command, { a: 1 }));
          assert.ok(err instanceof BadReplyError, String(err));
          assert.deepEqual(err.sent, { execute: command, arguments: { a: 1 }, id: 2 });
          assert.equal((err.received as Record<string, unknown>)["id"], 2);
          assert.ok("error" in err.received);
          assert.equal(s.client.runstate, Runstate.RUNNING);
          assert.deepEqual(await s.client.execute("echo", { ok: 1 }), { ok: 1 });
        },
      );
    }

    // ------------------------------------------------------------------ ids

    void it("drops a reply with an unknown id, with a warning, and goes on", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const pending = track(s.client.execute("hang"));
      s.peer.send({ return: { stray: 1 }, id: 999 });
      s.peer.send({ return: { stray: 2 }, id: "stranger" });
      s.peer.send({ error: { class: "GenericError", desc: "stray" }, id: 1000 });
      assert.deepEqual(await s.client.execute("echo", { after: 1 }), { after: 1 });
      assert.equal(s.client.runstate, Runstate.RUNNING);
      assert.equal(pending.settled(), false, "a stray reply must not answer another call");
      const warnings = s.logger.at("warn");
      assert.equal(warnings.length, 3, JSON.stringify(warnings));
      assert.match(warnings[0]!, /999/);
      assert.match(warnings[1]!, /stranger/);
      assert.match(warnings[2]!, /1000/);
      await skipNegotiation(s.peer);
      const hung = await s.peer.nextMessage();
      s.peer.send({ return: "finally", id: hung["id"] });
      assert.equal(await pending.promise, "finally");
    });

    void it(
      "an id-less error with no id-less call pending is a fatal ServerParseError",
      T,
      async (t) => {
        const s = await openSession(t, kind, { server: { handlers } });
        const pending = s.client.execute("hang");
        const second = s.client.execute("hang");
        await skipNegotiation(s.peer);
        await s.peer.nextMessage();
        await s.peer.nextMessage();
        const parseError = {
          error: { class: "GenericError", desc: "JSON parse error, invalid keyword 'x'" },
        };
        s.peer.send(parseError);
        const cause = await assertSessionDiedOf(s, pending, (c) => {
          assert.ok(c instanceof ServerParseError, String(c));
          assert.deepEqual(c.received, parseError);
        });
        const other = await rejection(second);
        assert.ok(other instanceof ExecInterruptedError);
        assert.equal(other.cause, cause);
      },
    );

    // ------------------------------------------------------------------ end of stream

    void it(
      "EOF with calls pending: ExecInterruptedError (SessionEndedError), DISCONNECTING, clean disconnect()",
      T,
      async (t) => {
        const s = await openSession(t, kind, { server: { handlers } });
        const transitions: [string, string][] = [];
        s.client.on("runstate", (state, previous) => transitions.push([state, previous]));
        const calls = [
          s.client.execute("hang"),
          s.client.executeMsg({ execute: "hang", id: "user" }),
          s.client.raw({ execute: "hang" }, { assignId: false }),
        ];
        await skipNegotiation(s.peer);
        for (let i = 0; i < calls.length; i++) await s.peer.nextMessage();
        s.peer.end();
        for (const call of calls) {
          const err = await rejection(call);
          assert.ok(err instanceof ExecInterruptedError, String(err));
          assert.ok(err.cause instanceof SessionEndedError, String(err.cause));
        }
        assert.equal(s.client.runstate, Runstate.DISCONNECTING);
        assert.deepEqual(transitions, [[Runstate.DISCONNECTING, Runstate.RUNNING]]);
        await assert.rejects(s.client.execute("query-status"), StateError);
        // A clean end of stream is not an error.
        await s.client.disconnect();
        assert.equal(s.client.runstate, Runstate.IDLE);
        assert.deepEqual(transitions, [
          [Runstate.DISCONNECTING, Runstate.RUNNING],
          [Runstate.IDLE, Runstate.DISCONNECTING],
        ]);
      },
    );

    void it(
      "EOF inside a message: disconnect() rejects with DeserializationError",
      T,
      async (t) => {
        const s = await openSession(t, kind, { server: { handlers } });
        const pending = s.client.execute("hang");
        await skipNegotiation(s.peer);
        await s.peer.nextMessage();
        s.peer.write('{"return": {"status": "runn');
        s.peer.end();
        await assertSessionDiedOf(s, pending, (c) =>
          assert.ok(c instanceof DeserializationError, String(c)),
        );
      },
    );

    // ------------------------------------------------------------------ bad JSON

    void it("invalid JSON: DeserializationError as cause and from disconnect()", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const pending = s.client.execute("hang");
      await skipNegotiation(s.peer);
      await s.peer.nextMessage();
      s.peer.write('{"return": nope, "id": 2}\r\n');
      await assertSessionDiedOf(s, pending, (c) => {
        assert.ok(c instanceof DeserializationError, String(c));
        assert.match(c.raw, /nope/);
      });
    });

    void it("garbage that is not JSON at all: DeserializationError", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const pending = s.client.execute("hang");
      await skipNegotiation(s.peer);
      await s.peer.nextMessage();
      s.peer.write("this is not json\r\n");
      await assertSessionDiedOf(s, pending, (c) =>
        assert.ok(c instanceof DeserializationError, String(c)),
      );
    });

    for (const [text, value] of [
      ["[1, 2, 3]", [1, 2, 3]],
      ["42", 42],
      ['"a string"', "a string"],
      ["null", null],
    ] as const) {
      void it(`a non-object JSON value (${text}): UnexpectedTypeError`, T, async (t) => {
        const s = await openSession(t, kind, { server: { handlers } });
        const pending = s.client.execute("hang");
        await skipNegotiation(s.peer);
        await s.peer.nextMessage();
        s.peer.write(`${text}\r\n`);
        await assertSessionDiedOf(s, pending, (c) => {
          assert.ok(c instanceof UnexpectedTypeError, String(c));
          assert.deepEqual(c.value, value);
        });
      });
    }

    // ------------------------------------------------------------------ oversize

    void it(
      "an oversize reply fails only its call (MessageTooLargeError); the session goes on",
      T,
      async (t) => {
        const big = "x".repeat(5000);
        const s = await openSession(t, kind, {
          client: { maxMessageSize: 1024 },
          server: { handlers: { ...handlers, big: () => ({ return: big }) } },
        });
        const bystander = track(s.client.execute("hang"));
        const err = await rejection(s.client.execute("big"));
        assert.ok(err instanceof MessageTooLargeError, String(err));
        assert.equal(err.limit, 1024);
        // The reply as QEMU orders it: return first, id last.
        assert.equal(err.size, Buffer.byteLength(JSON.stringify({ return: big, id: 3 })));
        assert.match(err.message, /maxMessageSize/);
        assert.ok(
          err.message.includes(String(err.size)) && err.message.includes("1024"),
          err.message,
        );
        assert.equal(s.client.runstate, Runstate.RUNNING);
        assert.equal(bystander.settled(), false);
        assert.deepEqual(await s.client.execute("query-status"), STATUS);
        await skipNegotiation(s.peer);
        const hung = await s.peer.nextMessage();
        s.peer.send({ return: "bystander ok", id: hung["id"] });
        assert.equal(await bystander.promise, "bystander ok");
      },
    );

    void it("an oversize error reply with its id first fails only its call", T, async (t) => {
      const s = await openSession(t, kind, {
        client: { maxMessageSize: 1024 },
        server: { handlers },
      });
      const call = s.client.execute("hang");
      await skipNegotiation(s.peer);
      const hung = await s.peer.nextMessage();
      // QEMU puts the id first in error replies.
      const reply = { id: hung["id"], error: { class: "GenericError", desc: "y".repeat(3000) } };
      s.peer.send(reply);
      const err = await rejection(call);
      assert.ok(err instanceof MessageTooLargeError, String(err));
      assert.equal(err.size, Buffer.byteLength(JSON.stringify(reply)));
      assert.equal(err.limit, 1024);
      assert.deepEqual(await s.client.execute("echo", { ok: true }), { ok: true });
    });

    void it(
      "an oversize message without id (a huge event) is dropped with a warning",
      T,
      async (t) => {
        const s = await openSession(t, kind, {
          client: { maxMessageSize: 1024 },
          server: { handlers },
        });
        const bystander = track(s.client.execute("hang"));
        s.peer.sendEvent("HUGE", { blob: "z".repeat(5000) });
        s.peer.sendEvent("SMALL", { n: 1 });
        assert.deepEqual(await s.client.execute("query-status"), STATUS);
        assert.equal(s.client.runstate, Runstate.RUNNING);
        assert.equal(bystander.settled(), false, "an id-less oversize message fails no call");
        const events = s.client.events.clear();
        assert.deepEqual(
          events.map((e) => e.event),
          ["SMALL"],
        );
        const warnings = s.logger.at("warn");
        assert.ok(warnings.length >= 1, "a warning is logged");
        assert.ok(
          warnings.some((w) => /maxMessageSize/.test(w)),
          JSON.stringify(warnings),
        );
        await skipNegotiation(s.peer);
        const hung = await s.peer.nextMessage();
        s.peer.send({ return: 1, id: hung["id"] });
        assert.equal(await bystander.promise, 1);
      },
    );
  });
}

// A reset needs a real connection that can carry one (TCP on loopback), or an
// error injected into the client's side of the in-memory duplex.
for (const kind of ["duplex", "tcp"] as const satisfies readonly Kind[]) {
  void describe(`QMP client and a connection reset over ${kind}`, () => {
    void it(
      "a reset mid-session: calls interrupted, disconnect() rejects with the root cause",
      T,
      async (t) => {
        const s = await openSession(t, kind, { server: { handlers } });
        const pending = s.client.execute("hang");
        await skipNegotiation(s.peer);
        await s.peer.nextMessage();
        if (kind === "duplex") {
          const reset = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
          s.endpoint.clientStream!.destroy(reset);
        } else {
          s.peer.reset();
        }
        await assertSessionDiedOf(s, pending, (c) => {
          assert.ok(c instanceof Error, String(c));
          assert.equal((c as NodeJS.ErrnoException).code, "ECONNRESET");
        });
      },
    );

    void it("quit resolves even if the connection is reset instead of closed", T, async (t) => {
      const s = await openSession(t, kind, {
        server: {
          handlers: {
            quit: (_args, _msg, peer) => {
              if (kind === "duplex") {
                const reset = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
                s.endpoint.clientStream!.destroy(reset);
              } else {
                peer.reset();
              }
              return undefined;
            },
          },
        },
      });
      await s.client.execute("quit");
      assert.notEqual(s.client.runstate, Runstate.RUNNING);
      // QEMU going away after quit is what quit asked for: not an error.
      await s.client.disconnect();
      assert.equal(s.client.runstate, Runstate.IDLE);
    });
  });
}

void test("no unhandled rejection in this file", () => {
  assert.deepEqual(unhandled, []);
});

after(() => {
  assert.deepEqual(unhandled, [], "unhandled rejections after the last test");
});
