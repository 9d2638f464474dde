// A monitor that another client holds: QEMU lets a second client connect but
// greets it only when the first leaves. `qmp` says so after 3 s, and waits on.

import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeQMPServer } from "../../src/testing/index.js";
import { runQmp } from "../helpers/cli.js";

const T = { timeout: 20_000 };

void test(
  "exec, events and shell say after 3 s without a greeting that the monitor may be held",
  T,
  async (t) => {
    // Connected, never greeted: what a second client of a QEMU monitor sees.
    await using server = await FakeQMPServer.listen({ greeting: false });
    const sock = server.address as string;
    const hint = (command: string): string =>
      `qmp ${command}: no greeting from ${sock} yet: another client may hold this monitor ` +
      "(QEMU serves one at a time); still waiting (Ctrl-C to give up)\n";

    const exec = runQmp(t, ["exec", sock, "stop"]);
    const shell = runQmp(t, ["shell", sock], { stdin: { pipe: true } });
    const events = runQmp(t, ["events", "--timeout", "3.5", sock]);
    const started = performance.now();

    // events gives up at its --timeout, after the hint.
    const e = await events.done;
    assert.ok(performance.now() - started >= 3000);
    assert.deepEqual(e, {
      code: 2,
      signal: null,
      stdout: "",
      stderr: `${hint("events")}qmp events: cannot connect to ${sock}: no QMP session within 3.5 s\n`,
    });

    // Without --timeout, exec and the shell keep waiting after the hint.
    await exec.waitStderr(/still waiting/);
    await shell.waitStderr(/still waiting/);
    assert.equal(exec.stderr(), hint("exec"));
    assert.equal(shell.stderr(), hint("shell"));
    assert.equal(exec.child.exitCode, null);
    assert.equal(shell.child.exitCode, null);
    exec.child.kill("SIGTERM");
    assert.equal((await exec.done).signal, "SIGTERM");
  },
);

void test(
  "exec with a --timeout shorter than the hint's delay says nothing of it",
  T,
  async (t) => {
    await using server = await FakeQMPServer.listen({ greeting: false });
    const sock = server.address as string;
    const r = await runQmp(t, ["exec", "-t", "0.3", sock, "stop"]).done;
    assert.deepEqual(r, {
      code: 2,
      signal: null,
      stdout: "",
      stderr: `qmp exec: cannot connect to ${sock}: no QMP session within 0.3 s\n`,
    });
  },
);
