// Real QEMU: `qmp shell` and `qmp wrap` reading lines from a pipe (no terminal) — output, log, exit status.

import assert from "node:assert/strict";
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { QMPClient } from "../../src/index.js";
import { launchQemu } from "../../src/cli/launch.js";
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
      "# a comment",
      "query-nothing",
      '{"execute": "query-name", "id": "mine"}',
      '{"execute": "query-name"}',
      "transaction(",
      "abort",
      ")",
      "",
    ].join("\n");
    const r = await qmp(t, ["shell", qemu.socketPath], { stdin: input });
    // Results on stdout (JSON lines, for jq); what went wrong on stderr, by line;
    // exit status 1 since lines failed.
    assert.equal(r.code, 1);
    const lines = r.stdout.split("\n");
    // 7.2 adds "singlestep" to query-status: compare the fields every QEMU has.
    const status = JSON.parse(lines[0]!) as { return: { status: string; running: boolean } };
    assert.deepEqual([status.return.status, status.return.running], ["running", true]);
    assert.match(lines[0]!, /^\{"return": \{"status": "running", /);
    // The client's own id is not shown; the user's is.
    assert.deepEqual(lines.slice(1), ['{"return": {}, "id": "mine"}', '{"return": {}}', ""]);
    assert.equal(
      r.stderr,
      [
        "line 2: Error: Expected a key=value pair, got 'bar'",
        USAGE_LINE,
        "line 4: CommandNotFound: The command query-nothing has not been found",
        "line 9: GenericError: Transaction aborted using Abort action",
        "",
      ].join("\n"),
    );
  },
);

