// TLS (SPEC §1, §6): connect({ tls }) to a Node TLS server that speaks QMP, server
// verification by default, mutual TLS, startServer({ tls }), and the bad cases.

import assert from "node:assert/strict";
import { once } from "node:events";
import net from "node:net";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, it, type TestContext } from "node:test";
import tls from "node:tls";
import {
  ConnectError,
  type InetAddress,
  type Logger,
  ProtocolError,
  QMPClient,
  Runstate,
  SessionEndedError,
} from "../../src/index.js";
import { FakePeer, FakeQMPServer, type FakeServerOptions } from "../../src/testing/index.js";
import { rejection, watchUnhandledRejections } from "../helpers/common.js";
import { type TestPki, makePki } from "../helpers/tls.js";

const unhandled = watchUnhandledRejections();
const T = { timeout: 20_000 };

let pki: TestPki;
before(async () => {
  pki = await makePki();
});
after(() => pki?.remove());

function newClient(t: TestContext, logger?: Logger): QMPClient {
  const client = new QMPClient(logger !== undefined ? { logger } : {});
  t.after(() => client.destroy());
  return client;
}

/** A logger that keeps the warnings. */
function warnings(): Logger & { warned: string[] } {
  const warned: string[] = [];
  const nop = (): void => {};
  return { warned, debug: nop, info: nop, error: nop, warn: (m) => warned.push(m) };
}

interface TlsQmpServer {
  address: InetAddress;
  /** The next peer whose handshake succeeded. */
  peer: () => Promise<FakePeer>;
  /** Handshake failures seen by the server. */
  clientErrors: Error[];
  /** Raw TCP connections accepted (handshake or not). */
  connections: () => number;
}

/** A Node TLS server on 127.0.0.1 that speaks QMP through FakePeer. */
async function tlsQmpServer(
  t: TestContext,
  options: tls.TlsOptions,
  fake: FakeServerOptions = {},
): Promise<TlsQmpServer> {
  const server = tls.createServer(options);
  const sockets = new Set<net.Socket>();
  const peers: FakePeer[] = [];
  const waiters: ((p: FakePeer) => void)[] = [];
  const clientErrors: Error[] = [];
  let connections = 0;
  server.on("connection", (s: net.Socket) => {
    connections++;
    sockets.add(s);
  });
  server.on("secureConnection", (socket) => {
    const peer = new FakePeer(socket, fake);
    const waiter = waiters.shift();
    if (waiter !== undefined) waiter(peer);
    else peers.push(peer);
  });
  server.on("tlsClientError", (err) => clientErrors.push(err));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    address: { host: "127.0.0.1", port },
    peer: () => {
      const p = peers.shift();
      return p !== undefined ? Promise.resolve(p) : new Promise((resolve) => waiters.push(resolve));
    },
    clientErrors,
    connections: () => connections,
  };
}

/** A ConnectError of the transport phase, whose cause has `code`; returns the cause. */
async function connectionFailure(attempt: Promise<void>, code: string): Promise<Error> {
  const err = await rejection(attempt);
  assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
  assert.match(err.message, /^Failed to establish connection: /);
  const cause = err.cause as NodeJS.ErrnoException;
  assert.ok(cause instanceof Error, `cause is not an Error: ${String(cause)}`);
  assert.equal(cause.code, code, `unexpected cause: ${cause.message}`);
  assert.ok(err.message.includes(cause.message), "the message does not tell the cause");
  return cause;
}

/** Connect a Node TLS client to `address` and speak QMP through FakePeer once the handshake is done. */
async function tlsPeer(
  t: TestContext,
  address: InetAddress,
  options: tls.ConnectionOptions,
): Promise<FakePeer> {
  const socket = tls.connect({ host: address.host, port: address.port, ...options });
  t.after(() => socket.destroy());
  await once(socket, "secureConnect");
  return new FakePeer(socket);
}

