// QMPMux: many clients on one QMP monitor. It serves sockets of its own and passes each
// client's commands through one connected QMPClient, with ids rewritten and events fanned out.

import { EventEmitter } from "node:events";
import net from "node:net";
import { BoundSocket } from "../bind.js";
import { EventListener } from "../events.js";
import type { CommandMessage, QMPEvent } from "../message.js";
import type { QMPClient } from "../qmp-client.js";
import { Runstate } from "../runstate.js";
import type { InetAddress, UnixAddress } from "../transport.js";
import { typeName } from "../util.js";
import { type ConnectionHost, MuxConnection } from "./connection.js";
import { CheckedPolicy, type MuxPolicy } from "./policy.js";

/** Options of {@link QMPMux}. */
export interface QMPMuxOptions {
  /**
   * Most events held for a client that does not read (default 10 000).
   * The others, and the upstream reader, never wait for it.
   */
  clientQueue?: number | undefined;
  /**
   * A client whose queue is full: `drop` (default) drops its oldest events
   * and, once it reads again, sends it a `MUX_EVENTS_DROPPED` event with
   * `{ count }`; `disconnect` closes its connection.
   */
  slowClient?: "drop" | "disconnect" | undefined;
  /** Largest message a client may send, in bytes (default 10 MiB). */
  maxMessageSize?: number | undefined;
}

/** Options of {@link QMPMux.listen}: the socket's policy, and its file mode. */
export interface MuxListenOptions extends MuxPolicy {
  /** Mode of a UNIX socket file (default `0o600`, owner only). */
  mode?: number | undefined;
}

/** A client of the mux, as its events tell of it. */
export interface MuxClientInfo {
  /** A number for the connection, from 1, unique in this mux. */
  readonly id: number;
  /** The mux address it connected to. */
  readonly address: string | InetAddress;
}

/** The events of a {@link QMPMux}. */
export interface MuxEvents {
  /** A client connected (and got the greeting). */
  connection: [client: MuxClientInfo];
  /** A client negotiated: from now on it gets events. */
  negotiated: [client: MuxClientInfo];
  /** A client's connection closed. */
  disconnection: [client: MuxClientInfo];
}

/** One listening socket of the mux. */
interface Listening {
  server: net.Server;
  bound: BoundSocket;
  policy: CheckedPolicy;
}

/**
 * Serves any number of QMP clients on sockets of its own, all through one
 * connected {@link QMPClient}: a VM manager keeps its session and lets the
 * shell, a monitoring agent or a script share the monitor.
 *
 * Each client gets QEMU's greeting and its negotiation is answered here;
 * its commands go upstream with the client's ids and come back with its own
 * (two clients using the same ids never see each other's replies). Events go
 * to every negotiated client. Each socket has a policy (`allow`, `deny`,
 * `readOnly`). While the client is not `RUNNING`, new connections are closed
 * at once; when its session ends, every client's pending commands get an
 * error reply and its connection is closed. `getfd` and `add-fd` are refused:
 * file descriptors cannot be passed through. Its events (`connection`,
 * `negotiated`, `disconnection`) tell who comes and goes.
 *
 * ```ts
 * const qmp = new QMPClient();
 * await qmp.connect("/run/vm1.qmp");
 * await using mux = new QMPMux(qmp);
 * await mux.listen("/run/vm1-shared.qmp");
 * await mux.listen("/run/vm1-monitor.qmp", { readOnly: true });
 * ```
 */
export class QMPMux extends EventEmitter<MuxEvents> {
  /** The client every command goes through. */
  readonly client: QMPClient;
  readonly #queueLimit: number;
  readonly #slowClient: "drop" | "disconnect";
  readonly #maxMessageSize: number;
  readonly #listening = new Set<Listening>();
  readonly #connections = new Set<MuxConnection>();
  readonly #events: EventListener;
  readonly #events_: Disposable;
  readonly #onRunstate = (state: Runstate, previous: Runstate): void => {
    if (previous === Runstate.RUNNING && state !== Runstate.RUNNING) {
      for (const c of this.#connections) c.upstreamEnded();
    }
  };
  #closed = false;
  #ids = 0;

