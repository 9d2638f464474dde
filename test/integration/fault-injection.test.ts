// The test kit's fault injection (FakeQMPServer `faults`, FakePeer.inject/stall) against the
// client: every fault reaches exactly the calls it affects with the right named error, nothing
// hangs, and the client ends IDLE after disconnect().

import assert from "node:assert/strict";
import { type TestContext, test } from "node:test";
import {
  DeserializationError,
  ExecInterruptedError,
  MessageTooLargeError,
  QMPClient,
  type QMPClientOptions,
  Runstate,
  ServerParseError,
  UnexpectedTypeError,
} from "../../src/index.js";
import {
  type CommandHandler,
  type FakeServerOptions,
  type Fault,
  FakeQMPServer,
  checkFaults,
  defaultGreeting,
} from "../../src/testing/index.js";
import {
  type Kind,
  RecordingLogger,
  type Session,
  T,
  openSession,
  skipNegotiation,
} from "./client-harness.js";

const STATUS = { status: "running", running: true };

/** A command that is never answered: a call still pending when a fault strikes. */
const hold: CommandHandler = () => new Promise(() => {});

/** A connected session whose server has `server` options (and a `hold` command). */
function session(
  t: TestContext,
  server: FakeServerOptions,
  client: QMPClientOptions = {},
  kind: Kind = "unix",
): Promise<Session> {
  return openSession(t, kind, {
    server: { ...server, handlers: { hold, ...server.handlers } },
    client,
  });
}

/** The error a promise rejects with. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (v) => assert.fail(`resolved with ${JSON.stringify(v)}`),
    (e: unknown) => e,
  );
}

/** disconnect() and the client is IDLE; its rejection (the root cause), if any. */
async function settle(client: QMPClient): Promise<unknown> {
  const err = await client.disconnect().then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.equal(client.runstate, Runstate.IDLE);
  return err;
}

/**
 * A fault that ends the session: the faulted call and the one held behind it
 * both fail with ExecInterruptedError caused by `cause`; a call answered
 * earlier keeps its result; disconnect() reports the root cause.
 */
async function fatal(
  t: TestContext,
  fault: Fault,
  cause: new (...args: never[]) => Error,
  kind: Kind = "unix",
  isCause: (err: unknown) => boolean = (err) => err instanceof cause,
): Promise<void> {
  const { client } = await session(
    t,
    { faults: { commands: { "query-version": fault } } },
    {},
    kind,
  );
  assert.deepEqual(await client.execute("query-status"), STATUS);
  const held = rejection(client.execute("hold"));
  const faulted = rejection(client.execute("query-version"));
  for (const err of [await faulted, await held]) {
    assert.ok(err instanceof ExecInterruptedError, String(err));
    assert.ok(isCause(err.cause), `cause: ${String(err.cause)}`);
  }
  const root = await settle(client);
  assert.ok(isCause(root), `disconnect(): ${String(root)}`);
}

void test(
  "split at chosen points (inside a UTF-8 character, between \\r and \\n)",
  T,
  async (t) => {
    const text = "grüße €";
    const { client, peer } = await session(t, {
      handlers: { echo: (args) => ({ return: { text: String(args?.["text"]) } }) },
    });
    const reply = Buffer.from(JSON.stringify({ return: { text }, id: 0 }));
    const umlaut = reply.indexOf(Buffer.from("ü")) + 1;
    const euro = reply.indexOf(Buffer.from("€")) + 2;
    const before = peer.writes;
    peer.inject({ kind: "split", at: [1, umlaut, euro, reply.length + 1] });
    // Offsets are in the message with its ending; the last cut is between \r and \n.
    assert.deepEqual(await client.execute("echo", { text }), { text });
    assert.equal(peer.writes - before, 5);
    assert.equal(await settle(client), undefined);
  },
);

void test("split at random points: the greeting and every reply", T, async (t) => {
  const split: Fault = { kind: "split", pieces: 6, seed: 42 };
  const { client, peer } = await session(t, { faults: { greeting: split, replies: split } });
  assert.equal(peer.writes, 2 * 6, "the greeting and the negotiation's reply, 6 pieces each");
  for (let i = 0; i < 5; i++) assert.deepEqual(await client.execute("query-status"), STATUS);
  assert.equal(peer.writes, 7 * 6);
  assert.equal(await settle(client), undefined);
});

