// Real QEMU: `qmp shell` and `qmp wrap` reading lines from a pipe (no terminal) — output, log, exit status.

import assert from "node:assert/strict";
import { chmodSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { qmp, runQmp, withoutSocket } from "../helpers/cli.js";
import { QEMU_BASE_ARGS, qemuBinary, qemuDataArgs, startQemu, tempDir } from "../helpers/qemu.js";

const T = { timeout: 30_000 };
const USAGE_LINE = "command format: <command-name> [arg-name1=arg1] ... [arg-nameN=argN]";

/** The QEMU command line for `qmp wrap`: our binary, its data dir if unpacked, then `extra`. */
function qemuCommand(extra: string[] = QEMU_BASE_ARGS): string[] {
  return [qemuBinary(), ...qemuDataArgs(), ...extra];
}

/** An environment whose TMPDIR is a fresh dir of the test's: `qmp wrap` puts its socket there. */
function privateTmp(t: TestContext): NodeJS.ProcessEnv {
  return withoutSocket({ TMPDIR: tempDir(t), HOME: tempDir(t) });
}

void test(
  "shell on a pipe: replies, QEMU errors, syntax errors, raw JSON, a transaction",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const input = [
      "query-status",
      "foo bar",
      "query-nothing",
      '{"execute": "query-name", "id": "mine"}',
      "transaction(",
      "abort",
      ")",
      "",
    ].join("\n");
    const r = await qmp(t, ["shell", qemu.socketPath], { stdin: input });
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    const lines = r.stdout.split("\n");
    // 7.2 adds "singlestep" to query-status: compare the fields every QEMU has.
    const status = JSON.parse(lines[0]!) as { return: { status: string; running: boolean } };
    assert.deepEqual([status.return.status, status.return.running], ["running", true]);
    assert.match(lines[0]!, /^\{"return": \{"status": "running", /);
    assert.deepEqual(lines.slice(1), [
      "Error: Expected a key=value pair, got 'bar'",
      USAGE_LINE,
      "CommandNotFound: The command query-nothing has not been found",
      '{"return": {}, "id": "mine"}',
      "GenericError: Transaction aborted using Abort action",
      "Disconnected",
      "",
    ]);
  },
);

void test("shell -v -p: the message sent, then the reply, indented", T, async (t) => {
  const qemu = await startQemu(t);
  const r = await qmp(t, ["shell", "-v", "-p", qemu.socketPath], { stdin: "query-name\n" });
  assert.deepEqual(r, {
    code: 0,
    signal: null,
    stdout: '{\n    "execute": "query-name"\n}\n{\n    "return": {}\n}\nDisconnected\n',
    stderr: "",
  });
});

void test(
  "shell -l: each exchange and event as a JSON line, secrets redacted, mode 0600",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const log = join(tempDir(t), "log.jsonl");
    writeFileSync(log, '{"earlier": true}\n', { mode: 0o600 });
    const input = "object-add qom-type=secret id=s0 data=hunter2\nstop\nquery-nothing\n";
    const r = await qmp(t, ["shell", "-l", log, qemu.socketPath], { stdin: input });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes("hunter2") || r.stdout.includes("data=hunter2") === false);
    const text = readFileSync(log, "utf8");
    assert.ok(!text.includes("hunter2"), text);
    assert.equal(statSync(log).mode & 0o777, 0o600);
    const entries = text
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(entries[0], { earlier: true }, "appended, not overwritten");
    const rest = entries.slice(1);
    for (const e of rest) assert.match(String(e["timestamp"]), /^\d{4}-\d\d-\d\dT/);
    const strip = ({ timestamp: _, ...e }: Record<string, unknown>): unknown => e;
    const commands = rest.filter((e) => "command" in e).map(strip);
    assert.deepEqual(commands, [
      {
        command: {
          execute: "object-add",
          arguments: { "qom-type": "secret", id: "s0", data: "<redacted>" },
        },
        reply: { return: {} },
      },
      { command: { execute: "stop" }, reply: { return: {} } },
      {
        command: { execute: "query-nothing" },
        reply: {
          error: { class: "CommandNotFound", desc: "The command query-nothing has not been found" },
        },
      },
    ]);
    const events = rest
      .filter((e) => "event" in e)
      .map((e) => (e["event"] as { event: string }).event);
    assert.deepEqual(events, ["STOP"]);
  },
);

void test("shell -N: no negotiation; the user sends qmp_capabilities", T, async (t) => {
  const qemu = await startQemu(t);
  const input = "query-name\nqmp_capabilities\nquery-name\n";
  const r = await qmp(t, ["shell", "-N", qemu.socketPath], { stdin: input });
  assert.equal(r.stderr, "");
  assert.equal(r.code, 0);
  const lines = r.stdout.split("\n");
  assert.deepEqual(lines, [
    "CommandNotFound: Expecting capabilities negotiation with 'qmp_capabilities'",
    '{"return": {}}',
    '{"return": {}}',
    "Disconnected",
    "",
  ]);
});

void test(
  "shell -H: HMP lines through human-monitor-command; a bad cpu index is refused",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const input = "info status\ncpu 7\ncpu x\nnot-a-command\n";
    const r = await qmp(t, ["shell", "-H", qemu.socketPath], { stdin: input });
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], "VM status: running");
    assert.match(lines[1]!, /^cpu: bad CPU index 7 \(GenericError: .+\)$/);
    assert.equal(lines[2], "cpu: give a CPU index, e.g. cpu 0");
    assert.equal(lines[3], "unknown command: 'not-a-command'");
    assert.deepEqual(lines.slice(4), ["Disconnected", ""]);
  },
);

