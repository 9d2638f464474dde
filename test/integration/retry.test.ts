// connect() with `retry` (SPEC §1): back-off while the socket is missing or refuses, stopped by
// abort, timeout, attempts, or the exit of the watched process.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { test, type TestContext } from "node:test";
import {
  ConnectError,
  GreetingError,
  type Logger,
  ProcessExitedError,
  Runstate,
} from "../../src/index.js";
import { FakeQMPServer, type FakeServerOptions } from "../../src/testing/index.js";
import {
  newClient,
  recordRunstates,
  rejection,
  watchUnhandledRejections,
} from "../helpers/common.js";
import { sleep } from "../../src/retry.js";
import { tempDir } from "../helpers/qemu.js";

// Every unhandled rejection in this file is a failure (checked by the last test).
const unhandled = watchUnhandledRejections();

/** Every test here ends in well under a second; a wait that is not cut short fails it. */
const T = { timeout: 20_000 };

const RETRY_LINE = /Connect attempt (\d+) failed \((.*)\); retrying in (\d+) ms$/;

/** A logger that keeps the retry lines and calls `onRetry` with each (attempt number, wait). */
function retryLogger(onRetry?: (attempt: number, wait: number) => void): Logger & {
  retries: { attempt: number; error: string; wait: number }[];
} {
  const retries: { attempt: number; error: string; wait: number }[] = [];
  const ignore = (): void => {};
  return {
    retries,
    debug: (m) => {
      const match = RETRY_LINE.exec(m);
      if (match === null) return;
      const entry = { attempt: Number(match[1]), error: match[2]!, wait: Number(match[3]) };
      retries.push(entry);
      onRetry?.(entry.attempt, entry.wait);
    },
    info: ignore,
    warn: ignore,
    error: ignore,
  };
}

/** A fake server started later (from a log callback); closed after the test. */
function laterServer(
  t: TestContext,
  address: string | { host: string; port: number },
  options: FakeServerOptions = {},
): { start: () => void; started: () => Promise<FakeQMPServer> } {
  let server: Promise<FakeQMPServer> | undefined;
  t.after(async () => {
    await (await server?.catch(() => undefined))?.close();
  });
  return {
    start: () => {
      server ??= FakeQMPServer.listen(options, address);
    },
    started: () => {
      assert.ok(server !== undefined, "the server was never started");
      return server;
    },
  };
}

/** How many timers this process has pending. */
function timerCount(): number {
  return process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
}

/** Spawn `node -e script` with stderr piped; killed (if still running) after the test. */
function spawnNode(t: TestContext, script: string): ChildProcess {
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "ignore", "pipe"] });
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  });
  return child;
}

/** A TCP port on 127.0.0.1 that nobody listens on (for now). */
async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

// ------------------------------------------------------------------ success

void test(
  "a UNIX socket that appears later: retried while ENOENT, runstate stays CONNECTING",
  T,
  async (t) => {
    const path = join(tempDir(t), "late.sock");
    const server = laterServer(t, path);
    const logger = retryLogger((attempt) => {
      if (attempt === 3) server.start();
    });
    const client = newClient(t, { logger });
    const seen = recordRunstates(client);

    await client.connect(path, { retry: true });
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.ok(logger.retries.length >= 3, `only ${logger.retries.length} retries`);
    for (const r of logger.retries) assert.match(r.error, /ENOENT/);
    assert.deepEqual(
      logger.retries.map((r) => r.attempt),
      logger.retries.map((_, i) => i + 1),
    );
    // No flapping through IDLE between attempts.
    assert.deepEqual(seen, [
      [Runstate.CONNECTING, Runstate.IDLE],
      [Runstate.RUNNING, Runstate.CONNECTING],
    ]);
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
    assert.equal(
      (await (await server.started()).peer()).received[0]?.["execute"],
      "qmp_capabilities",
    );
  },
);

void test(
  "a TCP port that refuses: retried while ECONNREFUSED until a server listens",
  T,
  async (t) => {
    const address = { host: "127.0.0.1", port: await freePort() };
    const server = laterServer(t, address);
    const logger = retryLogger((attempt) => {
      if (attempt === 2) server.start();
    });
    const client = newClient(t, { logger });

    await client.connect(address, { retry: { delay: 5 } });
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.ok(logger.retries.length >= 2);
    for (const r of logger.retries) assert.match(r.error, /ECONNREFUSED/);
    assert.ok("qemu" in (await client.execute<object>("query-version")));
  },
);

// ------------------------------------------------------------------ back-off and attempts

