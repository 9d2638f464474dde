// In-memory micro-benchmarks (framing, client CPU over an in-process duplex), and integer vs string ids on real QEMU.
//
// These predate the side-by-side table and measure pieces, not what users
// meet: no real socket and no other process, except the last case.

import { JsonObjectScanner } from "../src/framing.js";
import { QMPClient } from "../src/index.js";
import type { Duplex } from "node:stream";
import { duplexPair } from "../test/helpers/duplex.js";

interface Variant {
  name: string;
  run: () => void | Promise<void>;
}

/** One micro-benchmark: its variants' median times and ratios to the first. */
export interface MicroResult {
  title: string;
  lines: { name: string; ms: number; ratio: number }[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Run the variants interleaved `rounds` times (after a warm-up); median times and ratios to the first. */
async function compare(title: string, variants: Variant[], rounds: number): Promise<MicroResult> {
  const times = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  for (const v of variants) await v.run(); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const v of variants) {
      const t0 = performance.now();
      await v.run();
      times.get(v.name)!.push(performance.now() - t0);
    }
  }
  const base = median(times.get(variants[0]!.name)!);
  const lines = variants.map((v) => {
    const ms = median(times.get(v.name)!);
    return { name: v.name, ms, ratio: ms / base };
  });
  return { title, lines };
}

function chunk(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

// --------------------------------------------------------------- framing

function scanAll(chunks: Buffer[]): number {
  const scanner = new JsonObjectScanner({ maxMessageSize: Infinity });
  let n = 0;
  for (const c of chunks) scanner.push(c, () => n++);
  return n;
}

/** The usual newline framer: split on \n, JSON.parse each line (cannot do pretty=on). */
function lineSplitAll(chunks: Buffer[]): number {
  let rest = "";
  let n = 0;
  for (const c of chunks) {
    const text = rest + c.toString("utf8");
    let start = 0;
    for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n", start)) {
      const line = text.slice(start, nl).trim();
      start = nl + 1;
      if (line) {
        JSON.parse(line);
        n++;
      }
    }
    rest = text.slice(start);
  }
  return n;
}

/** A naive framer that re-tries JSON.parse on the whole buffer after every chunk (quadratic). */
function retryParseAll(chunks: Buffer[]): number {
  let text = "";
  let n = 0;
  for (const c of chunks) {
    text += c.toString("utf8");
    try {
      JSON.parse(text);
      text = "";
      n++;
    } catch {
      // Incomplete; wait for more.
    }
  }
  return n;
}

/** A framer that re-scans the whole buffer for a newline after every chunk (quadratic). */
function rescanAll(chunks: Buffer[]): number {
  let buf = Buffer.alloc(0);
  let n = 0;
  for (const c of chunks) {
    buf = Buffer.concat([buf, c]);
    let nl: number;
    while ((nl = buf.indexOf(0x0a)) !== -1) {
      JSON.parse(buf.subarray(0, nl).toString("utf8"));
      buf = buf.subarray(nl + 1);
      n++;
    }
  }
  return n;
}

function makeTraffic(count: number): Buffer {
  const lines: string[] = [];
  for (let i = 1; i <= count; i++) {
    if (i % 10 === 0) {
      lines.push(
        JSON.stringify({
          timestamp: { seconds: 1795628597, microseconds: 604202 },
          event: "BLOCK_JOB_COMPLETED",
          data: { device: `drive${i}`, len: 1048576, offset: 1048576, speed: 0, type: "mirror" },
        }),
      );
    }
    lines.push(JSON.stringify({ return: { status: "running", running: true }, id: i }));
  }
  return Buffer.from(lines.join("\r\n") + "\r\n");
}

function makeBigReply(bytes: number): Buffer {
  const entries: object[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const e = {
      name: `x-entry-${i}`,
      "meta-type": "object",
      members: [
        { name: "node-name", type: "str" },
        { name: "detect-zeroes", type: "int", default: null },
      ],
    };
    size += JSON.stringify(e).length + 1;
    entries.push(e);
  }
  return Buffer.from(JSON.stringify({ return: entries, id: 7 }) + "\r\n");
}

// --------------------------------------------------------------- client CPU

/** An in-process peer that answers every command at once with `{"return": {}}`. */
function echoPeer(stream: Duplex): void {
  const scanner = new JsonObjectScanner();
  stream.write(
    '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 10}, "package": ""}, "capabilities": []}}\r\n',
  );
  stream.on("data", (chunk: Buffer) => {
    let out = "";
    scanner.push(chunk, (f) => {
      if (f.kind === "message") out += `{"return": {}, "id": ${JSON.stringify(f.value["id"])}}\r\n`;
    });
    if (out) stream.write(out);
  });
}

