// Assertions shared by the tests of startServer(): what a taken address looks like.

import assert from "node:assert/strict";
import { AddressInUseError, ConnectError } from "../../src/index.js";

/** The ConnectError of a startServer() that found `address` taken; returns its cause. */
export function addressInUse(err: unknown, address: string): AddressInUseError {
  assert.ok(err instanceof ConnectError, String(err));
  assert.match(err.message, /^Failed to establish connection: .*Cannot listen on /);
  assert.ok(err.cause instanceof AddressInUseError, String(err.cause));
  assert.equal(err.cause.code, "QMP_ERR_ADDRESS_IN_USE");
  assert.equal(err.cause.address, address);
  return err.cause;
}
