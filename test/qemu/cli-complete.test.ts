// Real QEMU: tab completion from its own query-commands, query-qmp-schema and HMP help.

import assert from "node:assert/strict";
import { test } from "node:test";
import { HmpCompleter, QmpCompleter } from "../../src/cli/complete.js";
import { asArray, asObject, startQemu, testClient } from "../helpers/qemu.js";

const T = { timeout: 60_000 };

/** Whether the schema gives `command` an argument type with a member `member`. */
function hasArgument(schema: readonly unknown[], command: string, member: string): boolean {
  const byName = new Map<unknown, Record<string, unknown>>();
  for (const entry of schema) {
    const e = asObject(entry, "SchemaInfo");
    byName.set(e["name"], e);
  }
  const argType = byName.get(command)?.["arg-type"];
  const members = byName.get(argType)?.["members"];
  return Array.isArray(members) && members.some((m) => asObject(m)["name"] === member);
}

void test("completion from a real QEMU's schema and help", T, async (t) => {
  const qemu = await startQemu(t);
  const client = testClient(t);
  await client.connect(qemu.socketPath);
  const { major, minor, micro } = client.greeting!.QMP.version.qemu;

  const commands = asArray(await client.execute("query-commands"), "query-commands").map((c) => {
    const name = asObject(c, "command")["name"];
    assert.equal(typeof name, "string");
    return name as string;
  });
  const schema = asArray(await client.execute("query-qmp-schema"), "query-qmp-schema");
  const hmp = async (commandLine: string): Promise<string> => {
    const out = await client.execute("human-monitor-command", { "command-line": commandLine });
    assert.equal(typeof out, "string");
    return out as string;
  };
  const help = await hmp("help");
  const infoHelp = await hmp("help info");
  await client.disconnect();

  const started = performance.now();
  const qmp = new QmpCompleter(commands, schema);
  t.diagnostic(
    `QEMU ${major}.${minor}.${micro}: ${commands.length} commands, ${schema.length} schema ` +
      `entries, indexed in ${(performance.now() - started).toFixed(1)} ms`,
  );

  /** The candidates for `line`, checking that each starts with what it completes. */
  const complete = (line: string, transaction = false): string[] => {
    const [list, on] = qmp.complete(line, { transaction });
    for (const c of list) assert.ok(c.startsWith(on), `${JSON.stringify(c)} vs ${on}`);
    return list;
  };
  const includes = (list: readonly string[], item: string): void => {
    assert.ok(list.includes(item), `${item} not in ${JSON.stringify(list)}`);
  };

  await t.test("command names", () => {
    assert.deepEqual(qmp.complete("query-statu"), [["query-status "], "query-statu"]);
    // Since QEMU 7.1, query-stats and query-stats-schemas also start with query-sta.
    const sta = complete("query-sta");
    includes(sta, "query-status ");
    assert.ok(sta.every((c) => c.startsWith("query-stat")));
    assert.deepEqual(
      complete(""),
      [...new Set(commands)].sort().map((c) => `${c} `),
    );
    includes(complete("trans"), "transaction ");
  });

  await t.test("blockdev-add: names, values, union variants, dotted keys", () => {
    includes(complete("blockdev-add dri"), "driver=");
    includes(complete("blockdev-add driver=qco"), "qcow2 ");
    assert.deepEqual(qmp.complete("blockdev-add driver=qcow2"), [["qcow2 "], "qcow2"]);
    includes(complete("blockdev-add driver=qcow2 fi"), "file=");
    // `filename` belongs to the file driver's variant, not qcow2's.
    assert.ok(!complete("blockdev-add driver=qcow2 fi").includes("filename="));
    assert.deepEqual(qmp.complete("blockdev-add driver=qcow2 file.dri"), [
      ["file.driver="],
      "file.dri",
    ]);
    assert.deepEqual(complete("blockdev-add driver=qcow2 file.driver=fil"), ["file "]);
    assert.deepEqual(complete("blockdev-add driver=qcow2 file.driver=file file.filen"), [
      "file.filename=",
    ]);
    assert.deepEqual(complete("blockdev-add driver=qcow2 read-only="), ["false ", "true "]);
    assert.deepEqual(complete("blockdev-add driver=qcow2 discard="), ["ignore ", "unmap "]);
    assert.deepEqual(complete('blockdev-add file={"driver": "fi'), []);
  });

  await t.test("transactions: action types from the schema, then their data", () => {
    includes(complete("transaction( blockdev-snap"), "blockdev-snapshot-sync ");
    const first = complete("", true);
    includes(first, ")");
    includes(first, "abort ");
    includes(first, "blockdev-snapshot-sync ");
    assert.deepEqual(qmp.complete("blockdev-snapshot-sync dev", { transaction: true }), [
      ["device="],
      "dev",
    ]);
    includes(complete("transaction( blockdev-snapshot-sync device=vda "), "snapshot-file=");
    assert.deepEqual(complete("blockdev-snapshot-sync mode=", true), [
      "absolute-paths ",
      "existing ",
    ]);
    assert.deepEqual(complete("abort ", true), [")"]);
  });

  await t.test("device_add", () => {
    // device_add is special-cased in QEMU ('gen': false): expect what this schema says of it.
    const expected = hasArgument(schema, "device_add", "driver") ? ["driver="] : [];
    t.diagnostic(`device_add dr → ${JSON.stringify(expected)}`);
    assert.deepEqual(complete("device_add dr"), expected);
  });

  await t.test("every command's arguments complete without error", () => {
    for (const command of commands) {
      for (const key of complete(`${command} `)) complete(`${command} ${key}`);
    }
  });

  await t.test("HMP: command names and info sub-commands", () => {
    const hmpCompleter = new HmpCompleter(help, infoHelp);
    assert.deepEqual(hmpCompleter.complete("inf"), [["info "], "inf"]);
    const [status, on] = hmpCompleter.complete("info sta");
    assert.equal(on, "sta");
    includes(status, "status ");
    const names = hmpCompleter.complete("")[0];
    for (const name of ["c ", "cont ", "q ", "quit ", "help ", "? ", "drive_add ", "info "]) {
      includes(names, name);
    }
    // Every line of `help` that starts an entry gives its names (and nothing else does).
    const starts = help.split(/\r?\n/).filter((l) => /^[\w?]/.test(l));
    for (const line of starts) {
      for (const n of line.split(/\s/)[0]!.split("|")) includes(names, `${n} `);
    }
    const infoNames = infoHelp
      .split(/\r?\n/)
      .filter((l) => l.startsWith("info "))
      .map((l) => `${l.split(/\s+/)[1]!} `);
    assert.deepEqual(hmpCompleter.complete("info ")[0], [...new Set(infoNames)].sort());
  });
});
