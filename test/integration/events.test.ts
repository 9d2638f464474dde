// Events (SPEC §4) through a client on a real UNIX socket: the default listener, registered
// listeners and scopes, copies, consumers, session end, waitEvent, executeAndWait, floods, overflow.

import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import {
  EventListener,
  ListenerError,
  QMPClient,
  type QMPClientOptions,
  type QMPEvent,
  Runstate,
  SessionEndedError,
} from "../../src/index.js";
import {
  type FakePeer,
  FakeQMPServer,
  type FakeServerOptions,
  makeEvent,
} from "../../src/testing/index.js";
import { rejection, watchUnhandledRejections } from "../helpers/common.js";

const unhandled = watchUnhandledRejections();

/** Connected client and fake peer on a UNIX socket, both cleaned up after the test. */
async function session(
  t: TestContext,
  serverOptions: FakeServerOptions = {},
  clientOptions: QMPClientOptions = {},
): Promise<{ server: FakeQMPServer; client: QMPClient; peer: FakePeer }> {
  const server = await FakeQMPServer.listen(serverOptions);
  t.after(() => server.close());
  const client = new QMPClient(clientOptions);
  t.after(() => client.destroy());
  await client.connect(server.address);
  const peer = await server.peer();
  return { server, client, peer };
}

/**
 * Wait until the client has handled everything the peer sent so far: the
 * reply comes after those bytes, and events before a reply are delivered by
 * the time execute() resolves.
 */
async function sync(client: QMPClient): Promise<void> {
  await client.execute("query-status");
}

const names = (events: QMPEvent[]): string[] => events.map((e) => e.event);

// ------------------------------------------------------------ default listener

void test("client.events gets every event, in wire order, as sent", async (t) => {
  const { client, peer } = await session(t);
  peer.sendEvent("STOP");
  peer.sendEvent("BLOCK_JOB_READY", {
    device: "job0",
    len: 10,
    offset: 10,
    speed: 0,
    type: "mirror",
  });
  peer.sendEvent("RESUME");
  const first = await client.events.get();
  assert.equal(first.event, "STOP");
  assert.equal(typeof first.timestamp.seconds, "number");
  assert.equal(typeof first.timestamp.microseconds, "number");
  const second = await client.events.get();
  assert.deepEqual(second.data, { device: "job0", len: 10, offset: 10, speed: 0, type: "mirror" });
  assert.equal((await client.events.get()).event, "RESUME");
  assert.ok(client.events.empty());
  assert.deepEqual(names(client.events.history), ["STOP", "BLOCK_JOB_READY", "RESUME"]);
});

// -------------------------------------------------------- register / unregister

void test("registerListener / unregisterListener and their ListenerErrors", async (t) => {
  const { client, peer } = await session(t);
  const listener = new EventListener();
  client.registerListener(listener);
  assert.throws(() => client.registerListener(listener), ListenerError);
  assert.throws(() => client.unregisterListener(client.events), ListenerError);
  assert.throws(() => client.unregisterListener(new EventListener()), ListenerError);
  assert.throws(() => client.registerListener(client.events), ListenerError);

  peer.sendEvent("ONE");
  await sync(client);
  assert.deepEqual(names(listener.clear()), ["ONE"]);

  // Queued events stay in an unregistered listener; new ones no longer come.
  peer.sendEvent("TWO");
  await sync(client);
  client.unregisterListener(listener);
  assert.throws(() => client.unregisterListener(listener), ListenerError);
  peer.sendEvent("THREE");
  await sync(client);
  assert.deepEqual(names(listener.clear()), ["TWO"]);
  assert.deepEqual(names(client.events.clear()), ["ONE", "TWO", "THREE"]);
  // It can be registered again.
  client.registerListener(listener);
  peer.sendEvent("FOUR");
  await sync(client);
  assert.deepEqual(names(listener.clear()), ["FOUR"]);
});

void test("listen(...) registers for a `using` scope and unregisters at its end", async (t) => {
  const { client, peer } = await session(t);
  const a = new EventListener({ names: "A" });
  const b = new EventListener({ names: ["B"] });
  {
    using _scope = client.listen(a, b);
    assert.throws(() => client.registerListener(a), ListenerError);
    peer.sendEvent("A");
    peer.sendEvent("B");
    await sync(client);
    assert.deepEqual(names(a.clear()), ["A"]);
    assert.deepEqual(names(b.clear()), ["B"]);
  }
  peer.sendEvent("A");
  peer.sendEvent("B");
  await sync(client);
  assert.ok(a.empty() && b.empty());
  // Both are free to register again: the scope unregistered them.
  client.registerListener(a);
  client.registerListener(b);
});

