// Unit tests of the small helpers: secret redaction (SPEC §6), trace text, deadlines.

import assert from "node:assert/strict";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { getEventListeners } from "node:events";
import { describe, test } from "node:test";

import { REDACTED as PUBLIC_REDACTED, redact as publicRedact } from "../../src/index.js";
import { REDACTED, deadline, raceSignal, redact, traceText } from "../../src/util.js";

/** `redact(message)`, checking that `message` itself was left alone. */
function redacted(message: unknown): unknown {
  const before = structuredClone(message);
  const out = redact(message);
  assert.deepEqual(message, before, "the original message must not be mutated");
  return out;
}

void describe("redact", () => {
  void test("is exported from the package root", () => {
    assert.equal(publicRedact, redact);
    assert.equal(PUBLIC_REDACTED, REDACTED);
    assert.equal(REDACTED, "<redacted>");
  });

  void test("arguments named like a secret", () => {
    const msg = {
      execute: "blockdev-add",
      arguments: {
        driver: "rbd",
        "node-name": "disk0",
        password: "hunter2",
        passphrase: "p",
        secret: "s",
        "key-secret": "sec0",
        key: "k",
        token: "t",
        "auth-token": "t2",
        "x-api-key": "k2",
        Password: "P",
        keyboard: "us",
        "encrypt.format": "luks",
        size: 1024,
      },
      id: 7,
    };
    assert.deepEqual(redacted(msg), {
      execute: "blockdev-add",
      arguments: {
        driver: "rbd",
        "node-name": "disk0",
        password: REDACTED,
        passphrase: REDACTED,
        secret: REDACTED,
        "key-secret": REDACTED,
        key: REDACTED,
        token: REDACTED,
        "auth-token": REDACTED,
        "x-api-key": REDACTED,
        Password: REDACTED,
        keyboard: "us",
        "encrypt.format": "luks",
        size: 1024,
      },
      id: 7,
    });
  });

  void test("secrets nested in objects and arrays, with exec-oob too", () => {
    const msg = {
      "exec-oob": "transaction",
      arguments: {
        actions: [
          { type: "x", data: { node: "a", password: "p1" } },
          { type: "y", data: { deep: [{ secret: "s1", keep: 1 }, "password"] } },
        ],
      },
    };
    assert.deepEqual(redacted(msg), {
      "exec-oob": "transaction",
      arguments: {
        actions: [
          { type: "x", data: { node: "a", password: REDACTED } },
          { type: "y", data: { deep: [{ secret: REDACTED, keep: 1 }, "password"] } },
        ],
      },
    });
  });

  void test("a secret whose value is an object is replaced whole", () => {
    const msg = { execute: "x", arguments: { secret: { a: "b" }, key: [1, 2] } };
    assert.deepEqual(redacted(msg), {
      execute: "x",
      arguments: { secret: REDACTED, key: REDACTED },
    });
  });

  void test("the data of an object-add for a secret object", () => {
    const msg = {
      execute: "object-add",
      arguments: { "qom-type": "secret", id: "sec0", data: "aHVudGVyMg==", format: "base64" },
    };
    assert.deepEqual(redacted(msg), {
      execute: "object-add",
      arguments: { "qom-type": "secret", id: "sec0", data: REDACTED, format: "base64" },
    });
    const keyring = {
      execute: "object-add",
      arguments: { "qom-type": "secret_keyring", id: "sec1", serial: 42, data: "x" },
    };
    assert.deepEqual(redacted(keyring), {
      execute: "object-add",
      arguments: { "qom-type": "secret_keyring", id: "sec1", serial: 42, data: REDACTED },
    });
  });

  void test("the data of a secret object in the pre-6.0 'props' form", () => {
    const msg = {
      execute: "object-add",
      arguments: { "qom-type": "secret", id: "sec0", props: { data: "hunter2", format: "raw" } },
    };
    assert.deepEqual(redacted(msg), {
      execute: "object-add",
      arguments: { "qom-type": "secret", id: "sec0", props: { data: REDACTED, format: "raw" } },
    });
  });

  void test("the data of other objects is kept", () => {
    const msg = {
      execute: "object-add",
      arguments: { "qom-type": "memory-backend-ram", id: "m0", size: 1, data: "visible" },
    };
    assert.deepEqual(redacted(msg), msg);
    const notObjectAdd = { execute: "guest-file-write", arguments: { handle: 1, data: "visible" } };
    assert.deepEqual(redacted(notObjectAdd), notObjectAdd);
  });

  void test("set_password and expire_password: everything but the protocol", () => {
    const msg = {
      execute: "set_password",
      arguments: { protocol: "vnc", password: "hunter2", connected: "keep", display: "d0" },
      id: 1,
    };
    assert.deepEqual(redacted(msg), {
      execute: "set_password",
      arguments: { protocol: "vnc", password: REDACTED, connected: REDACTED, display: REDACTED },
      id: 1,
    });
    const expire = { execute: "expire_password", arguments: { protocol: "spice", time: "now" } };
    assert.deepEqual(redacted(expire), {
      execute: "expire_password",
      arguments: { protocol: "spice", time: REDACTED },
    });
  });

  void test("replies and events are redacted too", () => {
    const reply = { return: { user: "u", password: "p", list: [{ token: "t" }] }, id: 1 };
    assert.deepEqual(redacted(reply), {
      return: { user: "u", password: REDACTED, list: [{ token: REDACTED }] },
      id: 1,
    });
    const event = { event: "X", data: { secret: "s" }, timestamp: { seconds: 1, microseconds: 2 } };
    assert.deepEqual(redacted(event), {
      event: "X",
      data: { secret: REDACTED },
      timestamp: { seconds: 1, microseconds: 2 },
    });
  });

  void test("a message without secrets comes back equal", () => {
    const msg = { execute: "query-status", id: 1 };
    assert.deepEqual(redacted(msg), msg);
    const args = { execute: "device_del", arguments: { id: "net0" } };
    assert.deepEqual(redacted(args), args);
  });

  void test("the result is a copy: changing it leaves the message alone", () => {
    const msg = { execute: "x", arguments: { password: "p", nested: { a: 1 } } };
    const out = redacted(msg) as { arguments: { nested: { a: number } } };
    assert.notEqual(out, msg);
    out.arguments.nested.a = 2;
    assert.equal(msg.arguments.nested.a, 1);
    assert.equal(msg.arguments.password, "p");
  });

  void test("values that are not objects are returned as they are", () => {
    for (const v of [null, undefined, 1, "password", true]) assert.equal(redact(v), v);
    assert.deepEqual(redacted([{ password: "p" }, 1]), [{ password: REDACTED }, 1]);
  });
});

