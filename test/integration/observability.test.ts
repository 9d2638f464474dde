// Observability (SPEC §1, §6): name in toString/inspect, injected loggers, traces with secrets
// redacted, diagnostics_channel payloads, and NODE_DEBUG=qmp output from a child process.

import { spawn } from "node:child_process";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { inspect } from "node:util";
import assert from "node:assert/strict";
import { type Logger, QMPClient, type QMPClientOptions, Runstate } from "../../src/index.js";
import { type FakePeer, FakeQMPServer, type FakeServerOptions } from "../../src/testing/index.js";
import { watchUnhandledRejections } from "../helpers/common.js";

const unhandled = watchUnhandledRejections();

interface LogLine {
  level: keyof Logger;
  text: string;
}

/** A logger that keeps every line. */
function recordingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: keyof Logger) =>
    (message: string, ...args: unknown[]): void => {
      lines.push({ level, text: [message, ...args.map((a) => String(a))].join(" ") });
    };
  return {
    lines,
    logger: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") },
  };
}

async function session(
  t: TestContext,
  serverOptions: FakeServerOptions = {},
  clientOptions: QMPClientOptions = {},
): Promise<{ client: QMPClient; peer: FakePeer }> {
  const server = await FakeQMPServer.listen(serverOptions);
  t.after(() => server.close());
  const client = new QMPClient(clientOptions);
  t.after(() => client.destroy());
  await client.connect(server.address);
  return { client, peer: await server.peer() };
}

const SECRET_HANDLERS: FakeServerOptions["handlers"] = {
  set_password: () => ({ return: {} }),
  "object-add": () => ({ return: {} }),
  "blockdev-add": () => ({ return: {} }),
  "query-secret": () => ({ return: { password: "server-said-hunter4", size: 3 } }),
};

// ----------------------------------------------------------- toString/inspect

void test("toString() and util.inspect() show the class, the name and the runstate", async (t) => {
  const server = await FakeQMPServer.listen();
  t.after(() => server.close());
  const client = new QMPClient({ name: "vm1" });
  t.after(() => client.destroy());
  assert.equal(client.name, "vm1");
  assert.equal(String(client), "<QMPClient name='vm1' runstate=IDLE>");
  assert.equal(inspect(client), "<QMPClient name='vm1' runstate=IDLE>");
  await client.connect(server.address);
  assert.equal(client.toString(), "<QMPClient name='vm1' runstate=RUNNING>");
  assert.equal(inspect(client), "<QMPClient name='vm1' runstate=RUNNING>");
  assert.equal(inspect({ client }), "{ client: <QMPClient name='vm1' runstate=RUNNING> }");
  await client.disconnect();
  assert.equal(inspect(client), "<QMPClient name='vm1' runstate=IDLE>");

  class Monitor extends QMPClient {}
  assert.equal(String(new Monitor()), "<Monitor runstate=IDLE>");
  assert.equal(inspect(new QMPClient()), "<QMPClient runstate=IDLE>");
});

// -------------------------------------------------------------------- logging

void test("an injected logger gets debug lines tagged with the client's name", async (t) => {
  const { logger, lines } = recordingLogger();
  const { client } = await session(t, {}, { name: "vm7", logger, trace: false });
  await client.execute("query-status");
  await client.disconnect();
  const debug = lines.filter((l) => l.level === "debug");
  assert.ok(debug.length >= 3, `only ${debug.length} debug lines`);
  for (const line of lines) assert.ok(line.text.includes("vm7"), `untagged line: ${line.text}`);
  // Runstate transitions are among them.
  assert.ok(
    debug.some((l) => l.text.includes(Runstate.CONNECTING) && l.text.includes(Runstate.RUNNING)),
  );
  // No traces unless asked for.
  assert.ok(!lines.some((l) => /--> |<-- /.test(l.text)), "traced with trace: false");
});

void test("a session failure and a dropped reply reach the logger above debug level", async (t) => {
  const { logger, lines } = recordingLogger();
  const { client, peer } = await session(t, {}, { name: "vm8", logger });
  peer.send({ return: {}, id: 424242 });
  await client.execute("query-status");
  assert.ok(
    lines.some((l) => l.level === "warn" && l.text.includes("424242")),
    "no warning for a reply with an unknown id",
  );
  peer.write("{ not json }\r\n");
  await client.runstateChanged();
  assert.ok(lines.some((l) => l.level === "error" && l.text.includes("vm8")));
  await assert.rejects(client.disconnect());
});

