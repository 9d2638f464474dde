// A scriptable fake QMP server for tests: greeting, command handlers, events and raw bytes on demand.

import { rmSync } from "node:fs";
import net from "node:net";
import { JsonObjectScanner } from "../framing.js";
import type { Greeting, JsonValue } from "../message.js";
import type { InetAddress } from "../transport.js";
import { listenAt } from "./listen.js";
import {
  type CheckedPlan,
  type Fault,
  type FaultPlan,
  type Faults,
  Outbox,
  checkFaultPlan,
  checkFaults,
  makeEvent,
  resetSocket,
} from "./faults.js";

export { makeEvent };

/** What a handler may answer: a `return` value, a QMP error, or nothing (no reply). */
export type HandlerResult =
  { return: JsonValue } | { error: { class: string; desc: string } } | undefined;

/** Answers one command. May be async; may use `peer` to send events or bytes first. */
export type CommandHandler = (
  args: Record<string, unknown> | undefined,
  message: Record<string, unknown>,
  peer: FakePeer,
) => HandlerResult | Promise<HandlerResult>;

/** Options of {@link FakeQMPServer} and {@link FakePeer}. */
export interface FakeServerOptions {
  /** The greeting sent on connection; `false` for none (guest agent style). */
  greeting?: Greeting | Record<string, unknown> | false;
  /** Capabilities in the default greeting (default `["oob"]`). */
  capabilities?: string[];
  /** Handlers by command name; they override the built-in ones. */
  handlers?: Record<string, CommandHandler>;
  /** Line ending after each message sent (default `"\r\n"`, as QEMU). */
  lineEnding?: string;
  /**
   * Behave as qemu-ga (for `QGAClient` code): no greeting, `"\n"` line
   * endings, the byte 0xFF resets the parser (with qemu-ga's id-less error
   * for it), and `guest-sync-delimited` answers after a 0xFF. Built-in
   * handlers: `guest-sync-delimited`, `guest-sync`, `guest-ping`,
   * `guest-info` (listing the handlers).
   */
  guestAgent?: boolean;
  /**
   * Faults on every connection: of the greeting, of every reply, of the
   * replies to named commands (see {@link Fault}). `FakePeer.inject()` adds
   * faults for one reply of one connection.
   */
  faults?: FaultPlan | undefined;
}

/** The byte that resets a guest agent's parser and precedes its delimited reply. */
const DELIMITER = 0xff;

/** The default greeting, as QEMU 10.0 sends it. */
export function defaultGreeting(capabilities: string[] = ["oob"]): Greeting {
  return {
    QMP: {
      version: { qemu: { micro: 0, minor: 0, major: 10 }, package: "fake" },
      capabilities,
    },
  };
}

/**
 * One connection of the fake server: answers commands through handlers and
 * lets the test send anything at any time. Its output goes out in order: a
 * message waits for the faults of the one before it (a delay, a stall, a
 * split), as QEMU's replies do.
 */
export class FakePeer {
  /** The underlying socket. */
  readonly socket: net.Socket;
  /** Every message received, in order. */
  readonly received: Record<string, unknown>[] = [];
  readonly #options: FakeServerOptions;
  readonly #handlers: Record<string, CommandHandler>;
  readonly #plan: CheckedPlan;
  readonly #outbox: Outbox;
  readonly #injected: { command: string | undefined; faults: readonly Fault[] }[] = [];
  #waiters: ((m: Record<string, unknown>) => void)[] = [];
  #cursor = 0;
  /** Resolves when the connection closes. */
  readonly closed: Promise<void>;