void test(
  "delay: the call that times out gets TimeoutError; the next waits its turn",
  T,
  async (t) => {
    const { client, logger } = await session(t, {
      faults: { commands: { "query-version": { kind: "delay", ms: 300 } } },
    });
    const late = rejection(client.execute("query-version", undefined, { timeout: 50 }));
    const next = client.execute("query-status");
    assert.equal(((await late) as Error).name, "TimeoutError");
    assert.deepEqual(await next, STATUS);
    assert.deepEqual(logger.at("warn"), [], "the late reply was dropped quietly");
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.equal(await settle(client), undefined);
  },
);

void test(
  "stall: calls behind it time out; after resume() late replies are dropped",
  T,
  async (t) => {
    const { client, peer, logger } = await session(t, {
      faults: { commands: { "query-version": { kind: "stall" } } },
    });
    const a = rejection(client.execute("query-version", undefined, { timeout: 100 }));
    const b = rejection(client.execute("query-status", undefined, { timeout: 100 }));
    assert.equal(((await a) as Error).name, "TimeoutError");
    assert.equal(((await b) as Error).name, "TimeoutError");
    peer.resume();
    assert.deepEqual(await client.execute("query-status"), STATUS);
    assert.deepEqual(logger.at("warn"), []);
    assert.equal(await settle(client), undefined);
  },
);

void test("peer.stall() holds everything, even events, until resume()", T, async (t) => {
  const { client, peer } = await session(t, {});
  peer.stall();
  peer.sendEvent("STOP");
  const call = client.execute("query-status");
  // The command got through; its reply and the event wait.
  await skipNegotiation(peer);
  assert.equal((await peer.nextMessage())["execute"], "query-status");
  assert.equal(client.events.pending, 0);
  peer.resume();
  assert.deepEqual(await call, STATUS);
  assert.equal((await client.events.get()).event, "STOP");
  assert.equal(await settle(client), undefined);
});

void test("events before the greeting reach the client's listener", T, async (t) => {
  const { client } = await session(t, {
    faults: { greeting: { kind: "events-before", events: ["STOP", "RESUME"] } },
  });
  assert.deepEqual(
    [(await client.events.get()).event, (await client.events.get()).event],
    ["STOP", "RESUME"],
  );
  assert.deepEqual(await client.execute("query-status"), STATUS);
  assert.equal(await settle(client), undefined);
});

void test("an event between a command and its reply is delivered first", T, async (t) => {
  const { client, peer } = await session(t, {});
  peer.inject({
    kind: "events-before",
    events: [{ event: "X", data: { n: 1 }, timestamp: { seconds: 1, microseconds: 0 } }],
  });
  assert.deepEqual(await client.execute("query-status"), STATUS);
  assert.equal(client.events.pending, 1, "the event came before the reply");
  assert.deepEqual((await client.events.get()).data, { n: 1 });
  assert.equal(await settle(client), undefined);
});

void test("EOF mid-reply: both pending calls interrupted, disconnect() gives the cause", T, (t) =>
  fatal(
    t,
    { kind: "eof" },
    DeserializationError,
    "unix",
    (err) => err instanceof DeserializationError && /inside a message/.test(err.message),
  ),
);

void test("reset mid-reply (TCP): both pending calls interrupted by the reset", T, (t) =>
  // ECONNRESET, or, when the RST overtakes bytes the client has not read yet, the end of a
  // stream cut inside a message: the kernel decides, both are a reset mid-reply.
  fatal(t, { kind: "reset", at: 10 }, Error, "tcp", (err) => {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    return (
      code === "ECONNRESET" ||
      (err instanceof DeserializationError && /inside a message/.test(err.message))
    );
  }),
);

void test("garbage instead of a reply: DeserializationError ends the session", T, (t) =>
  fatal(t, { kind: "garbage" }, DeserializationError),
);

void test("a non-object instead of a reply: UnexpectedTypeError ends the session", T, (t) =>
  fatal(t, { kind: "non-object" }, UnexpectedTypeError),
);