void test(
  "wrap -H: cpu N picks the CPU of the next commands (q35, 2 CPUs, stopped)",
  T,
  async (t) => {
    const env = privateTmp(t);
    // An unpacked QEMU finds SeaBIOS (a package of its own) only where Debian put it.
    const seabios = qemuDataArgs().length > 0 ? ["-L", "/usr/share/seabios"] : [];
    const command = qemuCommand([
      ...seabios,
      "-machine",
      "q35",
      "-accel",
      "tcg",
      "-nodefaults",
      "-display",
      "none",
      "-S",
      "-smp",
      "2",
    ]);
    const r = await qmp(t, ["wrap", "-H", "--", ...command], {
      stdin: "info cpus\ncpu 1\ninfo cpus\ncpu 2\ninfo cpus\n",
      env,
    });
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    const current = [...r.stdout.matchAll(/^\* CPU #(\d+)/gm)].map((m) => m[1]);
    assert.deepEqual(current, ["0", "1", "1"]);
    assert.match(r.stdout, /^cpu: bad CPU index 2 /m);
    assert.deepEqual(readdirSync(env["TMPDIR"]!), [], "the private socket dir is removed");
  },
);

void test("shell: quit — the reply, then Disconnected, exit 0, QEMU gone", T, async (t) => {
  const qemu = await startQemu(t);
  const r = await qmp(t, ["shell", qemu.socketPath], { stdin: "quit\nquery-status\n" });
  assert.deepEqual([r.code, r.signal, r.stderr], [0, null, ""]);
  // The SHUTDOWN event may make it out before QEMU closes the socket, or not.
  const shutdown = '\\{"timestamp": \\{.*\\}, "event": "SHUTDOWN", .*\\}\n';
  assert.match(r.stdout, new RegExp(`^(?:${shutdown})?\\{"return": \\{\\}\\}\nDisconnected\n$`));
  assert.deepEqual(await qemu.exited, { code: 0, signal: null });
});

void test(
  "shell: QEMU killed while the shell waits for input: Disconnected, exit 0",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const run = runQmp(t, ["shell", qemu.socketPath], { stdin: { pipe: true } });
    run.child.stdin!.write("query-name\n");
    const stdout = await new Promise<string>((resolve) => {
      let text = "";
      run.child.stdout!.on("data", (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes("\n")) resolve(text);
      });
    });
    assert.equal(stdout, '{"return": {}}\n');
    await qemu.kill();
    const r = await run.done;
    assert.equal(r.code, 0);
    assert.equal(r.stderr, "");
    assert.ok(r.stdout.endsWith("Disconnected\n"), r.stdout);
  },
);

void test("shell without an address: a throwaway QEMU, stopped on leaving", T, async (t) => {
  const env = privateTmp(t);
  // A wrapper that tells its pid (QEMU's, after exec) and adds -L for an unpacked QEMU.
  const dir = tempDir(t);
  const wrapper = join(dir, "qemu");
  const pidFile = join(dir, "pid");
  const data = qemuDataArgs()
    .map((a) => `'${a}'`)
    .join(" ");
  writeFileSync(
    wrapper,
    `#!/bin/sh\necho $$ > '${pidFile}'\nexec '${qemuBinary()}' ${data} "$@"\n`,
  );
  chmodSync(wrapper, 0o755);
  const r = await qmp(t, ["shell", "--qemu", wrapper], { stdin: "query-name\n", env });
  assert.equal(r.stderr, "");
  assert.equal(r.code, 0);
  assert.equal(
    r.stdout,
    `Starting a throwaway QEMU: ${wrapper} -machine none -nodefaults -display none\n` +
      "(it is stopped when you leave)\n" +
      '{"return": {}}\nDisconnected\n',
  );
  const pid = Number(readFileSync(pidFile, "utf8"));
  assert.throws(() => process.kill(pid, 0), { code: "ESRCH" });
  assert.deepEqual(readdirSync(env["TMPDIR"]!), []);
});

void test("wrap: QEMU that fails to start — its exit status and stderr, exit 2", T, async (t) => {
  const env = privateTmp(t);
  const command = qemuCommand(["-machine", "no-such-machine", "-display", "none"]);
  const r = await qmp(t, ["wrap", "--", ...command], { stdin: "query-name\n", env });
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.match(
    r.stderr,
    new RegExp(
      `^qmp: ${command[0]!} exited with code 1 before it connected:\n` +
        ".*(?:no-such-machine|unsupported machine type)",
    ),
  );
  assert.deepEqual(readdirSync(env["TMPDIR"]!), []);
});

void test(
  "wrap without --: the first word that is not an option starts QEMU's command line",
  T,
  async (t) => {
    const env = privateTmp(t);
    const r = await qmp(t, ["wrap", "-p", ...qemuCommand()], { stdin: "query-name\n", env });
    assert.equal(r.stderr, "");
    assert.deepEqual([r.code, r.stdout], [0, '{\n    "return": {}\n}\nDisconnected\n']);
  },
);

void test(
  "wrap: what QEMU prints once connected is shown (a trace event per command)",
  T,
  async (t) => {
    const env = privateTmp(t);
    const command = qemuCommand([...QEMU_BASE_ARGS, "-trace", "monitor_qmp_cmd_in_band"]);
    const r = await qmp(t, ["wrap", "--", ...command], { stdin: "query-name\n", env });
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    // qmp_capabilities, completion's queries and query-name each show one; their order
    // against the reply on stdout is QEMU's business.
    assert.match(r.stdout, /monitor_qmp_cmd_in_band/);
    assert.match(r.stdout, /^\{"return": \{\}\}$/m);
    assert.ok(r.stdout.endsWith("Disconnected\n"), r.stdout);
  },
);
