// QMP client, commands (SPEC §3): ids and bytes on the wire, routing, execute,
// executeMsg, raw, exec-oob, cancellation, quit, guest-agent mode, runstate rules.

import assert from "node:assert/strict";
import { after, describe, it, test } from "node:test";
import {
  DuplicateIdError,
  ExecuteError,
  type JsonValue,
  QMPClient,
  Runstate,
  StateError,
} from "../../src/index.js";
import { type FakeServerOptions, defaultGreeting } from "../../src/testing/index.js";
import {
  Endpoint,
  KINDS,
  RecordingLogger,
  T,
  gate,
  openSession,
  recordWire,
  startSession,
  track,
  watchUnhandledRejections,
  skipNegotiation,
} from "./client-harness.js";

const unhandled = watchUnhandledRejections();

/** Handlers most tests use: `echo` returns its arguments, `hang` never answers. */
const handlers: NonNullable<FakeServerOptions["handlers"]> = {
  echo: (args) => ({ return: (args ?? null) as JsonValue }),
  hang: () => undefined,
};

const STATUS = { status: "running", running: true };

function isTimeoutError(err: unknown): boolean {
  return err instanceof DOMException && err.name === "TimeoutError";
}

function isAbortError(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}

for (const kind of KINDS) {
  void describe(`QMP commands over ${kind}`, () => {
    // ------------------------------------------------------------------ ids and wire

    void it(
      "numbers commands 1, 2, 3… as compact JSON without newline or empty arguments",
      T,
      async (t) => {
        const s = await openSession(t, kind, { server: { capabilities: [], handlers } });
        assert.deepEqual(await s.client.execute("query-status"), STATUS);
        await s.client.execute("query-version", {});
        assert.deepEqual(await s.client.execute("echo", { n: 1, s: "a b" }), { n: 1, s: "a b" });
        await s.client.execute("query-status", undefined);
        const messages: Record<string, unknown>[] = [];
        for (let i = 0; i < 5; i++) messages.push(await s.peer.nextMessage());
        assert.deepEqual(messages, [
          { execute: "qmp_capabilities", id: 1 },
          { execute: "query-status", id: 2 },
          { execute: "query-version", id: 3 },
          { execute: "echo", arguments: { n: 1, s: "a b" }, id: 4 },
          { execute: "query-status", id: 5 },
        ]);
        for (const m of messages) {
          assert.ok(
            Number.isInteger(m["id"]),
            `id ${JSON.stringify(m["id"])} is not a JSON integer`,
          );
          if (m["execute"] !== "echo") assert.ok(!("arguments" in m), JSON.stringify(m));
        }
        // Byte for byte: compact JSON, one message after the other, nothing else.
        const wire = s.wire();
        assert.equal(wire, messages.map((m) => JSON.stringify(m)).join(""));
        assert.ok(!/[\r\n]/.test(wire), "no line endings on the wire");
        assert.ok(wire.includes('"id":2}'), "the id is a bare integer");
      },
    );

    void it("keeps ids increasing across a disconnect and reconnect", T, async (t) => {
      const endpoint = await Endpoint.open(t, kind, { handlers });
      const client = new QMPClient({ logger: new RecordingLogger() });
      t.after(() => client.destroy());

      let connected = client.connect(endpoint.dial());
      const peer1 = await endpoint.peer();
      await connected;
      await client.execute("query-status");
      await client.execute("query-status");
      await client.disconnect();
      assert.equal(client.runstate, Runstate.IDLE);
      assert.deepEqual(
        peer1.received.map((m) => m["id"]),
        [1, 2, 3],
      );

      connected = client.connect(endpoint.dial());
      const peer2 = await endpoint.peer();
      await connected;
      await client.execute("query-version");
      assert.deepEqual(peer2.received, [
        { execute: "qmp_capabilities", arguments: { enable: ["oob"] }, id: 4 },
        { execute: "query-version", id: 5 },
      ]);
    });

    // ------------------------------------------------------------------ routing

    void it("routes replies sent out of order to the right callers", T, async (t) => {
      const gates = [gate(), gate(), gate()];
      const s = await openSession(t, kind, {
        server: {
          handlers: {
            delayed: async (args) => {
              const n = args?.["n"] as number;
              await gates[n]!.promise;
              return { return: { n } };
            },
          },
        },
      });
      const calls = [0, 1, 2].map((n) => track(s.client.execute("delayed", { n })));
      await skipNegotiation(s.peer);
      for (let i = 0; i < 3; i++) await s.peer.nextMessage();
      const race = (): Promise<[number, unknown]> =>
        Promise.race(
          calls
            .filter((c) => !c.settled())
            .map((c) => c.promise.then((v) => [calls.indexOf(c), v] as [number, unknown])),
        );

      gates[2]!.open();
      assert.deepEqual(await race(), [2, { n: 2 }]);
      gates[0]!.open();
      assert.deepEqual(await race(), [0, { n: 0 }]);
      assert.equal(calls[1]!.settled(), false);
      gates[1]!.open();
      assert.deepEqual(await calls[1]!.promise, { n: 1 });
    });

    void it("handles hundreds of concurrent executes", T, async (t) => {
      const N = 500;
      const held: (() => void)[] = [];
      const s = await openSession(t, kind, {
        server: {
          handlers: {
            many: (args) =>
              new Promise((resolve) => {
                held.push(() => resolve({ return: { n: args?.["n"] as number } }));
                // Answer all of them at once, last first.
                if (held.length === N) for (const answer of held.reverse()) answer();
              }),
          },
        },
      });
      const calls = Array.from({ length: N }, (_, n) => s.client.execute("many", { n }));
      const results = await Promise.all(calls);
      results.forEach((r, n) => assert.deepEqual(r, { n }));
      const ids = s.peer.received.map((m) => m["id"]);
      assert.deepEqual(
        ids,
        Array.from({ length: N + 1 }, (_, i) => i + 1),
      );
      assert.equal(s.client.runstate, Runstate.RUNNING);
    });

    // ------------------------------------------------------------------ execute errors

    void it("rejects with ExecuteError on an error reply and stays usable", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      let caught: unknown;
      await assert.rejects(s.client.execute("no-such-command", { a: 1 }), (err) => {
        caught = err;
        return true;
      });
      assert.ok(caught instanceof ExecuteError);
      const desc = "The command no-such-command has not been found";
      assert.equal(caught.errorClass, "CommandNotFound");
      assert.equal(caught.desc, desc);
      assert.equal(caught.message, desc);
      assert.deepEqual(caught.sent, { execute: "no-such-command", arguments: { a: 1 }, id: 2 });
      assert.deepEqual(caught.received, { error: { class: "CommandNotFound", desc }, id: 2 });
      assert.equal(s.client.runstate, Runstate.RUNNING);
      assert.deepEqual(await s.client.execute("echo", { after: true }), { after: true });
    });

    void it("reports a handler's GenericError as ExecuteError", T, async (t) => {
      const s = await openSession(t, kind, {
        server: {
          handlers: { fails: () => ({ error: { class: "GenericError", desc: "it broke" } }) },
        },
      });
      await assert.rejects(s.client.execute("fails"), (err) => {
        assert.ok(err instanceof ExecuteError);
        assert.equal(err.errorClass, "GenericError");
        assert.equal(err.message, "it broke");
        assert.deepEqual(err.sent, { execute: "fails", id: 2 });
        return true;
      });
      assert.deepEqual(await s.client.execute("query-status"), STATUS);
    });

    // ------------------------------------------------------------------ executeMsg

    void it("executeMsg: TypeError without execute or exec-oob, nothing sent", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      await assert.rejects(s.client.executeMsg({ arguments: { a: 1 } }), TypeError);
      await assert.rejects(s.client.executeMsg({ execute: 5 } as never), TypeError);
      await assert.rejects(s.client.executeMsg({}), TypeError);
      await assert.rejects(s.client.executeMsg({ "exec-oob": null } as never), TypeError);
      assert.deepEqual(await s.client.executeMsg({ execute: "query-status" }), STATUS);
      await skipNegotiation(s.peer);
      assert.deepEqual(await s.peer.nextMessage(), { execute: "query-status", id: 2 });
    });

    void it("executeMsg never mutates the caller's message", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const args = Object.freeze({ n: 7 });
      const message = Object.freeze({ execute: "echo", arguments: args });
      assert.deepEqual(await s.client.executeMsg(message), { n: 7 });
      assert.deepEqual(message, { execute: "echo", arguments: { n: 7 } });
      assert.ok(!("id" in message));
      // Not frozen: a mutation would show.
      const plain = { execute: "echo", arguments: { m: 1 } };
      assert.deepEqual(await s.client.executeMsg(plain), { m: 1 });
      assert.deepEqual(plain, { execute: "echo", arguments: { m: 1 } });
      await skipNegotiation(s.peer);
      assert.deepEqual(await s.peer.nextMessage(), { execute: "echo", arguments: { n: 7 }, id: 2 });
      assert.deepEqual(await s.peer.nextMessage(), { execute: "echo", arguments: { m: 1 }, id: 3 });
    });

    void it("executeMsg honours a string id chosen by the caller", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const message = Object.freeze({ execute: "echo", arguments: { v: "x" }, id: "my-id" });
      assert.deepEqual(await s.client.executeMsg(message), { v: "x" });
      assert.equal(message.id, "my-id");
      await skipNegotiation(s.peer);
      assert.deepEqual(await s.peer.nextMessage(), {
        execute: "echo",
        arguments: { v: "x" },
        id: "my-id",
      });
    });

    void it("executeMsg rejects a numeric id with TypeError and sends nothing", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      await assert.rejects(s.client.executeMsg({ execute: "query-status", id: 17 }), TypeError);
      await assert.rejects(s.client.executeMsg({ execute: "query-status", id: 2 }), TypeError);
      await assert.rejects(
        s.client.executeMsg({ execute: "query-status", id: { a: 1 } }),
        TypeError,
      );
      assert.deepEqual(await s.client.execute("query-version"), defaultGreeting().QMP.version);
      await skipNegotiation(s.peer);
      const next = await s.peer.nextMessage();
      assert.equal(next["execute"], "query-version");
      assert.equal(s.peer.received.length, 2);
    });

    void it("executeMsg rejects an id in use with DuplicateIdError", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const first = s.client.executeMsg({ execute: "hang", id: "dup" });
      await assert.rejects(
        s.client.executeMsg({ execute: "query-status", id: "dup" }),
        DuplicateIdError,
      );
      await skipNegotiation(s.peer);
      assert.deepEqual(await s.peer.nextMessage(), { execute: "hang", id: "dup" });
      s.peer.send({ return: "first", id: "dup" });
      assert.equal(await first, "first");
      // Free again once answered.
      assert.deepEqual(await s.client.executeMsg({ execute: "query-status", id: "dup" }), STATUS);
    });

    void it("a caller's string id never collides with the client's integer ids", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const numeric = s.client.execute("hang"); // id 2
      const stringy = s.client.executeMsg({ execute: "hang", id: "2" });
      await skipNegotiation(s.peer);
      assert.equal((await s.peer.nextMessage())["id"], 2);
      assert.equal((await s.peer.nextMessage())["id"], "2");
      s.peer.send({ return: "for the string", id: "2" });
      s.peer.send({ return: "for the number", id: 2 });
      assert.equal(await stringy, "for the string");
      assert.equal(await numeric, "for the number");
    });

    // ------------------------------------------------------------------ raw

    void it("raw() returns error replies whole, without throwing", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const reply = await s.client.raw({ execute: "no-such-command" });
      assert.deepEqual(reply, {
        error: { class: "CommandNotFound", desc: "The command no-such-command has not been found" },
        id: 2,
      });
      assert.deepEqual(await s.client.raw({ execute: "echo", arguments: { z: 0 } }), {
        return: { z: 0 },
        id: 3,
      });
      assert.deepEqual(await s.client.raw({ execute: "query-status", id: "mine" }), {
        return: STATUS,
        id: "mine",
      });
    });

    void it("raw() with assignId: false sends no id", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const message = { execute: "query-status" };
      const reply = await s.client.raw(message, { assignId: false });
      assert.deepEqual(reply, { return: STATUS });
      assert.deepEqual(message, { execute: "query-status" });
      await skipNegotiation(s.peer);
      const sent = await s.peer.nextMessage();
      assert.deepEqual(sent, { execute: "query-status" });
      assert.ok(!("id" in sent));
      assert.ok(s.wire().endsWith('{"execute":"query-status"}'));
    });

    void it("raw() routes an id-less error reply to the pending id-less call", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const reply = await s.client.raw({ execute: "no-such-command" }, { assignId: false });
      assert.deepEqual(reply, {
        error: { class: "CommandNotFound", desc: "The command no-such-command has not been found" },
      });
      assert.equal(s.client.runstate, Runstate.RUNNING);
      assert.deepEqual(await s.client.execute("query-status"), STATUS);
    });

    void it(
      "raw(): a second id-less call while one is pending → DuplicateIdError",
      T,
      async (t) => {
        const s = await openSession(t, kind, { server: { handlers } });
        const first = s.client.raw({ execute: "hang" }, { assignId: false });
        await assert.rejects(
          s.client.raw({ execute: "query-status" }, { assignId: false }),
          DuplicateIdError,
        );
        // Calls with ids are still fine meanwhile.
        assert.deepEqual(await s.client.execute("query-status"), STATUS);
        s.peer.send({ return: "idless done" });
        assert.deepEqual(await first, { return: "idless done" });
        // The slot is free again.
        assert.deepEqual(await s.client.raw({ execute: "query-status" }, { assignId: false }), {
          return: STATUS,
        });
        assert.deepEqual(
          s.peer.received.map((m) => [m["execute"], m["id"]]),
          [
            ["qmp_capabilities", 1],
            ["hang", undefined],
            ["query-status", 2],
            ["query-status", undefined],
          ],
        );
      },
    );

    // ------------------------------------------------------------------ exec-oob

    void it("sends exec-oob with { oob: true }", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      assert.deepEqual(await s.client.execute("echo", { q: 1 }, { oob: true }), { q: 1 });
      assert.deepEqual(await s.client.executeMsg({ "exec-oob": "echo", arguments: { q: 2 } }), {
        q: 2,
      });
      await skipNegotiation(s.peer);
      const m1 = await s.peer.nextMessage();
      const m2 = await s.peer.nextMessage();
      assert.deepEqual(m1, { "exec-oob": "echo", arguments: { q: 1 }, id: 2 });
      assert.deepEqual(m2, { "exec-oob": "echo", arguments: { q: 2 }, id: 3 });
      assert.ok(!("execute" in m1));
    });

    void it("an oob command's reply can overtake an in-band one", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const slow = track(s.client.execute("hang"));
      assert.deepEqual(await s.client.execute("echo", { fast: true }, { oob: true }), {
        fast: true,
      });
      assert.equal(slow.settled(), false);
      await skipNegotiation(s.peer);
      const hang = await s.peer.nextMessage();
      s.peer.send({ return: "slow", id: hang["id"] });
      assert.equal(await slow.promise, "slow");
    });

    // ------------------------------------------------------------------ cancellation

    void it(
      "per-call timeout rejects with TimeoutError; the late reply is dropped",
      T,
      async (t) => {
        const s = await openSession(t, kind, { server: { handlers } });
        await assert.rejects(s.client.execute("hang", undefined, { timeout: 20 }), isTimeoutError);
        await skipNegotiation(s.peer);
        const hung = await s.peer.nextMessage();
        s.peer.send({ return: "too late", id: hung["id"] });
        assert.deepEqual(await s.client.execute("query-status"), STATUS);
        assert.equal(s.client.runstate, Runstate.RUNNING);
        assert.deepEqual(
          s.logger.at("warn"),
          [],
          "a late reply to an abandoned call is expected, not a warning",
        );
        assert.deepEqual(s.client.events.clear(), []);
      },
    );

    void it("AbortSignal.timeout() rejects with its TimeoutError unchanged", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      // AbortSignal.timeout()'s timer is unref'd: over an in-memory duplex
      // nothing else keeps the event loop alive while it runs.
      const keepAlive = setInterval(() => {}, 1000);
      t.after(() => clearInterval(keepAlive));
      const signal = AbortSignal.timeout(15);
      let caught: unknown;
      await assert.rejects(s.client.execute("hang", undefined, { signal }), (err) => {
        caught = err;
        return true;
      });
      assert.ok(isTimeoutError(caught));
      assert.equal(caught, signal.reason);
      assert.deepEqual(await s.client.execute("query-status"), STATUS);
    });

    void it(
      "abort rejects with the AbortError reason unchanged; the late reply is dropped",
      T,
      async (t) => {
        const s = await openSession(t, kind, { server: { handlers } });
        const ac = new AbortController();
        const call = s.client.execute("hang", undefined, { signal: ac.signal });
        await skipNegotiation(s.peer);
        const hung = await s.peer.nextMessage();
        ac.abort();
        let caught: unknown;
        await assert.rejects(call, (err) => {
          caught = err;
          return true;
        });
        assert.ok(isAbortError(caught));
        assert.equal(caught, ac.signal.reason);
        s.peer.send({ return: "too late", id: hung["id"] });
        assert.deepEqual(await s.client.execute("echo", { next: 1 }), { next: 1 });
        assert.equal(s.client.runstate, Runstate.RUNNING);
      },
    );

    void it("abort with a custom reason rejects with exactly that reason", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const reason = new Error("changed my mind");
      const ac = new AbortController();
      const call = s.client.raw({ execute: "hang" }, { signal: ac.signal });
      await skipNegotiation(s.peer);
      await s.peer.nextMessage();
      ac.abort(reason);
      await assert.rejects(call, (err) => err === reason);

      const ac2 = new AbortController();
      const call2 = s.client.executeMsg({ execute: "hang", id: "s" }, { signal: ac2.signal });
      await s.peer.nextMessage();
      ac2.abort("not an Error");
      await assert.rejects(call2, (err) => err === "not an Error");
      // The late reply is dropped (the round trip makes sure it was read);
      // then the id is free again.
      s.peer.send({ return: "late", id: "s" });
      assert.deepEqual(await s.client.execute("query-status"), STATUS);
      assert.deepEqual(await s.client.executeMsg({ execute: "query-status", id: "s" }), STATUS);
    });

    void it(
      "an id-less raw() aborted before it is written is never sent, and frees the slot",
      T,
      async (t) => {
        const s = await openSession(t, kind, { server: { handlers } });
        const ac = new AbortController();
        const call = s.client.raw(
          { execute: "hang", arguments: { n: 1 } },
          { assignId: false, signal: ac.signal },
        );
        ac.abort();
        await assert.rejects(call, isAbortError);
        const second = s.client.raw({ execute: "hang", arguments: { n: 2 } }, { assignId: false });
        await skipNegotiation(s.peer);
        assert.deepEqual((await s.peer.nextMessage())["arguments"], { n: 2 });
        s.peer.send({ return: "second" });
        assert.deepEqual(await second, { return: "second" });
      },
    );

    void it(
      "applies the client-wide default timeout, which a per-call timeout overrides",
      T,
      async (t) => {
        const s = await openSession(t, kind, { client: { timeout: 25 }, server: { handlers } });
        // Started first, with a longer timer of its own: must outlive the default one.
        const longer = track(s.client.execute("hang", { which: "long" }, { timeout: 60_000 }));
        await assert.rejects(s.client.execute("hang", { which: "default" }), isTimeoutError);
        await assert.rejects(s.client.raw({ execute: "hang" }), isTimeoutError);
        assert.equal(longer.settled(), false);
        await skipNegotiation(s.peer);
        const long = await s.peer.nextMessage();
        assert.deepEqual(long["arguments"], { which: "long" });
        s.peer.send({ return: "long done", id: long["id"] });
        assert.equal(await longer.promise, "long done");
        // Fast commands are unaffected.
        assert.deepEqual(await s.client.execute("query-status"), STATUS);
      },
    );

    void it("an already-aborted signal rejects before anything is sent", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const reason = new Error("aborted before");
      const signal = AbortSignal.abort(reason);
      await assert.rejects(
        s.client.execute("query-status", undefined, { signal }),
        (e) => e === reason,
      );
      await assert.rejects(
        s.client.raw({ execute: "query-status" }, { signal }),
        (e) => e === reason,
      );
      await assert.rejects(
        s.client.executeMsg({ execute: "query-status", id: "x" }, { signal }),
        (e) => e === reason,
      );
      assert.deepEqual(await s.client.execute("query-version"), defaultGreeting().QMP.version);
      await skipNegotiation(s.peer);
      assert.equal((await s.peer.nextMessage())["execute"], "query-version");
      assert.equal(s.peer.received.length, 2);
      // The user id of the aborted call is not left in use.
      assert.deepEqual(await s.client.executeMsg({ execute: "query-status", id: "x" }), STATUS);
    });

    void it("refused calls take no id: the ids on the wire have no gaps", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      await assert.rejects(
        s.client.execute("query-status", undefined, { signal: AbortSignal.abort() }),
        { name: "AbortError" },
      );
      await assert.rejects(s.client.executeMsg({ execute: "query-status", id: 5 }), TypeError);
      await s.client.execute("query-status");
      await s.client.execute("query-status");
      // qmp_capabilities took 1.
      const ids = s.peer.received.map((m) => m["id"]);
      assert.deepEqual(ids, [1, 2, 3]);
    });

    void it("an abandoned call's id stays reserved until its late reply comes", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const ac = new AbortController();
      const call = s.client.executeMsg({ execute: "hang", id: "mine" }, { signal: ac.signal });
      await skipNegotiation(s.peer);
      await s.peer.nextMessage();
      ac.abort();
      await assert.rejects(call, { name: "AbortError" });
      // Reusing "mine" now could take the old command's late reply for the new one.
      await assert.rejects(
        s.client.executeMsg({ execute: "echo", arguments: { n: 1 }, id: "mine" }),
        DuplicateIdError,
      );
      s.peer.send({ return: "late", id: "mine" });
      // Once the late reply is in (and dropped), the id is free again.
      assert.deepEqual(await s.client.execute("query-status"), STATUS);
      assert.deepEqual(
        await s.client.executeMsg({ execute: "echo", arguments: { n: 2 }, id: "mine" }),
        { n: 2 },
      );
    });

    // ------------------------------------------------------------------ quit

    void it("quit resolves when the peer replies and closes right after", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      assert.deepEqual(await s.client.execute("quit"), {});
      await s.client.disconnect();
      assert.equal(s.client.runstate, Runstate.IDLE);
      await s.peer.closed;
    });

    void it("quit resolves when the peer closes without replying", T, async (t) => {
      const s = await openSession(t, kind, {
        server: {
          handlers: {
            ...handlers,
            quit: (_args, _msg, peer) => {
              peer.end();
              return undefined;
            },
          },
        },
      });
      const other = s.client.execute("hang");
      await s.client.execute("quit");
      // Only quit counts as done; anything else still pending was interrupted.
      await assert.rejects(other, { name: "ExecInterruptedError" });
      await s.client.disconnect();
      assert.equal(s.client.runstate, Runstate.IDLE);
    });

    void it("quit sent with exec-oob also resolves on the close", T, async (t) => {
      const s = await openSession(t, kind, {
        server: {
          handlers: {
            ...handlers,
            quit: (_args, _msg, peer) => {
              peer.end();
              return undefined;
            },
          },
        },
      });
      await s.client.executeMsg({ "exec-oob": "quit" });
      await s.client.disconnect();
      assert.equal(s.client.runstate, Runstate.IDLE);
    });

    // ------------------------------------------------------------------ guest-agent mode

    void it("guest-agent mode: sends nothing before RUNNING, and commands work", T, async (t) => {
      const s = await startSession(t, kind, {
        client: { awaitGreeting: false, negotiate: false },
        server: {
          greeting: false,
          lineEnding: "\n",
          handlers: {
            "guest-ping": () => ({ return: {} }),
            "guest-info": () => ({ return: { version: "9" } }),
          },
        },
      });
      await s.connected;
      assert.equal(s.client.runstate, Runstate.RUNNING);
      assert.equal(s.client.greeting, undefined);
      assert.deepEqual(await s.client.execute("guest-ping"), {});
      // The first thing the peer got is the first command.
      assert.deepEqual(await s.peer.nextMessage(), { execute: "guest-ping", id: 1 });
      assert.equal(s.wire(), '{"execute":"guest-ping","id":1}');
      assert.deepEqual(await s.client.execute("guest-info"), { version: "9" });
      assert.deepEqual(await s.peer.nextMessage(), { execute: "guest-info", id: 2 });
    });

    void it(
      "awaitGreeting: false on a QEMU: its greeting is kept, not warned about",
      T,
      async (t) => {
        const warnings: string[] = [];
        const logger = {
          debug: () => {},
          info: () => {},
          warn: (m: string) => warnings.push(m),
          error: (m: string) => warnings.push(m),
        };
        const s = await startSession(t, kind, {
          client: { awaitGreeting: false, negotiate: false, logger },
          server: { handlers },
        });
        await s.connected;
        // The greeting is read before the reply to the first command.
        assert.deepEqual(await s.client.execute("echo", { a: 1 }), { a: 1 });
        assert.deepEqual(s.client.greeting, defaultGreeting());
        assert.deepEqual(warnings, []);
      },
    );

    void it(
      "negotiate: false alone waits for the greeting but sends no qmp_capabilities",
      T,
      async (t) => {
        const s = await startSession(t, kind, {
          client: { negotiate: false },
          server: { handlers },
        });
        await s.connected;
        assert.deepEqual(s.client.greeting, defaultGreeting());
        assert.deepEqual(await s.client.execute("echo", { a: 1 }), { a: 1 });
        assert.deepEqual(await s.peer.nextMessage(), {
          execute: "echo",
          arguments: { a: 1 },
          id: 1,
        });
      },
    );

    // ------------------------------------------------------------------ runstate rules

    void it("executing while DISCONNECTING → StateError", T, async (t) => {
      const s = await openSession(t, kind, { server: { handlers } });
      const changed = s.client.runstateChanged();
      s.peer.end();
      assert.equal(await changed, Runstate.DISCONNECTING);
      for (const call of [
        () => s.client.execute("query-status"),
        () => s.client.executeMsg({ execute: "query-status" }),
        () => s.client.raw({ execute: "query-status" }),
      ]) {
        await assert.rejects(call(), (err) => {
          assert.ok(err instanceof StateError);
          assert.equal(err.state, Runstate.DISCONNECTING);
          assert.equal(err.required, Runstate.RUNNING);
          assert.equal(
            err.message,
            "QMPClient is disconnecting. Call disconnect() to return to IDLE state.",
          );
          return true;
        });
      }
      await s.client.disconnect();
      assert.equal(s.client.runstate, Runstate.IDLE);
    });

    void it("executing while CONNECTING → StateError", T, async (t) => {
      const s = await startSession(t, kind, { server: { greeting: false } });
      assert.equal(s.client.runstate, Runstate.CONNECTING);
      await assert.rejects(s.client.execute("query-status"), (err) => {
        assert.ok(err instanceof StateError);
        assert.equal(err.state, Runstate.CONNECTING);
        assert.equal(err.message, "QMPClient is currently connecting.");
        return true;
      });
      s.peer.send(defaultGreeting());
      await s.connected;
      assert.deepEqual(await s.client.execute("query-status"), STATUS);
      // Nothing of the refused call reached the peer.
      assert.deepEqual(
        s.peer.received.map((m) => m["execute"]),
        ["qmp_capabilities", "query-status"],
      );
    });
  });
}

