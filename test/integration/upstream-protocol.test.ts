// Port of the protocol engine tests of QEMU's Python QMP library:
// repository qemu/qemu, file python/tests/protocol.py (also shipped by
// python-qemu-qmp as tests/protocol.py). Written afresh for node:test; the
// suites keep the upstream class names (Smoke, State, Connect, Accept,
// FakeSession, SimpleSession) and each test names the upstream test it ports.
//
// What changes in the port:
// - Upstream's NullProtocol is a do-nothing subclass of the engine. Ours
//   (below) subclasses `Protocol` the same way; its "fake session" is an
//   in-memory duplex pair handed to connect() instead of a bypassed
//   _do_connect().
// - Upstream's LineProtocol server becomes a QMP server built on the same
//   engine (`EngineQMPServer`), so both ends of the smoke test run our code.
// - asyncio task cancellation and asyncio.wait_for() become AbortSignal and
//   the `timeout` option; the promise rejects with the signal's reason itself.
// - Upstream's runstate watcher task awaits runstate_changed() in a loop. We
//   record the 'runstate' event (every transition, synchronously) for whole
//   sequences and use runstateChanged() where one transition is awaited.
// - The "jammed socket" (a TCP listener whose backlog is full, so connect()
//   never completes) cannot be built with Node's net module, which always
//   accepts. A hanging connect here is a peer that accepts and never sends a
//   greeting; a transport-phase abort is an abort while the TCP connect is in
//   flight.
// - Upstream binds accept() tests to example.com:1 and /dev/null; we stay on
//   loopback (a port in use) and on a regular file in a temp dir (nothing under
//   /dev is ever a listen target: these tests may run as root).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { existsSync, watch } from "node:fs";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import type { Duplex } from "node:stream";
import { describe, test, type TestContext } from "node:test";
import { inspect, promisify } from "node:util";
import {
  ConnectError,
  type InetAddress,
  type Logger,
  Protocol,
  QMPClient,
  Runstate,
  StateError,
} from "../../src/index.js";
import { FakeQMPServer, defaultGreeting } from "../../src/testing/index.js";
import { duplexPair } from "../helpers/duplex.js";

const T = { timeout: 15_000 };

type Message = Record<string, unknown>;

// ----------------------------------------------------------------- test doubles

/**
 * The engine with a no-op session: RUNNING as soon as the byte stream is up.
 * It records what it receives and exposes send() and a bottom-half end of
 * session, as upstream's NullProtocol does.
 */
class NullProtocol extends Protocol<Message> {
  readonly received: Message[] = [];
  #waiters: ((m: Message) => void)[] = [];

  protected override establishSession(): Promise<void> {
    return Promise.resolve();
  }

  protected override handleMessage(message: Message): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter(message);
    else this.received.push(message);
  }

  protected override handleOversize(): void {}

  protected override sessionEnded(): void {}

  /** The next message received (queued ones first). */
  nextMessage(): Promise<Message> {
    const queued = this.received.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  sendMsg(message: Message): Promise<void> {
    return this.sendMessage(message);
  }

  /**
   * Upstream's simulate_disconnect(): end the session from the "bottom half"
   * (as a reader failure or EOF would) without returning to IDLE.
   */
  simulateDisconnect(error?: Error): void {
    this.fail(error);
  }
}

/** A QMP server on the same engine: greets, then answers a few commands. */
class EngineQMPServer extends Protocol<Message> {
  readonly received: Message[] = [];

  protected override async establishSession(): Promise<void> {
    await this.sendMessage({ ...defaultGreeting() });
  }

  protected override handleMessage(message: Message): void {
    this.received.push(message);
    const command = message["execute"];
    let reply: Message;
    if (command === "qmp_capabilities") reply = { return: {} };
    else if (command === "query-status") reply = { return: { status: "running", running: true } };
    else
      reply = {
        error: {
          class: "CommandNotFound",
          desc: `The command ${String(command)} has not been found`,
        },
      };
    if ("id" in message) reply["id"] = message["id"];
    this.sendMessage(reply).catch(() => {});
  }

  protected override handleOversize(): void {}

  protected override sessionEnded(): void {}
}

// ---------------------------------------------------------------------- helpers

type AnyProtocol = Protocol<Message> | QMPClient;

/** Destroy `client` when the test ends, pass or fail. */
function track<C extends AnyProtocol>(t: TestContext, client: C): C {
  t.after(() => client.destroy());
  return client;
}

/** Every runstate the client enters from now on, in order. */
function recordRunstates(client: AnyProtocol): Runstate[] {
  const seen: Runstate[] = [];
  (client as Protocol<Message>).on("runstate", (state) => seen.push(state));
  return seen;
}

/** Resolves when the client enters `state` (at once if it is there already). */
function reach(client: AnyProtocol, state: Runstate): Promise<void> {
  if (client.runstate === state) return Promise.resolve();
  return new Promise((resolve) => {
    const onChange = (s: Runstate): void => {
      if (s !== state) return;
      (client as Protocol<Message>).off("runstate", onChange);
      resolve();
    };
    (client as Protocol<Message>).on("runstate", onChange);
  });
}

