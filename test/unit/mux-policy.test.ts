// The mux's socket policies: globs, allow and deny lists, the read-only list, bad policies.

import assert from "node:assert/strict";
import { test } from "node:test";
import { CheckedPolicy } from "../../src/mux/policy.js";

void test("no policy allows everything", () => {
  const p = new CheckedPolicy();
  for (const c of ["quit", "query-status", "device_add"]) assert.ok(p.allows(c));
});

void test("allow and deny take globs, as lists or comma-separated", () => {
  const p = new CheckedPolicy({
    allow: "query-*, qom-get,stop",
    deny: ["query-qmp-*", "query-stat?"],
  });
  assert.ok(p.allows("query-block"));
  assert.ok(p.allows("qom-get"));
  assert.ok(p.allows("stop"));
  assert.ok(!p.allows("cont"));
  assert.ok(!p.allows("query-qmp-schema"));
  assert.ok(!p.allows("query-stats"));
  assert.ok(p.allows("query-status-x"), "? is one character, the glob is anchored");
  assert.ok(!new CheckedPolicy({ allow: "a.b" }).allows("axb"), "a dot is a dot");
});

void test("read-only: queries and QOM reads, never HMP, qom-set or anything else", () => {
  const p = new CheckedPolicy({ readOnly: true });
  for (const c of ["query-status", "x-query-roms", "qom-get", "qom-list", "qom-list-types"])
    assert.ok(p.allows(c), c);
  for (const c of ["human-monitor-command", "qom-set", "stop", "quit", "device_add"])
    assert.ok(!p.allows(c), c);
  const both = new CheckedPolicy({ readOnly: true, deny: "query-qmp-schema" });
  assert.ok(!both.allows("query-qmp-schema"));
  assert.ok(
    !new CheckedPolicy({ readOnly: true, allow: "stop" }).allows("stop"),
    "all rules apply",
  );
});

void test("bad policies are TypeErrors", () => {
  assert.throws(() => new CheckedPolicy({ allow: 3 as unknown as string }), TypeError);
  assert.throws(() => new CheckedPolicy({ allow: " , " }), /names no command/);
  assert.throws(() => new CheckedPolicy({ readOnly: "yes" as unknown as boolean }), TypeError);
  assert.throws(() => new CheckedPolicy(null as unknown as object), TypeError);
});
