// What `qmp mux` costs, on real QEMU: seq round trips through it against straight to QEMU, the
// same with a client that never reads, events fanned out to 10 clients, memory per client.
//
// The mux is the command (`qmp mux`) in a process of its own, as deployed; the clients are
// QMPClients in this process. Rounds alternate the two sides; medians are kept.

import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { QMPClient, QMPMux } from "../src/index.js";
import { kill, spawnTracked, startQemu } from "./peers.js";

const QMP_BIN = fileURLToPath(new URL("../../bin/qmp.js", import.meta.url));

/** One line of the mux table. */
export interface MuxLine {
  label: string;
  /** What is measured and its unit. */
  metric: string;
  base: number;
  muxed: number;
  /** muxed ÷ base, and its target (`>=`), if any. */
  ratio: number;
  target?: number | undefined;
  baseLabel: string;
  muxLabel: string;
}

/** The mux section of the report. */
export interface MuxResult {
  lines: MuxLine[];
  /** A QMPMux's heap growth per connected client (negotiated, idle), in KB. */
  heapPerClientKB: number;
  clients: number;
}

/** The mux's target for seq round trips through it, ÷ straight to QEMU. */
export const MUX_SEQ_TARGET = 0.9;
/** The target for the others' round trips with a client that never reads, ÷ without. */
export const MUX_STALL_TARGET = 0.8;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Round trips per second of `n` sequential query-status calls on a connected client. */
async function seq(client: QMPClient, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await client.execute("query-status");
  return n / ((performance.now() - t0) / 1000);
}

/** A raw socket that negotiates, then never reads: its replies and events pile up. */
async function stalledClient(path: string): Promise<net.Socket> {
  const socket = net.connect(path);
  socket.on("error", () => {});
  await new Promise<void>((resolve) => socket.once("data", () => resolve()));
  socket.write('{"execute":"qmp_capabilities"}\n');
  await new Promise<void>((resolve) => socket.once("data", () => resolve()));
  socket.pause();
  // Schema replies (200 KB each) fill its socket buffer: from then on the mux holds its output.
  for (let i = 0; i < 20; i++) socket.write('{"execute":"query-qmp-schema"}\n');
  return socket;
}

/** A child process's script: open `count` connections to `path`, negotiate each, say "ready", wait. */
const HOLDER = `
const net = require("node:net");
const [path, count] = process.argv.slice(1);
let ready = 0;
for (let i = 0; i < Number(count); i++) {
  const s = net.connect(path);
  s.on("error", () => {});
  let stage = 0;
  s.on("data", () => {
    if (stage === 0) { stage = 1; s.write('{"execute":"qmp_capabilities"}\\n'); }
    else if (stage === 1) { stage = 2; if (++ready === Number(count)) process.stdout.write("ready\\n"); }
  });
}
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
`;

/**
 * The heap a QMPMux (in this process) grows by for `count` clients
 * that connect and negotiate from another process and then stay idle.
 */
async function muxMemory(
  upstreamPath: string,
  path: string,
  count: number,
): Promise<{ heap: number }> {
  const upstream = await connected(upstreamPath);
  const mux = new QMPMux(upstream);
  await mux.listen(path);
  const gcNow = (globalThis as { gc?: () => void }).gc ?? (() => {});
  gcNow();
  const before = process.memoryUsage();
  const holder = spawnTracked(
    process.execPath,
    ["-e", HOLDER, path, String(count)],
    ["pipe", "pipe", "inherit"],
  );
  try {
    await new Promise<void>((resolve, reject) => {
      holder.stdout!.once("data", () => resolve());
      holder.once("exit", (code) => reject(new Error(`the client holder exited (${code})`)));
    });
    gcNow();
    const after = process.memoryUsage();
    // The heap, not the RSS: V8 reuses pages it already has, so the RSS barely moves.
    return { heap: after.heapUsed - before.heapUsed };
  } finally {
    holder.stdin!.end();
    await kill(holder);
    await mux.close();
    await upstream.destroy();
  }
}

/** Connect a QMPClient to `path`. */
async function connected(path: string): Promise<QMPClient> {
  const client = new QMPClient();
  await client.connect(path);
  return client;
}

/**
 * Run the mux benchmark: a QEMU with two monitors (one straight, one for
 * the mux), `qmp mux` on the second.
 */