void test(
  "the waits double from delay up to maxDelay, a little shorter with jitter",
  T,
  async (t) => {
    const path = join(tempDir(t), "never.sock");
    const logger = retryLogger();
    const client = newClient(t, { logger });
    const seen = recordRunstates(client);

    const err = await rejection(
      client.connect(path, { retry: { delay: 8, maxDelay: 40, attempts: 6 } }),
    );
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.errorMessage, "Failed to establish connection");
    assert.equal((err.cause as { code?: string }).code, "ENOENT");
    // Six attempts: five waits.
    const bases = [8, 16, 32, 40, 40];
    assert.equal(logger.retries.length, bases.length);
    logger.retries.forEach((r, i) => {
      const base = bases[i]!;
      assert.ok(
        r.wait <= base && r.wait >= Math.floor(base * 0.9),
        `wait ${i + 1} is ${r.wait} ms, expected ${base} ms less up to 10 %`,
      );
    });
    assert.deepEqual(seen, [
      [Runstate.CONNECTING, Runstate.IDLE],
      [Runstate.DISCONNECTING, Runstate.CONNECTING],
      [Runstate.IDLE, Runstate.DISCONNECTING],
    ]);
  },
);

void test("attempts: 1 is a single attempt; the error is the usual ConnectError", T, async (t) => {
  const path = join(tempDir(t), "never.sock");
  const logger = retryLogger();
  const client = newClient(t, { logger });
  const err = await rejection(client.connect(path, { retry: { attempts: 1 } }));
  assert.ok(err instanceof ConnectError);
  assert.equal((err.cause as { code?: string }).code, "ENOENT");
  assert.equal(logger.retries.length, 0);
  assert.equal(client.runstate, Runstate.IDLE);
});

void test(
  "onRetry is told each attempt that will be tried again, with its wait; a throwing one is ignored",
  T,
  async (t) => {
    const path = join(tempDir(t), "never.sock");
    const client = newClient(t);
    const told: { attempt: number; delay: number; code: unknown }[] = [];
    const onRetry = ({
      attempt,
      delay,
      error,
    }: {
      attempt: number;
      delay: number;
      error: unknown;
    }) => {
      told.push({ attempt, delay, code: (error as { code?: unknown }).code });
      throw new Error("a listener's bug");
    };
    const err = await rejection(
      client.connect(path, { retry: { delay: 20, maxDelay: 20, attempts: 3, onRetry } }),
    );
    assert.ok(err instanceof ConnectError);
    assert.deepEqual(
      told.map((r) => [r.attempt, r.code]),
      [
        [1, "ENOENT"],
        [2, "ENOENT"],
      ],
    );
    // The wait as taken: 20 ms less up to 10 % jitter.
    for (const r of told) assert.ok(r.delay >= 18 && r.delay <= 20, String(r.delay));
    assert.equal(client.runstate, Runstate.IDLE);
  },
);

// ------------------------------------------------------------------ abort, timeout, disconnect

void test(
  "an abort during the back-off rejects at once with the reason; no timer is left",
  T,
  async (t) => {
    const path = join(tempDir(t), "never.sock");
    const controller = new AbortController();
    const reason = new Error("changed my mind");
    let abortedAt = 0;
    const logger = retryLogger(() =>
      // The wait starts right after the log line: abort in the middle of it.
      setImmediate(() => {
        abortedAt = performance.now();
        controller.abort(reason);
      }),
    );
    const client = newClient(t, { logger });
    const timers = timerCount();

    const err = await rejection(
      client.connect(path, { retry: { delay: 60_000 }, signal: controller.signal }),
    );
    assert.equal(err, reason);
    assert.ok(performance.now() - abortedAt < 1000, "the wait was not cut short");
    assert.equal(logger.retries.length, 1);
    assert.equal(client.runstate, Runstate.IDLE);
    assert.equal(timerCount(), timers, "a timer was left behind");
  },
);

void test(
  "a timeout during the back-off rejects with TimeoutError; no timer is left",
  T,
  async (t) => {
    const path = join(tempDir(t), "never.sock");
    const logger = retryLogger();
    const client = newClient(t, { logger });
    const timers = timerCount();
    const started = performance.now();

    const err = await rejection(client.connect(path, { retry: { delay: 60_000 }, timeout: 100 }));
    assert.ok(err instanceof DOMException && err.name === "TimeoutError", String(err));
    assert.ok(performance.now() - started < 5000, "the wait was not cut short");
    assert.equal(logger.retries.length, 1);
    assert.equal(client.runstate, Runstate.IDLE);
    assert.equal(timerCount(), timers, "a timer was left behind");
  },
);

void test("disconnect() during the back-off ends the connect with a ConnectError", T, async (t) => {
  const path = join(tempDir(t), "never.sock");
  const disconnects: Promise<void>[] = [];
  // In the middle of the wait.
  const logger = retryLogger(() => setImmediate(() => disconnects.push(client.disconnect())));
  const client = newClient(t, { logger });

  const err = await rejection(client.connect(path, { retry: { delay: 60_000 } }));
  assert.ok(err instanceof ConnectError, String(err));
  await Promise.all(disconnects);
  assert.equal(disconnects.length, 1);
  assert.equal(client.runstate, Runstate.IDLE);
});