/** Call `fn` synchronously at the client's transition into `state`, once. */
function atRunstate(client: AnyProtocol, state: Runstate, fn: () => void): void {
  const onChange = (s: Runstate): void => {
    if (s !== state) return;
    (client as Protocol<Message>).off("runstate", onChange);
    fn();
  };
  (client as Protocol<Message>).on("runstate", onChange);
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "qmp-upstream-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A logger that keeps every line. */
function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const keep = (m: string): void => {
    lines.push(m);
  };
  return { logger: { debug: keep, info: keep, warn: keep, error: keep }, lines };
}

/** A TCP server on 127.0.0.1 that accepts connections and never says anything. */
async function silentTcpServer(
  t: TestContext,
): Promise<{ address: InetAddress; connection: Promise<net.Socket> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer();
  let first!: (s: net.Socket) => void;
  const connection = new Promise<net.Socket>((resolve) => (first = resolve));
  server.on("connection", (s) => {
    s.on("error", () => {});
    sockets.push(s);
    first(s);
  });
  server.listen({ host: "127.0.0.1", port: 0 });
  await once(server, "listening");
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as net.AddressInfo;
  return { address: { host: "127.0.0.1", port }, connection };
}

/** A TCP port on 127.0.0.1 held by another listener for the whole test. */
async function busyPort(t: TestContext): Promise<number> {
  const server = net.createServer();
  server.listen({ host: "127.0.0.1", port: 0 });
  await once(server, "listening");
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as net.AddressInfo).port;
}

/** A raw socket to `address`, destroyed at the end of the test. */
async function rawPeer(t: TestContext, address: string | InetAddress): Promise<net.Socket> {
  const socket =
    typeof address === "string" ? net.connect(address) : net.connect(address.port, address.host);
  t.after(() => socket.destroy());
  await once(socket, "connect");
  return socket;
}

/** The error of a connection attempt to `address` that must fail. */
async function refusedConnection(address: string | InetAddress): Promise<NodeJS.ErrnoException> {
  const socket =
    typeof address === "string" ? net.connect(address) : net.connect(address.port, address.host);
  try {
    const [err] = (await Promise.race([
      once(socket, "error"),
      once(socket, "connect").then(() => [undefined]),
    ])) as [NodeJS.ErrnoException | undefined];
    assert.ok(err !== undefined, `a connection to ${inspect(address)} was accepted`);
    return err;
  } finally {
    socket.destroy();
  }
}

/**
 * Resolves when a file named like `path` shows up in its directory (the
 * engine renames its UNIX socket into place once it listens).
 */
function appears(t: TestContext, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const watcher = watch(dirname(path), (_event, name) => {
      if (name === basename(path) && existsSync(path)) {
        watcher.close();
        resolve();
      }
    });
    watcher.on("error", reject);
    t.after(() => watcher.close());
  });
}

function assertStateError(
  err: unknown,
  message: string,
  state: Runstate,
  required: Runstate,
): true {
  assert.ok(err instanceof StateError, `expected a StateError, got ${inspect(err)}`);
  assert.equal(err.message, message);
  assert.equal(err.state, state);
  assert.equal(err.required, required);
  assert.equal(err.code, "QMP_ERR_STATE");
  return true;
}