  /**
   * Serve one connection.
   *
   * @throws {TypeError} {RangeError} for `options.faults` of the wrong shape.
   */
  constructor(socket: net.Socket, options: FakeServerOptions = {}) {
    const plan = checkFaultPlan(options.faults);
    this.socket = socket;
    this.#options = options;
    this.#plan = plan;
    this.#handlers = {
      ...(options.guestAgent === true ? guestAgentHandlers() : qmpHandlers()),
      ...options.handlers,
    };
    const ending = options.lineEnding ?? (options.guestAgent === true ? "\n" : "\r\n");
    this.#outbox = new Outbox(socket, ending, () => this.#greeting());
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => {});
    socket.once("close", () => this.#outbox.clear());
    let scanner = new JsonObjectScanner({ maxMessageSize: Infinity });
    const push = (bytes: Buffer): void =>
      scanner.push(bytes, (frame) => {
        if (frame.kind === "message") this.#onMessage(frame.value);
      });
    socket.on("data", (chunk: Buffer) => {
      try {
        if (options.guestAgent !== true) {
          push(chunk);
          return;
        }
        // qemu-ga: 0xFF drops what its parser held, and it says so.
        for (let at = chunk.indexOf(DELIMITER); at !== -1; at = chunk.indexOf(DELIMITER)) {
          push(chunk.subarray(0, at));
          scanner = new JsonObjectScanner({ maxMessageSize: Infinity });
          this.send({
            error: { class: "GenericError", desc: "JSON parse error, stray '\uFFFD'" },
          });
          chunk = chunk.subarray(at + 1);
        }
        push(chunk);
      } catch {
        socket.destroy();
      }
    });
    if (options.greeting !== false && options.guestAgent !== true) {
      this.#outbox.send(this.#greeting(), plan.greeting);
    }
  }

  /**
   * Send one message (JSON and the line ending), after everything queued,
   * with `faults` if given.
   *
   * @throws {TypeError} {RangeError} for faults of the wrong shape.
   */
  send(message: unknown, faults?: Faults): void {
    this.#outbox.send(message, checkFaults(faults));
  }

  /** Send an event (see {@link send}). */
  sendEvent(name: string, data?: Record<string, unknown>, faults?: Faults): void {
    this.send(makeEvent(name, data), faults);
  }

  /** Write raw bytes (garbage, partial messages), after everything queued. */
  write(data: string | Uint8Array): void {
    this.#outbox.write(data);
  }

  /**
   * Faults for the next reply of this connection (to `command`, if given),
   * after those of the server's `faults` option. Each call covers one reply.
   *
   * @throws {TypeError} {RangeError} for faults of the wrong shape.
   */
  inject(faults: Faults, command?: string): void {
    this.#injected.push({ command, faults: checkFaults(faults) });
  }

  /** Hold all output (queued and later messages wait), as a stopped QEMU would. */
  stall(): void {
    this.#outbox.stall();
  }

  /** Let output held by {@link stall} or a `stall` fault go. */
  resume(): void {
    this.#outbox.resume();
  }

  /** How many writes reached the socket (each piece of a split message counts). */
  get writes(): number {
    return this.#outbox.writes;
  }

  /** Close cleanly (FIN), after everything queued. */
  end(): void {
    this.#outbox.end();
  }

  /** Close abruptly (RST on TCP) at once; anything queued is dropped. */
  reset(): void {
    this.#outbox.clear();
    resetSocket(this.socket);
  }

  /** The next message received that was not yet returned by this method. */
  nextMessage(): Promise<Record<string, unknown>> {
    const m = this.received[this.#cursor];
    if (m !== undefined) {
      this.#cursor++;
      return Promise.resolve(m);
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Set or replace the handler of a command. */
  handle(command: string, handler: CommandHandler): void {
    this.#handlers[command] = handler;
  }

  /** The commands this peer answers (its handlers). */
  get commands(): string[] {
    return Object.keys(this.#handlers).sort();
  }

  #greeting(): unknown {
    const g = this.#options.greeting;
    return g === undefined || g === false ? defaultGreeting(this.#options.capabilities) : g;
  }

  /** The faults of the reply to `command`: the plan's, then one injection's. */
  #faultsFor(command: string): readonly Fault[] {
    const plan = this.#plan;
    let faults = [...plan.replies, ...(plan.commands.get(command) ?? [])];
    const i = this.#injected.findIndex((e) => e.command === undefined || e.command === command);
    if (i !== -1) faults = faults.concat(this.#injected.splice(i, 1)[0]!.faults);
    return faults;
  }

  #onMessage(message: Record<string, unknown>): void {
    this.received.push(message);
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      this.#cursor++;
      waiter(message);
    }
    const command = message["execute"] ?? message["exec-oob"];
    if (typeof command !== "string") return;
    const handler = this.#handlers[command];
    const reply = (result: HandlerResult): void => {
      if (result === undefined) return;
      const out: Record<string, unknown> = { ...result };
      if ("id" in message) out["id"] = message["id"];
      this.#outbox.send(out, this.#faultsFor(command));
    };
    if (handler === undefined) {
      reply({
        error: { class: "CommandNotFound", desc: `The command ${command} has not been found` },
      });
      return;
    }
    const args = message["arguments"] as Record<string, unknown> | undefined;
    Promise.resolve()
      .then(() => handler(args, message, this))
      .then(reply, (err: unknown) =>
        reply({ error: { class: "GenericError", desc: String(err) } }),
      );
  }
}

/** What the fake QEMU answers by itself. */
function qmpHandlers(): Record<string, CommandHandler> {
  return {
    qmp_capabilities: () => ({ return: {} }),
    "query-version": () => ({
      return: { qemu: { micro: 0, minor: 0, major: 10 }, package: "fake" },
    }),
    "query-status": () => ({ return: { status: "running", running: true } }),
    quit: (_a, _m, peer) => {
      setImmediate(() => peer.end());
      return { return: {} };
    },
  };
}

/** What a guest agent answers by itself (see `guestAgent`). */
function guestAgentHandlers(): Record<string, CommandHandler> {
  return {
    "guest-sync-delimited": (args, _message, peer) => {
      peer.write(Buffer.of(DELIMITER));
      return { return: (args?.["id"] ?? null) as JsonValue };
    },
    "guest-sync": (args) => ({ return: (args?.["id"] ?? null) as JsonValue }),
    "guest-ping": () => ({ return: {} }),
    "guest-info": (_args, _message, peer) => ({
      return: {
        version: "fake",
        supported_commands: peer.commands.map((name) => ({
          name,
          enabled: true,
          "success-response": true,
        })),
      },
    }),
  };
}

/**
 * A fake QMP server listening on a UNIX socket in a private temp directory
 * (or a given address). Each connection becomes a {@link FakePeer}.
 *
 * ```ts
 * await using server = await FakeQMPServer.listen({ handlers: { stop: () => ({ return: {} }) } });
 * await client.connect(server.address);
 * const peer = await server.peer();
 * ```
 */
export class FakeQMPServer {
  readonly #server: net.Server;
  readonly #dir: string | undefined;
  readonly #peers: FakePeer[] = [];
  #cursor = 0;
  #waiters: ((p: FakePeer) => void)[] = [];
  /** The address to connect to. */
  readonly address: string | InetAddress;

  private constructor(
    server: net.Server,
    dir: string | undefined,
    address: string | InetAddress,
    options: FakeServerOptions,
  ) {
    this.#server = server;
    this.#dir = dir;
    this.address = address;
    server.on("connection", (socket) => {
      const peer = new FakePeer(socket, options);
      this.#peers.push(peer);
      const waiter = this.#waiters.shift();
      if (waiter !== undefined) {
        this.#cursor++;
        waiter(peer);
      }
    });
  }

  /**
   * Start listening: on a new UNIX socket (default) or at `address`
   * (`{ host, port: 0 }` picks a free port).
   *
   * @throws {TypeError} {RangeError} for `options.faults` of the wrong shape
   *   (before anything listens).
   */
  static async listen(
    options: FakeServerOptions = {},
    address?: string | InetAddress,
  ): Promise<FakeQMPServer> {
    checkFaultPlan(options.faults);
    const { server, dir, address: bound } = await listenAt(address, "qmp-fake-");
    return new FakeQMPServer(server, dir, bound, options);
  }

  /**
   * Connect to a client that listens (`startServer()`), like QEMU started
   * with `-chardev socket,…` without `server=on`.
   */
  static connectTo(
    address: string | InetAddress,
    options: FakeServerOptions = {},
  ): Promise<FakePeer> {
    checkFaultPlan(options.faults);
    return new Promise((resolve, reject) => {
      const socket =
        typeof address === "string"
          ? net.connect(address)
          : net.connect(address.port, address.host);
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new FakePeer(socket, options));
      });
    });
  }

  /** The next connection not yet returned by this method. */
  peer(): Promise<FakePeer> {
    const p = this.#peers[this.#cursor];
    if (p !== undefined) {
      this.#cursor++;
      return Promise.resolve(p);
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Stop listening, drop every connection, remove the temp directory. */
  async close(): Promise<void> {
    for (const p of this.#peers) p.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (this.#dir !== undefined) rmSync(this.#dir, { recursive: true, force: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
