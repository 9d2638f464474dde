// Unit tests of the runstate values and their transition table (SPEC §1).

import assert from "node:assert/strict";
import { test } from "node:test";

import { Runstate as PublicRunstate } from "../../src/index.js";
import {
  RUNSTATE_TRANSITIONS,
  Runstate,
  RunstateCell,
  isTransitionAllowed,
  stateErrorMessage,
} from "../../src/runstate.js";

const ALL = ["IDLE", "CONNECTING", "RUNNING", "DISCONNECTING"] as const;

void test("the four runstates are their own names, as strings", () => {
  assert.deepEqual(
    { ...Runstate },
    {
      IDLE: "IDLE",
      CONNECTING: "CONNECTING",
      RUNNING: "RUNNING",
      DISCONNECTING: "DISCONNECTING",
    },
  );
  assert.deepEqual(Object.values(Runstate), [...ALL]);
  for (const value of Object.values(Runstate)) assert.equal(typeof value, "string");
});

void test("the package root exports the same Runstate object", () => {
  assert.equal(PublicRunstate, Runstate);
});

void test("the transition table", () => {
  assert.deepEqual(
    { ...RUNSTATE_TRANSITIONS },
    {
      IDLE: ["CONNECTING"],
      CONNECTING: ["RUNNING", "DISCONNECTING"],
      RUNNING: ["DISCONNECTING"],
      DISCONNECTING: ["IDLE"],
    },
  );
  assert.deepEqual(Object.keys(RUNSTATE_TRANSITIONS).sort(), [...ALL].sort());
});

void test("isTransitionAllowed for every pair of states", () => {
  const allowed = new Set([
    "IDLE>CONNECTING",
    "CONNECTING>RUNNING",
    "CONNECTING>DISCONNECTING",
    "RUNNING>DISCONNECTING",
    "DISCONNECTING>IDLE",
  ]);
  let checked = 0;
  for (const from of ALL) {
    for (const to of ALL) {
      assert.equal(isTransitionAllowed(from, to), allowed.has(`${from}>${to}`), `${from} → ${to}`);
      checked++;
    }
  }
  assert.equal(checked, 16);
});

void test("no state moves to itself, and IDLE is reached only through DISCONNECTING", () => {
  for (const s of ALL) assert.equal(isTransitionAllowed(s, s), false, s);
  for (const from of ALL) {
    assert.equal(isTransitionAllowed(from, Runstate.IDLE), from === Runstate.DISCONNECTING, from);
  }
});

void test("every state can get back to IDLE", () => {
  for (const start of ALL) {
    const seen = new Set<Runstate>([start]);
    const queue: Runstate[] = [start];
    while (queue.length > 0) {
      const s = queue.shift()!;
      for (const next of RUNSTATE_TRANSITIONS[s]) {
        if (!seen.has(next)) {
          seen.add(next);
          queue.push(next);
        }
      }
    }
    assert.ok(seen.has(Runstate.IDLE), `${start} cannot reach IDLE`);
    assert.equal(seen.size, 4, `${start} reaches ${[...seen].join(", ")}`);
  }
});

void test("RunstateCell enforces the table where the state is set", async () => {
  const seen: string[] = [];
  const cell = new RunstateCell((state, previous) => seen.push(`${previous}->${state}`));
  assert.equal(cell.state, Runstate.IDLE);
  const next = cell.next;
  cell.set(Runstate.CONNECTING);
  assert.equal(await next, Runstate.CONNECTING);
  cell.set(Runstate.CONNECTING); // staying put is no transition
  for (const to of ALL) {
    if (to === Runstate.CONNECTING || isTransitionAllowed(Runstate.CONNECTING, to)) continue;
    assert.throws(() => cell.set(to), /illegal runstate transition CONNECTING -> IDLE/);
  }
  cell.set(Runstate.DISCONNECTING);
  // The race of issue 8: a cancelled attempt must never reach RUNNING.
  assert.throws(() => cell.set(Runstate.RUNNING), /illegal runstate transition/);
  assert.equal(cell.state, Runstate.DISCONNECTING);
  cell.set(Runstate.IDLE);
  assert.deepEqual(seen, ["IDLE->CONNECTING", "CONNECTING->DISCONNECTING", "DISCONNECTING->IDLE"]);
});

void test("stateErrorMessage names the class for every state", () => {
  assert.deepEqual(
    ALL.map((s) => stateErrorMessage("VM", s)),
    [
      "VM is disconnected and idle.",
      "VM is currently connecting.",
      "VM is already connected and running.",
      "VM is disconnecting. Call disconnect() to return to IDLE state.",
    ],
  );
});