void describe("traceText", () => {
  void test("JSON of the redacted message", () => {
    const msg = { execute: "set_password", arguments: { protocol: "vnc", password: "hunter2" } };
    const text = traceText(msg);
    assert.equal(
      text,
      '{"execute":"set_password","arguments":{"protocol":"vnc","password":"<redacted>"}}',
    );
    assert.ok(!text.includes("hunter2"));
    assert.equal(msg.arguments.password, "hunter2");
  });

  void test("cut to the limit, naming the full length; exact limit is not cut", () => {
    const msg = { return: "x".repeat(100) };
    const full = JSON.stringify(msg);
    assert.equal(full.length, 113);
    assert.equal(traceText(msg, 113), full);
    assert.equal(traceText(msg, 112), `${full.slice(0, 112)}… (113 chars)`);
    assert.equal(traceText(msg, 10), `${full.slice(0, 10)}… (113 chars)`);
  });

  void test("the default limit is 2048 characters", () => {
    const fits = { return: "y".repeat(2048 - 13) };
    assert.equal(JSON.stringify(fits).length, 2048);
    assert.equal(traceText(fits), JSON.stringify(fits));
    const over = { return: "y".repeat(2048 - 12) };
    assert.equal(traceText(over), `${JSON.stringify(over).slice(0, 2048)}… (2049 chars)`);
  });
});

