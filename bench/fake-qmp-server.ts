// The benchmarks' fake QMP server, run in a process of its own: `node fake-qmp-server.js SOCKET SCHEMA`.
//
// It speaks just enough QMP for the benchmarks and writes like QEMU does:
// one write() per reply or event, nothing batched in this process (the
// kernel may still coalesce what the client has not read yet). It prints
// "ready" on stdout once it listens, and exits when its stdin closes, so it
// never outlives the bench that started it.
//
// Commands: qmp_capabilities, query-status, query-qmp-schema (the reply in
// the SCHEMA file), quit, and for the bench: bench-events {count} (streams
// `count` events, then replies) and bench-blob {bytes} (one reply of about
// `bytes` bytes, schema-like entries).

import { readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { JsonObjectScanner } from "../src/framing.js";

const [socketPath, schemaPath] = process.argv.slice(2);
if (socketPath === undefined || schemaPath === undefined) {
  console.error("usage: fake-qmp-server.js SOCKET SCHEMA");
  process.exit(2);
}

const GREETING =
  '{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "bench"}, ' +
  '"capabilities": ["oob"]}}\r\n';
const STATUS = '{"return":{"status":"running","singlestep":false,"running":true}';
/** The return value of query-qmp-schema, as JSON text (captured from QEMU by the bench). */
const schemaText = readFileSync(schemaPath, "utf8");
const schemaEntries = JSON.parse(schemaText) as unknown[];
/** bench-blob bodies by size: `{"return": [...]` without the id and the closing brace. */
const blobs = new Map<number, Buffer>();

/** `{"return": [schema entries, repeated and renamed]` of about `bytes` bytes. */
function blobBody(bytes: number): Buffer {
  let body = blobs.get(bytes);
  if (body !== undefined) return body;
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const entry = schemaEntries[i % schemaEntries.length] as Record<string, unknown>;
    const text = JSON.stringify({ ...entry, name: `${String(entry["name"])}-${i}` });
    parts.push(text);
    size += text.length + 2;
  }
  body = Buffer.from(`{"return": [${parts.join(", ")}]`);
  blobs.set(bytes, body);
  return body;
}

function idPart(message: Record<string, unknown>): string {
  return "id" in message ? `, "id": ${JSON.stringify(message["id"])}}\r\n` : "}\r\n";
}

function eventText(): string {
  const now = Date.now();
  const seconds = Math.floor(now / 1000);
  const micros = (now % 1000) * 1000;
  return (
    `{"timestamp": {"seconds": ${seconds}, "microseconds": ${micros}}, ` +
    `"event": "JOB_STATUS_CHANGE", "data": {"status": "running", "id": "job0"}}\r\n`
  );
}

/** One connection: commands are handled in order; a streaming command holds the ones after it. */
class Connection {
  readonly #socket: net.Socket;
  readonly #backlog: Record<string, unknown>[] = [];
  #busy = false;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("error", () => {});
    const scanner = new JsonObjectScanner({ maxMessageSize: Infinity });
    socket.on("data", (chunk: Buffer) => {
      try {
        scanner.push(chunk, (frame) => {
          if (frame.kind === "message") this.#receive(frame.value);
        });
      } catch {
        socket.destroy();
      }
    });
    socket.write(GREETING);
  }

  #receive(message: Record<string, unknown>): void {
    if (this.#busy) this.#backlog.push(message);
    else this.#handle(message);
  }

  #write(text: string): boolean {
    return !this.#socket.destroyed && this.#socket.write(text);
  }

  #handle(message: Record<string, unknown>): void {
    const command = message["execute"] ?? message["exec-oob"];
    const args = (message["arguments"] ?? {}) as Record<string, unknown>;
    switch (command) {
      case "qmp_capabilities":
        this.#write('{"return": {}' + idPart(message));
        return;
      case "query-status":
        this.#write(STATUS + idPart(message));
        return;
      case "query-qmp-schema":
        this.#write(`{"return": ${schemaText}${idPart(message)}`);
        return;
      case "quit":
        this.#write('{"return": {}' + idPart(message));
        this.#socket.end();
        return;
      case "bench-blob": {
        // Body and id in one writev (cork), not two writes.
        const body = blobBody(Number(args["bytes"]));
        this.#socket.cork();
        this.#socket.write(body);
        this.#write(idPart(message));
        this.#socket.uncork();
        return;
      }
      case "bench-events":
        this.#busy = true;
        void this.#stream(Number(args["count"]), message);
        return;
      default:
        this.#write(
          `{"error": {"class": "CommandNotFound", "desc": "The command ${String(command)} ` +
            `has not been found"}${idPart(message)}`,
        );
    }
  }

  /** One write per event; wait for 'drain' when the kernel buffer is full, as QEMU waits for POLLOUT. */
  async #stream(count: number, message: Record<string, unknown>): Promise<void> {
    for (let i = 0; i < count && !this.#socket.destroyed; i++) {
      if (!this.#write(eventText())) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            this.#socket.off("drain", done).off("close", done);
            resolve();
          };
          this.#socket.on("drain", done).on("close", done);
        });
      }
    }
    this.#write('{"return": {}' + idPart(message));
    this.#busy = false;
    while (!this.#busy && this.#backlog.length > 0) this.#handle(this.#backlog.shift()!);
  }
}

const server = net.createServer((socket) => new Connection(socket));
server.on("error", (err) => {
  console.error(`fake QMP server: ${err.message}`);
  process.exit(1);
});
// A deep backlog: the sessions row opens a thousand connections in bursts.
server.listen({ path: socketPath, backlog: 4096 }, () => {
  process.stdout.write("ready\n");
});
process.stdin.resume();
process.stdin.on("close", () => {
  server.close();
  rmSync(socketPath, { force: true });
  process.exit(0);
});
