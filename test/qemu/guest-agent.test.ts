// QGAClient against a real qemu-ga (Debian's qemu-guest-agent, run on the host).
//
// THE RULE (see test/helpers/qga.ts): qemu-ga runs on the test machine with
// an allow-list: nothing that shuts down, suspends, freezes file systems,
// changes users or passwords, sets the clock or writes outside a temp dir
// can run. Files are written only inside the test's temp dir.

import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import {
  ConnectError,
  ExecInterruptedError,
  ExecuteError,
  QGAClient,
  Runstate,
} from "../../src/index.js";
import { qmp } from "../helpers/cli.js";
import { startQga } from "../helpers/qga.js";

const T = { timeout: 30_000 };

function newAgent(t: Parameters<typeof startQga>[0], timeout = 5000): QGAClient {
  const ga = new QGAClient({ name: "qga", timeout });
  t.after(() => ga.destroy());
  return ga;
}

/**
 * Leave `bytes` in qemu-ga's parser as an earlier client would: write them,
 * half-close, and read until qemu-ga closes (it exits when reset with a
 * reply unread).
 */
async function leaveBehind(path: string, bytes: string | Buffer): Promise<void> {
  const socket = net.connect(path);
  socket.on("data", () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.end(bytes);
      resolve();
    });
  });
  await new Promise<void>((resolve) => socket.once("close", () => resolve()));
}

void test("qemu-ga: connect resyncs; ping, guest-info, osInfo, getTime", T, async (t) => {
  const qga = await startQga(t);
  const ga = newAgent(t);
  await ga.connect(qga.socketPath);
  assert.equal(ga.runstate, Runstate.RUNNING);
  await ga.ping();
  const info = await ga.info();
  assert.match(info["version"] as string, /^\d+\.\d+\.\d+/);
  assert.ok(Array.isArray(info["supported_commands"]));
  assert.equal(await ga.hasCommand("guest-ping"), true);
  assert.equal(await ga.hasCommand("guest-get-users"), false, "not in the allow-list");
  assert.equal(typeof (await ga.osInfo())["kernel-release"], "string");
  // Nanoseconds since the epoch: beyond 2^53, exact as a bigint.
  const before = BigInt(Date.now() - 60_000) * 1_000_000n;
  const time = await ga.getTime();
  assert.equal(typeof time, "bigint");
  assert.ok(time > before && time > 2n ** 53n);
  await ga.disconnect();
  assert.equal(ga.runstate, Runstate.IDLE);
  assert.ok(qga.alive());
});

void test(
  "qemu-ga: a half command or stale bytes left by an earlier client do not break the next session",
  T,
  async (t) => {
    const qga = await startQga(t);
    const leftovers: (string | Buffer)[] = [
      '{"execute":"guest-ping"',
      "}",
      '{"execute": "guest-ping", "arguments": {"a": "an unterminated string',
      Buffer.from([0x01, 0x02, 0x1b, 0x7f, 0x00]),
      '{"execute":"guest-info","id":{"nested":[1,2,',
    ];
    for (const bytes of leftovers) {
      await leaveBehind(qga.socketPath, bytes);
      const ga = newAgent(t);
      await ga.connect(qga.socketPath);
      await ga.ping();
      assert.ok(Array.isArray((await ga.info())["supported_commands"]));
      await ga.disconnect();
    }
    assert.ok(qga.alive(), qga.log());
  },
);

void test("qemu-ga: files round trip (binary, over 64 KiB) and exec", T, async (t) => {
  const qga = await startQga(t);
  const ga = newAgent(t);
  await ga.connect(qga.socketPath);
  const data = Buffer.alloc(200_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 131 + (i >> 8)) & 0xff;
  const file = join(qga.dir, "data.bin");
  await ga.writeFile(file, data);
  assert.ok((await ga.readFile(file)).equals(data));
  await ga.writeFile(file, "text\n");
  assert.equal((await ga.readFile(file)).toString(), "text\n");
  await assert.rejects(ga.readFile(join(qga.dir, "nope")), ExecuteError);

  const echo = await ga.exec("/bin/echo", ["hello", "guest"]);
  assert.deepEqual(
    { exitcode: echo.exitcode, stdout: echo.stdout.toString(), stderr: echo.stderr.length },
    { exitcode: 0, stdout: "hello guest\n", stderr: 0 },
  );
  const cat = await ga.exec("/bin/cat", [], { input: "from stdin" });
  assert.equal(cat.stdout.toString(), "from stdin");
  const failing = await ga.exec("/bin/sh", ["-c", "echo oops >&2; exit 3"]);
  assert.equal(failing.exitcode, 3);
  assert.equal(failing.stderr.toString(), "oops\n");
});