void test("listen(...) with one already registered throws and registers none", async (t) => {
  const { client } = await session(t);
  const fresh = new EventListener();
  const taken = new EventListener();
  client.registerListener(taken);
  assert.throws(() => client.listen(fresh, taken), ListenerError);
  // `fresh` was rolled back.
  assert.throws(() => client.unregisterListener(fresh), ListenerError);
  client.registerListener(fresh);
});

void test("client.listener(names, filter) with `using` takes matching events for its scope", async (t) => {
  const { client, peer } = await session(t);
  let escaped: EventListener | undefined;
  {
    using nic = client.listener("DEVICE_DELETED", (e) => e.data?.["device"] === "nic0");
    escaped = nic;
    peer.sendEvent("DEVICE_DELETED", { device: "disk0", path: "/machine/peripheral/disk0" });
    peer.sendEvent("DEVICE_DELETED", { device: "nic0", path: "/machine/peripheral/nic0" });
    peer.sendEvent("STOP");
    const got = await nic.get();
    assert.deepEqual(got.data, { device: "nic0", path: "/machine/peripheral/nic0" });
    await sync(client);
    assert.ok(nic.empty());
  }
  peer.sendEvent("DEVICE_DELETED", { device: "nic0", path: "/machine/peripheral/nic0" });
  await sync(client);
  assert.ok(escaped.empty(), "the listener still took events after its scope");
  assert.throws(() => client.unregisterListener(escaped), ListenerError);
});

void test("names are checked, then the filter", async (t) => {
  const { client, peer } = await session(t);
  const seen: string[] = [];
  const listener = client.listener(["A", "B"], (e) => {
    seen.push(e.event);
    return e.data?.["x"] === 1;
  });
  peer.sendEvent("A", { x: 1 });
  peer.sendEvent("A", { x: 2 });
  peer.sendEvent("C", { x: 1 });
  peer.sendEvent("B", { x: 1 });
  peer.sendEvent("B");
  await sync(client);
  const got = listener.clear();
  assert.deepEqual(
    got.map((e) => [e.event, e.data]),
    [
      ["A", { x: 1 }],
      ["B", { x: 1 }],
    ],
  );
  // The filter never saw the event excluded by name.
  assert.deepEqual(seen, ["A", "A", "B", "B"]);
});

void test("a filter that throws does not break delivery to others", async (t) => {
  const { client, peer } = await session(t);
  client.listener(undefined, () => {
    throw new Error("bad filter");
  });
  const good = client.listener("X");
  peer.sendEvent("X");
  await sync(client);
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.deepEqual(names(good.clear()), ["X"]);
});

// ---------------------------------------------------------- copies, consumers

void test("each listener gets its own copy of an event", async (t) => {
  const { client, peer } = await session(t);
  const one = client.listener("SHARED");
  const two = client.listener("SHARED");
  peer.sendEvent("SHARED", { nested: { value: 1 } });
  const a = await one.get();
  (a.data!["nested"] as { value: number }).value = 99;
  a.event = "CHANGED";
  const b = await two.get();
  const c = await client.events.get();
  for (const copy of [b, c]) {
    assert.equal(copy.event, "SHARED");
    assert.deepEqual(copy.data, { nested: { value: 1 } });
    assert.notEqual(copy, a);
  }
  assert.notEqual(b, c);
});

void test("within one listener each event goes to exactly one consumer", async (t) => {
  const { client, peer } = await session(t);
  const listener = client.listener("E");
  const first = listener.get();
  const second = listener.get();
  peer.sendEvent("E", { n: 1 });
  peer.sendEvent("E", { n: 2 });
  const got = await Promise.all([first, second]);
  assert.deepEqual(got.map((e) => e.data?.["n"]).sort(), [1, 2]);
  await sync(client);
  assert.ok(listener.empty(), "an event was handed to more than one consumer or kept");
});