void describe("QMP commands without a connection", () => {
  void it("executing while IDLE → StateError", T, async () => {
    const client = new QMPClient({ logger: new RecordingLogger() });
    for (const call of [
      () => client.execute("query-status"),
      () => client.executeMsg({ execute: "query-status" }),
      () => client.raw({ execute: "query-status" }),
    ]) {
      await assert.rejects(call(), (err) => {
        assert.ok(err instanceof StateError);
        assert.equal(err.state, Runstate.IDLE);
        assert.equal(err.required, Runstate.RUNNING);
        assert.equal(err.message, "QMPClient is disconnected and idle.");
        return true;
      });
    }
  });

  void it("StateError names the subclass", T, async () => {
    class MyClient extends QMPClient {}
    const client = new MyClient({ logger: new RecordingLogger() });
    await assert.rejects(client.execute("query-status"), {
      name: "StateError",
      message: "MyClient is disconnected and idle.",
    });
  });

  void it("executing after disconnect() → StateError, in IDLE", T, async (t) => {
    const endpoint = await Endpoint.open(t, "unix");
    const client = new QMPClient({ logger: new RecordingLogger() });
    t.after(() => client.destroy());
    const connected = client.connect(endpoint.dial());
    const peer = await endpoint.peer();
    const wire = recordWire(peer);
    await connected;
    await client.disconnect();
    await assert.rejects(client.execute("query-status"), {
      name: "StateError",
      state: Runstate.IDLE,
    });
    await peer.closed;
    assert.equal(wire(), JSON.stringify(peer.received[0]));
    assert.equal(peer.received.length, 1);
  });
});

void test("no unhandled rejection in this file", () => {
  assert.deepEqual(unhandled, []);
});

after(() => {
  assert.deepEqual(unhandled, [], "unhandled rejections after the last test");
});