void test("qemu-ga: a blocked command is an ExecuteError; the client goes on", T, async (t) => {
  const qga = await startQga(t);
  const ga = newAgent(t);
  await ga.connect(qga.socketPath);
  const err = await ga.execute("guest-get-users").catch((e: unknown) => e);
  assert.ok(err instanceof ExecuteError);
  assert.equal(err.errorClass, "CommandNotFound");
  assert.match(err.desc, /has been disabled/);
  await ga.ping();
});

void test(
  "qemu-ga: SIGSTOP makes a call time out; after SIGCONT the next call gets its own reply",
  T,
  async (t) => {
    const qga = await startQga(t);
    const ga = newAgent(t);
    await ga.connect(qga.socketPath);
    qga.process.kill("SIGSTOP");
    const late = await ga
      .execute("guest-info", undefined, { timeout: 200 })
      .catch((e: unknown) => e);
    assert.ok(late instanceof DOMException && late.name === "TimeoutError", String(late));
    qga.process.kill("SIGCONT");
    // The late guest-info reply is dropped by its id: this call gets its own.
    assert.deepEqual(await ga.execute("guest-ping"), {});
    assert.equal(typeof (await ga.osInfo())["id"], "string");
  },
);

void test(
  "qemu-ga: disconnect with a reply in flight leaves qemu-ga running; reconnect on the same client",
  T,
  async (t) => {
    const qga = await startQga(t);
    const ga = newAgent(t);
    await ga.connect(qga.socketPath);
    const inFlight = assert.rejects(ga.info(), ExecInterruptedError);
    await ga.disconnect();
    await inFlight;
    assert.ok(qga.alive(), `qemu-ga exited: ${qga.log()}`);
    // Again and again: a client that resets the connection with a reply
    // unread makes qemu-ga exit ("error reading channel"); we wait for it
    // to close its side instead. (Without that, this loop ends qemu-ga.)
    for (let i = 0; i < 30; i++) {
      await ga.connect(qga.socketPath);
      const unanswered = assert.rejects(ga.info(), ExecInterruptedError);
      await ga.disconnect();
      await unanswered;
    }
    await ga.connect(qga.socketPath);
    await ga.ping();
    await ga.disconnect();
    assert.ok(qga.alive());
  },
);

void test("qemu-ga: connecting where nothing listens fails at once", T, async (t) => {
  const qga = await startQga(t);
  const ga = newAgent(t);
  const started = performance.now();
  const err = await ga.connect(join(qga.dir, "nobody.sock")).catch((e: unknown) => e);
  assert.ok(err instanceof ConnectError);
  assert.match(err.message, /Failed to establish connection/);
  assert.ok(performance.now() - started < 2000);
  assert.equal(ga.runstate, Runstate.IDLE);
});

void test(
  "qmp exec --ga: a command's return as JSON, exact big integers, an error's class",
  T,
  async (t) => {
    const qga = await startQga(t);
    const ping = await qmp(t, ["exec", "--ga", qga.socketPath, "guest-ping"]);
    assert.deepEqual([ping.code, ping.stdout, ping.stderr], [0, "{}\n", ""]);
    const time = await qmp(t, ["exec", "--ga", qga.socketPath, "guest-get-time"]);
    assert.equal(time.code, 0);
    assert.match(time.stdout, /^\d{19}\n$/, "nanoseconds, every digit");
    const exec = await qmp(t, [
      "exec",
      "-g",
      qga.socketPath,
      "guest-exec",
      "path=/bin/echo",
      'arg=["hi"]',
      "capture-output=true",
    ]);
    assert.equal(exec.code, 0, exec.stderr);
    assert.ok(Number.isInteger((JSON.parse(exec.stdout) as { pid: unknown }).pid));
    const blocked = await qmp(t, ["exec", "--ga", qga.socketPath, "guest-get-users"]);
    assert.equal(blocked.code, 1);
    assert.match(blocked.stderr, /^CommandNotFound: Command guest-get-users has been disabled/);
    const nobody = await qmp(t, ["exec", "--ga", join(qga.dir, "nobody.sock"), "guest-ping"]);
    assert.equal(nobody.code, 2);
    assert.match(nobody.stderr, /^qmp exec: cannot connect to /);
    assert.ok(qga.alive(), qga.log());
  },
);