void test("two iterators on one listener never get the same event", async (t) => {
  const { client, peer } = await session(t);
  const listener = client.listener("E");
  const COUNT = 200;
  const drain = async (): Promise<number[]> => {
    const got: number[] = [];
    for await (const e of listener) got.push(e.data!["n"] as number);
    return got;
  };
  const both = Promise.all([drain(), drain()]);
  for (let n = 0; n < COUNT; n++) peer.sendEvent("E", { n });
  peer.end();
  const [one, two] = await both;
  const all = [...one, ...two].sort((x, y) => x - y);
  assert.deepEqual(
    all,
    Array.from({ length: COUNT }, (_, n) => n),
  );
  await client.disconnect();
});

void test("an event that precedes a reply is queued when execute() resolves", async (t) => {
  const { client } = await session(t, {
    handlers: {
      "trigger-event": (_args, _msg, p) => {
        p.sendEvent("BEFORE_REPLY", { seq: 1 });
        return { return: {} };
      },
    },
  });
  const listener = client.listener("BEFORE_REPLY");
  assert.deepEqual(await client.execute("trigger-event"), {});
  // No await between: the events must already be there.
  assert.equal(listener.pending, 1);
  assert.equal(client.events.pending, 1);
  assert.deepEqual(listener.clear()[0]?.data, { seq: 1 });
});

// --------------------------------------------------------------- session end

void test("async iteration ends when the peer closes the session", async (t) => {
  const { client, peer } = await session(t);
  const listener = client.listener();
  const got: string[] = [];
  const iterating = (async () => {
    for await (const e of listener) got.push(e.event);
  })();
  peer.sendEvent("A");
  peer.sendEvent("B");
  peer.end();
  await iterating;
  assert.deepEqual(got, ["A", "B"]);
  assert.equal(client.runstate, Runstate.DISCONNECTING);
  await client.disconnect();
});

void test("async iteration ends on disconnect(), after the queued events", async (t) => {
  const { client, peer } = await session(t);
  peer.sendEvent("QUEUED");
  await sync(client);
  const got: string[] = [];
  const iterating = (async () => {
    for await (const e of client.events) got.push(e.event);
  })();
  await client.disconnect();
  await iterating;
  assert.deepEqual(got, ["QUEUED"]);
  // Iterating again after the session is over ends at once.
  for await (const e of client.events) assert.fail(`unexpected event ${e.event}`);
});

void test("onSessionEnd: 'throw' makes iteration throw SessionEndedError", async (t) => {
  const { client, peer } = await session(t);
  const listener = client.listener(undefined, undefined, { onSessionEnd: "throw" });
  const got: string[] = [];
  const iterating = (async () => {
    for await (const e of listener) got.push(e.event);
  })();
  peer.sendEvent("LAST");
  peer.end();
  const err = await rejection(iterating);
  assert.ok(err instanceof SessionEndedError, String(err));
  assert.deepEqual(got, ["LAST"]);
});

void test("get() rejects with SessionEndedError when the session ends while it waits", async (t) => {
  await t.test("the peer closes", async (t) => {
    const { client, peer } = await session(t);
    const waiting = rejection(client.listener("NEVER").get());
    const onDefault = rejection(client.events.get());
    peer.end();
    assert.ok((await waiting) instanceof SessionEndedError);
    assert.ok((await onDefault) instanceof SessionEndedError);
  });
  await t.test("the user disconnects", async (t) => {
    const { client } = await session(t);
    const waiting = rejection(client.listener("NEVER").get());
    await client.disconnect();
    assert.ok((await waiting) instanceof SessionEndedError);
    // And at once afterwards.
    assert.ok((await rejection(client.events.get())) instanceof SessionEndedError);
  });
  await t.test("a protocol error: the cause is kept", async (t) => {
    const { client, peer } = await session(t);
    const waiting = rejection(client.events.get());
    peer.write("not json at all\r\n");
    const err = await waiting;
    assert.ok(err instanceof SessionEndedError, String(err));
    assert.ok(err.cause instanceof Error);
    await rejection(client.disconnect());
  });
});

void test("a listener waits again in the next session", async (t) => {
  const server = await FakeQMPServer.listen();
  t.after(() => server.close());
  const client = new QMPClient();
  t.after(() => client.destroy());
  const listener = client.listener("E");
  await client.connect(server.address);
  await client.disconnect();
  assert.ok((await rejection(listener.get())) instanceof SessionEndedError);
  await client.connect(server.address);
  await server.peer();
  const peer = await server.peer();
  const next = listener.get();
  peer.sendEvent("E", { session: 2 });
  assert.deepEqual((await next).data, { session: 2 });
  await client.disconnect();
});

