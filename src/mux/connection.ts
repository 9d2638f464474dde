// One client of the mux: its greeting and negotiation answered here, its commands sent upstream
// with the mux's ids and their replies given back with its own, events delivered through a
// bounded queue that never holds the others up.

import type net from "node:net";
import { JsonObjectScanner } from "../framing.js";
import type { CommandMessage, Greeting, QMPEvent } from "../message.js";
import type { CheckedPolicy } from "./policy.js";

/** What a connection needs from its mux. */
export interface ConnectionHost {
  /** QEMU's greeting, as the mux got it. */
  readonly greeting: Greeting;
  /** The socket's policy. */
  readonly policy: CheckedPolicy;
  /** Most events held for a client that does not read. */
  readonly queueLimit: number;
  /** What to do with a client whose queue is full. */
  readonly slowClient: "drop" | "disconnect";
  /** Largest message a client may send, in bytes. */
  readonly maxMessageSize: number;
  /** Send `message` (without an id of its own) upstream; resolves with QEMU's reply. */
  forward(message: CommandMessage): Promise<Record<string, unknown>>;
  /** The client negotiated. */
  negotiated(): void;
  /** The connection is over. */
  closed(connection: MuxConnection): void;
}

/** Commands that take a file descriptor with them, which the mux cannot pass on. */
const FD_COMMANDS: ReadonlySet<string> = new Set(["getfd", "add-fd"]);

/** An error reply (with the client's id, when its message had one). */
function errorReply(
  cls: string,
  desc: string,
  message?: Record<string, unknown>,
): Record<string, unknown> {
  const reply: Record<string, unknown> = { error: { class: cls, desc } };
  if (message !== undefined && "id" in message) reply["id"] = message["id"];
  return reply;
}

/** A QMP event made by the mux, with the current time. */
function muxEvent(event: string, data: Record<string, unknown>): QMPEvent {
  const now = Date.now();
  return {
    event,
    data: data as NonNullable<QMPEvent["data"]>,
    timestamp: { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 },
  };
}

/** One line held for a client that is not reading. */
interface Held {
  line: string;
  event: boolean;
}

/** One client connected to the mux. */
export class MuxConnection {
  readonly #socket: net.Socket;
  readonly #host: ConnectionHost;
  readonly #scanner: JsonObjectScanner;
  #negotiated = false;
  #oob = false;
  /** Commands sent upstream and not answered yet. */
  #pending = 0;
  /** The upstream session ended: close once the pending commands are answered. */
  #ending = false;
  #closed = false;
  /** Lines waiting for the socket to drain, oldest first. */
  #held: Held[] = [];
  #heldEvents = 0;
  /** Events dropped since the client last read. */
  #dropped = 0;

