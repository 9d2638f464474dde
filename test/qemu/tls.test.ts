// Real QEMU over TLS: `-object tls-creds-x509` with `-chardev socket,…,tls-creds=…`.
// We connect to QEMU (endpoint=server, with and without verify-peer), and QEMU
// connects to us (endpoint=client, startServer({ tls })). QEMU before 8.0
// stalls on a TLS monitor (7.2 leaves even qmp_capabilities unanswered):
// there, the sessions are not run and the client's warning is checked
// instead; the handshake failures are tested on every version.

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test, type TestContext } from "node:test";
import {
  ConnectError,
  type InetAddress,
  type Logger,
  Runstate,
  SessionEndedError,
} from "../../src/index.js";
import { rejection } from "../helpers/common.js";
import { asObject, qemuVersion, startQemu, type TestQemu, testClient } from "../helpers/qemu.js";
import { type TestPki, makePki } from "../helpers/tls.js";

const T = { timeout: 30_000 };

let pki: TestPki;
let version: [number, number];
/** Whether the QEMU under test can run a session over TLS (8.0 fixed the stall). */
let tlsWorks: boolean;
before(async () => {
  [pki, version] = await Promise.all([makePki(), qemuVersion()]);
  tlsWorks = version[0] >= 8;
});
after(() => pki?.remove());

const SKIP_OLD = "QEMU < 8.0 stalls on a TLS monitor (fixed in QEMU 8.0): session not run";

/** A logger that keeps the warnings. */
function warnings(onWarn?: (line: string) => void): Logger & { warned: string[] } {
  const warned: string[] = [];
  const nop = (): void => {};
  return {
    warned,
    debug: nop,
    info: nop,
    error: nop,
    warn: (m) => {
      warned.push(m);
      onWarn?.(m);
    },
  };
}

/** A TCP port nobody listens on right now, on 127.0.0.1. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** QEMU serving QMP over TLS on 127.0.0.1 (`endpoint=server`). */
async function startTlsQemu(
  t: TestContext,
  options: { verifyPeer: boolean; tls?: boolean },
): Promise<{ qemu: TestQemu; address: InetAddress }> {
  const port = await freePort();
  const creds = `tls-creds-x509,id=tls0,dir=${pki.qemuServerDir},endpoint=server,verify-peer=${options.verifyPeer ? "on" : "off"}`;
  const tlsCreds = options.tls === false ? "" : ",tls-creds=tls0";
  const qemu = await startQemu(t, {
    qmpSocket: false,
    args: [
      "-object",
      creds,
      "-chardev",
      `socket,id=qmp,host=127.0.0.1,port=${port},server=on,wait=off${tlsCreds}`,
      "-mon",
      "chardev=qmp,mode=control",
    ],
  });
  return { qemu, address: { host: "127.0.0.1", port } };
}

/** A ConnectError of the transport phase whose cause has `code`; returns the cause. */
async function connectionFailure(attempt: Promise<void>, code: string): Promise<Error> {
  const err = await rejection(attempt);
  assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
  assert.match(err.message, /^Failed to establish connection: /);
  const cause = err.cause as NodeJS.ErrnoException;
  assert.equal(cause.code, code, `unexpected cause: ${String(cause)}`);
  return cause;
}