void test("trace: true logs every message in and out, secrets redacted", async (t) => {
  const { logger, lines } = recordingLogger();
  const { client } = await session(
    t,
    { handlers: SECRET_HANDLERS },
    { name: "vm2", logger, trace: true },
  );
  await client.execute("query-status");
  await client.execute("set_password", { protocol: "vnc", password: "hunter2", connected: "keep" });
  await client.execute("object-add", { "qom-type": "secret", id: "sec0", data: "topsecret3" });
  await client.execute("blockdev-add", {
    driver: "nbd",
    "node-name": "n0",
    server: { type: "inet", host: "h", port: "1" },
    password: "nbdpass5",
  });
  assert.deepEqual(await client.execute("query-secret"), {
    password: "server-said-hunter4",
    size: 3,
  });
  await client.disconnect();
  const traces = lines.filter((l) => l.level === "debug").map((l) => l.text);
  const out = traces.filter((l) => l.includes("--> "));
  const inbound = traces.filter((l) => l.includes("<-- "));
  for (const line of [...out, ...inbound]) assert.ok(line.includes("vm2"), line);
  assert.ok(out.some((l) => l.includes('"execute":"qmp_capabilities"')));
  assert.ok(out.some((l) => l.includes('"execute":"query-status"')));
  assert.ok(
    inbound.some((l) => l.includes('"QMP"')),
    "greeting not traced",
  );
  assert.ok(
    inbound.some((l) => l.includes('"status":"running"')),
    "reply not traced",
  );

  const all = traces.join("\n");
  for (const secret of ["hunter2", "topsecret3", "nbdpass5", "server-said-hunter4"]) {
    assert.ok(!all.includes(secret), `secret ${secret} in the trace`);
  }
  const setPassword = out.find((l) => l.includes("set_password"));
  assert.ok(setPassword !== undefined, "set_password not traced");
  assert.match(setPassword, /"password":"<redacted>"/);
  assert.ok(setPassword.includes('"protocol":"vnc"'), setPassword);
  const objectAdd = out.find((l) => l.includes("object-add"));
  assert.ok(objectAdd !== undefined, "object-add not traced");
  assert.ok(objectAdd.includes('"data":"<redacted>"'), objectAdd);
  assert.ok(objectAdd.includes('"id":"sec0"'), objectAdd);
  const blockdev = out.find((l) => l.includes("blockdev-add"));
  assert.ok(blockdev !== undefined, "blockdev-add not traced");
  assert.ok(blockdev.includes('"password":"<redacted>"'), blockdev);
  assert.ok(blockdev.includes('"node-name":"n0"'), blockdev);
  assert.ok(
    inbound.some((l) => l.includes('"password":"<redacted>"')),
    "inbound secret kept",
  );
});

void test("trace: false logs no message contents", async (t) => {
  const { logger, lines } = recordingLogger();
  const { client } = await session(t, { handlers: SECRET_HANDLERS }, { logger, trace: false });
  await client.execute("set_password", { protocol: "vnc", password: "hunter2" });
  await client.disconnect();
  assert.ok(lines.length > 0);
  assert.ok(!lines.some((l) => l.text.includes("set_password") || l.text.includes("hunter2")));
});

// -------------------------------------------------------- diagnostics_channel

