// Real QEMU (-machine pc): `qmp qom list|get|set|tree` in the output forms of QEMU's qom-*
// scripts and as JSON; the tree lists known devices; errors and QMP_SOCKET.

import assert from "node:assert/strict";
import { type TestContext, test } from "node:test";
import { qmp, withoutSocket } from "../helpers/cli.js";
import { startQemu } from "../helpers/qemu.js";

const T = { timeout: 60_000 };

/** A QEMU with the pc machine (its firmware found as qemuDataArgs says). */
async function pc(t: TestContext): Promise<string> {
  const qemu = await startQemu(t, { args: ["-machine", "pc", "-accel", "tcg"] });
  return qemu.socketPath;
}

void test("qom list: children with /, links with @ and /, the rest by name", T, async (t) => {
  const sock = await pc(t);
  const r = await qmp(t, ["qom", "list", sock, "/machine"]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split("\n");
  for (const expected of ["type", "peripheral/", "unattached/"])
    assert.ok(lines.includes(expected), expected);
  const links = await qmp(t, ["qom", "list", sock, "/machine/i440fx"]);
  assert.match(links.stdout, /^@parent_bus\/$/m);
  const json = JSON.parse((await qmp(t, ["qom", "list", "--json", sock, "/machine"])).stdout) as {
    name: string;
    type: string;
  }[];
  assert.ok(json.some((p) => p.name === "peripheral" && p.type === "child<container>"));
});

void test(
  "qom get and set: plain values as the scripts print them, JSON with --json",
  T,
  async (t) => {
    const sock = await pc(t);
    const type = await qmp(t, ["qom", "get", sock, "/machine.type"]);
    assert.match(type.stdout, /^pc-i440fx-\d+\.\d+-machine\n$/);
    const set = await qmp(t, ["qom", "set", sock, "/machine.dump-guest-core", "false"]);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout, "{}\n");
    assert.equal(
      (await qmp(t, ["qom", "get", sock, "/machine.dump-guest-core"])).stdout,
      "False\n",
    );
    assert.equal(
      (await qmp(t, ["qom", "get", "-j", sock, "/machine.dump-guest-core"])).stdout,
      "false\n",
    );
    const missing = await qmp(t, ["qom", "get", sock, "/machine.no-such-property"]);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /^qmp qom: GenericError: Property '.*no-such-property' not found\n$/,
    );
  },
);

void test(
  "qom tree: every object with its type; known devices of pc; --values; --json",
  T,
  async (t) => {
    const sock = await pc(t);
    const tree = await qmp(t, ["qom", "tree", sock]);
    assert.equal(tree.code, 0, tree.stderr);
    const lines = tree.stdout.trimEnd().split("\n");
    assert.equal(lines[0], "/ (container)");
    assert.match(tree.stdout, /^\/machine \(pc-i440fx-\d+\.\d+-machine\)$/m);
    assert.match(tree.stdout, /^\/machine\/i440fx \(i440FX-pcihost\)$/m);
    for (const type of ["isa-i8259", "piix3-ide", "mc146818rtc"]) {
      assert.match(tree.stdout, new RegExp(`^/machine/\\S+ \\(${type}\\)$`, "m"), type);
    }
    assert.ok(lines.length > 100, `${lines.length} objects`);
    const values = await qmp(t, ["qom", "tree", "--values", sock, "/machine/i440fx"]);
    assert.match(values.stdout, /^\/machine\/i440fx\n {2}type: i440FX-pcihost \(string\)$/m);
    assert.match(values.stdout, /^ {2}realized: True \(bool\)$/m);
    const json = JSON.parse(
      (await qmp(t, ["qom", "tree", "--json", sock, "/machine/i440fx"])).stdout,
    ) as {
      path: string;
      children: unknown[];
    };
    assert.equal(json.path, "/machine/i440fx");
    // With QMP_SOCKET set, a lone word is the PATH.
    const env = withoutSocket({ QMP_SOCKET: sock });
    const sub = await qmp(t, ["qom", "tree", "/machine/i440fx"], { env });
    assert.match(sub.stdout, /^\/machine\/i440fx \(i440FX-pcihost\)$/m);
  },
);
