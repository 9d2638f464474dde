// A bare QMP client on a socket, for tests that must choose every id, send what a real client
// would not, or stop reading: it sends JSON lines and collects what comes back.

import net from "node:net";
import type { TestContext } from "node:test";
import { JsonObjectScanner } from "../../src/framing.js";

/** A raw QMP connection: `send()` objects or text, `next()` the messages that come. */
export class LineClient {
  readonly socket: net.Socket;
  /** Every message received, in order. */
  readonly received: Record<string, unknown>[] = [];
  #cursor = 0;
  #waiters: (() => void)[] = [];
  /** Resolves when the connection closes. */
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("error", () => {});
    const scanner = new JsonObjectScanner({ maxMessageSize: Infinity });
    socket.on("data", (chunk: Buffer) => {
      scanner.push(chunk, (frame) => {
        if (frame.kind === "message") this.received.push(frame.value);
      });
      for (const w of this.#waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        resolve();
        for (const w of this.#waiters.splice(0)) w();
      }),
    );
  }

  /** Connect to `path` (closed when the test ends). */
  static async connect(t: TestContext, path: string): Promise<LineClient> {
    const socket = net.connect(path);
    const client = new LineClient(socket);
    t.after(() => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return client;
  }

  /** Connect, read the greeting, negotiate (with `enable`). */
  static async negotiated(t: TestContext, path: string, enable?: string[]): Promise<LineClient> {
    const client = await LineClient.connect(t, path);
    await client.next((m) => "QMP" in m);
    client.send({ execute: "qmp_capabilities", ...(enable ? { arguments: { enable } } : {}) });
    await client.next((m) => "return" in m || "error" in m);
    return client;
  }

  /** Send a message (an object as one JSON line, or text as is). */
  send(message: object | string): void {
    this.socket.write(typeof message === "string" ? message : `${JSON.stringify(message)}\n`);
  }

  /**
   * The next message not returned before that satisfies `test` (messages
   * before it are skipped). Rejects if the connection closes first.
   */
  async next(
    test: (m: Record<string, unknown>) => boolean = () => true,
  ): Promise<Record<string, unknown>> {
    for (;;) {
      while (this.#cursor < this.received.length) {
        const m = this.received[this.#cursor++]!;
        if (test(m)) return m;
      }
      if (this.socket.destroyed || this.socket.readableEnded) {
        throw new Error(`The connection closed; got ${JSON.stringify(this.received.slice(-3))}`);
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** Resolves once `test` holds (checked now and after each read); rejects if the connection closes first. */
  async until(test: () => boolean): Promise<void> {
    while (!test()) {
      if (this.socket.destroyed || this.socket.readableEnded) {
        throw new Error(`The connection closed; got ${JSON.stringify(this.received.slice(-3))}`);
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** The reply with id `id`. */
  reply(id: unknown): Promise<Record<string, unknown>> {
    return this.next(
      (m) => ("return" in m || "error" in m) && JSON.stringify(m["id"]) === JSON.stringify(id),
    );
  }
}
