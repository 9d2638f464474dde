// The QEMU options `qmp wrap` and the throwaway QEMU add: commas in a path are doubled.

import assert from "node:assert/strict";
import { test } from "node:test";
import { monitorArgs, qemuOptionValue } from "../../src/cli/launch.js";

void test("qemuOptionValue doubles every comma, and changes nothing else", () => {
  assert.equal(qemuOptionValue("/tmp/qmp-cli-x/qmp.sock"), "/tmp/qmp-cli-x/qmp.sock");
  assert.equal(qemuOptionValue("/tmp/a,b/c,,d,"), "/tmp/a,,b/c,,,,d,,");
  assert.equal(qemuOptionValue(""), "");
});

void test("monitorArgs: a chardev on the socket path (commas doubled) and a control monitor", () => {
  assert.deepEqual(monitorArgs("/tmp/a,b=c/qmp.sock"), [
    "-chardev",
    "socket,id=qmp-cli,path=/tmp/a,,b=c/qmp.sock",
    "-mon",
    "chardev=qmp-cli,mode=control",
  ]);
});