function assertConnectError(err: unknown, phase: string, code: string): true {
  assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${inspect(err)}`);
  assert.equal(err.errorMessage, phase);
  assert.ok(err.message.startsWith(phase), err.message);
  const cause = err.cause as NodeJS.ErrnoException;
  assert.ok(cause instanceof Error, `cause is not an Error: ${inspect(cause)}`);
  assert.equal(cause.code, code);
  return true;
}

const BAD_CONNECTION_STATES = [Runstate.CONNECTING, Runstate.DISCONNECTING, Runstate.IDLE];
const GOOD_CONNECTION_STATES = [
  Runstate.CONNECTING,
  Runstate.RUNNING,
  Runstate.DISCONNECTING,
  Runstate.IDLE,
];

// ------------------------------------------------------------------------ Smoke

void describe("Smoke", () => {
  void test("test__repr__: toString() and inspect() show the class and runstate", () => {
    assert.equal(String(new NullProtocol()), "<NullProtocol runstate=IDLE>");
    assert.equal(inspect(new NullProtocol()), "<NullProtocol runstate=IDLE>");
    assert.equal(String(new QMPClient()), "<QMPClient runstate=IDLE>");
  });

  void test("testRunstate: a new client is IDLE", () => {
    assert.equal(new NullProtocol().runstate, Runstate.IDLE);
    assert.equal(new QMPClient().runstate, Runstate.IDLE);
  });

  void test("testDefaultName: no name unless given", () => {
    assert.equal(new NullProtocol().name, undefined);
    assert.equal(new QMPClient().name, undefined);
  });

  // Upstream checks the logging.Logger name ('qemu.qmp.protocol'). Our default
  // logger is util.debuglog('qmp'): silent unless NODE_DEBUG=qmp, then each
  // line is prefixed "QMP <pid>:" and carries the client's name.
  void test("testLogger: the default logger writes to NODE_DEBUG=qmp", T, async () => {
    const index = new URL("../../src/index.js", import.meta.url).href;
    const script = [
      `import { QMPClient } from ${JSON.stringify(index)};`,
      `const client = new QMPClient({ name: "Steve" });`,
      `await client.connect("/dev/null").catch((e) => console.log(e.name));`,
    ].join("\n");
    const run = async (env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> =>
      promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], {
        env,
        timeout: 10_000,
      });
    const { NODE_DEBUG: _drop, ...quietEnv } = process.env;
    const quiet = await run(quietEnv);
    assert.equal(quiet.stdout.trim(), "ConnectError");
    assert.equal(quiet.stderr, "");
    const loud = await run({ ...quietEnv, NODE_DEBUG: "qmp" });
    assert.equal(loud.stdout.trim(), "ConnectError");
    assert.match(loud.stderr, /^QMP \d+: \[Steve\] Transitioning from 'IDLE' to 'CONNECTING'\.$/m);
    assert.match(
      loud.stderr,
      /^QMP \d+: \[Steve\] Transitioning from 'DISCONNECTING' to 'IDLE'\.$/m,
    );
  });

  void test("testName: the name shows in name, toString() and every log line", T, async (t) => {
    const { logger, lines } = captureLogger();
    const proto = track(t, new NullProtocol({ name: "Steve", logger }));
    assert.equal(proto.name, "Steve");
    assert.equal(String(proto), "<NullProtocol name='Steve' runstate=IDLE>");
    const [a] = duplexPair();
    await proto.connect(a);
    assert.equal(String(proto), "<NullProtocol name='Steve' runstate=RUNNING>");
    await proto.disconnect();
    assert.ok(lines.length > 0, "nothing was logged");
    for (const line of lines) assert.ok(line.startsWith("[Steve] "), line);
    assert.ok(lines.includes("[Steve] Transitioning from 'IDLE' to 'CONNECTING'."), inspect(lines));
  });
});

// ------------------------------------------------------------------------ State

void describe("State", () => {
  // Upstream expects IDLE -> DISCONNECTING -> IDLE for a disconnect() while
  // idle. Our engine documents it as a no-op: no transition at all.
  void test("testSuperfluousDisconnect: disconnect() while IDLE is harmless", T, async (t) => {
    const proto = track(t, new NullProtocol());
    const seen = recordRunstates(proto);
    await proto.disconnect();
    await proto.disconnect();
    assert.equal(proto.runstate, Runstate.IDLE);
    assert.deepEqual(seen, []);
  });

  void test(
    "testSuperfluousDisconnect: disconnect() twice after a session is harmless",
    T,
    async (t) => {
      const proto = track(t, new NullProtocol());
      const seen = recordRunstates(proto);
      const [a] = duplexPair();
      await proto.connect(a);
      const first = proto.disconnect();
      const second = proto.disconnect();
      await Promise.all([first, second]);
      await proto.disconnect();
      assert.equal(proto.runstate, Runstate.IDLE);
      assert.deepEqual(seen, GOOD_CONNECTION_STATES);
    },
  );

  void test("a background error is reported by the first disconnect() only", T, async (t) => {
    const proto = track(t, new NullProtocol());
    const [a] = duplexPair();
    await proto.connect(a);
    const boom = new Error("boom");
    proto.simulateDisconnect(boom);
    assert.equal(proto.runstate, Runstate.DISCONNECTING);
    await assert.rejects(proto.disconnect(), (err) => err === boom);
    assert.equal(proto.runstate, Runstate.IDLE);
    await proto.disconnect();
    assert.equal(proto.runstate, Runstate.IDLE);
  });
});

// ------------------------------------------------------------- Connect / Accept

/**
 * Upstream's Accept suite is the Connect suite with the server-side calls
 * swapped in; each Mode supplies those calls.
 */
interface Mode {
  name: string;
  /** An attempt that the OS rejects at once. */
  bad(t: TestContext, client: QMPClient, family: "INET" | "UNIX"): Promise<void>;
  /** The ConnectError cause code for bad(family). */
  badCode: Record<"INET" | "UNIX", string>;
  /**
   * Start an attempt that never completes on its own; `wedged` resolves once
   * it is truly waiting (a peer connected but silent, or a listener up).
   */
  hanging(
    t: TestContext,
    client: QMPClient,
    options: { signal?: AbortSignal; timeout?: number },
  ): Promise<{ attempt: Promise<void>; wedged: Promise<void>; leftovers: () => Promise<void> }>;
}

const connectMode: Mode = {
  name: "Connect",
  async bad(_t, client, family) {
    if (family === "INET") await client.connect({ host: "127.0.0.1", port: 0 });
    else await client.connect("/dev/null");
  },
  badCode: { INET: "ECONNREFUSED", UNIX: "ECONNREFUSED" },
  async hanging(t, client, options) {
    const { address, connection } = await silentTcpServer(t);
    const attempt = client.connect(address, options);
    const peer = connection;
    const wedged = peer.then(() => {});
    // The peer's end must see the connection closed once the attempt fails.
    const leftovers = async (): Promise<void> => {
      const socket = await peer;
      if (!socket.destroyed) await once(socket, "close");
    };
    return { attempt, wedged, leftovers };
  },
};

const acceptMode: Mode = {
  name: "Accept",
  async bad(t, client, family) {
    if (family === "INET") {
      await client.startServerAndAccept({ host: "127.0.0.1", port: await busyPort(t) });
    } else {
      const dir = await tempDir(t);
      const file = join(dir, "not-a-socket");
      await writeFile(file, "precious");
      try {
        await client.startServerAndAccept(file);
      } finally {
        // A non-socket file in the way is never deleted.
        assert.equal(await readFile(file, "utf8"), "precious");
      }
    }
  },
  // INET: the port is taken; UNIX: a file that is not a socket is in the way.
  badCode: { INET: "QMP_ERR_ADDRESS_IN_USE", UNIX: "QMP_ERR_ADDRESS_IN_USE" },
  async hanging(t, client, options) {
    const dir = await tempDir(t);
    const path = join(dir, "QMPClient.sock");
    const listening = appears(t, path);
    const attempt = client.startServerAndAccept(path, options);
    // Nothing may be left in the directory: no socket, no private bind dir.
    const leftovers = async (): Promise<void> => {
      assert.deepEqual(await readdir(dir), []);
      const err = await refusedConnection(path);
      assert.equal(err.code, "ENOENT");
    };
    return { attempt, wedged: listening, leftovers };
  },
};

for (const mode of [connectMode, acceptMode]) {
  void describe(mode.name, () => {
    for (const family of ["INET", "UNIX"] as const) {
      void test(
        `testBad${family}: an immediately rejected attempt is a ConnectError`,
        T,
        async (t) => {
          const client = track(t, new QMPClient({ name: mode.name }));
          const seen = recordRunstates(client);
          await assert.rejects(mode.bad(t, client, family), (err) =>
            assertConnectError(err, "Failed to establish connection", mode.badCode[family]),
          );
          assert.equal(client.runstate, Runstate.IDLE);
          assert.deepEqual(seen, BAD_CONNECTION_STATES);
        },
      );
    }

    void test(
      "testCancellation: aborting a hanging attempt rejects with the signal's reason",
      T,
      async (t) => {
        const client = track(t, new QMPClient());
        const seen = recordRunstates(client);
        const controller = new AbortController();
        const { attempt, wedged, leftovers } = await mode.hanging(t, client, {
          signal: controller.signal,
        });
        attempt.catch(() => {});
        assert.equal(client.runstate, Runstate.CONNECTING);
        await wedged;
        assert.equal(client.runstate, Runstate.CONNECTING);
        const reason = new Error("cancelled by the test");
        controller.abort(reason);
        await assert.rejects(attempt, (err) => err === reason);
        assert.equal(client.runstate, Runstate.IDLE);
        assert.deepEqual(seen, BAD_CONNECTION_STATES);
        await leftovers();
      },
    );

    void test("testCancellation: a plain abort() rejects with its AbortError", T, async (t) => {
      const client = track(t, new QMPClient());
      const controller = new AbortController();
      const { attempt, wedged, leftovers } = await mode.hanging(t, client, {
        signal: controller.signal,
      });
      attempt.catch(() => {});
      await wedged;
      controller.abort();
      await assert.rejects(attempt, (err) => err === controller.signal.reason);
      assert.ok(controller.signal.reason instanceof DOMException);
      assert.equal(controller.signal.reason.name, "AbortError");
      assert.equal(client.runstate, Runstate.IDLE);
      await leftovers();
    });

    void test("testTimeout: a hanging attempt times out with a TimeoutError", T, async (t) => {
      const client = track(t, new QMPClient());
      const seen = recordRunstates(client);
      const { attempt, leftovers } = await mode.hanging(t, client, { timeout: 100 });
      await assert.rejects(attempt, (err: unknown) => {
        assert.ok(err instanceof DOMException, inspect(err));
        assert.equal(err.name, "TimeoutError");
        return true;
      });
      assert.equal(client.runstate, Runstate.IDLE);
      assert.deepEqual(seen, BAD_CONNECTION_STATES);
      await leftovers();
    });

    void test(
      "testTimeout: AbortSignal.timeout() rejects with that signal's reason",
      T,
      async (t) => {
        const client = track(t, new QMPClient());
        const signal = AbortSignal.timeout(100);
        const { attempt, leftovers } = await mode.hanging(t, client, { signal });
        await assert.rejects(attempt, (err) => err === signal.reason);
        assert.equal((signal.reason as DOMException).name, "TimeoutError");
        assert.equal(client.runstate, Runstate.IDLE);
        await leftovers();
      },
    );

    void test("testRequire: a second attempt while CONNECTING is a StateError", T, async (t) => {
      const client = track(t, new QMPClient());
      const seen = recordRunstates(client);
      const controller = new AbortController();
      const { attempt, wedged } = await mode.hanging(t, client, { signal: controller.signal });
      attempt.catch(() => {});
      await wedged;
      const connecting = "QMPClient is currently connecting.";
      await assert.rejects(mode.bad(t, client, "UNIX"), (err) =>
        assertStateError(err, connecting, Runstate.CONNECTING, Runstate.IDLE),
      );
      await assert.rejects(client.connect("/dev/null"), (err) =>
        assertStateError(err, connecting, Runstate.CONNECTING, Runstate.IDLE),
      );
      await assert.rejects(client.startServer("/nonexistent/qmp.sock"), (err) =>
        assertStateError(err, connecting, Runstate.CONNECTING, Runstate.IDLE),
      );
      // The failed calls did not disturb the attempt in progress.
      assert.equal(client.runstate, Runstate.CONNECTING);
      controller.abort();
      await assert.rejects(attempt, { name: "AbortError" });
      assert.equal(client.runstate, Runstate.IDLE);
      assert.deepEqual(seen, BAD_CONNECTION_STATES);
    });

    void test(
      "testImplicitRunstateInit: a late watcher sees only later transitions",
      T,
      async (t) => {
        const client = track(t, new QMPClient());
        const controller = new AbortController();
        const { attempt, wedged } = await mode.hanging(t, client, { signal: controller.signal });
        attempt.catch(() => {});
        assert.equal(client.runstate, Runstate.CONNECTING);
        // The transition to CONNECTING is already past.
        const next = client.runstateChanged();
        const seen = recordRunstates(client);
        await wedged;
        controller.abort();
        await assert.rejects(attempt, { name: "AbortError" });
        assert.equal(await next, Runstate.DISCONNECTING);
        assert.deepEqual(seen, [Runstate.DISCONNECTING, Runstate.IDLE]);
      },
    );

    void test(
      "disconnect() during a hanging attempt cancels it with a ConnectError",
      T,
      async (t) => {
        const client = track(t, new QMPClient());
        const seen = recordRunstates(client);
        const { attempt, wedged } = await mode.hanging(t, client, {});
        attempt.catch(() => {});
        await wedged;
        await client.disconnect();
        await assert.rejects(attempt, ConnectError);
        assert.equal(client.runstate, Runstate.IDLE);
        assert.deepEqual(seen, BAD_CONNECTION_STATES);
      },
    );

    void test("the client is reusable after a failed attempt", T, async (t) => {
      const client = track(t, new QMPClient());
      await assert.rejects(mode.bad(t, client, "UNIX"), ConnectError);
      const server = await FakeQMPServer.listen();
      t.after(() => server.close());
      await client.connect(server.address);
      assert.equal(client.runstate, Runstate.RUNNING);
      assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
      await client.disconnect();
    });
  });
}

void describe("Connect (more)", () => {
  void test("testBadINET over IPv6 loopback: ConnectError caused by ECONNREFUSED", T, async (t) => {
    const client = track(t, new QMPClient());
    await assert.rejects(client.connect({ host: "::1", port: 0 }), (err) => {
      if (
        err instanceof ConnectError &&
        (err.cause as NodeJS.ErrnoException).code === "EADDRNOTAVAIL"
      ) {
        t.skip("no IPv6 loopback here");
        return true;
      }
      return assertConnectError(err, "Failed to establish connection", "ECONNREFUSED");
    });
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void test(
    "testBadUNIX: a missing socket file is a ConnectError caused by ENOENT",
    T,
    async (t) => {
      const dir = await tempDir(t);
      const client = track(t, new QMPClient());
      await assert.rejects(client.connect({ path: join(dir, "nobody.sock") }), (err) =>
        assertConnectError(err, "Failed to establish connection", "ENOENT"),
      );
      assert.equal(client.runstate, Runstate.IDLE);
    },
  );

  void test("testCancellation: abort while the TCP connect is in flight", T, async (t) => {
    const client = track(t, new QMPClient());
    const seen = recordRunstates(client);
    const { address } = await silentTcpServer(t);
    const controller = new AbortController();
    const attempt = client.connect(address, { signal: controller.signal });
    // No I/O has happened yet: the socket is still connecting.
    controller.abort("stop");
    await assert.rejects(attempt, (err) => err === "stop");
    assert.equal(client.runstate, Runstate.IDLE);
    assert.deepEqual(seen, BAD_CONNECTION_STATES);
  });

  void test(
    "testCancellation: an already aborted signal fails at once and returns to IDLE",
    T,
    async (t) => {
      const client = track(t, new QMPClient());
      const reason = new Error("too late");
      const { address } = await silentTcpServer(t);
      await assert.rejects(
        client.connect(address, { signal: AbortSignal.abort(reason) }),
        (err) => err === reason,
      );
      assert.equal(client.runstate, Runstate.IDLE);
    },
  );

  void test("testTimeout: over UNIX, a server that never greets", T, async (t) => {
    const server = await FakeQMPServer.listen({ greeting: false });
    t.after(() => server.close());
    const client = track(t, new QMPClient());
    const seen = recordRunstates(client);
    const attempt = client.connect(server.address, { timeout: 100 });
    const peer = await server.peer();
    await assert.rejects(attempt, { name: "TimeoutError" });
    assert.equal(client.runstate, Runstate.IDLE);
    assert.deepEqual(seen, BAD_CONNECTION_STATES);
    await peer.closed;
  });
});

void describe("Accept (more)", () => {
  void test(
    "testBadUNIX: a live listener on the path is a ConnectError caused by AddressInUseError",
    T,
    async (t) => {
      const server = await FakeQMPServer.listen();
      t.after(() => server.close());
      const client = track(t, new QMPClient());
      await assert.rejects(client.startServerAndAccept(server.address), (err) =>
        assertConnectError(err, "Failed to establish connection", "QMP_ERR_ADDRESS_IN_USE"),
      );
      assert.equal(client.runstate, Runstate.IDLE);
      // The other listener's socket is untouched.
      const other = track(t, new QMPClient());
      await other.connect(server.address);
      await other.disconnect();
    },
  );

  void test("testBadUNIX: a missing directory is a ConnectError caused by ENOENT", T, async (t) => {
    const dir = await tempDir(t);
    const client = track(t, new QMPClient());
    await assert.rejects(client.startServer(join(dir, "missing", "qmp.sock")), (err) =>
      assertConnectError(err, "Failed to establish connection", "ENOENT"),
    );
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void test("accept() without startServer() is a StateError while IDLE", T, async (t) => {
    const client = track(t, new QMPClient());
    await assert.rejects(client.accept(), (err) =>
      assertStateError(
        err,
        "QMPClient is disconnected and idle.",
        Runstate.IDLE,
        Runstate.CONNECTING,
      ),
    );
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void test("accept() during connect() (CONNECTING, no server) is a StateError", T, async (t) => {
    const client = track(t, new QMPClient());
    const { address, connection } = await silentTcpServer(t);
    const controller = new AbortController();
    const attempt = client.connect(address, { signal: controller.signal });
    attempt.catch(() => {});
    await connection;
    await assert.rejects(client.accept(), (err: unknown) => {
      assert.ok(err instanceof StateError, inspect(err));
      assert.equal(
        err.message,
        "QMPClient is connecting with connect(): accept() needs startServer() first.",
      );
      return true;
    });
    assert.equal(client.runstate, Runstate.CONNECTING);
    controller.abort();
    await assert.rejects(attempt, { name: "AbortError" });
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void test("a second accept() while one waits is a StateError", T, async (t) => {
    const dir = await tempDir(t);
    const client = track(t, new QMPClient());
    await client.startServer(join(dir, "qmp.sock"));
    const controller = new AbortController();
    const waiting = client.accept({ signal: controller.signal });
    waiting.catch(() => {});
    await assert.rejects(client.accept(), (err: unknown) => {
      assert.ok(err instanceof StateError, inspect(err));
      assert.equal(err.message, "QMPClient is already accepting: accept() is in progress.");
      assert.equal(err.state, Runstate.CONNECTING);
      return true;
    });
    controller.abort();
    await assert.rejects(waiting, { name: "AbortError" });
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void test(
    "testCancellation: abort of accept() with no peer (startServer, then accept)",
    T,
    async (t) => {
      const dir = await tempDir(t);
      const path = join(dir, "qmp.sock");
      const client = track(t, new QMPClient());
      const seen = recordRunstates(client);
      await client.startServer(path);
      assert.equal(client.runstate, Runstate.CONNECTING);
      assert.equal(client.serverAddress, path);
      const controller = new AbortController();
      const attempt = client.accept({ signal: controller.signal });
      const reason = new Error("no peer came");
      controller.abort(reason);
      await assert.rejects(attempt, (err) => err === reason);
      assert.equal(client.runstate, Runstate.IDLE);
      assert.deepEqual(seen, BAD_CONNECTION_STATES);
      assert.deepEqual(await readdir(dir), []);
    },
  );

  void test(
    "testCancellation: abort while startServerAndAccept() is still binding",
    T,
    async (t) => {
      const dir = await tempDir(t);
      const path = join(dir, "qmp.sock");
      const client = track(t, new QMPClient());
      const seen = recordRunstates(client);
      const controller = new AbortController();
      const reason = new Error("stop binding");
      // Synchronously at CONNECTING: the bind has not even started.
      atRunstate(client, Runstate.CONNECTING, () => controller.abort(reason));
      await assert.rejects(
        client.startServerAndAccept(path, { signal: controller.signal }),
        (err) => err === reason,
      );
      assert.equal(client.runstate, Runstate.IDLE);
      assert.deepEqual(seen, BAD_CONNECTION_STATES);
      // Nothing is left listening: the path is free for the next server.
      assert.deepEqual(await readdir(dir), []);
      await client.startServer(path);
      const accepted = client.accept();
      const peer = await FakeQMPServer.connectTo(path);
      t.after(() => peer.socket.destroy());
      await accepted;
      assert.deepEqual(await readdir(dir), []);
      await client.disconnect();
    },
  );

  void test("testTimeout: accept() from a peer that connects and never greets", T, async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, "qmp.sock");
    const client = track(t, new QMPClient());
    const seen = recordRunstates(client);
    await client.startServer(path);
    const attempt = client.accept({ timeout: 100 });
    const peer = await rawPeer(t, path);
    await assert.rejects(attempt, { name: "TimeoutError" });
    assert.equal(client.runstate, Runstate.IDLE);
    assert.deepEqual(seen, BAD_CONNECTION_STATES);
    if (!peer.destroyed) await once(peer, "close");
  });
});

// ------------------------------------------------------------------ FakeSession

void describe("FakeSession", () => {
  /** A NullProtocol RUNNING over an in-memory pair; returns the far end too. */
  async function fakeSession(
    t: TestContext,
    options: { logger?: Logger; trace?: boolean } = {},
  ): Promise<{ proto: NullProtocol; far: Duplex; seen: Runstate[] }> {
    const proto = track(t, new NullProtocol({ name: "FakeSession", ...options }));
    const seen = recordRunstates(proto);
    const [near, far] = duplexPair();
    t.after(() => far.destroy());
    await proto.connect(near);
    return { proto, far, seen };
  }

  void test("testFakeConnect: full lifecycle through connect()", T, async (t) => {
    const { proto, seen } = await fakeSession(t);
    assert.equal(proto.runstate, Runstate.RUNNING);
    await proto.disconnect();
    assert.deepEqual(seen, GOOD_CONNECTION_STATES);
  });

  void test("testFakeAccept: full lifecycle through startServerAndAccept()", T, async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, "NullProtocol.sock");
    const proto = track(t, new NullProtocol());
    const seen = recordRunstates(proto);
    const listening = appears(t, path);
    const accepted = proto.startServerAndAccept(path);
    await listening;
    const peer = await rawPeer(t, path);
    await accepted;
    assert.equal(proto.runstate, Runstate.RUNNING);
    // The listener stopped after the one peer.
    assert.equal(existsSync(path), false);
    peer.write('{"hello": "world"}\n');
    assert.deepEqual(await proto.nextMessage(), { hello: "world" });
    await proto.disconnect();
    assert.deepEqual(seen, GOOD_CONNECTION_STATES);
  });

  void test("testFakeRecv: a received message is handled and traced", T, async (t) => {
    const { logger, lines } = captureLogger();
    const { proto, far } = await fakeSession(t, { logger, trace: true });
    far.write('{"ping": 1}\r\n');
    assert.deepEqual(await proto.nextMessage(), { ping: 1 });
    assert.ok(lines.includes('[FakeSession] <-- {"ping":1}'), inspect(lines));
    await proto.disconnect();
  });

  void test("testFakeSend: a sent message is written and traced", T, async (t) => {
    const { logger, lines } = captureLogger();
    const { proto, far } = await fakeSession(t, { logger, trace: true });
    const data = once(far, "data");
    await proto.sendMsg({ pong: 2 });
    assert.equal(String((await data)[0]), '{"pong":2}');
    assert.ok(lines.includes('[FakeSession] --> {"pong":2}'), inspect(lines));
    await proto.disconnect();
  });

  const running = "NullProtocol is already connected and running.";
  const disconnecting = "NullProtocol is disconnecting. Call disconnect() to return to IDLE state.";

  void test(
    "testAcceptRequireRunning: startServerAndAccept()/accept() while RUNNING",
    T,
    async (t) => {
      const { proto, seen } = await fakeSession(t);
      await assert.rejects(proto.startServerAndAccept("/not/a/real/path"), (err) =>
        assertStateError(err, running, Runstate.RUNNING, Runstate.IDLE),
      );
      await assert.rejects(proto.startServer("/not/a/real/path"), (err) =>
        assertStateError(err, running, Runstate.RUNNING, Runstate.IDLE),
      );
      await assert.rejects(proto.accept(), (err) =>
        assertStateError(err, running, Runstate.RUNNING, Runstate.CONNECTING),
      );
      assert.equal(proto.runstate, Runstate.RUNNING);
      await proto.disconnect();
      assert.deepEqual(seen, GOOD_CONNECTION_STATES);
    },
  );

  void test("testConnectRequireRunning: connect() while RUNNING", T, async (t) => {
    const { proto, seen } = await fakeSession(t);
    await assert.rejects(proto.connect("/not/a/real/path"), (err) =>
      assertStateError(err, running, Runstate.RUNNING, Runstate.IDLE),
    );
    assert.equal(proto.runstate, Runstate.RUNNING);
    await proto.disconnect();
    assert.deepEqual(seen, GOOD_CONNECTION_STATES);
  });

  void test(
    "testAcceptRequireDisconnecting: startServerAndAccept()/accept() while DISCONNECTING",
    T,
    async (t) => {
      const { proto, seen } = await fakeSession(t);
      proto.simulateDisconnect();
      assert.equal(proto.runstate, Runstate.DISCONNECTING);
      await assert.rejects(proto.startServerAndAccept("/not/a/real/path"), (err) =>
        assertStateError(err, disconnecting, Runstate.DISCONNECTING, Runstate.IDLE),
      );
      await assert.rejects(proto.accept(), (err) =>
        assertStateError(err, disconnecting, Runstate.DISCONNECTING, Runstate.CONNECTING),
      );
      assert.equal(proto.runstate, Runstate.DISCONNECTING);
      await proto.disconnect();
      assert.deepEqual(seen, GOOD_CONNECTION_STATES);
    },
  );

  void test("testConnectRequireDisconnecting: connect() while DISCONNECTING", T, async (t) => {
    const { proto, seen } = await fakeSession(t);
    proto.simulateDisconnect();
    await assert.rejects(proto.connect("/not/a/real/path"), (err) =>
      assertStateError(err, disconnecting, Runstate.DISCONNECTING, Runstate.IDLE),
    );
    assert.equal(proto.runstate, Runstate.DISCONNECTING);
    await proto.disconnect();
    assert.deepEqual(seen, GOOD_CONNECTION_STATES);
  });

  void test("the same StateErrors from a real QMPClient whose peer hung up", T, async (t) => {
    const server = await FakeQMPServer.listen();
    t.after(() => server.close());
    const client = track(t, new QMPClient());
    const seen = recordRunstates(client);
    await client.connect(server.address);
    const msg = "QMPClient is disconnecting. Call disconnect() to return to IDLE state.";
    (await server.peer()).end();
    await reach(client, Runstate.DISCONNECTING);
    await assert.rejects(client.connect(server.address), (err) =>
      assertStateError(err, msg, Runstate.DISCONNECTING, Runstate.IDLE),
    );
    await assert.rejects(client.startServerAndAccept("/not/a/real/path"), (err) =>
      assertStateError(err, msg, Runstate.DISCONNECTING, Runstate.IDLE),
    );
    await assert.rejects(client.execute("query-status"), (err) =>
      assertStateError(err, msg, Runstate.DISCONNECTING, Runstate.RUNNING),
    );
    // A clean end of stream is not an error.
    await client.disconnect();
    assert.deepEqual(seen, GOOD_CONNECTION_STATES);
    await assert.rejects(client.execute("query-status"), (err) =>
      assertStateError(err, "QMPClient is disconnected and idle.", Runstate.IDLE, Runstate.RUNNING),
    );
  });
});

// ---------------------------------------------------------------- SimpleSession

void describe("SimpleSession", () => {
  void test(
    "testSmoke: a QMPClient connects to a QMP server built on the same engine",
    T,
    async (t) => {
      const dir = await tempDir(t);
      const path = join(dir, "EngineQMPServer.sock");
      const server = track(t, new EngineQMPServer({ name: "SimpleSession-server" }));
      const client = track(t, new QMPClient({ name: "SimpleSession" }));
      const serverSeen = recordRunstates(server);
      const clientSeen = recordRunstates(client);

      const listening = appears(t, path);
      const serving = server.startServerAndAccept(path);
      await listening;
      await client.connect(path);
      await serving;
      assert.equal(client.runstate, Runstate.RUNNING);
      assert.equal(server.runstate, Runstate.RUNNING);
      assert.deepEqual(client.greeting, defaultGreeting());
      assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
      assert.deepEqual(server.received, [
        { execute: "qmp_capabilities", arguments: { enable: ["oob"] }, id: 1 },
        { execute: "query-status", id: 2 },
      ]);

      await client.disconnect();
      await reach(server, Runstate.DISCONNECTING);
      await server.disconnect();
      assert.deepEqual(clientSeen, GOOD_CONNECTION_STATES);
      assert.deepEqual(serverSeen, GOOD_CONNECTION_STATES);
    },
  );

  void test("testSmoke (server mode, UNIX): our QMPClient accepts QEMU-like peer", T, async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, "qmp.sock");
    const client = track(t, new QMPClient({ name: "server-mode" }));
    const seen = recordRunstates(client);
    await client.startServer(path);
    const accepted = client.accept();
    const peer = await FakeQMPServer.connectTo(path);
    t.after(() => peer.socket.destroy());
    await accepted;
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.equal(client.serverAddress, undefined);
    // The listener is gone: nobody else can connect.
    assert.deepEqual(await readdir(dir), []);
    assert.equal((await refusedConnection(path)).code, "ENOENT");
    assert.deepEqual(await client.execute("query-version"), {
      qemu: { micro: 0, minor: 0, major: 10 },
      package: "fake",
    });
    await client.disconnect();
    await peer.closed;
    assert.deepEqual(seen, GOOD_CONNECTION_STATES);
  });

  void test(
    "testSmoke (server mode, TCP): startServer() on port 0, then accept()",
    T,
    async (t) => {
      const client = track(t, new QMPClient());
      const seen = recordRunstates(client);
      await client.startServer({ host: "127.0.0.1", port: 0 });
      const address = client.serverAddress as InetAddress;
      assert.equal(address.host, "127.0.0.1");
      assert.ok(address.port > 0);
      const accepted = client.accept();
      const peer = await FakeQMPServer.connectTo(address);
      t.after(() => peer.socket.destroy());
      await accepted;
      assert.equal(client.runstate, Runstate.RUNNING);
      assert.equal((await refusedConnection(address)).code, "ECONNREFUSED");
      assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
      await client.disconnect();
      assert.deepEqual(seen, GOOD_CONNECTION_STATES);
    },
  );
});

// -------------------------------------------------------------------- Reconnect

void describe("Reconnect", () => {
  void test("connect, disconnect, connect again: same client, new session", T, async (t) => {
    const server = await FakeQMPServer.listen();
    t.after(() => server.close());
    const client = track(t, new QMPClient());
    const seen = recordRunstates(client);

    await client.connect(server.address);
    const first = await server.peer();
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
    await client.disconnect();
    await first.closed;

    await client.connect(server.address);
    const second = await server.peer();
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
    await client.disconnect();

    assert.deepEqual(seen, [...GOOD_CONNECTION_STATES, ...GOOD_CONNECTION_STATES]);
    // Each session negotiates anew; command ids go on across sessions.
    assert.deepEqual(
      first.received.map((m) => [m["execute"], m["id"]]),
      [
        ["qmp_capabilities", 1],
        ["query-status", 2],
      ],
    );
    assert.deepEqual(
      second.received.map((m) => [m["execute"], m["id"]]),
      [
        ["qmp_capabilities", 3],
        ["query-status", 4],
      ],
    );
  });

  void test(
    "connect again after the peer hung up (DISCONNECTING, disconnect(), connect)",
    T,
    async (t) => {
      const server = await FakeQMPServer.listen({}, { host: "127.0.0.1", port: 0 });
      t.after(() => server.close());
      const client = track(t, new QMPClient());
      await client.connect(server.address);
      (await server.peer()).end();
      await reach(client, Runstate.DISCONNECTING);
      await client.disconnect();
      await client.connect(server.address);
      assert.equal(client.runstate, Runstate.RUNNING);
      assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
      await client.disconnect();
    },
  );

  void test("server mode twice on the same path", T, async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, "qmp.sock");
    const client = track(t, new QMPClient());
    const seen = recordRunstates(client);
    for (let round = 0; round < 2; round++) {
      await client.startServer(path);
      const accepted = client.accept();
      const peer = await FakeQMPServer.connectTo(path);
      t.after(() => peer.socket.destroy());
      await accepted;
      assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
      await client.disconnect();
      await peer.closed;
    }
    assert.deepEqual(seen, [...GOOD_CONNECTION_STATES, ...GOOD_CONNECTION_STATES]);
    assert.deepEqual(await readdir(dir), []);
  });
});