  /**
   * Share `client` (it need not be connected yet: connections are taken
   * only while it is `RUNNING`).
   *
   * @throws {TypeError} {RangeError} for options of the wrong type or range.
   */
  constructor(client: QMPClient, options: QMPMuxOptions = {}) {
    super();
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object, got ${typeName(options)}`);
    }
    const {
      clientQueue = 10_000,
      slowClient = "drop",
      maxMessageSize = 10 * 1024 * 1024,
    } = options;
    if (!Number.isInteger(clientQueue) || clientQueue < 1) {
      throw new RangeError(`clientQueue must be a whole number from 1, got ${String(clientQueue)}`);
    }
    if (slowClient !== "drop" && slowClient !== "disconnect") {
      throw new TypeError(`slowClient must be "drop" or "disconnect", got ${String(slowClient)}`);
    }
    if (!(maxMessageSize >= 1)) {
      throw new RangeError(`maxMessageSize must be at least 1, got ${String(maxMessageSize)}`);
    }
    this.client = client;
    this.#queueLimit = clientQueue;
    this.#slowClient = slowClient;
    this.#maxMessageSize = maxMessageSize;
    // Each event is serialized once and handed to every client as it arrives: the
    // filter is the hook, and keeps nothing in the listener's queue.
    this.#events = new EventListener({
      filter: (event: QMPEvent) => {
        this.#fanOut(event);
        return false;
      },
      historySize: 0,
    });
    this.#events_ = client.listen(this.#events);
    client.on("runstate", this.#onRunstate);
  }

  /** How many clients are connected. */
  get connections(): number {
    return this.#connections.size;
  }

  /** The addresses the mux listens on. */
  get addresses(): (string | InetAddress)[] {
    return [...this.#listening].map((l) => l.bound.address);
  }

  /**
   * Serve clients on `address` (a UNIX socket path, `{ path }`, or
   * `{ host, port }`; port 0 picks one), with the socket's policy. A UNIX
   * socket is created with mode 0600 (or `mode`), as `startServer()` does.
   *
   * @returns the address bound (with the real port).
   * @throws {TypeError} for a bad policy, before anything listens.
   * @throws {AddressInUseError} when the path or port is taken; other
   *   socket and file-system errors as they come.
   */
  async listen(
    address: string | UnixAddress | InetAddress,
    options: MuxListenOptions = {},
  ): Promise<string | InetAddress> {
    if (this.#closed) throw new Error("The mux is closed");
    const policy = new CheckedPolicy(options);
    if (options.mode !== undefined && !(Number.isInteger(options.mode) && options.mode >= 0)) {
      throw new TypeError(`mode must be a file mode such as 0o660, got ${String(options.mode)}`);
    }
    const server = net.createServer();
    const listening: Listening = { server, bound: new BoundSocket(server, address), policy };
    server.on("error", () => {});
    server.on("connection", (socket) => this.#accept(socket, listening));
    await listening.bound.bind({ mode: options.mode });
    if (this.#closed) {
      listening.bound.close();
      throw new Error("The mux is closed");
    }
    this.#listening.add(listening);
    return listening.bound.address;
  }

  /**
   * Stop: no more listening (socket files removed), every client's
   * connection closed. The upstream client is left as it is.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.client.off("runstate", this.#onRunstate);
    this.#events_[Symbol.dispose]();
    const closing = [...this.#listening].map(
      (l) => new Promise<void>((resolve) => l.server.close(() => resolve())),
    );
    for (const l of this.#listening) l.bound.close();
    this.#listening.clear();
    for (const c of this.#connections) c.destroy();
    await Promise.all(closing);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #accept(socket: net.Socket, listening: Listening): void {
    socket.on("error", () => {});
    const greeting = this.client.greeting;
    if (this.#closed || this.client.runstate !== Runstate.RUNNING || greeting === undefined) {
      socket.destroy();
      return;
    }
    const info: MuxClientInfo = { id: ++this.#ids, address: listening.bound.address };
    const host: ConnectionHost = {
      greeting: greeting,
      policy: listening.policy,
      queueLimit: this.#queueLimit,
      slowClient: this.#slowClient,
      maxMessageSize: this.#maxMessageSize,
      forward: (message: CommandMessage) =>
        this.client.raw(message, { assignId: true, timeout: Infinity }),
      negotiated: () => this.#emit("negotiated", info),
      closed: (c) => {
        this.#connections.delete(c);
        this.#emit("disconnection", info);
      },
    };
    this.#connections.add(new MuxConnection(socket, host));
    this.#emit("connection", info);
  }

  /** Tell listeners; one that throws is logged, never breaks the mux. */
  #emit(name: keyof MuxEvents, info: MuxClientInfo): void {
    try {
      this.emit(name, info);
    } catch (err) {
      this.client.logger.error(`qmp mux: a '${name}' listener threw: ${String(err)}`);
    }
  }

  #fanOut(event: QMPEvent): void {
    if (this.#connections.size === 0) return;
    const line = JSON.stringify(event);
    for (const c of this.#connections) c.event(line);
  }
}
