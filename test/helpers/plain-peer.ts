// A bare QMP peer on a plain net.Server, for what FakeQMPServer cannot do: send no
// greeting, stop reading its socket, record and answer thousands of commands cheaply.

import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JsonObjectScanner } from "../../src/framing.js";

/** The greeting the peer sends: QEMU 10.0, offering `oob`. */
export const PLAIN_GREETING =
  '{"QMP":{"version":{"qemu":{"micro":0,"minor":0,"major":10},"package":""},"capabilities":["oob"]}}\r\n';

/** Options of {@link PlainQMPServer.listen}. */
export interface PlainPeerOptions {
  /** Send the greeting on connection (default true). */
  greeting?: boolean;
  /** Stop reading right after answering `qmp_capabilities` (default false). */
  pauseAfterNegotiation?: boolean;
  /**
   * Called for every message after `qmp_capabilities`, in wire order. Without
   * it, messages are kept in {@link PlainPeer.received}.
   */
  onMessage?: (message: Record<string, unknown>, peer: PlainPeer) => void;
}

/** One connection: answers `qmp_capabilities` with `{"return": {}, "id": <id>}`, nothing else. */
export class PlainPeer {
  readonly socket: net.Socket;
  /** Messages after `qmp_capabilities` (when no `onMessage` was given). */
  readonly received: Record<string, unknown>[] = [];
  /** The id `qmp_capabilities` came with, once it came. */
  negotiationId: unknown;
  /** Resolves once `qmp_capabilities` has been answered. */
  readonly negotiated: Promise<void>;
  /** Resolves when the connection closes. */
  readonly closed: Promise<void>;
  #waiters: { until: (m: Record<string, unknown>) => boolean; resolve: () => void }[] = [];

  constructor(socket: net.Socket, options: PlainPeerOptions) {
    this.socket = socket;
    socket.on("error", () => {});
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    let negotiated!: () => void;
    this.negotiated = new Promise((resolve) => (negotiated = resolve));
    let negotiating = true;
    const scanner = new JsonObjectScanner({ maxMessageSize: Infinity });
    const onFrame = (message: Record<string, unknown>): void => {
      if (negotiating && message["execute"] === "qmp_capabilities") {
        negotiating = false;
        this.negotiationId = message["id"];
        this.send({ return: {}, id: message["id"] });
        // Stop before the next chunk is read, so that nothing after negotiation is taken.
        if (options.pauseAfterNegotiation === true) socket.pause();
        negotiated();
        return;
      }
      if (options.onMessage !== undefined) options.onMessage(message, this);
      else this.received.push(message);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.until(message)) return true;
        w.resolve();
        return false;
      });
    };
    socket.on("data", (chunk: Buffer) => {
      try {
        scanner.push(chunk, (frame) => {
          if (frame.kind === "message") onFrame(frame.value);
        });
      } catch {
        socket.destroy();
      }
    });
    if (options.greeting !== false) socket.write(PLAIN_GREETING);
  }

  /** Send one message and `\r\n`. */
  send(message: unknown): void {
    if (!this.socket.destroyed) this.socket.write(JSON.stringify(message) + "\r\n");
  }

  /** Stop reading: the kernel buffers fill up and the client's writes block. */
  stopReading(): void {
    this.socket.pause();
  }

  /** Read again. */
  resumeReading(): void {
    this.socket.resume();
  }

  /** Resolves when a message for which `until` is true arrives (or has arrived). */
  waitFor(until: (m: Record<string, unknown>) => boolean): Promise<void> {
    if (this.received.some(until)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ until, resolve }));
  }
}

/** A plain `net.Server` on a UNIX socket in a private temp directory. */
export class PlainQMPServer {
  readonly address: string;
  readonly #server: net.Server;
  readonly #dir: string;
  readonly #peers: PlainPeer[] = [];
  readonly #all: PlainPeer[] = [];
  #next: ((p: PlainPeer) => void) | undefined;

  private constructor(server: net.Server, dir: string, address: string, options: PlainPeerOptions) {
    this.#server = server;
    this.#dir = dir;
    this.address = address;
    server.on("connection", (socket) => {
      const peer = new PlainPeer(socket, options);
      this.#all.push(peer);
      const next = this.#next;
      this.#next = undefined;
      if (next !== undefined) next(peer);
      else this.#peers.push(peer);
    });
  }

  /** Listen on a new UNIX socket. Close it with {@link close} (e.g. in `t.after`). */
  static async listen(options: PlainPeerOptions = {}): Promise<PlainQMPServer> {
    const dir = mkdtempSync(join(tmpdir(), "qmp-plain-"));
    const address = join(dir, "qmp.sock");
    const server = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(address, resolve);
      });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return new PlainQMPServer(server, dir, address, options);
  }

  /** The next connection (one at a time). */
  peer(): Promise<PlainPeer> {
    const p = this.#peers.shift();
    if (p !== undefined) return Promise.resolve(p);
    return new Promise((resolve) => (this.#next = resolve));
  }

  /** Drop every connection, stop listening, remove the temp directory. */
  async close(): Promise<void> {
    for (const p of this.#all) p.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

/**
 * Wait until a client's writer is blocked on `socket`: its write buffer has
 * stopped changing for 50 event-loop turns (at most 2,000 turns; no timers).
 * Resolves to the buffered byte count.
 */
export async function writerBlocked(socket: net.Socket): Promise<number> {
  let last = -1;
  let steady = 0;
  for (let i = 0; i < 2000 && steady < 50; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    const now = socket.writableLength;
    steady = now === last ? steady + 1 : 0;
    last = now;
  }
  return last;
}
