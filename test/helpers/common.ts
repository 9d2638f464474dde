// Small assertions shared by the test files.

import assert from "node:assert/strict";
import type { TestContext } from "node:test";
import { QMPClient, type QMPClientOptions, type Runstate } from "../../src/index.js";

/** The reason `promise` rejects with; fails the test if it fulfils. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail("expected a rejection");
}

/** Collect this process's unhandled rejections (a test file checks the list is empty at its end). */
export function watchUnhandledRejections(): unknown[] {
  const seen: unknown[] = [];
  process.on("unhandledRejection", (reason) => seen.push(reason));
  return seen;
}

/**
 * How many cases a property-based test runs: `runs`, or `QMP_FUZZ_RUNS`
 * when set (a long fuzzing run: `QMP_FUZZ_RUNS=20000 npm test`).
 */
export function fuzzRuns(runs: number): number {
  const wanted = Number(process.env["QMP_FUZZ_RUNS"]);
  return Number.isInteger(wanted) && wanted > 0 ? wanted : runs;
}

/** A client destroyed when the test ends, pass or fail. */
export function newClient(t: TestContext, options: QMPClientOptions = {}): QMPClient {
  const client = new QMPClient(options);
  t.after(() => client.destroy());
  return client;
}

/** Every runstate transition of `client` from now on, as `[state, previous]`. */
export function recordRunstates(client: QMPClient): [Runstate, Runstate][] {
  const seen: [Runstate, Runstate][] = [];
  client.on("runstate", (state, previous) => seen.push([state, previous]));
  return seen;
}
