// Shared set-up of the QMP client tests: a client talking to a FakePeer over
// an in-memory duplex, a UNIX socket in a temp dir, or TCP on loopback.

import assert from "node:assert/strict";
import type net from "node:net";
import type { Duplex } from "node:stream";
import type { TestContext } from "node:test";
import {
  type Logger,
  QMPClient,
  type QMPClientOptions,
  type SocketAddress,
} from "../../src/index.js";
import { FakePeer, FakeQMPServer, type FakeServerOptions } from "../../src/testing/index.js";
import { duplexPair } from "../helpers/duplex.js";

/** How the client reaches the fake server. */
export type Kind = "duplex" | "unix" | "tcp";

/** The transports every client-logic test runs over. */
export const KINDS: readonly Kind[] = ["duplex", "unix"];

/** A generous per-test bound, so that a hang fails instead of blocking the run. */
export const T = { timeout: 15_000 } as const;

/** A logger that keeps every line, to check warnings. */
export class RecordingLogger implements Logger {
  readonly lines: { level: "debug" | "info" | "warn" | "error"; message: string }[] = [];

  debug(message: string): void {
    this.lines.push({ level: "debug", message });
  }
  info(message: string): void {
    this.lines.push({ level: "info", message });
  }
  warn(message: string): void {
    this.lines.push({ level: "warn", message });
  }
  error(message: string): void {
    this.lines.push({ level: "error", message });
  }

  /** The messages logged at `level`. */
  at(level: "debug" | "info" | "warn" | "error"): string[] {
    return this.lines.filter((l) => l.level === level).map((l) => l.message);
  }
}

/** A place to connect to, that hands out the FakePeer of each connection. */
export class Endpoint {
  readonly kind: Kind;
  readonly #server: FakeQMPServer | undefined;
  readonly #options: FakeServerOptions;
  readonly #pairs: Duplex[] = [];
  readonly #peers: FakePeer[] = [];
  /** Client side of the last duplex handed out by {@link dial} (duplex only). */
  clientStream: Duplex | undefined;

  private constructor(kind: Kind, server: FakeQMPServer | undefined, options: FakeServerOptions) {
    this.kind = kind;
    this.#server = server;
    this.#options = options;
  }

  /** Open an endpoint; it is closed when the test ends, pass or fail. */
  static async open(
    t: TestContext,
    kind: Kind,
    options: FakeServerOptions = {},
  ): Promise<Endpoint> {
    let server: FakeQMPServer | undefined;
    if (kind === "unix") server = await FakeQMPServer.listen(options);
    else if (kind === "tcp")
      server = await FakeQMPServer.listen(options, { host: "127.0.0.1", port: 0 });
    const endpoint = new Endpoint(kind, server, options);
    t.after(() => endpoint.close());
    return endpoint;
  }

  /** An address for one `connect()`. For a duplex, a fresh pair with its peer. */
  dial(): SocketAddress {
    if (this.#server !== undefined) return this.#server.address;
    const [clientSide, peerSide] = duplexPair();
    this.#pairs.push(clientSide, peerSide);
    this.clientStream = clientSide;
    // FakePeer only uses the Duplex part of net.Socket (and checks before using resetAndDestroy).
    this.#peers.push(new FakePeer(peerSide as unknown as net.Socket, this.#options));
    return clientSide;
  }

  /** The peer of the next connection. Call it right after starting `connect()`. */
  peer(): Promise<FakePeer> {
    if (this.#server !== undefined) return this.#server.peer();
    const peer = this.#peers.shift();
    assert.ok(peer !== undefined, "peer() without dial()");
    return Promise.resolve(peer);
  }

  async close(): Promise<void> {
    for (const s of this.#pairs) s.destroy();
    await this.#server?.close();
  }
}

/** A client, its peer, and what went over the wire. */
export interface Session {
  client: QMPClient;
  logger: RecordingLogger;
  peer: FakePeer;
  endpoint: Endpoint;
  /** The `connect()` in progress (or done). */
  connected: Promise<void>;
  /** Every byte the peer received so far, as text. */
  wire(): string;
}

export interface SessionOptions {
  client?: QMPClientOptions;
  server?: FakeServerOptions;
}

/** Record what `peer` receives, byte for byte. */
export function recordWire(peer: FakePeer): () => string {
  const chunks: Buffer[] = [];
  peer.socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  return () => Buffer.concat(chunks).toString("utf8");
}

/** Make a client and a connection attempt; the caller awaits `connected` (or expects it to fail). */
export async function startSession(
  t: TestContext,
  kind: Kind,
  options: SessionOptions = {},
): Promise<Session> {
  const endpoint = await Endpoint.open(t, kind, options.server);
  return startOn(t, endpoint, options.client);
}

/** Like {@link startSession} on an existing endpoint. */
export async function startOn(
  t: TestContext,
  endpoint: Endpoint,
  clientOptions: QMPClientOptions = {},
): Promise<Session> {
  const logger = new RecordingLogger();
  const client = new QMPClient({ logger, ...clientOptions });
  t.after(() => client.destroy());
  const connected = client.connect(endpoint.dial());
  // Awaited by the test; this only keeps an early failure of the test itself
  // from turning it into an unhandled rejection.
  connected.catch(() => {});
  const peer = await endpoint.peer();
  const wire = recordWire(peer);
  return { client, logger, peer, endpoint, connected, wire };
}

/** A connected session. */
export async function openSession(
  t: TestContext,
  kind: Kind,
  options: SessionOptions = {},
): Promise<Session> {
  const s = await startSession(t, kind, options);
  await s.connected;
  return s;
}

/** A promise with its resolver outside, to gate fake handlers. */
export function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/**
 * Track whether a promise settled, without letting its rejection go
 * unhandled; `settled()` is exact once the microtasks after a settlement ran.
 */
export function track<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  return { promise, settled: () => done };
}

/** Consume the client's `qmp_capabilities` from the peer's inbox. */
export async function skipNegotiation(peer: FakePeer): Promise<void> {
  const m = await peer.nextMessage();
  assert.equal(m["execute"], "qmp_capabilities");
}

export { watchUnhandledRejections } from "../helpers/common.js";
