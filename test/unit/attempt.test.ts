// Unit tests of a connect attempt: its light signal, its deadline and the error it fails with.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Attempt, CONNECTION_FAILED, SESSION_FAILED } from "../../src/attempt.js";
import { ConnectCancelledError, ConnectError } from "../../src/errors.js";
import { raceSignal } from "../../src/util.js";

void test("an attempt with no signal and no timeout makes no AbortController until asked", () => {
  const attempt = new Attempt({}, "connect()");
  assert.equal(attempt.aborted, false);
  let heard = 0;
  const listener = (): void => void heard++;
  attempt.addEventListener("abort", listener);
  attempt.addEventListener("abort", () => void heard++);
  attempt.removeEventListener("abort", listener);
  const reason = new ConnectCancelledError("cancelled");
  attempt.cancel(reason);
  attempt.cancel(new ConnectCancelledError("again"));
  assert.equal(heard, 1, "each listener left is called once, a removed one never");
  assert.equal(attempt.reason, reason);
  assert.throws(
    () => attempt.throwIfAborted(),
    (err) => err === reason,
  );
  // A real signal made after the abort is aborted with the same reason.
  assert.equal(attempt.signal.aborted, true);
  assert.equal(attempt.signal.reason, reason);
  attempt.dispose();
});

void test("the real signal follows an abort that comes after it was made", () => {
  const attempt = new Attempt({}, "connect()");
  const signal = attempt.signal;
  assert.equal(signal, attempt.signal, "made once");
  attempt.cancel(new ConnectCancelledError("x"));
  assert.equal(signal.aborted, true);
});

void test("the caller's signal aborts it with its reason; dispose() removes the listener", () => {
  const controller = new AbortController();
  const attempt = new Attempt({ signal: controller.signal }, "connect()");
  const reason = new Error("user");
  controller.abort(reason);
  assert.equal(attempt.aborted, true);
  assert.equal(attempt.reason, reason);

  const later = new AbortController();
  const disposed = new Attempt({ signal: later.signal }, "connect()");
  disposed.dispose();
  later.abort(new Error("too late"));
  assert.equal(disposed.aborted, false, "a disposed attempt no longer hears the caller's signal");
});

void test("an already aborted signal aborts it at once", () => {
  const reason = new Error("before");
  const attempt = new Attempt({ signal: AbortSignal.abort(reason) }, "connect()");
  assert.equal(attempt.aborted, true);
  assert.equal(attempt.reason, reason);
});

void test("its timeout aborts it with a TimeoutError naming the call; raceSignal rejects with it", async () => {
  const attempt = new Attempt({ timeout: 5 }, "connect()");
  const err = await raceSignal(new Promise(() => {}), attempt).catch((e: unknown) => e);
  assert.ok(err instanceof DOMException);
  assert.equal(err.name, "TimeoutError");
  assert.equal(err.message, "connect() timed out after 5 ms");
});

void test("dispose() clears the timer", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const fires = new Attempt({ timeout: 5 }, "connect()");
  const attempt = new Attempt({ timeout: 5 }, "connect()");
  attempt.dispose();
  t.mock.timers.tick(10);
  assert.equal(fires.aborted, true);
  assert.equal(attempt.aborted, false);
});

void test("errorFor: a cancellation or a failure is a ConnectError of the phase; the caller's reason is thrown as it is", () => {
  const attempt = new Attempt({}, "connect()");
  const cause = new Error("ECONNREFUSED");
  const failed = attempt.errorFor(cause, undefined);
  assert.ok(failed instanceof ConnectError);
  assert.ok(failed.message.startsWith(CONNECTION_FAILED));
  assert.equal(failed.cause, cause);

  attempt.phase = SESSION_FAILED;
  const cancelled = new ConnectCancelledError("disconnect()");
  const onCancel = attempt.errorFor(cause, { reason: cancelled });
  assert.ok(onCancel instanceof ConnectError);
  assert.ok(onCancel.message.startsWith(SESSION_FAILED));
  assert.equal(onCancel.cause, cancelled);

  const user = new Error("user abort");
  assert.equal(attempt.errorFor(cause, { reason: user }), user);

  // A TLS failure found once the session started is the connection's.
  const tls = new Error("ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED");
  attempt.transportFailure = (err) => (err === cause ? tls : undefined);
  const tlsFailed = attempt.errorFor(cause, undefined);
  assert.ok(tlsFailed instanceof ConnectError);
  assert.ok(tlsFailed.message.startsWith(CONNECTION_FAILED));
  assert.equal(tlsFailed.cause, tls);
});