void test("shell -v -p: the message sent, then the reply, indented", T, async (t) => {
  const qemu = await startQemu(t);
  const r = await qmp(t, ["shell", "-v", "-p", qemu.socketPath], { stdin: "query-name\n" });
  assert.deepEqual(r, {
    code: 0,
    signal: null,
    stdout: '{\n    "execute": "query-name"\n}\n{\n    "return": {}\n}\n',
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
    assert.equal(r.code, 1, "query-nothing failed");
    assert.ok(!r.stdout.includes("hunter2") && !r.stderr.includes("hunter2"));
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
  assert.deepEqual(r, {
    code: 1,
    signal: null,
    stdout: '{"return": {}}\n{"return": {}}\n',
    stderr: "line 1: CommandNotFound: Expecting capabilities negotiation with 'qmp_capabilities'\n",
  });
});

void test(
  "shell -H: HMP lines through human-monitor-command; a bad cpu index is refused",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const input = "info status\ncpu 7\ncpu x\nnot-a-command\ncpu -1\ncpu 0x0\n";
    const r = await qmp(t, ["shell", "-H", qemu.socketPath], { stdin: input });
    assert.deepEqual(r, {
      code: 1,
      signal: null,
      // HMP's own complaints are its output, as on its monitor.
      stdout: "VM status: running\nunknown command: 'not-a-command'\n",
      stderr:
        "line 2: cpu: no CPU 7 (this machine has no CPUs)\n" +
        "line 3: cpu: give a CPU index, e.g. cpu 0\n" +
        "line 5: cpu: give a CPU index, e.g. cpu 0\n" +
        "line 6: cpu: give a CPU index, e.g. cpu 0\n",
    });
  },
);

void test(
  "wrap -H: cpu N picks the CPU of the next commands (q35, 2 CPUs, stopped)",
  T,
  async (t) => {
    const env = privateTmp(t);
    // qemuCommand() has the -L of an unpacked QEMU, SeaBIOS's included.
    const command = qemuCommand([
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
    assert.equal(r.stderr, "line 4: cpu: no CPU 2 (CPUs: 0, 1)\n");
    assert.equal(r.code, 1);
    const current = [...r.stdout.matchAll(/^\* CPU #(\d+)/gm)].map((m) => m[1]);
    assert.deepEqual(current, ["0", "1", "1"]);
    assert.deepEqual(readdirSync(env["TMPDIR"]!), [], "the private socket dir is removed");
  },
);

void test(
  "shell on a pipe: quit — the reply, then the end (no Disconnected), exit 0, QEMU gone",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const r = await qmp(t, ["shell", qemu.socketPath], { stdin: "quit\nquery-status\n" });
    assert.deepEqual([r.code, r.signal, r.stderr], [0, null, ""]);
    // The SHUTDOWN event may make it out before QEMU closes the socket, or not.
    const shutdown = '\\{"timestamp": \\{.*\\}, "event": "SHUTDOWN", .*\\}\n';
    assert.match(r.stdout, new RegExp(`^(?:${shutdown})?\\{"return": \\{\\}\\}\n$`));
    assert.deepEqual(await qemu.exited, { code: 0, signal: null });
  },
);

void test(
  "shell on a pipe: QEMU killed while the shell waits for input: exit 0, no Disconnected",
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
    assert.deepEqual(r, { code: 0, signal: null, stdout, stderr: "" });
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
  assert.deepEqual(r, {
    code: 0,
    signal: null,
    stdout: '{"return": {}}\n',
    stderr:
      `Starting a throwaway QEMU: ${wrapper} -machine none -nodefaults -display none\n` +
      "(it is stopped when you leave)\n",
  });
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
      `^qmp wrap: ${command[0]!} exited with code 1 before it connected:\n` +
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
    assert.deepEqual(r, {
      code: 0,
      signal: null,
      stdout: '{\n    "return": {}\n}\n',
      stderr: "",
    });
  },
);

void test(
  "wrap: what QEMU prints once connected is shown (a trace event per command)",
  T,
  async (t) => {
    const env = privateTmp(t);
    const command = qemuCommand([...QEMU_BASE_ARGS, "-trace", "monitor_qmp_cmd_in_band"]);
    const r = await qmp(t, ["wrap", "--", ...command], { stdin: "query-name\n", env });
    assert.equal(r.code, 0);
    // QEMU's stderr goes to ours: qmp_capabilities and query-name show one each.
    assert.equal(r.stdout, '{"return": {}}\n');
    assert.equal(r.stderr.match(/monitor_qmp_cmd_in_band/g)?.length, 2, r.stderr);
    // Reading a pipe, the end of the session goes without saying.
    assert.ok(!r.stderr.includes("Disconnected"), r.stderr);
  },
);

void test(
  "launchQemu: leaving stops QEMU with SIGTERM (it exits cleanly, at once)",
  T,
  async (t) => {
    const client = new QMPClient();
    t.after(() => client.destroy());
    const qemu = await launchQemu(client, qemuCommand());
    assert.deepEqual(await client.execute("query-name"), {});
    await client.disconnect();
    await qemu.stop();
    // SIGTERM: QEMU shuts down and exits 0; only the fallback after 5 s would be a SIGKILL.
    assert.deepEqual([qemu.child.exitCode, qemu.child.signalCode], [0, null]);
  },
);

void test("wrap: a temp dir with a comma in its path (doubled for QEMU)", T, async (t) => {
  const tmp = join(tempDir(t), "a,b=c");
  mkdirSync(tmp);
  const env = withoutSocket({ TMPDIR: tmp, HOME: tempDir(t) });
  const r = await qmp(t, ["wrap", "--", ...qemuCommand()], { stdin: "query-name\n", env });
  assert.equal(r.stdout, '{"return": {}}\n', r.stderr);
  assert.equal(r.code, 0);
  assert.deepEqual(readdirSync(tmp), []);
});

void test("wrap: what QEMU prints before it connects is shown too", T, async (t) => {
  const env = privateTmp(t);
  const dir = tempDir(t);
  const wrapper = join(dir, "qemu");
  writeFileSync(wrapper, `#!/bin/sh\necho early-line >&2\nexec '${qemuBinary()}' "$@"\n`);
  chmodSync(wrapper, 0o755);
  const r = await qmp(t, ["wrap", "--", wrapper, ...qemuDataArgs(), ...QEMU_BASE_ARGS], {
    stdin: "query-name\n",
    env,
  });
  assert.deepEqual(r, {
    code: 0,
    signal: null,
    stdout: '{"return": {}}\n',
    stderr: "early-line\n",
  });
});