/** The least a client can do: write, split replies on newlines, match ids. No timeouts, no checks. */
class MinimalClient {
  #id = 1;
  #pending = new Map<number, (v: unknown) => void>();
  #rest = "";
  constructor(readonly stream: Duplex) {
    stream.setEncoding("utf8");
    stream.on("data", (text: string) => {
      const all = this.#rest + text;
      let start = 0;
      for (let nl = all.indexOf("\n"); nl !== -1; nl = all.indexOf("\n", start)) {
        const msg = JSON.parse(all.slice(start, nl)) as { id?: number; return?: unknown };
        start = nl + 1;
        if (msg.id !== undefined) {
          this.#pending.get(msg.id)?.(msg.return);
          this.#pending.delete(msg.id);
        }
      }
      this.#rest = all.slice(start);
    });
  }
  execute(command: string): Promise<unknown> {
    const id = this.#id++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.stream.write(JSON.stringify({ execute: command, id }));
    });
  }
}

async function waves(execute: () => Promise<unknown>, waves: number, size: number): Promise<void> {
  for (let w = 0; w < waves; w++) await Promise.all(Array.from({ length: size }, execute));
}

/**
 * Run the micro-benchmarks, `rounds` interleaved rounds each; the last one
 * only when a QEMU socket (`qemuPath`) is given.
 */
export async function runMicro(
  rounds: number,
  qemuPath: string | undefined,
): Promise<MicroResult[]> {
  const results: MicroResult[] = [];
  const traffic = makeTraffic(20_000);
  const trafficChunks = chunk(traffic, 65536);
  results.push(
    await compare(
      `framing: ${(traffic.length / 1e6).toFixed(1)} MB of compact QEMU traffic in 64 KiB chunks`,
      [
        { name: "qmp JsonObjectScanner", run: () => void scanAll(trafficChunks) },
        {
          name: "newline split + JSON.parse (no pretty=on)",
          run: () => void lineSplitAll(trafficChunks),
        },
      ],
      rounds,
    ),
  );

  const big = makeBigReply(4 * 1024 * 1024);
  const bigChunks = chunk(big, 65536);
  results.push(
    await compare(
      `framing: one ${(big.length / 1e6).toFixed(1)} MB reply (query-qmp-schema-like) in 64 KiB chunks`,
      [
        { name: "qmp JsonObjectScanner", run: () => void scanAll(bigChunks) },
        { name: "concat + re-scan for newline per chunk", run: () => void rescanAll(bigChunks) },
        { name: "append + re-try JSON.parse per chunk", run: () => void retryParseAll(bigChunks) },
      ],
      rounds,
    ),
  );

  const pretty = Buffer.from(
    JSON.stringify(JSON.parse(big.toString("utf8")), null, 4).replace(/\n/g, "\r\n") + "\r\n",
  );
  const prettyChunks = chunk(pretty, 65536);
  results.push(
    await compare(
      `framing: the same reply pretty-printed (pretty=on, ${(pretty.length / 1e6).toFixed(1)} MB)`,
      [
        { name: "qmp JsonObjectScanner", run: () => void scanAll(prettyChunks) },
        {
          name: "append + re-try JSON.parse per chunk",
          run: () => void retryParseAll(prettyChunks),
        },
      ],
      rounds,
    ),
  );

  const [mine, theirs] = duplexPair();
  echoPeer(theirs);
  const full = new QMPClient({ negotiate: false });
  await full.connect(mine);
  const [mine2, theirs2] = duplexPair();
  echoPeer(theirs2);
  const minimal = new MinimalClient(mine2);
  try {
    results.push(
      await compare(
        "client CPU: 20 waves of 500 concurrent commands, in-process duplex peer",
        [
          {
            name: "QMPClient.execute",
            run: () => waves(() => full.execute("query-status"), 20, 500),
          },
          {
            name: "minimal client (no checks, no timeouts, no events)",
            run: () => waves(() => minimal.execute("query-status"), 20, 500),
          },
        ],
        rounds,
      ),
    );
  } finally {
    await full.disconnect();
    mine2.destroy();
  }

  if (qemuPath === undefined) return results;
  // Wire cost of ids against a real QEMU: it reads one byte per system call.
  const client = new QMPClient({ name: "bench" });
  await client.connect(qemuPath);
  try {
    const N = 300;
    let seq = 0;
    results.push(
      await compare(
        `real QEMU: ${N} concurrent query-status, integer vs string ids`,
        [
          {
            name: "integer ids (qmp)",
            run: async () => {
              await Promise.all(Array.from({ length: N }, () => client.execute("query-status")));
            },
          },
          {
            name: 'string ids "__qmp#01234" (Python library style)',
            run: async () => {
              await Promise.all(
                Array.from({ length: N }, () =>
                  client.executeMsg({
                    execute: "query-status",
                    id: `__qmp#${String(++seq % 100000).padStart(5, "0")}`,
                  }),
                ),
              );
            },
          },
        ],
        rounds,
      ),
    );
  } finally {
    await client.disconnect();
  }
  return results;
}