// ------------------------------------------------------------------ the watched process

void test(
  "a watched child that exits: ProcessExitedError with its exit code and stderr, at once",
  T,
  async (t) => {
    const path = join(tempDir(t), "never.sock");
    const child = spawnNode(t, "process.stderr.write('boom\\n'); process.exit(3)");
    const logger = retryLogger();
    const client = newClient(t, { logger });
    const started = performance.now();

    // With a one-minute wait, only the exit itself can end this.
    const err = await rejection(client.connect(path, { retry: { delay: 60_000, process: child } }));
    assert.ok(performance.now() - started < 10_000, "the exit was not noticed at once");
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.errorMessage, "Failed to establish connection");
    const exited = err.cause;
    assert.ok(exited instanceof ProcessExitedError, String(exited));
    assert.equal(exited.code, "QMP_ERR_PROCESS_EXITED");
    assert.equal(exited.exitCode, 3);
    assert.equal(exited.signal, null);
    assert.equal(exited.pid, child.pid);
    assert.equal(exited.stderr, "boom");
    assert.match(exited.message, /exited with code 3/);
    assert.match(err.message, /boom/);
    // Its cause is the last connect error.
    assert.equal((exited.cause as { code?: string }).code, "ENOENT");
    assert.equal(client.runstate, Runstate.IDLE);
  },
);

void test("a watched child killed by a signal: exitCode null, signal SIGKILL", T, async (t) => {
  const path = join(tempDir(t), "never.sock");
  const child = spawnNode(t, "process.stderr.write('up\\n'); setInterval(() => {}, 1000)");
  const logger = retryLogger((attempt) => {
    if (attempt === 2) child.kill("SIGKILL");
  });
  const client = newClient(t, { logger });

  const err = await rejection(
    client.connect(path, { retry: { delay: 5, maxDelay: 60_000, process: child } }),
  );
  assert.ok(err instanceof ConnectError, String(err));
  const exited = err.cause;
  assert.ok(exited instanceof ProcessExitedError, String(exited));
  assert.equal(exited.exitCode, null);
  assert.equal(exited.signal, "SIGKILL");
  assert.match(exited.message, /killed by SIGKILL/);
  assert.ok(logger.retries.length >= 2);
});

void test(
  "a child that exited before connect(): no attempt; stderr already read elsewhere is not there",
  T,
  async (t) => {
    const path = join(tempDir(t), "never.sock");
    const child = spawnNode(t, "process.stderr.write('early\\n'); process.exit(5)");
    let elsewhere = "";
    child.stderr!.setEncoding("utf8").on("data", (s: string) => (elsewhere += s));
    await new Promise((resolve) => child.once("close", resolve));
    assert.equal(elsewhere, "early\n");
    const logger = retryLogger();
    const client = newClient(t, { logger });

    const err = await rejection(client.connect(path, { retry: { process: child } }));
    assert.ok(err instanceof ConnectError, String(err));
    const exited = err.cause;
    assert.ok(exited instanceof ProcessExitedError, String(exited));
    assert.equal(exited.exitCode, 5);
    assert.equal(exited.stderr, undefined);
    assert.equal(exited.cause, undefined);
    assert.equal(logger.retries.length, 0);
  },
);

void test(
  "a child whose stderr is unread until connect(): its lines are collected",
  T,
  async (t) => {
    const path = join(tempDir(t), "never.sock");
    // Thirty lines; the error keeps the last twenty.
    const child = spawnNode(
      t,
      "for (let i = 1; i <= 30; i++) process.stderr.write('line ' + i + '\\n'); process.exit(1)",
    );
    const client = newClient(t);
    const err = await rejection(client.connect(path, { retry: { delay: 60_000, process: child } }));
    const exited = (err as ConnectError).cause;
    assert.ok(exited instanceof ProcessExitedError, String(exited));
    const lines = exited.stderr?.split("\n");
    assert.equal(lines?.length, 20);
    assert.equal(lines[0], "line 11");
    assert.equal(lines.at(-1), "line 30");
  },
);

void test(
  "a watched pid that does not exist: ProcessExitedError before any attempt",
  T,
  async (t) => {
    const path = join(tempDir(t), "never.sock");
    const gone = spawnNode(t, "process.exit(0)");
    await new Promise((resolve) => gone.once("exit", resolve));
    const pid = gone.pid!;
    const logger = retryLogger();
    const client = newClient(t, { logger });

    const err = await rejection(client.connect(path, { retry: { process: pid } }));
    assert.ok(err instanceof ConnectError, String(err));
    const exited = err.cause;
    assert.ok(exited instanceof ProcessExitedError, String(exited));
    assert.equal(exited.pid, pid);
    assert.equal(exited.exitCode, null);
    assert.equal(exited.signal, null);
    assert.equal(exited.stderr, undefined);
    assert.match(
      exited.message,
      new RegExp(`^The process ${pid} exited before a connection was made$`),
    );
    assert.equal(logger.retries.length, 0);
  },
);