void test("diagnostics_channel: send, receive and runstate carry the client and its name", async (t) => {
  const sent: unknown[] = [];
  const received: unknown[] = [];
  const states: unknown[] = [];
  const client = new QMPClient({ name: "dc1" });
  t.after(() => client.destroy());
  const mine =
    (into: unknown[]) =>
    (payload: unknown): void => {
      if ((payload as { client?: unknown }).client === client) into.push(payload);
    };
  const onSend = mine(sent);
  const onReceive = mine(received);
  const onRunstate = mine(states);
  subscribe("qmp:message:send", onSend);
  subscribe("qmp:message:receive", onReceive);
  subscribe("qmp:runstate", onRunstate);
  t.after(() => {
    unsubscribe("qmp:message:send", onSend);
    unsubscribe("qmp:message:receive", onReceive);
    unsubscribe("qmp:runstate", onRunstate);
  });
  const server = await FakeQMPServer.listen();
  t.after(() => server.close());
  await client.connect(server.address);
  const peer = await server.peer();
  peer.sendEvent("STOP");
  await client.execute("query-status");
  await client.disconnect();

  type Msg = { client: unknown; name: unknown; message: Record<string, unknown> };
  for (const p of [...sent, ...received] as Msg[]) assert.equal(p.name, "dc1");
  assert.deepEqual(
    (sent as Msg[]).map((p) => p.message["execute"]),
    ["qmp_capabilities", "query-status"],
  );
  const inbound = (received as Msg[]).map((p) => p.message);
  assert.ok("QMP" in inbound[0]!, "the greeting comes first");
  assert.ok(inbound.some((m) => m["event"] === "STOP"));
  assert.ok(
    inbound.some((m) => (m["return"] as { status?: string } | undefined)?.status === "running"),
  );
  assert.deepEqual(
    (states as { name: unknown; state: unknown; previous: unknown }[]).map((p) => [
      p.name,
      p.previous,
      p.state,
    ]),
    [
      ["dc1", Runstate.IDLE, Runstate.CONNECTING],
      ["dc1", Runstate.CONNECTING, Runstate.RUNNING],
      ["dc1", Runstate.RUNNING, Runstate.DISCONNECTING],
      ["dc1", Runstate.DISCONNECTING, Runstate.IDLE],
    ],
  );
});

// ------------------------------------------------------------------ NODE_DEBUG

interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a small ESM script with `node`, with NODE_DEBUG set or not. */
async function runChild(t: TestContext, nodeDebug: string | undefined): Promise<ChildResult> {
  const dir = mkdtempSync(join(tmpdir(), "qmp-obs-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const index = new URL("../../src/index.js", import.meta.url).href;
  const testing = new URL("../../src/testing/index.js", import.meta.url).href;
  const script = join(dir, "child.mjs");
  writeFileSync(
    script,
    `import { QMPClient } from ${JSON.stringify(index)};
import { FakeQMPServer } from ${JSON.stringify(testing)};
const server = await FakeQMPServer.listen({ handlers: { set_password: () => ({ return: {} }) } });
const client = new QMPClient({ name: "child-vm" });
await client.connect(server.address);
await client.execute("query-status");
await client.execute("set_password", { protocol: "vnc", password: "hunter2" });
await client.disconnect();
await server.close();
console.log("done");
`,
  );
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env["NODE_TEST_CONTEXT"];
  delete env["NODE_DEBUG"];
  if (nodeDebug !== undefined) env["NODE_DEBUG"] = nodeDebug;
  const child = spawn(process.execPath, [script], { env, stdio: ["ignore", "pipe", "pipe"] });
  t.after(() => child.kill());
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (c) => resolve(c));
  });
  return { code, stdout, stderr };
}

void test(
  "NODE_DEBUG=qmp prints traces to stderr, secrets redacted",
  { timeout: 30_000 },
  async (t) => {
    const { code, stdout, stderr } = await runChild(t, "qmp");
    assert.equal(code, 0, stderr);
    assert.equal(stdout.trim(), "done");
    assert.match(stderr, /^QMP \d+: /m);
    assert.match(stderr, /\[child-vm\] --> \{"execute":"qmp_capabilities"/);
    assert.match(stderr, /\[child-vm\] <-- \{"QMP":/);
    assert.match(stderr, /\[child-vm\] --> \{"execute":"set_password".*<redacted>/);
    assert.ok(!stderr.includes("hunter2"), "the password reached stderr");
    assert.match(stderr, /IDLE/);
  },
);

void test("without NODE_DEBUG nothing is printed", { timeout: 30_000 }, async (t) => {
  const { code, stdout, stderr } = await runChild(t, undefined);
  assert.equal(code, 0, stderr);
  assert.equal(stdout.trim(), "done");
  assert.equal(stderr, "");
});

void test("no unhandled rejection happened in this file", async () => {
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(unhandled, []);
});