void test("a listener unregistered in one session and registered in the next one works", async (t) => {
  const server = await FakeQMPServer.listen();
  t.after(() => server.close());
  const client = new QMPClient();
  t.after(() => client.destroy());
  await client.connect(server.address);
  const listener = client.listener("E");
  await client.disconnect();
  client.unregisterListener(listener);
  await client.connect(server.address);
  await server.peer();
  const peer = await server.peer();
  client.registerListener(listener);
  const next = listener.get({ timeout: 5000 });
  peer.sendEvent("E", { session: 2 });
  assert.deepEqual((await next).data, { session: 2 });
  await client.disconnect();
});

void test("a listener made after the session ended does not wait forever", async (t) => {
  const { client, peer } = await session(t);
  peer.end();
  await client.runstateChanged();
  assert.equal(client.runstate, Runstate.DISCONNECTING);
  // waitEvent() and a fresh listener must see that the session is over.
  const err = await rejection(client.waitEvent("NEVER", undefined, { timeout: 2000 }));
  assert.ok(err instanceof SessionEndedError, String(err));
  await client.disconnect();
  const late = client.listener();
  const err2 = await rejection(late.get({ timeout: 2000 }));
  assert.ok(err2 instanceof SessionEndedError, String(err2));
  for await (const e of late) assert.fail(`unexpected event ${e.event}`);
});

// ----------------------------------------------------------------- waitEvent

void test("waitEvent() with names and a filter returns the first match", async (t) => {
  const { client, peer } = await session(t);
  const waiting = client.waitEvent("JOB_STATUS_CHANGE", (e) => e.data?.["status"] === "concluded");
  peer.sendEvent("JOB_STATUS_CHANGE", { id: "j0", status: "running" });
  peer.sendEvent("STOP");
  peer.sendEvent("JOB_STATUS_CHANGE", { id: "j0", status: "concluded" });
  const got = await waiting;
  assert.deepEqual(got.data, { id: "j0", status: "concluded" });
});

void test("waitEvent() only counts events that arrive after the call", async (t) => {
  const { client, peer } = await session(t);
  peer.sendEvent("TICK", { n: 1 });
  await sync(client);
  const waiting = client.waitEvent("TICK");
  peer.sendEvent("TICK", { n: 2 });
  assert.deepEqual((await waiting).data, { n: 2 });
});

void test("waitEvent() with a timeout rejects with a TimeoutError and leaves the session alone", async (t) => {
  const { client, peer } = await session(t);
  const err = await rejection(client.waitEvent("NEVER", undefined, { timeout: 30 }));
  assert.ok(err instanceof DOMException, String(err));
  assert.equal(err.name, "TimeoutError");
  const controller = new AbortController();
  const reason = new Error("stop waiting");
  const aborted = rejection(client.waitEvent("NEVER", undefined, { signal: controller.signal }));
  controller.abort(reason);
  assert.equal(await aborted, reason);
  assert.equal(client.runstate, Runstate.RUNNING);
  peer.sendEvent("NEVER");
  await sync(client);
  assert.equal(client.events.pending, 1);
});

void test("waitEvent() rejects with SessionEndedError when the session ends first", async (t) => {
  const { client, peer } = await session(t);
  const waiting = rejection(client.waitEvent("NEVER"));
  peer.end();
  assert.ok((await waiting) instanceof SessionEndedError);
});

// ------------------------------------------------------------ executeAndWait

void test("executeAndWait() catches an event sent BEFORE the reply", async (t) => {
  const { client } = await session(t, {
    handlers: {
      device_del: (args, _msg, p) => {
        p.sendEvent("DEVICE_DELETED", { device: "other", path: "/machine/peripheral/other" });
        p.sendEvent("DEVICE_DELETED", { device: args?.["id"], path: "/machine/peripheral/x" });
        return { return: {} };
      },
    },
  });
  const result = await client.executeAndWait(
    "device_del",
    { id: "nic0" },
    { event: "DEVICE_DELETED", filter: (e) => e.data?.["device"] === "nic0" },
  );
  assert.deepEqual(result.return, {});
  assert.equal(result.event.event, "DEVICE_DELETED");
  assert.equal(result.event.data?.["device"], "nic0");
});