void test("an error without id (QEMU could not parse): ServerParseError ends the session", T, (t) =>
  fatal(t, { kind: "error-without-id" }, ServerParseError),
);

void test(
  "a reply with an unknown id: that call times out, with a warning; others go on",
  T,
  async (t) => {
    const { client, peer, logger } = await session(t, {});
    peer.inject({ kind: "unknown-id", id: "nobody" }, "query-version");
    const lost = rejection(client.execute("query-version", undefined, { timeout: 200 }));
    assert.deepEqual(await client.execute("query-status"), STATUS);
    assert.equal(((await lost) as Error).name, "TimeoutError");
    assert.ok(
      logger.at("warn").some((w) => w.includes('unknown id "nobody"')),
      logger.at("warn").join("\n"),
    );
    const version = await client.execute("query-version");
    assert.ok(
      typeof version === "object" && version !== null && "qemu" in version,
      "inject() covers one reply",
    );
    assert.equal(await settle(client), undefined);
  },
);

void test("an oversized reply: MessageTooLargeError for that call only", T, async (t) => {
  const { client } = await session(
    t,
    { faults: { commands: { "query-version": { kind: "oversized", bytes: 100_000 } } } },
    { maxMessageSize: 4096 },
  );
  const big = rejection(client.execute("query-version"));
  const next = client.execute("query-status");
  assert.ok((await big) instanceof MessageTooLargeError);
  assert.deepEqual(await next, STATUS);
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.equal(await settle(client), undefined);
});

void test("pretty=on style: a multi-line greeting and replies", T, async (t) => {
  const { client, peer } = await session(t, {
    faults: { greeting: { kind: "pretty" }, replies: { kind: "pretty" } },
  });
  assert.deepEqual(client.greeting, defaultGreeting());
  const write = t.mock.method(peer.socket, "write");
  assert.deepEqual(await client.execute("query-status"), STATUS);
  assert.equal(write.mock.callCount(), 1);
  const text = Buffer.from(write.mock.calls[0]!.arguments[0] as Uint8Array).toString();
  assert.ok(text.split("\r\n").length > 4, text);
  assert.equal(await settle(client), undefined);
});

void test("a second greeting: ignored with a warning; the call gets its reply", T, async (t) => {
  const { client, logger } = await session(t, {
    faults: { commands: { "query-status": { kind: "second-greeting" } } },
  });
  assert.deepEqual(await client.execute("query-status"), STATUS);
  assert.ok(logger.at("warn").some((w) => w.includes("unexpected greeting")));
  assert.equal(await settle(client), undefined);
});

void test("the server's faults apply to every connection; inject() to one", T, async (t) => {
  const server = await FakeQMPServer.listen({
    faults: { commands: { "query-version": { kind: "unknown-id" } } },
  });
  t.after(() => server.close());
  for (let i = 0; i < 2; i++) {
    const client = new QMPClient({ logger: new RecordingLogger() });
    t.after(() => client.destroy());
    await client.connect(server.address);
    const peer = await server.peer();
    const lost = await rejection(client.execute("query-version", undefined, { timeout: 100 }));
    assert.equal((lost as Error).name, "TimeoutError", `connection ${i}`);
    peer.inject({ kind: "unknown-id" }, "query-status");
    await assert.rejects(client.execute("query-status", undefined, { timeout: 100 }), {
      name: "TimeoutError",
    });
    assert.deepEqual(await client.execute("query-status"), STATUS);
    assert.equal(await settle(client), undefined);
  }
});

void test("malformed faults are refused before anything starts", T, async () => {
  assert.throws(() => checkFaults({ kind: "nope" }), TypeError);
  assert.throws(() => checkFaults({ kind: "split", pieces: 1 }), RangeError);
  assert.throws(() => checkFaults({ kind: "delay" }), TypeError);
  assert.throws(() => checkFaults({ kind: "non-object", value: {} }), TypeError);
  await assert.rejects(
    FakeQMPServer.listen({ faults: { replies: [{ kind: "oversized", bytes: 0 }] } }),
    RangeError,
  );
});
