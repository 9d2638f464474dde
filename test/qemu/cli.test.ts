// Real QEMU: `qmp exec` and `qmp events` as child processes — stdout, stderr, exit status.

import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { asObject, startQemu, startQemuWithControl, tempDir, testClient } from "../helpers/qemu.js";
import { qmp, runQmp, withoutSocket } from "../helpers/cli.js";

const T = { timeout: 30_000 };
const USAGE_LINE = "command format: <command-name> [arg-name1=arg1] ... [arg-nameN=argN]";

/** The JSON lines of `stdout`, parsed. */
function jsonLines(stdout: string): Record<string, unknown>[] {
  assert.ok(stdout.endsWith("\n"), `stdout does not end with a newline: ${JSON.stringify(stdout)}`);
  return stdout
    .slice(0, -1)
    .split("\n")
    .map((line) => asObject(JSON.parse(line), line));
}

/** query-status of a running QEMU, without the fields only some versions have (7.2's singlestep). */
const RUNNING = { status: "running", running: true };
function runningStatus(value: unknown): { status: unknown; running: unknown } {
  const o = asObject(value, "query-status");
  return { status: o["status"], running: o["running"] };
}

/** `stdout` is exactly one line of compact JSON: the return value of query-status. */
function assertStatusLine(stdout: string): void {
  assert.match(stdout, /^\{[^\n ]*\}\n$/);
  assert.deepEqual(runningStatus(JSON.parse(stdout)), RUNNING);
}

void test("exec prints the return value as one line of JSON, exit 0", T, async (t) => {
  const qemu = await startQemu(t);
  const r = await qmp(t, ["exec", qemu.socketPath, "query-status"]);
  assert.deepEqual(
    { code: r.code, signal: r.signal, stderr: r.stderr },
    {
      code: 0,
      signal: null,
      stderr: "",
    },
  );
  assertStatusLine(r.stdout);
});

void test("exec passes key=value arguments: strings, quoted strings, JSON", T, async (t) => {
  const qemu = await startQemu(t);
  const type = await qmp(t, ["exec", qemu.socketPath, "qom-get", "path=/machine", "property=type"]);
  assert.equal(type.stdout, '"none-machine"\n');
  assert.equal(type.code, 0);

  // One argv word with a space (as a shell passes `command-line="info status"`).
  const hmp = await qmp(t, [
    "exec",
    qemu.socketPath,
    "human-monitor-command",
    "command-line=info status",
  ]);
  assert.equal(hmp.stdout, '"VM status: running\\r\\n"\n');

  // A JSON array and an integer reach QEMU typed: object-add, then read it back.
  const add = await qmp(t, [
    "exec",
    qemu.socketPath,
    "object-add",
    "qom-type=memory-backend-ram",
    "id=mem0",
    "size=1048576",
    "host-nodes=[]",
    "share=false",
  ]);
  assert.equal(add.stderr, "");
  assert.equal(add.code, 0);
  const size = await qmp(t, [
    "exec",
    qemu.socketPath,
    "qom-get",
    "path=/objects/mem0",
    "property=size",
  ]);
  assert.equal(size.stdout, "1048576\n");
});

void test("exec --pretty indents the JSON; a raw JSON message is sent as is", T, async (t) => {
  const { qemu, control } = await startQemuWithControl(t);
  const client = testClient(t);
  await client.connect(control);
  const version = await client.execute("query-version");

  const pretty = await qmp(t, ["exec", "--pretty", qemu.socketPath, "query-version"]);
  assert.equal(pretty.code, 0);
  assert.equal(pretty.stdout, `${JSON.stringify(version, null, 2)}\n`);
  assert.ok(pretty.stdout.split("\n").length > 3);

  const raw = await qmp(t, [
    "exec",
    "-v",
    qemu.socketPath,
    '{"execute": "qom-get", "arguments": {"path": "/machine", "property": "type"}, "id": "mine"}',
  ]);
  assert.equal(raw.code, 0);
  assert.equal(raw.stdout, '"none-machine"\n');
  // --verbose echoes exactly what was given.
  assert.deepEqual(JSON.parse(raw.stderr), {
    execute: "qom-get",
    arguments: { path: "/machine", property: "type" },
    id: "mine",
  });
});

void test("exec: an error reply exits 1 with class and desc on stderr", T, async (t) => {
  const qemu = await startQemu(t);
  const r = await qmp(t, ["exec", qemu.socketPath, "no-such-command"]);
  assert.deepEqual(r, {
    code: 1,
    signal: null,
    stdout: "",
    stderr: "CommandNotFound: The command no-such-command has not been found\n",
  });

  // A one-line transaction reaches QEMU as { type, data } actions.
  const abort = await qmp(t, ["exec", qemu.socketPath, "transaction(", "abort", ")"]);
  assert.equal(abort.code, 1);
  assert.equal(abort.stderr, "GenericError: Transaction aborted using Abort action\n");
  const empty = await qmp(t, ["exec", "-v", qemu.socketPath, "transaction(", ")"]);
  assert.equal(empty.code, 0);
  assert.equal(empty.stdout, "{}\n");
  assert.equal(empty.stderr, '{"execute":"transaction","arguments":{"actions":[]}}\n');
});