void describe("deadline", () => {
  void test("with no signal and no timeout, never aborts", () => {
    const d = deadline({}, "op");
    assert.equal(d.signal.aborted, false);
    d.dispose();
    d.dispose();
    assert.equal(d.signal.aborted, false);
  });

  void test("an already-aborted signal aborts at once with its reason", () => {
    const reason = new Error("stop");
    const d = deadline({ signal: AbortSignal.abort(reason), timeout: 1000 }, "op");
    assert.equal(d.signal.aborted, true);
    assert.equal(d.signal.reason, reason);
    d.dispose();
  });

  void test("follows a signal that aborts later, with the same reason", () => {
    const c = new AbortController();
    const d = deadline({ signal: c.signal }, "op");
    assert.equal(d.signal.aborted, false);
    const reason = { any: "value" };
    c.abort(reason);
    assert.equal(d.signal.aborted, true);
    assert.equal(d.signal.reason, reason);
    d.dispose();
  });

  void test("any of several signals; undefined ones are ignored", () => {
    const a = new AbortController();
    const b = new AbortController();
    const d = deadline({ signal: a.signal }, "op", undefined, b.signal);
    b.abort("b");
    assert.equal(d.signal.reason, "b");
    a.abort("a");
    assert.equal(d.signal.reason, "b", "the first abort wins");
    const extraOnly = deadline({}, "op", b.signal);
    assert.equal(extraOnly.signal.reason, "b");
  });

  void test("an abort removes the listeners from every source", () => {
    const a = new AbortController();
    const b = new AbortController();
    deadline({ signal: a.signal }, "op", b.signal);
    assert.equal(getEventListeners(a.signal, "abort").length, 1);
    assert.equal(getEventListeners(b.signal, "abort").length, 1);
    a.abort();
    assert.equal(getEventListeners(b.signal, "abort").length, 0);
  });

  void test("dispose() detaches: a later abort of the source is not followed", () => {
    const c = new AbortController();
    const d = deadline({ signal: c.signal }, "op");
    assert.equal(getEventListeners(c.signal, "abort").length, 1);
    d.dispose();
    assert.equal(getEventListeners(c.signal, "abort").length, 0);
    c.abort();
    assert.equal(d.signal.aborted, false);
  });

  void test("timeout aborts with a TimeoutError DOMException when the timer fires", (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const d = deadline({ timeout: 500 }, "op");
    t.mock.timers.tick(499);
    assert.equal(d.signal.aborted, false);
    t.mock.timers.tick(1);
    assert.equal(d.signal.aborted, true);
    const reason = d.signal.reason as DOMException;
    assert.ok(reason instanceof DOMException);
    assert.equal(reason.name, "TimeoutError");
    d.dispose();
  });

  void test("dispose() clears the timer", (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const d = deadline({ timeout: 100 }, "op");
    d.dispose();
    t.mock.timers.tick(1000);
    assert.equal(d.signal.aborted, false);
  });

  void test("the timer also removes the source listeners", (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const c = new AbortController();
    const d = deadline({ signal: c.signal, timeout: 5 }, "op");
    t.mock.timers.tick(5);
    assert.equal((d.signal.reason as DOMException).name, "TimeoutError");
    assert.equal(getEventListeners(c.signal, "abort").length, 0);
    c.abort("late");
    assert.equal((d.signal.reason as DOMException).name, "TimeoutError");
  });

  void test("timeout: Infinity and undefined set no timer", (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const a = deadline({ timeout: Infinity }, "op");
    const b = deadline({ timeout: undefined }, "op");
    t.mock.timers.tick(2 ** 31);
    assert.equal(a.signal.aborted, false);
    assert.equal(b.signal.aborted, false);
  });

  void test("timeout: 0 fires on the next timer tick", (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const d = deadline({ timeout: 0 }, "op");
    assert.equal(d.signal.aborted, false);
    t.mock.timers.tick(1);
    assert.equal(d.signal.aborted, true);
  });

  void test("a timeout past setTimeout's 32-bit range is not cut to 1 ms", async () => {
    // Node clamps such a delay to 1 ms (with a TimeoutOverflowWarning): a
    // "practically never" timeout would fire at once.
    const warnings: string[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w.name);
    };
    process.on("warning", onWarning);
    try {
      const d = deadline({ timeout: 2 ** 31 }, "op");
      const e = deadline({ timeout: Number.MAX_SAFE_INTEGER }, "op");
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(d.signal.aborted, false);
      assert.equal(e.signal.aborted, false);
      d.dispose();
      e.dispose();
    } finally {
      process.off("warning", onWarning);
    }
    assert.deepEqual(
      warnings.filter((n) => n === "TimeoutOverflowWarning"),
      [],
    );
  });

  void test("a bad timeout is a RangeError and leaves no listener behind", () => {
    for (const bad of [-1, Number.NaN, -Infinity]) {
      const c = new AbortController();
      assert.throws(
        () => deadline({ signal: c.signal, timeout: bad }, "op"),
        RangeError,
        String(bad),
      );
      assert.equal(getEventListeners(c.signal, "abort").length, 0, String(bad));
    }
  });
});