export async function runMuxBench(dir: string, rounds: number, scale: number): Promise<MuxResult> {
  const n = Math.max(50, Math.round(1000 * scale));
  const qemu = await startQemu(dir, 3);
  const muxPath = join(dir, "mux.sock");
  const mux = spawnTracked(
    process.execPath,
    [QMP_BIN, "mux", "-v", qemu.paths[1]!, "-l", muxPath],
    ["ignore", "ignore", "pipe"],
  );
  const cleanup: (() => Promise<void> | void)[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let err = "";
      mux.stderr!.setEncoding("utf8").on("data", (s: string) => {
        err += s;
        if (err.includes("listening on")) resolve();
      });
      mux.once("exit", (code) => reject(new Error(`qmp mux exited (${code}): ${err}`)));
    });
    const direct = await connected(qemu.paths[0]!);
    const viaMux = await connected(muxPath);
    cleanup.push(
      () => direct.destroy(),
      () => viaMux.destroy(),
    );
    await seq(direct, 100);
    await seq(viaMux, 100);

    // Seq round trips, alternated: straight; through the mux; through the mux with a client
    // connected that never reads (a fresh one each round, its socket full of replies, events
    // coming meanwhile: its share is held, then dropped).
    const s = { direct: [] as number[], mux: [] as number[], stalled: [] as number[] };
    for (let r = 0; r < rounds; r++) {
      s.direct.push(await seq(direct, n));
      s.mux.push(await seq(viaMux, n));
      const stalled = await stalledClient(muxPath);
      for (let i = 0; i < 20; i++) {
        await viaMux.execute("stop");
        await viaMux.execute("cont");
      }
      s.stalled.push(await seq(viaMux, n));
      stalled.destroy();
    }

    // Events fanned out to 10 clients through the mux, against one client straight to QEMU.
    const k = Math.max(20, Math.round(200 * scale));
    const fan = { direct: [] as number[], mux: [] as number[] };
    const listeners = await Promise.all(Array.from({ length: 10 }, () => connected(muxPath)));
    cleanup.push(() => Promise.all(listeners.map((l) => l.destroy())).then(() => {}));
    for (let r = 0; r < rounds; r++) {
      for (const [side, watchers] of [
        ["direct", [direct]],
        ["mux", listeners],
      ] as const) {
        const queues = watchers.map((w) =>
          w.listener(["STOP", "RESUME"], undefined, { maxPending: 100_000 }),
        );
        const t0 = performance.now();
        for (let i = 0; i < k; i++) {
          await direct.execute("stop");
          await direct.execute("cont");
        }
        await Promise.all(
          queues.map(async (q) => {
            for (let i = 0; i < 2 * k; i++) await q.get();
          }),
        );
        fan[side].push((2 * k) / ((performance.now() - t0) / 1000));
        for (const q of queues) q[Symbol.dispose]();
      }
    }

    // Memory: a QMPMux in this process, and 500 idle clients negotiated from another process.
    const clients = 500;
    const memory = await muxMemory(qemu.paths[2]!, join(dir, "mem.sock"), clients);
    const line = (
      label: string,
      metric: string,
      base: number[],
      muxed: number[],
      baseLabel: string,
      muxLabel: string,
      target?: number,
    ): MuxLine => {
      const b = median(base);
      const m = median(muxed);
      return { label, metric, base: b, muxed: m, ratio: m / b, target, baseLabel, muxLabel };
    };
    return {
      lines: [
        line(
          `seq query-status, real QEMU (N=${n})`,
          "cmd/s",
          s.direct,
          s.mux,
          "straight",
          "through the mux",
          MUX_SEQ_TARGET,
        ),
        line(
          `the same, a client that never reads connected`,
          "cmd/s",
          s.mux,
          s.stalled,
          "without it",
          "with it",
          MUX_STALL_TARGET,
        ),
        line(
          `STOP/RESUME events (${2 * k}), delivered to all`,
          "ev/s",
          fan.direct,
          fan.mux,
          "1 client straight",
          "10 clients through the mux",
        ),
      ],
      heapPerClientKB: memory.heap / clients / 1024,
      clients,
    };
  } finally {
    for (const undo of cleanup.reverse()) await undo();
    await kill(mux);
    await qemu.stop();
  }
}