void test("exec: usage and syntax errors exit 2 before connecting", T, async (t) => {
  const qemu = await startQemu(t);
  const client = testClient(t);
  await client.connect(qemu.socketPath);
  const sock = qemu.socketPath;

  const noWord = await qmp(t, ["exec", sock, "qom-get", "path=/machine", "property"]);
  assert.equal(noWord.code, 2);
  assert.equal(noWord.stdout, "");
  assert.equal(
    noWord.stderr,
    `qmp exec: Expected a key=value pair, got 'property'\n${USAGE_LINE}\n`,
  );

  const twice = await qmp(t, ["exec", sock, "cmd", "a=1", "a=2"]);
  assert.equal(twice.code, 2);
  assert.equal(twice.stderr, `qmp exec: Cannot set "a" multiple times\n${USAGE_LINE}\n`);

  const leaf = await qmp(t, ["exec", sock, "cmd", "a=1", "a.b=2"]);
  assert.equal(leaf.code, 2);
  assert.match(leaf.stderr, /^qmp exec: Cannot use "a" as both leaf and non-leaf key\n/);

  const open = await qmp(t, ["exec", sock, "transaction(", "abort"]);
  assert.equal(open.code, 2);
  assert.match(open.stderr, /transaction is not closed/);

  const noCommand = await qmp(t, ["exec", sock]);
  assert.equal(noCommand.code, 2);
  assert.match(noCommand.stderr, /^qmp exec: no COMMAND given/);
  assert.match(noCommand.stderr, /Try 'qmp exec --help'/);

  const badOption = await qmp(t, ["exec", "--bogus", sock, "query-status"]);
  assert.equal(badOption.code, 2);
  assert.match(badOption.stderr, /--bogus/);

  const badTimeout = await qmp(t, ["exec", "--timeout", "soon", sock, "query-status"]);
  assert.equal(badTimeout.code, 2);
  assert.match(badTimeout.stderr, /--timeout needs a positive number of seconds, got 'soon'/);

  const badJson = await qmp(t, ["exec", sock, '{"execute": "stop"']);
  assert.equal(badJson.code, 2);
  assert.match(badJson.stderr, /Invalid JSON message/);

  // None of these reached QEMU: it is still running.
  assert.deepEqual(runningStatus(await client.execute("query-status")), RUNNING);
});

void test("exec: connection errors exit 2", T, async (t) => {
  const dir = tempDir(t);
  const missing = join(dir, "nobody.sock");
  const r = await qmp(t, ["exec", missing, "query-status"]);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, new RegExp(`^qmp exec: cannot connect to ${missing}: .*ENOENT`));

  const badPort = await qmp(t, ["exec", "localhost:99999", "query-status"]);
  assert.equal(badPort.code, 2);
  assert.match(badPort.stderr, /port '99999' is not a number from 0 to 65535/);
});

void test("exec --timeout against a stopped QEMU exits 2 with a clear message", T, async (t) => {
  const qemu = await startQemu(t);
  qemu.process.kill("SIGSTOP");
  t.after(() => {
    qemu.process.kill("SIGCONT");
  });
  const started = performance.now();
  const r = await qmp(t, ["exec", "--timeout", "0.5", qemu.socketPath, "query-status"]);
  const elapsed = performance.now() - started;
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.equal(
    r.stderr,
    `qmp exec: cannot connect to ${qemu.socketPath}: no QMP session within 0.5 s\n`,
  );
  assert.ok(elapsed >= 500, `gave up after ${elapsed} ms`);
});

void test("exec and events take the address from QMP_SOCKET", T, async (t) => {
  const { qemu, control } = await startQemuWithControl(t);
  const env = withoutSocket({ QMP_SOCKET: qemu.socketPath });
  const r = await qmp(t, ["exec", "query-status"], { env });
  assert.equal(r.code, 0);
  assertStatusLine(r.stdout);

  // An explicit address still wins (this one does not exist).
  const other = await qmp(t, ["exec", `${qemu.dir}/other.sock`, "query-status"], { env });
  assert.equal(other.code, 2);
  assert.match(other.stderr, /cannot connect to .*other\.sock/);

  // Without it, a lone word that is no address is a command with no address.
  const unset = await qmp(t, ["exec", "query-status"]);
  assert.equal(unset.code, 2);
  assert.match(
    unset.stderr,
    /^qmp exec: no ADDRESS given and QMP_SOCKET is not set \(got only 'query-status'\)\n/,
  );
  const noAddress = await qmp(t, ["events"]);
  assert.equal(noAddress.code, 2);
  assert.match(noAddress.stderr, /no ADDRESS given and QMP_SOCKET is not set/);

  const events = runQmp(t, ["events", "-v", "--count", "1"], { env });
  await events.waitStderr(/listening/);
  const client = testClient(t);
  await client.connect(control);
  await client.execute("stop");
  const e = await events.done;
  assert.equal(e.code, 0);
  assert.equal(jsonLines(e.stdout)[0]!["event"], "STOP");
});