  constructor(socket: net.Socket, host: ConnectionHost) {
    this.#socket = socket;
    this.#host = host;
    this.#scanner = new JsonObjectScanner({ maxMessageSize: host.maxMessageSize });
    socket.on("error", () => {});
    socket.on("close", () => this.#close());
    socket.on("drain", () => this.#drain());
    socket.on("data", (chunk: Buffer) => this.#read(chunk));
    this.#send(JSON.stringify(host.greeting), false);
  }

  /** Whether the client negotiated (and so gets events). */
  get negotiated(): boolean {
    return this.#negotiated;
  }

  /** Events dropped for this client since it last read (see `slowClient`). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Deliver an event (already serialized, shared by every client). */
  event(line: string): void {
    if (this.#negotiated) this.#send(line, true);
  }

  /** The upstream session ended: answer what is pending (with errors), then close. */
  upstreamEnded(): void {
    this.#ending = true;
    if (this.#pending === 0) this.#end();
  }

  /** Close at once. */
  destroy(): void {
    this.#socket.destroy();
  }

  // ---------------------------------------------------------------- input

  #read(chunk: Buffer): void {
    try {
      this.#scanner.push(chunk, (frame) => {
        if (frame.kind === "message") this.#message(frame.value);
        else {
          const id = frame.id;
          const reply = errorReply("GenericError", `JSON message too large (${frame.size} bytes)`);
          if (id !== undefined) reply["id"] = id;
          this.#reply(reply);
        }
      });
    } catch (err) {
      // As QEMU does for input it cannot parse: an error without id. The stream is lost.
      this.#reply(errorReply("GenericError", `JSON parse error, ${(err as Error).message}`));
      this.#end();
    }
  }

  #message(message: Record<string, unknown>): void {
    if (this.#ending || this.#closed) return;
    const oob = "exec-oob" in message;
    const command = oob ? message["exec-oob"] : message["execute"];
    if (typeof command !== "string") {
      this.#reply(errorReply("GenericError", "QMP input lacks member 'execute'", message));
      return;
    }
    if (!this.#negotiated) {
      if (command !== "qmp_capabilities") {
        const desc = "Expecting capabilities negotiation with 'qmp_capabilities'";
        this.#reply(errorReply("CommandNotFound", desc, message));
        return;
      }
      this.#negotiate(message);
      return;
    }
    if (command === "qmp_capabilities") {
      const desc = "Capabilities negotiation is already complete, command ignored";
      this.#reply(errorReply("CommandNotFound", desc, message));
      return;
    }
    if (oob && !this.#oob) {
      // QEMU's own words for it.
      const desc = "QMP input member 'exec-oob' is unexpected";
      this.#reply(errorReply("GenericError", desc, message));
      return;
    }
    if (!this.#host.policy.allows(command)) {
      const desc = `The command ${command} is not allowed on this socket`;
      this.#reply(errorReply("GenericError", desc, message));
      return;
    }
    if (FD_COMMANDS.has(command)) {
      const desc = `${command} needs a file descriptor passed with it, which qmp mux does not pass on: use a monitor of QEMU's own`;
      this.#reply(errorReply("GenericError", desc, message));
      return;
    }
    this.#forward(message);
  }

  #negotiate(message: Record<string, unknown>): void {
    const args = message["arguments"];
    const enable =
      typeof args === "object" && args !== null ? (args as Record<string, unknown>)["enable"] : [];
    const offered = this.#host.greeting.QMP.capabilities;
    if (enable !== undefined && !Array.isArray(enable)) {
      this.#reply(
        errorReply("GenericError", "Invalid parameter type for 'enable', expected: array", message),
      );
      return;
    }
    for (const cap of enable ?? []) {
      if (typeof cap !== "string" || !offered.includes(cap)) {
        const desc = `Capability '${String(cap)}' not available`;
        this.#reply(errorReply("GenericError", desc, message));
        return;
      }
    }
    this.#oob = (enable ?? []).includes("oob");
    this.#negotiated = true;
    const reply: Record<string, unknown> = { return: {} };
    if ("id" in message) reply["id"] = message["id"];
    this.#reply(reply);
    this.#host.negotiated();
  }

  #forward(message: Record<string, unknown>): void {
    const { id: _id, ...upstream } = message;
    this.#pending++;
    this.#host.forward(upstream as CommandMessage).then(
      (reply) => {
        const { id: _theirs, ...rest } = reply;
        if ("id" in message) rest["id"] = message["id"];
        this.#answered(rest);
      },
      (err: unknown) => {
        const why = err instanceof Error ? err.message : String(err);
        this.#answered(errorReply("GenericError", `qmp mux: ${why}`, message));
      },
    );
  }

  #answered(reply: Record<string, unknown>): void {
    this.#pending--;
    // A client that left: its replies are dropped when they come.
    if (!this.#closed) this.#reply(reply);
    if (this.#ending && this.#pending === 0) this.#end();
  }

  // ---------------------------------------------------------------- output

  #reply(reply: Record<string, unknown>): void {
    this.#send(JSON.stringify(reply), false);
  }

  /** Write a line, or hold it while the client is not reading (events bounded, replies not). */
  #send(json: string, event: boolean): void {
    if (this.#closed) return;
    const line = `${json}\r\n`;
    const socket = this.#socket;
    if (this.#held.length === 0 && !socket.writableNeedDrain) {
      socket.write(line);
      // Full: read no more commands from this client until it reads its replies.
      if (socket.writableNeedDrain) socket.pause();
      return;
    }
    if (event) {
      if (this.#heldEvents >= this.#host.queueLimit) {
        if (this.#host.slowClient === "disconnect") {
          this.destroy();
          return;
        }
        const oldest = this.#held.findIndex((h) => h.event);
        this.#held.splice(oldest, 1);
        this.#heldEvents--;
        this.#dropped++;
      }
      this.#heldEvents++;
    }
    this.#held.push({ line, event });
  }

  #drain(): void {
    const socket = this.#socket;
    if (this.#dropped > 0) {
      const notice = muxEvent("MUX_EVENTS_DROPPED", { count: this.#dropped });
      this.#dropped = 0;
      socket.write(`${JSON.stringify(notice)}\r\n`);
    }
    let i = 0;
    while (i < this.#held.length && !socket.writableNeedDrain) {
      const held = this.#held[i++]!;
      if (held.event) this.#heldEvents--;
      socket.write(held.line);
    }
    this.#held = this.#held.slice(i);
    if (this.#held.length === 0 && !socket.writableNeedDrain) {
      socket.resume();
      if (this.#ending && this.#pending === 0) this.#end();
    }
  }

  /** Close once what is held is written. */
  #end(): void {
    if (this.#held.length > 0) return; // #drain() ends it
    this.#socket.end();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#held = [];
    this.#host.closed(this);
  }
}
