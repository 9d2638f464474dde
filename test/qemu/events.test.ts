// Real QEMU: events (STOP/RESUME), events during negotiation, out-of-band commands, pretty=on.

import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { test } from "node:test";
import { ExecuteError, Runstate } from "../../src/index.js";
import { duplexPair } from "../helpers/duplex.js";
import { asArray, asObject, recordMessages, startQemu, testClient } from "../helpers/qemu.js";

const T = { timeout: 30_000 };

function assertEventShape(event: unknown, name: string): void {
  const e = asObject(event, "event");
  assert.equal(e["event"], name);
  const ts = asObject(e["timestamp"], "timestamp");
  assert.equal(typeof ts["seconds"], "number");
  assert.equal(typeof ts["microseconds"], "number");
}

void test(
  "stop/cont give STOP and RESUME (waitEvent, executeAndWait, client.events)",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const client = testClient(t);
    await client.connect(qemu.socketPath);
    assert.ok(client.events.empty());

    // waitEvent: only events after the call count, so start waiting first.
    const stopped = client.waitEvent("STOP");
    assert.deepEqual(await client.execute("stop"), {});
    assertEventShape(await stopped, "STOP");
    assert.equal(asObject(await client.execute("query-status"))["running"], false);

    // executeAndWait: the listener is in place before the command goes out.
    const { return: ret, event } = await client.executeAndWait("cont", undefined, {
      event: "RESUME",
    });
    assert.deepEqual(ret, {});
    assertEventShape(event, "RESUME");
    assert.equal(asObject(await client.execute("query-status"))["running"], true);

    // The default listener kept both, in order; nothing else came.
    assertEventShape(await client.events.get(), "STOP");
    assertEventShape(await client.events.get(), "RESUME");
    assert.ok(client.events.empty());

    // An event that precedes a reply is queued by the time execute() resolves.
    await client.execute("stop");
    assert.equal(client.events.pending, 1);
    assertEventShape(client.events.clear()[0], "STOP");
  },
);

void test(
  "an event between qmp_capabilities and its reply is delivered as an event",
  T,
  async (t) => {
    // QEMU sends no events before negotiation is over, so a small relay holds
    // back the reply to qmp_capabilities, has QEMU emit a real STOP event on the
    // same connection (by sending `stop` itself), forwards that event, and only
    // then the held reply.
    const qemu = await startQemu(t);
    const upstream = net.connect(qemu.socketPath);
    t.after(() => upstream.destroy());
    await once(upstream, "connect");
    const [clientSide, relaySide] = duplexPair();
    t.after(() => relaySide.destroy());
    relaySide.on("data", (chunk: Buffer) => upstream.write(chunk));

    let phase: "greeting" | "negotiating" | "holding" | "done" = "greeting";
    let held = "";
    let buffer = "";
    upstream.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf("\n"); nl !== -1; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl + 1);
        buffer = buffer.slice(nl + 1);
        const message = JSON.parse(line) as Record<string, unknown>;
        if (phase === "greeting" && "QMP" in message) phase = "negotiating";
        else if (phase === "negotiating" && "return" in message) {
          held = line;
          phase = "holding";
          upstream.write(JSON.stringify({ execute: "stop", id: "relay-stop" }));
          continue;
        } else if (message["id"] === "relay-stop") {
          phase = "done";
          relaySide.write(held);
          continue;
        }
        relaySide.write(line);
      }
    });

    const client = testClient(t, { name: "negotiation" });
    const received = recordMessages(t, client, "receive");
    await client.connect(clientSide);
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.equal(phase, "done");
    // The client saw greeting, event, reply, in that order.
    assert.deepEqual(
      received.map((m) => ("QMP" in m ? "greeting" : "event" in m ? m["event"] : "reply")),
      ["greeting", "STOP", "reply"],
    );
    // The event was delivered, not mistaken for the reply nor fatal.
    assert.equal(client.events.pending, 1);
    assertEventShape(await client.events.get(), "STOP");
    assert.equal(asObject(await client.execute("query-status"))["running"], false);
    const { event } = await client.executeAndWait("cont", undefined, { event: "RESUME" });
    assertEventShape(event, "RESUME");
  },
);