void test("events --count prints K events as JSON lines, then exits 0", T, async (t) => {
  const { qemu, control } = await startQemuWithControl(t);
  const events = runQmp(t, ["events", qemu.socketPath, "--verbose", "--count", "2"]);
  await events.waitStderr(/^qmp events: connected to QEMU \d+\.\d+\.\d+ at .*, listening\n/);
  const client = testClient(t);
  await client.connect(control);
  await client.execute("stop");
  await client.execute("cont");
  const r = await events.done;
  assert.equal(r.code, 0);
  const lines = jsonLines(r.stdout);
  assert.deepEqual(
    lines.map((e) => e["event"]),
    ["STOP", "RESUME"],
  );
  for (const e of lines) {
    const ts = asObject(e["timestamp"], "timestamp");
    assert.equal(typeof ts["seconds"], "number");
    assert.equal(typeof ts["microseconds"], "number");
  }
  // The CLI's own session ended: QEMU still serves ours.
  assert.deepEqual(runningStatus(await client.execute("query-status")), RUNNING);
});

void test("events --name filters by name (repeatable)", T, async (t) => {
  const { qemu, control } = await startQemuWithControl(t);
  const client = testClient(t);
  await client.connect(control);
  const stopCont = async (): Promise<void> => {
    for (let i = 0; i < 2; i++) {
      await client.execute("stop");
      await client.execute("cont");
    }
  };

  const resumes = runQmp(t, ["events", qemu.socketPath, "-v", "--name", "RESUME", "-c", "2"]);
  await resumes.waitStderr(/listening/);
  await stopCont();
  const r = await resumes.done;
  assert.equal(r.code, 0);
  assert.deepEqual(
    jsonLines(r.stdout).map((e) => e["event"]),
    ["RESUME", "RESUME"],
  );

  const both = runQmp(t, [
    "events",
    qemu.socketPath,
    "-v",
    "-n",
    "STOP",
    "-n",
    "RESUME",
    "-c",
    "3",
  ]);
  await both.waitStderr(/listening/);
  await stopCont();
  const b = await both.done;
  assert.equal(b.code, 0);
  assert.deepEqual(
    jsonLines(b.stdout).map((e) => e["event"]),
    ["STOP", "RESUME", "STOP"],
  );
});

void test("events --timeout with no event exits 1 and prints nothing", T, async (t) => {
  const { qemu, control } = await startQemuWithControl(t);
  const started = performance.now();
  const r = await qmp(t, ["events", qemu.socketPath, "--timeout", "0.3"]);
  assert.ok(performance.now() - started >= 300);
  assert.deepEqual(r, { code: 1, signal: null, stdout: "", stderr: "" });

  // A filtered-out event does not count as one.
  const events = runQmp(t, ["events", qemu.socketPath, "-v", "-n", "RESUME", "-t", "1"]);
  await events.waitStderr(/listening/);
  const client = testClient(t);
  await client.connect(control);
  await client.execute("stop");
  const filtered = await events.done;
  assert.equal(filtered.code, 1);
  assert.equal(filtered.stdout, "");
});

void test("events stops when QEMU quits, and on SIGINT", T, async (t) => {
  const { qemu, control } = await startQemuWithControl(t);
  const quiet = runQmp(t, ["events", qemu.socketPath, "-v"]);
  await quiet.waitStderr(/listening/);
  quiet.child.kill("SIGINT");
  const q = await quiet.done;
  assert.equal(q.code, 1);
  assert.equal(q.signal, null);
  assert.equal(q.stdout, "");

  const events = runQmp(t, ["events", qemu.socketPath, "-v"]);
  await events.waitStderr(/listening/);
  const client = testClient(t);
  await client.connect(control);
  await client.execute("quit");
  const r = await events.done;
  assert.equal(r.code, 0);
  assert.deepEqual(
    jsonLines(r.stdout).map((e) => e["event"]),
    ["SHUTDOWN"],
  );
  await qemu.exited;
});

void test("events: connection and usage errors exit 2", T, async (t) => {
  const dir = tempDir(t);
  const r = await qmp(t, ["events", join(dir, "none.sock"), "--count", "1"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^qmp events: cannot connect to .*none\.sock: .*ENOENT/);

  const badCount = await qmp(t, ["events", join(dir, "none.sock"), "--count", "0"]);
  assert.equal(badCount.code, 2);
  assert.match(badCount.stderr, /--count needs a positive integer, got '0'/);

  const extra = await qmp(t, ["events", "a.sock", "b.sock"]);
  assert.equal(extra.code, 2);
  assert.match(extra.stderr, /unexpected argument 'b\.sock'/);

  const qemu = await startQemu(t);
  qemu.process.kill("SIGSTOP");
  t.after(() => {
    qemu.process.kill("SIGCONT");
  });
  const stopped = await qmp(t, ["events", qemu.socketPath, "--timeout", "0.3"]);
  assert.equal(stopped.code, 2);
  assert.equal(
    stopped.stderr,
    `qmp events: cannot connect to ${qemu.socketPath}: no QMP session within 0.3 s\n`,
  );
});