void test("connect({ tls }) verifies QEMU and runs a session (QEMU < 8.0: warns)", T, async (t) => {
  const { address } = await startTlsQemu(t, { verifyPeer: false });
  const controller = new AbortController();
  // On QEMU < 8.0, the warning is our cue to give up instead of hanging.
  const logger = warnings(() => {
    if (!tlsWorks) controller.abort(new Error("warned"));
  });
  const client = testClient(t, { logger });
  const connected = client.connect(address, {
    tls: { ca: pki.ca },
    signal: controller.signal,
  });
  if (!tlsWorks) {
    t.diagnostic(`QEMU ${version.join(".")}: ${SKIP_OLD}`);
    await assert.rejects(connected, { message: "warned" });
    assert.equal(logger.warned.length, 1);
    assert.match(logger.warned[0]!, /QEMU 7\.\d+\.\d+ over TLS.*stalls.*fixed in QEMU 8\.0/);
    assert.equal(client.runstate, Runstate.IDLE);
    return;
  }
  await connected;
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.deepEqual(logger.warned, []);
  assert.equal(asObject(await client.execute("query-status"))["status"], "running");
  assert.deepEqual(await client.execute("query-version"), client.greeting!.QMP.version);
  await assert.rejects(client.execute("no-such-command"), { errorClass: "CommandNotFound" });
  const { event } = await client.executeAndWait("stop", undefined, { event: "STOP" });
  assert.equal(event.event, "STOP");
  await client.disconnect();

  // Again by name: "localhost" is sent as servername and checked against the certificate.
  await client.connect({ host: "localhost", port: address.port }, { tls: { ca: pki.ca } });
  assert.equal(asObject(await client.execute("query-status"))["status"], "paused");
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("QEMU's certificate from another CA, or for another name, is refused", T, async (t) => {
  const { address } = await startTlsQemu(t, { verifyPeer: false });
  const client = testClient(t);
  await connectionFailure(
    client.connect(address, { tls: { ca: pki.otherCa } }),
    "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  );
  assert.equal(client.runstate, Runstate.IDLE);
  await connectionFailure(
    client.connect(address, { tls: { ca: pki.ca, servername: "qemu.example" } }),
    "ERR_TLS_CERT_ALTNAME_INVALID",
  );
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("a TLS connect to QEMU's plain TCP monitor fails clearly", T, async (t) => {
  const { address } = await startTlsQemu(t, { verifyPeer: false, tls: false });
  const client = testClient(t);
  await connectionFailure(
    client.connect(address, { tls: { ca: pki.ca } }),
    "ERR_SSL_WRONG_VERSION_NUMBER",
  );
  assert.equal(client.runstate, Runstate.IDLE);
});

void test("mutual TLS: QEMU with verify-peer=on wants our client certificate", T, async (t) => {
  const { address } = await startTlsQemu(t, { verifyPeer: true });
  const client = testClient(t);

  // Without one, QEMU hangs up right after the handshake.
  const err = await rejection(client.connect(address, { tls: { ca: pki.ca } }));
  assert.ok(err instanceof ConnectError, String(err));
  assert.match(err.message, /^Failed to establish connection: /);
  assert.ok(err.cause instanceof SessionEndedError, String(err.cause));
  assert.match(err.cause.message, /refused our certificate/);
  assert.equal(client.runstate, Runstate.IDLE);

  // One from another CA: the same.
  const stranger = await rejection(
    client.connect(address, { tls: { ca: pki.ca, ...pki.strangerClient } }),
  );
  assert.ok(stranger instanceof ConnectError, String(stranger));
  assert.match(stranger.message, /refused our certificate/);

  if (!tlsWorks) {
    t.diagnostic(`QEMU ${version.join(".")}: ${SKIP_OLD}`);
    return;
  }
  await client.connect(address, { tls: { ca: pki.ca, ...pki.client } });
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.equal(asObject(await client.execute("query-status"))["status"], "running");
  assert.deepEqual(await client.execute("quit"), {});
  await client.disconnect();
});

void test("server mode: QEMU connects to us as a TLS client, mutual TLS", T, async (t) => {
  const controller = new AbortController();
  const logger = warnings(() => {
    if (!tlsWorks) controller.abort(new Error("warned"));
  });
  const client = testClient(t, { name: "tls-server", logger });
  await client.startServer(
    { host: "127.0.0.1", port: 0 },
    { tls: { ...pki.server, ca: pki.ca, requestCert: true } },
  );
  const { port } = client.serverAddress as InetAddress;
  const [qemu] = await Promise.all([
    startQemu(t, {
      qmpSocket: false,
      args: [
        "-object",
        `tls-creds-x509,id=tls0,dir=${pki.qemuClientDir},endpoint=client`,
        "-chardev",
        `socket,id=c,host=127.0.0.1,port=${port},tls-creds=tls0`,
        "-mon",
        "chardev=c,mode=control",
      ],
    }),
    tlsWorks
      ? client.accept()
      : assert.rejects(client.accept({ signal: controller.signal }), { message: "warned" }),
  ]);
  if (!tlsWorks) {
    t.diagnostic(`QEMU ${version.join(".")}: ${SKIP_OLD}`);
    assert.equal(logger.warned.length, 1);
    assert.match(logger.warned[0]!, /QEMU 7\.\d+\.\d+ over TLS.*stalls.*fixed in QEMU 8\.0/);
    assert.equal(client.runstate, Runstate.IDLE);
    return;
  }
  assert.deepEqual(logger.warned, []);
  assert.equal(client.runstate, Runstate.RUNNING);
  assert.equal(asObject(await client.execute("query-status"))["status"], "running");
  assert.deepEqual(await client.execute("query-version"), client.greeting!.QMP.version);
  const { event } = await client.executeAndWait("stop", undefined, { event: "STOP" });
  assert.equal(event.event, "STOP");
  assert.deepEqual(await client.execute("quit"), {});
  assert.deepEqual(await qemu.exited, { code: 0, signal: null });
  await client.disconnect();
  assert.equal(client.runstate, Runstate.IDLE);
});