void test("executeAndWait() waits for an event sent after the reply", async (t) => {
  const { client } = await session(t, {
    handlers: {
      device_del: (args, _msg, p) => {
        // The reply goes out first; the event a turn of the event loop later.
        setImmediate(() => p.sendEvent("DEVICE_DELETED", { device: args?.["id"] }));
        return { return: {} };
      },
    },
  });
  const result = await client.executeAndWait(
    "device_del",
    { id: "nic0" },
    { event: ["DEVICE_DELETED"], filter: (e) => e.data?.["device"] === "nic0" },
  );
  assert.deepEqual(result.return, {});
  assert.deepEqual(result.event.data, { device: "nic0" });
});

void test("executeAndWait() with a timeout covering a missing event", async (t) => {
  const { client } = await session(t, { handlers: { device_del: () => ({ return: {} }) } });
  const err = await rejection(
    client.executeAndWait("device_del", { id: "nic0" }, { event: "DEVICE_DELETED", timeout: 50 }),
  );
  assert.ok(err instanceof DOMException, String(err));
  assert.equal(err.name, "TimeoutError");
  assert.equal(client.runstate, Runstate.RUNNING);
});

// ------------------------------------------------------------- flood, overflow

void test("a flood of 200 000 events in large writes: none dropped with the default bound", async (t) => {
  const COUNT = 200_000;
  const { client, peer } = await session(t);
  const template = JSON.stringify(makeEvent("FLOOD", { n: 0 }));
  const [head, tail] = template.split('"n":0');
  let batch: string[] = [];
  let batchBytes = 0;
  for (let n = 0; n < COUNT; n++) {
    const line = `${head}"n":${n}${tail}\r\n`;
    batch.push(line);
    batchBytes += line.length;
    if (batchBytes >= 1 << 20) {
      peer.write(batch.join(""));
      batch = [];
      batchBytes = 0;
    }
  }
  peer.write(batch.join(""));
  let expected = 0;
  let outOfOrder = 0;
  for await (const e of client.events) {
    if (e.data?.["n"] !== expected) outOfOrder++;
    expected++;
    if (expected === COUNT) break;
  }
  assert.equal(expected, COUNT);
  assert.equal(outOfOrder, 0);
  assert.equal(client.events.dropped, 0);
  assert.equal(client.events.history.length, 100);
  assert.equal(client.events.history.at(-1)?.data?.["n"], COUNT - 1);
});

for (const policy of ["drop-oldest", "drop-newest", "error"] as const) {
  void test(`overflow policy '${policy}' observed through the client`, async (t) => {
    const { client, peer } = await session(t);
    const listener = client.listener("E", undefined, { maxPending: 3, overflow: policy });
    for (let n = 0; n < 5; n++) peer.sendEvent("E", { n });
    await sync(client);
    assert.equal(listener.dropped, 2);
    assert.equal(listener.pending, 3);
    // The default listener is not affected.
    assert.equal(client.events.dropped, 0);
    assert.equal(client.events.pending, 5);
    if (policy === "error") {
      assert.ok((await rejection(listener.get())) instanceof ListenerError);
    }
    const kept: number[] = [];
    for (let i = 0; i < 3; i++) kept.push((await listener.get()).data!["n"] as number);
    assert.deepEqual(kept, policy === "drop-oldest" ? [2, 3, 4] : [0, 1, 2]);
    assert.ok(listener.empty());
    // It keeps working after the overflow.
    peer.sendEvent("E", { n: 5 });
    assert.deepEqual((await listener.get()).data, { n: 5 });
    assert.equal(client.runstate, Runstate.RUNNING);
  });
}

void test("history is a bounded ring of the events taken; clear() returns the pending ones", async (t) => {
  const { client, peer } = await session(t);
  const listener = client.listener("H", undefined, { historySize: 3 });
  for (let n = 0; n < 5; n++) peer.sendEvent("H", { n });
  await sync(client);
  await listener.get();
  assert.deepEqual(
    listener.history.map((e) => e.data?.["n"]),
    [2, 3, 4],
  );
  assert.deepEqual(
    listener.clear().map((e) => e.data?.["n"]),
    [1, 2, 3, 4],
  );
  assert.ok(listener.empty());
  assert.equal(listener.history.length, 3);
});

void test("no unhandled rejection happened in this file", async () => {
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(unhandled, []);
});