void describe("connect({ tls })", () => {
  void it("verifies the server against the given CA and runs a session", T, async (t) => {
    const server = await tlsQmpServer(t, pki.server);
    const client = newClient(t);
    await client.connect(server.address, { tls: { ca: pki.ca } });
    assert.equal(client.runstate, Runstate.RUNNING);
    const peer = await server.peer();
    assert.equal(peer.socket instanceof tls.TLSSocket, true);
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
    assert.deepEqual(
      peer.received.map((m) => m["execute"]),
      ["qmp_capabilities", "query-status"],
    );
    // 127.0.0.1 was checked against the certificate's IP subjectAltName; no SNI for an IP.
    assert.equal((peer.socket as tls.TLSSocket).servername, false);
    await client.disconnect();
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void it("sends the host name as servername (SNI) by default", T, async (t) => {
    const server = await tlsQmpServer(t, pki.server);
    const client = newClient(t);
    await client.connect({ host: "localhost", port: server.address.port }, { tls: { ca: pki.ca } });
    const peer = await server.peer();
    assert.equal((peer.socket as tls.TLSSocket).servername, "localhost");
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  });

  void it("tls: true trusts only the system CAs: a private CA is refused", T, async (t) => {
    const server = await tlsQmpServer(t, pki.server);
    const client = newClient(t);
    await connectionFailure(
      client.connect(server.address, { tls: true }),
      "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    );
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void it("a server certificate from another CA is refused", T, async (t) => {
    const server = await tlsQmpServer(t, pki.server);
    const client = newClient(t);
    const peerSaw: string[] = [];
    void server.peer().then(
      (p) => peerSaw.push(...p.received.map((m) => String(m["execute"]))),
      () => {},
    );
    await connectionFailure(
      client.connect(server.address, { tls: { ca: pki.otherCa } }),
      "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    );
    assert.equal(client.runstate, Runstate.IDLE);
    assert.deepEqual(peerSaw, [], "a command went to an unverified server");
    // Works once the right CA is given: the failure was the CA, nothing else.
    await client.connect(server.address, { tls: { ca: pki.ca } });
    assert.equal(client.runstate, Runstate.RUNNING);
  });

  void it("a certificate for another host name is refused", T, async (t) => {
    const server = await tlsQmpServer(t, pki.otherHost);
    const client = newClient(t);
    const cause = await connectionFailure(
      client.connect(server.address, { tls: { ca: pki.ca } }),
      "ERR_TLS_CERT_ALTNAME_INVALID",
    );
    assert.match(cause.message, /127\.0\.0\.1/);
    assert.equal(client.runstate, Runstate.IDLE);
    // The name on the certificate, given as servername, is accepted.
    await client.connect(server.address, { tls: { ca: pki.ca, servername: "qemu.example" } });
    assert.equal(client.runstate, Runstate.RUNNING);
  });

  void it("a servername the certificate does not name is refused", T, async (t) => {
    const server = await tlsQmpServer(t, pki.server);
    const client = newClient(t);
    await connectionFailure(
      client.connect(server.address, { tls: { ca: pki.ca, servername: "wrong.example" } }),
      "ERR_TLS_CERT_ALTNAME_INVALID",
    );
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void it("an expired server certificate is refused", T, async (t) => {
    const server = await tlsQmpServer(t, pki.expired);
    const client = newClient(t);
    await connectionFailure(
      client.connect(server.address, { tls: { ca: pki.ca } }),
      "CERT_HAS_EXPIRED",
    );
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void it("rejectUnauthorized: false is the caller's explicit opt-out", T, async (t) => {
    const server = await tlsQmpServer(t, pki.expired);
    const client = newClient(t);
    await client.connect(server.address, { tls: { rejectUnauthorized: false } });
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  });

  void it("mutual TLS: the client certificate is sent and verified", T, async (t) => {
    const server = await tlsQmpServer(t, {
      ...pki.server,
      ca: pki.ca,
      requestCert: true,
      rejectUnauthorized: true,
    });
    const client = newClient(t);
    await client.connect(server.address, { tls: { ca: pki.ca, ...pki.client } });
    const peer = await server.peer();
    const socket = peer.socket as tls.TLSSocket;
    assert.equal(socket.authorized, true);
    assert.equal(socket.getPeerCertificate().subject.CN, "qmp-test-client");
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  });

  void it("a server that requires a client certificate we lack: a clear error", T, async (t) => {
    const server = await tlsQmpServer(t, {
      ...pki.server,
      ca: pki.ca,
      requestCert: true,
      rejectUnauthorized: true,
    });
    const client = newClient(t);
    // TLS 1.3: our side of the handshake is done before the server checks; its alert says why.
    const cause = await connectionFailure(
      client.connect(server.address, { tls: { ca: pki.ca } }),
      "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
    );
    assert.match(cause.message, /certificate required/);
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void it(
    "a server that hangs up right after the handshake: a hint at the certificate",
    T,
    async (t) => {
      // What QEMU does when it refuses our certificate: no alert, just a close.
      const server = tls.createServer(pki.server, (s) => s.end());
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      t.after(() => server.close());
      const { port } = server.address() as net.AddressInfo;
      const client = newClient(t);
      const err = await rejection(
        client.connect({ host: "127.0.0.1", port }, { tls: { ca: pki.ca } }),
      );
      assert.ok(err instanceof ConnectError, String(err));
      assert.match(err.message, /^Failed to establish connection: /);
      assert.ok(err.cause instanceof SessionEndedError, String(err.cause));
      assert.match(err.cause.message, /refused our certificate/);
      assert.equal(client.runstate, Runstate.IDLE);
    },
  );

  void it("a plain TCP peer on a TLS connect: a clear TLS error, nothing sent", T, async (t) => {
    const plain = await FakeQMPServer.listen({}, { host: "127.0.0.1", port: 0 });
    t.after(() => plain.close());
    const client = newClient(t);
    const peerReceived = plain.peer().then((p) => p.received);
    const cause = await connectionFailure(
      client.connect(plain.address, { tls: { ca: pki.ca } }),
      "ERR_SSL_WRONG_VERSION_NUMBER",
    );
    assert.match(cause.message, /wrong version number/);
    assert.equal(client.runstate, Runstate.IDLE);
    assert.deepEqual(await peerReceived, []);
  });

  void it("a peer that never answers the handshake: the timeout applies", T, async (t) => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => {
      sockets.push(s);
      s.resume(); // read (and drop) the ClientHello, so that the close is seen
    });
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    t.after(() => {
      for (const s of sockets) s.destroy();
      silent.close();
    });
    const { port } = silent.address() as net.AddressInfo;
    const client = newClient(t);
    const closed = once(silent, "connection").then(([s]) => once(s as net.Socket, "close"));
    const err = await rejection(
      client.connect({ host: "127.0.0.1", port }, { tls: { ca: pki.ca }, timeout: 200 }),
    );
    assert.equal((err as Error).name, "TimeoutError");
    assert.equal(client.runstate, Runstate.IDLE);
    await closed; // our half-done TLS socket was closed
  });

  void it(
    "TLS on a UNIX socket or a given stream is a TypeError, nothing happens",
    T,
    async (t) => {
      const client = newClient(t);
      const states: Runstate[] = [];
      client.on("runstate", (s) => states.push(s));
      const path = join("/nonexistent", "qmp.sock");
      for (const address of [path, { path }]) {
        const err = await rejection(client.connect(address, { tls: true }));
        assert.ok(err instanceof TypeError, String(err));
        assert.match(err.message, /TCP address.*UNIX socket.*QEMU serves TLS on TCP only/);
      }
      const err = await rejection(client.connect(new PassThrough(), { tls: { ca: pki.ca } }));
      assert.ok(err instanceof TypeError, String(err));
      assert.match(err.message, /a stream/);
      assert.deepEqual(states, []);
      assert.equal(client.runstate, Runstate.IDLE);
    },
  );

  void it("QEMU before 8.0 over TLS: a warning names the bug and its fix", T, async (t) => {
    const greeting = (major: number, minor: number): FakeServerOptions => ({
      greeting: {
        QMP: {
          version: { qemu: { major, minor, micro: 0 }, package: "" },
          capabilities: ["oob"],
        },
      },
    });
    const old = await tlsQmpServer(t, pki.server, greeting(7, 2));
    const logger = warnings();
    const client = newClient(t, logger);
    await client.connect(old.address, { tls: { ca: pki.ca } });
    assert.equal(logger.warned.length, 1, JSON.stringify(logger.warned));
    assert.match(logger.warned[0]!, /QEMU 7\.2\.0 over TLS.*stalls.*fixed in QEMU 8\.0/);
    await client.disconnect();

    // Not for QEMU 8.0 over TLS, nor for 7.2 without TLS.
    const fixed = await tlsQmpServer(t, pki.server, greeting(8, 0));
    await client.connect(fixed.address, { tls: { ca: pki.ca } });
    await client.disconnect();
    const plain = await FakeQMPServer.listen(greeting(7, 2), { host: "127.0.0.1", port: 0 });
    t.after(() => plain.close());
    await client.connect(plain.address);
    await client.disconnect();
    assert.equal(logger.warned.length, 1, JSON.stringify(logger.warned));
  });

  void it(
    "QEMU before 8.0 over TLS that leaves qmp_capabilities unanswered: a clear error, not a hang",
    T,
    async (t) => {
      const stalled = await tlsQmpServer(t, pki.server, {
        greeting: {
          QMP: {
            version: { qemu: { major: 7, minor: 2, micro: 22 }, package: "" },
            capabilities: ["oob"],
          },
        },
        handlers: { qmp_capabilities: () => undefined },
      });
      const client = newClient(t, warnings());
      const started = Date.now();
      const err = await rejection(client.connect(stalled.address, { tls: { ca: pki.ca } }));
      assert.ok(err instanceof ConnectError, String(err));
      assert.match(err.message, /^Failed to establish session/);
      assert.ok(err.cause instanceof ProtocolError, String(err.cause));
      assert.match(
        err.cause.message,
        /qmp_capabilities.*QEMU 7\.2\.22 over TLS.*fixed in QEMU 8\.0/,
      );
      assert.ok(Date.now() - started >= 2900, "gave up before the stall bound");
      assert.equal(client.runstate, Runstate.IDLE);
    },
  );
});

void describe("startServer({ tls })", () => {
  void it("a TLS peer's handshake completes, then the session runs", T, async (t) => {
    const client = newClient(t);
    await client.startServer({ host: "127.0.0.1", port: 0 }, { tls: pki.server });
    const address = client.serverAddress as InetAddress;
    const [, peer] = await Promise.all([client.accept(), tlsPeer(t, address, { ca: pki.ca })]);
    assert.equal(client.runstate, Runstate.RUNNING);
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
    assert.deepEqual(
      peer.received.map((m) => m["execute"]),
      ["qmp_capabilities", "query-status"],
    );
    assert.equal((peer.socket as tls.TLSSocket).authorized, true);
  });

  void it("mutual TLS: a peer with a certificate from our CA is accepted", T, async (t) => {
    const client = newClient(t);
    await client.startServer(
      { host: "127.0.0.1", port: 0 },
      { tls: { ...pki.server, ca: pki.ca, requestCert: true } },
    );
    const address = client.serverAddress as InetAddress;
    await Promise.all([client.accept(), tlsPeer(t, address, { ca: pki.ca, ...pki.client })]);
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
  });

  for (const [what, certificate, code] of [
    ["no certificate", {}, "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE"],
    ["a certificate from another CA", "stranger", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"],
  ] as const) {
    void it(`mutual TLS: a peer with ${what} is refused by accept()`, T, async (t) => {
      const client = newClient(t);
      await client.startServer(
        { host: "127.0.0.1", port: 0 },
        { tls: { ...pki.server, ca: pki.ca, requestCert: true } },
      );
      const address = client.serverAddress as InetAddress;
      const socket = tls.connect({
        ...address,
        ca: pki.ca,
        ...(certificate === "stranger" ? pki.strangerClient : certificate),
      });
      socket.on("error", () => {});
      t.after(() => socket.destroy());
      const cause = await connectionFailure(client.accept(), code);
      if (certificate === "stranger") assert.match(cause.message, /certificate was rejected/);
      assert.equal(client.runstate, Runstate.IDLE);
      assert.equal(client.serverAddress, undefined);
    });
  }

  void it("a plain TCP peer on a TLS listener: accept() fails clearly", T, async (t) => {
    const client = newClient(t);
    await client.startServer({ host: "127.0.0.1", port: 0 }, { tls: pki.server });
    const address = client.serverAddress as InetAddress;
    const [err] = await Promise.all([
      rejection(client.accept()),
      FakeQMPServer.connectTo(address).then((p) => t.after(() => p.socket.destroy())),
    ]);
    assert.ok(err instanceof ConnectError, String(err));
    assert.match(err.message, /^Failed to establish connection: /);
    assert.match(String((err.cause as NodeJS.ErrnoException).code), /^ERR_SSL_/);
    assert.equal(client.runstate, Runstate.IDLE);
  });

  void it(
    "TLS on a UNIX socket is a TypeError; unusable TLS options fail the bind",
    T,
    async (t) => {
      const client = newClient(t);
      const err = await rejection(client.startServer("/nonexistent/qmp.sock", { tls: pki.server }));
      assert.ok(err instanceof TypeError, String(err));
      assert.equal(client.runstate, Runstate.IDLE);

      const bad = await rejection(
        client.startServer(
          { host: "127.0.0.1", port: 0 },
          { tls: { key: "not a key", cert: "no" } },
        ),
      );
      assert.ok(bad instanceof ConnectError, String(bad));
      assert.match(bad.message, /^Failed to establish connection: /);
      assert.equal(client.runstate, Runstate.IDLE);
    },
  );
});

void it("no unhandled rejections", () => {
  assert.deepEqual(unhandled, []);
});
