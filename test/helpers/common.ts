// Small assertions shared by the test files.

import assert from "node:assert/strict";

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