void describe("raceSignal", () => {
  void test("without a signal, the promise itself", async () => {
    const p = Promise.resolve(1);
    assert.equal(raceSignal(p, undefined), p);
    assert.equal(await raceSignal(p, undefined), 1);
  });

  void test("settles like the promise and removes its listener", async () => {
    const c = new AbortController();
    assert.equal(await raceSignal(Promise.resolve("v"), c.signal), "v");
    const err = new Error("e");
    await assert.rejects(raceSignal(Promise.reject(err), c.signal), (e) => e === err);
    assert.equal(getEventListeners(c.signal, "abort").length, 0);
  });

  void test("an abort rejects with the reason and calls onAbort", async () => {
    const c = new AbortController();
    let aborted = 0;
    const never = new Promise<never>(() => {});
    const p = raceSignal(never, c.signal, () => aborted++);
    const reason = new Error("why");
    c.abort(reason);
    await assert.rejects(p, (e) => e === reason);
    assert.equal(aborted, 1);
    const pre = raceSignal(never, AbortSignal.abort("pre"), () => aborted++);
    await assert.rejects(pre, (e) => e === "pre");
    assert.equal(aborted, 2);
  });
});

void describe("redact: HMP and near-miss names", () => {
  void test("an HMP command line with a password or secret is redacted", () => {
    for (const line of [
      "set_password vnc hunter2",
      "object_add secret,id=s0,data=hunter2",
      "change vnc password hunter2",
    ]) {
      const msg = { execute: "human-monitor-command", arguments: { "command-line": line } };
      const out = redact(msg) as { arguments: Record<string, unknown> };
      assert.equal(out.arguments["command-line"], REDACTED, line);
      assert.equal(msg.arguments["command-line"], line);
    }
  });

  void test("an ordinary HMP command line is kept", () => {
    const msg = { execute: "human-monitor-command", arguments: { "command-line": "info status" } };
    assert.deepEqual(redact(msg), msg);
  });

  void test("names that merely contain 'pass' are kept", () => {
    const msg = {
      execute: "blockdev-add",
      arguments: { "pass-discard-request": true, passthrough: 1 },
    };
    assert.deepEqual(redact(msg), msg);
  });
});

void test("deadline(): the timeout fires even when garbage collection runs meanwhile", async () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const outer = new AbortController();
  // Only the composed signal is kept: the timer must hold itself.
  const { signal } = deadline({ timeout: 30 }, "op", outer.signal);
  const fired = new Promise<void>((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true }),
  );
  const collect = setInterval(gc, 2);
  let guard: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      fired,
      new Promise((_, reject) => {
        guard = setTimeout(() => reject(new Error("the timeout never fired")), 5000);
      }),
    ]);
  } finally {
    clearInterval(collect);
    clearTimeout(guard);
  }
  assert.equal((signal.reason as DOMException).name, "TimeoutError");
  assert.match((signal.reason as DOMException).message, /^op timed out after 30 ms$/);
});