void test("out-of-band commands reach the right caller", T, async (t) => {
  const qemu = await startQemu(t);
  const client = testClient(t);
  const sent = recordMessages(t, client, "send");
  const received = recordMessages(t, client, "receive");
  await client.connect(qemu.socketPath);

  const commands = new Set(
    asArray(await client.execute("query-commands")).map((c) => asObject(c)["name"]),
  );
  // OOB-capable commands that need no guest: one that returns, one that fails here.
  const oobReturns = ["x-oob-test", "query-yank"].find((c) => commands.has(c));
  assert.ok(oobReturns !== undefined, "no OOB command that returns");
  const oobArgs = oobReturns === "x-oob-test" ? { lock: false } : undefined;
  assert.ok(commands.has("migrate-pause"), "migrate-pause is missing");

  // A big in-band reply, OOB calls behind it, and in-band calls after them.
  const schema = client.execute("query-qmp-schema");
  const oob1 = client.execute(oobReturns, oobArgs, { oob: true });
  const oob2 = client.execute("migrate-pause", undefined, { oob: true });
  const status = client.execute("query-status");
  const results = await Promise.allSettled([schema, oob1, oob2, status]);
  const [r0, r1, r2, r3] = results;

  assert.equal(r0?.status, "fulfilled");
  assert.ok(asArray(r0.value).length > 500);
  assert.equal(r1?.status, "fulfilled");
  if (oobReturns === "query-yank") assert.ok(Array.isArray(r1.value));
  else assert.deepEqual(r1.value, {});
  assert.equal(r2?.status, "rejected");
  const err: unknown = r2.reason;
  assert.ok(err instanceof ExecuteError, `got ${String(err)}`);
  assert.equal(err.errorClass, "GenericError");
  assert.match(err.desc, /migrate-pause|postcopy/);
  assert.equal(asObject(err.sent)["exec-oob"], "migrate-pause");
  assert.equal(r3?.status, "fulfilled");
  assert.equal(asObject(r3.value)["status"], "running");

  // They really went out of band...
  const oobSent = sent.filter((m) => "exec-oob" in m);
  assert.deepEqual(
    oobSent.map((m) => m["exec-oob"]),
    [oobReturns, "migrate-pause"],
  );
  assert.ok(oobSent.every((m) => !("execute" in m)));
  // ...and QEMU took them as such: an in-band-only command is refused OOB.
  await assert.rejects(client.execute("query-status", undefined, { oob: true }), (e: unknown) => {
    assert.ok(e instanceof ExecuteError);
    assert.equal(e.errorClass, "GenericError");
    assert.match(e.desc, /OOB/);
    return true;
  });
  const order = received.map((m) => m["id"]);
  t.diagnostic(`reply order by id: ${JSON.stringify(order)}`);
});

void test("a pretty=on monitor: commands, a big reply and events", T, async (t) => {
  const qemu = await startQemu(t, { pretty: true });

  // The monitor does spread messages over lines (checked on a raw connection).
  const raw = net.connect(qemu.socketPath);
  t.after(() => raw.destroy());
  raw.setEncoding("utf8");
  let greetingText = "";
  let greeting: unknown;
  for (let i = 0; i < 100 && greeting === undefined; i++) {
    const [chunk] = (await once(raw, "data")) as [string];
    greetingText += chunk;
    try {
      greeting = JSON.parse(greetingText);
    } catch {
      // Not complete yet.
    }
  }
  assert.ok("QMP" in asObject(greeting, "greeting"));
  assert.ok(greetingText.trim().split("\n").length > 3, `not pretty: ${greetingText}`);
  raw.end();
  await once(raw, "close");

  const client = testClient(t, { name: "pretty" });
  await client.connect(qemu.socketPath);
  assert.ok(client.greeting?.QMP.capabilities.includes("oob"));
  assert.equal(asObject(await client.execute("query-status"))["status"], "running");
  await assert.rejects(client.execute("no-such-command"), { errorClass: "CommandNotFound" });

  const schema = asArray(await client.execute("query-qmp-schema"));
  assert.ok(schema.length > 500);
  assert.ok(schema.some((e) => asObject(e)["name"] === "query-qmp-schema"));

  const many = await Promise.all(
    Array.from({ length: 50 }, (_, i) => client.execute(i % 2 ? "query-version" : "query-status")),
  );
  many.forEach((r, i) => assert.ok((i % 2 ? "qemu" : "status") in asObject(r), `result ${i}`));

  const stopped = client.waitEvent("STOP");
  await client.execute("stop");
  assertEventShape(await stopped, "STOP");
  const { event } = await client.executeAndWait("cont", undefined, { event: "RESUME" });
  assertEventShape(event, "RESUME");
});
