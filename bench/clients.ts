// The three clients the benchmarks compare, behind one small interface: qmp's QMPClient, a raw reference client, node-qemu.

import net from "node:net";
import { QMPClient as NodeQemuClient } from "node-qemu";
import { QMPClient } from "../src/index.js";

/** The variants, in the order they run in each round. */
export const VARIANTS = ["qmp", "raw", "node-qemu"] as const;
export type VariantId = (typeof VARIANTS)[number];

/** What a workload needs from a client. */
export interface BenchClient {
  /** Run a command; resolve to its return value. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown>;
  /** Start consuming events the way the client offers; resolve once `count` have arrived. */
  consumeEvents(count: number): Promise<void>;
  close(): Promise<void>;
}

/** Connect `variant` to the QMP socket at `path` and negotiate. */
export async function connectClient(variant: VariantId, path: string): Promise<BenchClient> {
  switch (variant) {
    case "qmp":
      return connectQmp(path);
    case "raw":
      return RawClient.connect(path);
    case "node-qemu":
      return connectNodeQemu(path);
  }
}

// ------------------------------------------------------------- qmp

async function connectQmp(path: string): Promise<BenchClient> {
  const client = new QMPClient({ name: "bench" });
  await client.connect(path);
  return new QmpBench(client);
}

/** A class, as the raw client is: no closures per session in the 1,000-session row. */
class QmpBench implements BenchClient {
  constructor(readonly client: QMPClient) {}

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    return this.client.execute(command, args);
  }

  async consumeEvents(count: number): Promise<void> {
    let n = 0;
    if (count <= 0) return;
    for await (const _ of this.client.events) if (++n >= count) break;
  }

  close(): Promise<void> {
    return this.client.disconnect();
  }
}

// ------------------------------------------------------------- node-qemu

async function connectNodeQemu(path: string): Promise<BenchClient> {
  const client = new NodeQemuClient({ socketPath: path });
  client.on("error", () => {});
  await client.connect();
  return {
    execute: (command, args) => client.execute(command, args),
    // node-qemu has no async iteration: it emits each event by name and as "rawEvent".
    consumeEvents: (count) =>
      new Promise<void>((resolve) => {
        let n = 0;
        if (count <= 0) return resolve();
        const onEvent = (): void => {
          if (++n < count) return;
          client.off("rawEvent", onEvent);
          resolve();
        };
        client.on("rawEvent", onEvent);
      }),
    close: () => client.close(),
  };
}

// ------------------------------------------------------------- raw

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/**
 * The reference: about the least a correct Node client can do, written for
 * speed. Writes are corked for the rest of the tick (one syscall for a
 * tick's commands); the inbound stream is split on newlines (pieces of a
 * long line are joined once, at its end, so big replies stay linear); each
 * line goes through one `JSON.parse`; integer ids are matched in a Map.
 * No size limit, no timeouts, no checks, no tracing.
 */
export class RawClient implements BenchClient {
  readonly #socket: net.Socket;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #corked = false;
  #pieces: string[] = [];
  #events: unknown[] = [];
  #eventHead = 0;
  #wake: (() => void) | undefined;
  #onGreeting: (() => void) | undefined;
  #oob = false;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => this.#onData(text));
    socket.on("error", () => {});
    socket.on("close", () => {
      for (const p of this.#pending.values()) p.reject(new Error("connection closed"));
      this.#pending.clear();
    });
  }

  /** Connect, read the greeting, negotiate (with oob when offered, as qmp does). */
  static async connect(path: string): Promise<RawClient> {
    const socket = net.connect(path);
    const client = new RawClient(socket);
    await new Promise<void>((resolve, reject) => {
      client.#onGreeting = resolve;
      socket.once("error", reject);
      socket.once("close", () => reject(new Error("closed before the greeting")));
    });
    await client.execute("qmp_capabilities", client.#oob ? { enable: ["oob"] } : undefined);
    return client;
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const id = this.#nextId++;
    const message =
      args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    this.#socket.write(JSON.stringify(message) + "\n");
    return new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }));
  }

  async consumeEvents(count: number): Promise<void> {
    let n = 0;
    if (count <= 0) return;
    for await (const _ of this.events()) if (++n >= count) break;
  }

  /** The events, in order, as an async iterable (a plain array queue). */
  async *events(): AsyncGenerator<unknown> {
    for (;;) {
      while (this.#eventHead < this.#events.length) {
        const event = this.#events[this.#eventHead++];
        if (this.#eventHead === this.#events.length) {
          this.#events = [];
          this.#eventHead = 0;
        }
        yield event;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  close(): Promise<void> {
    this.#socket.destroy();
    return Promise.resolve();
  }

  #onData(text: string): void {
    let start = 0;
    let nl = text.indexOf("\n");
    if (nl === -1) {
      this.#pieces.push(text);
      return;
    }
    if (this.#pieces.length > 0) {
      this.#pieces.push(text.slice(0, nl));
      const line = this.#pieces.join("");
      this.#pieces = [];
      this.#dispatch(line);
      start = nl + 1;
      nl = text.indexOf("\n", start);
    }
    while (nl !== -1) {
      this.#dispatch(text.slice(start, nl));
      start = nl + 1;
      nl = text.indexOf("\n", start);
    }
    if (start < text.length) this.#pieces.push(text.slice(start));
  }

  #dispatch(line: string): void {
    if (line.length <= 1) return; // "" or a lone "\r"
    const message = JSON.parse(line) as Record<string, unknown>;
    const id = message["id"];
    if (typeof id === "number") {
      const pending = this.#pending.get(id);
      if (pending === undefined) return;
      this.#pending.delete(id);
      if ("return" in message) pending.resolve(message["return"]);
      else pending.reject(new Error(JSON.stringify(message["error"])));
    } else if ("event" in message) {
      this.#events.push(message);
      const wake = this.#wake;
      this.#wake = undefined;
      wake?.();
    } else if ("QMP" in message) {
      const qmp = message["QMP"] as { capabilities?: unknown[] };
      this.#oob = qmp.capabilities?.includes("oob") ?? false;
      this.#onGreeting?.();
    }
  }
}

// ------------------------------------------------------------- write counting

type WriteMethod = (this: net.Socket, ...args: unknown[]) => unknown;

/**
 * Count the writes every `net.Socket` of this process hands to libuv while
 * `run` runs: calls of `_write` and `_writev`, each one write(v) syscall
 * (corked or queued chunks go out in one `_writev`). Only used in the
 * warm-up round, so the wrappers never slow a timed run.
 */
export async function countWrites(run: () => Promise<void>): Promise<number> {
  const proto = net.Socket.prototype as unknown as Record<"_write" | "_writev", WriteMethod>;
  const original = { _write: proto._write, _writev: proto._writev };
  let writes = 0;
  for (const key of ["_write", "_writev"] as const) {
    const method = original[key];
    proto[key] = function (this: net.Socket, ...args: unknown[]): unknown {
      writes++;
      return method.apply(this, args);
    };
  }
  try {
    await run();
  } finally {
    proto._write = original._write;
    proto._writev = original._writev;
  }
  return writes;
}