void test("a watched pid that lives on does not stop the retries", T, async (t) => {
  const path = join(tempDir(t), "never.sock");
  const logger = retryLogger();
  const client = newClient(t, { logger });
  const err = await rejection(
    client.connect(path, { retry: { process: process.pid, delay: 1, attempts: 3 } }),
  );
  assert.ok(err instanceof ConnectError, String(err));
  assert.equal((err.cause as { code?: string }).code, "ENOENT");
  assert.equal(logger.retries.length, 2);
});

void test(
  "a watched pid that goes away between attempts is noticed before the next one",
  T,
  async (t) => {
    const path = join(tempDir(t), "never.sock");
    const child = spawnNode(t, "setInterval(() => {}, 1000)");
    const logger = retryLogger((attempt) => {
      if (attempt === 2) child.kill("SIGKILL");
    });
    const client = newClient(t, { logger });
    const exitSeen = new Promise((resolve) => child.once("exit", resolve));
    // Keep attempting until the pid is gone; the kill lands after attempt 2.
    const err = await rejection(
      client.connect(path, { retry: { process: child.pid!, delay: 5, maxDelay: 20 } }),
    );
    await exitSeen;
    const exited = (err as ConnectError).cause;
    assert.ok(exited instanceof ProcessExitedError, String(exited));
    assert.equal(exited.pid, child.pid);
    assert.ok(logger.retries.length >= 2);
  },
);

// ------------------------------------------------------------------ failures that are not retried

void test("an error that waiting does not cure (ENOTDIR) fails at once", T, async (t) => {
  const file = join(tempDir(t), "a-file");
  writeFileSync(file, "");
  const logger = retryLogger();
  const client = newClient(t, { logger });
  const err = await rejection(
    client.connect(join(file, "qmp.sock"), { retry: { delay: 1, attempts: 3 } }),
  );
  assert.ok(err instanceof ConnectError, String(err));
  assert.equal((err.cause as { code?: string }).code, "ENOTDIR");
  assert.equal(logger.retries.length, 0);
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("a bad greeting fails at once with 'Failed to establish session'", T, async (t) => {
  const server = await FakeQMPServer.listen({ greeting: { hello: "world" } });
  t.after(() => server.close());
  const logger = retryLogger();
  const client = newClient(t, { logger });
  const err = await rejection(client.connect(server.address, { retry: { delay: 1, attempts: 3 } }));
  assert.ok(err instanceof ConnectError, String(err));
  assert.equal(err.errorMessage, "Failed to establish session");
  assert.ok(err.cause instanceof GreetingError);
  assert.equal(logger.retries.length, 0);
});

// ------------------------------------------------------------------ argument checks

void test("bad retry options throw before anything happens", T, async (t) => {
  const client = newClient(t);
  const seen = recordRunstates(client);
  const path = "/nonexistent/qmp.sock";
  await assert.rejects(client.connect(new PassThrough(), { retry: true }), TypeError);
  await assert.rejects(client.connect(path, { retry: { attempts: 0 } }), RangeError);
  await assert.rejects(client.connect(path, { retry: { attempts: 1.5 } }), RangeError);
  await assert.rejects(client.connect(path, { retry: { delay: -1 } }), RangeError);
  await assert.rejects(client.connect(path, { retry: { maxDelay: NaN } }), RangeError);
  await assert.rejects(client.connect(path, { retry: { process: 0 } }), TypeError);
  await assert.rejects(client.connect(path, { retry: { process: -1 } }), TypeError);
  const notAChild = {} as unknown as ChildProcess;
  await assert.rejects(client.connect(path, { retry: { process: notAChild } }), TypeError);
  const notAFunction = "x" as unknown as () => void;
  await assert.rejects(client.connect(path, { retry: { onRetry: notAFunction } }), TypeError);
  assert.deepEqual(seen, []);
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("no unhandled rejections in this file", () => {
  assert.deepEqual(unhandled, []);
});

void test("a back-off wait past 2^31 - 1 ms is capped, not taken by setTimeout() as 1 ms", async () => {
  const controller = new AbortController();
  let settled = "pending";
  const waiting = sleep(2 ** 40, controller.signal).then(
    () => (settled = "resolved"),
    () => (settled = "rejected"),
  );
  // Long enough for a 1 ms timer to have fired.
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(settled, "pending");
  controller.abort();
  await waiting;
  assert.equal(settled, "rejected");
});
