// The rows of the bench table: each workload runs the three clients alternated (A B C A B C …), each
// run in a child process of its own (no shared heap, GC or JIT state), and keeps medians.

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { countWrites, VARIANTS, type VariantId } from "./clients.js";
import type { ChildResult, ChildTask } from "./measure-child.js";
import { kill, spawnTracked } from "./peers.js";

const here = dirname(fileURLToPath(import.meta.url));
const MiB = 1024 * 1024;

/** One measured quantity of a row. */
export interface Metric {
  key: string;
  label: string;
  unit: string;
  /** Which way is better; "none" for explanatory figures (writes per command). */
  better: "higher" | "lower" | "none";
  /** The target for qmp ÷ raw. */
  target?: { op: ">=" | "<="; ratio: number };
  digits?: number;
}

/** A row's medians: `null` where a client cannot do the workload (see `notes`). */
export interface RowResult {
  id: string;
  title: string;
  metrics: Metric[];
  values: Record<VariantId, Record<string, number | null>>;
  notes: Partial<Record<VariantId, string>>;
}

/** What every workload gets from the orchestration. */
export interface Context {
  /** The fake server's socket. */
  fake: string;
  /** Real QEMU's sockets, one per variant; undefined when QEMU cannot run. */
  qemu: Record<VariantId, string> | undefined;
  /** The schema reply's size in bytes. */
  schemaBytes: number;
  rounds: number;
  /** Multiplies every N. */
  scale: number;
  log: (line: string) => void;
}

/** A row of the table. */
export interface RowDef {
  id: string;
  /** Needs real QEMU. */
  qemu?: boolean;
  run: (ctx: Context) => Promise<RowResult>;
}

type Sample = Record<string, number>;

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function scaled(ctx: Context, n: number): number {
  return Math.max(1, Math.round(n * ctx.scale));
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Run `once` for each variant, alternated, one warm-up round and then
 * `rounds` timed ones (default `ctx.rounds`); medians per metric. The warm-up round's socket
 * writes are counted (`writes`). Child-process rows skip the warm-up: each
 * child starts cold anyway. A variant that fails is dropped from the
 * rest of the row, its cells n/a, the error in its note.
 */
async function alternate(
  ctx: Context,
  title: string,
  once: (variant: VariantId) => Promise<Sample>,
  warmUp = true,
  rounds = ctx.rounds,
): Promise<{ medians: Record<VariantId, Sample | null>; writes: Record<VariantId, number> }> {
  const samples = new Map<VariantId, Sample[]>(VARIANTS.map((v) => [v, []]));
  const writes = { qmp: NaN, raw: NaN, "node-qemu": NaN } as Record<VariantId, number>;
  const failed = new Map<VariantId, string>();
  for (let round = warmUp ? 0 : 1; round <= rounds; round++) {
    for (const variant of VARIANTS) {
      if (failed.has(variant)) continue;
      try {
        if (round === 0) {
          writes[variant] = await countWrites(async () => void (await once(variant)));
        } else {
          gc();
          samples.get(variant)!.push(await once(variant));
        }
      } catch (err) {
        failed.set(variant, message(err));
        ctx.log(`  ${title}: ${variant} failed: ${message(err)}`);
      }
    }
  }
  const medians = {} as Record<VariantId, Sample | null>;
  for (const variant of VARIANTS) {
    const list = samples.get(variant)!;
    if (failed.has(variant) || list.length === 0) {
      medians[variant] = null;
      continue;
    }
    const m: Sample = {};
    for (const key of Object.keys(list[0]!)) m[key] = median(list.map((s) => s[key]!));
    medians[variant] = m;
  }
  return { medians, writes };
}

function result(
  id: string,
  title: string,
  metrics: Metric[],
  medians: Record<VariantId, Sample | null>,
  notes: Partial<Record<VariantId, string>> = {},
): RowResult {
  const values = {} as RowResult["values"];
  for (const variant of VARIANTS) {
    const m = medians[variant];
    values[variant] = Object.fromEntries(metrics.map((x) => [x.key, m?.[x.key] ?? null]));
  }
  return { id, title, metrics, values, notes };
}

function peerPaths(ctx: Context, peer: "qemu" | "fake"): Record<VariantId, string> {
  if (peer === "fake") return { qmp: ctx.fake, raw: ctx.fake, "node-qemu": ctx.fake };
  if (ctx.qemu === undefined) throw new Error("QEMU is not available");
  return ctx.qemu;
}

/** One warmed-up, timed run of `workload` by `variant` in a child process of its own. */
async function inChild(
  variant: VariantId,
  path: string,
  workload: NonNullable<ChildTask["workload"]>,
  count: number,
): Promise<{ ms: number; cpuUs: number; writes: number }> {
  const r = await runChild({ variant, path, task: "run", workload, count }, 240_000);
  return { ms: Number(r["ms"]), cpuUs: Number(r["cpuUs"]), writes: Number(r["writes"]) };
}

const SERIAL_NOTE = "one command in flight at a time (its queue serializes concurrent calls)";

// ------------------------------------------------------------- command rows

function commandRow(id: string, peer: "qemu" | "fake", pipelined: boolean, n: number): RowDef {
  return {
    id,
    qemu: peer === "qemu",
    run: async (ctx) => {
      const count = scaled(ctx, n);
      const where = peer === "qemu" ? "real QEMU" : "fake server";
      const title = `${pipelined ? "pipelined" : "seq"} query-status, ${where} (N=${count})`;
      const tput = pipelined
        ? id === "pipe-fake"
          ? 0.9
          : undefined
        : peer === "qemu"
          ? 0.97
          : 0.95;
      const cpuTarget = id === "pipe-fake" ? undefined : 1.1;
      const metrics: Metric[] = [
        { key: "throughput", label: "throughput", unit: "cmd/s", better: "higher", digits: 0 },
        { key: "cpuPerCmd", label: "CPU/cmd", unit: "µs", better: "lower", digits: 1 },
        { key: "writesPerCmd", label: "writes/cmd", unit: "", better: "none", digits: 3 },
      ];
      if (tput !== undefined) metrics[0]!.target = { op: ">=", ratio: tput };
      if (cpuTarget !== undefined) metrics[1]!.target = { op: "<=", ratio: cpuTarget };
      const paths = peerPaths(ctx, peer);
      const workload = pipelined ? "pipe" : "seq";
      const { medians } = await alternate(
        ctx,
        id,
        async (v) => {
          const r = await inChild(v, paths[v], workload, count);
          return {
            throughput: count / (r.ms / 1000),
            cpuPerCmd: r.cpuUs / count,
            writesPerCmd: r.writes / count,
          };
        },
        false,
      );
      const notes: Partial<Record<VariantId, string>> = {};
      if (pipelined) notes["node-qemu"] = SERIAL_NOTE;
      return result(id, title, metrics, medians, notes);
    },
  };
}

// ------------------------------------------------------------- events, schema

const eventsRow: RowDef = {
  id: "events",
  run: async (ctx) => {
    const count = scaled(ctx, 200_000);
    const metrics: Metric[] = [
      { key: "rate", label: "rate", unit: "ev/s", better: "higher", digits: 0 },
      { key: "cpuPerEvent", label: "CPU/event", unit: "µs", better: "lower", digits: 2 },
    ];
    metrics[0]!.target = { op: ">=", ratio: 0.9 };
    {
      const { medians } = await alternate(
        ctx,
        "events",
        async (v) => {
          const r = await inChild(v, ctx.fake, "events", count);
          return { rate: count / (r.ms / 1000), cpuPerEvent: r.cpuUs / count };
        },
        false,
      );
      const title = `${count.toLocaleString("en")} events, fake server`;
      return result("events", title, metrics, medians, {
        qmp: "`for await` on client.events",
        raw: "`for await` on an array-queue async generator",
        "node-qemu": "no async iteration: a 'rawEvent' listener",
      });
    }
  },
};

const schemaRow: RowDef = {
  id: "schema",
  run: async (ctx) => {
    const calls = scaled(ctx, 100);
    const metrics: Metric[] = [
      { key: "cpuPerCall", label: "CPU/call", unit: "µs", better: "lower", digits: 0 },
      { key: "timePerCall", label: "time/call", unit: "µs", better: "lower", digits: 0 },
    ];
    metrics[0]!.target = { op: "<=", ratio: 1.1 };
    {
      const { medians } = await alternate(
        ctx,
        "schema",
        async (v) => {
          const r = await inChild(v, ctx.fake, "schema", calls);
          return { cpuPerCall: r.cpuUs / calls, timePerCall: (r.ms * 1000) / calls };
        },
        false,
      );
      const kb = Math.round(ctx.schemaBytes / 1000);
      return result(
        "schema",
        `${kb} KB schema reply, fake server (${calls} calls)`,
        metrics,
        medians,
      );
    }
  },
};

// ------------------------------------------------------------- child-process rows

/**
 * Rounds of a row whose sample is one cold run in a fresh process (a big
 * reply, 1,000 sessions): cheap, but noisier than a warmed-up loop, so at
 * least 9.
 */
function oneShotRounds(ctx: Context): number {
  return Math.max(ctx.rounds, 9);
}

/** Run a measuring child; its own process, so its RSS is the client's alone. */
export async function runChild(task: ChildTask, timeoutMs: number): Promise<ChildResult> {
  const child = spawnTracked(
    process.execPath,
    ["--expose-gc", join(here, "measure-child.js"), JSON.stringify(task)],
    ["ignore", "pipe", "pipe"],
  );
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  const closed = new Promise<number | null>((resolve) => child.once("close", resolve));
  try {
    const code = await withTimeout(closed, timeoutMs, task.variant);
    if (code !== 0) throw new Error(`exit ${code}: ${err.trim().split("\n").slice(-3).join(" ")}`);
    return JSON.parse(out) as ChildResult;
  } finally {
    await kill(child);
  }
}

function replyRow(id: string, bytes: number, overLimit: boolean): RowDef {
  return {
    id,
    run: async (ctx) => {
      const metrics: Metric[] = [
        { key: "timeMs", label: "time", unit: "ms", better: "lower", digits: 1 },
        { key: "peakRss", label: "peak RSS", unit: "MB", better: "lower", digits: 1 },
        { key: "peakGrowth", label: "RSS growth", unit: "MB", better: "lower", digits: 1 },
        { key: "cpuMs", label: "CPU", unit: "ms", better: "lower", digits: 1 },
      ];
      if (!overLimit) {
        metrics[0]!.target = { op: "<=", ratio: 1.0 };
        metrics[1]!.target = { op: "<=", ratio: 1.0 };
      }
      const outcomes: Partial<Record<VariantId, string>> = {};
      const { medians } = await alternate(
        ctx,
        id,
        async (variant) => {
          const r = await runChild({ variant, path: ctx.fake, task: "blob", bytes }, 90_000);
          outcomes[variant] = `${String(r["outcome"])}; session alive: ${String(r["alive"])}`;
          return {
            timeMs: Number(r["timeMs"]),
            cpuMs: Number(r["cpuMs"]),
            peakRss: Number(r["peakRss"]) / 1e6,
            peakGrowth: Number(r["peakGrowth"]) / 1e6,
          };
        },
        false,
        overLimit ? ctx.rounds : oneShotRounds(ctx),
      );
      const limit = overLimit ? " (over qmp's 10 MiB limit)" : "";
      const rounds = overLimit ? "" : `, median of ${oneShotRounds(ctx)}`;
      const title = `one ${bytes / MiB} MiB reply${limit}, fake server, child process${rounds}`;
      return result(id, title, metrics, medians, outcomes);
    },
  };
}

const sessionsRow: RowDef = {
  id: "sessions",
  run: async (ctx) => {
    const count = scaled(ctx, 1000);
    const metrics: Metric[] = [
      { key: "rssPerSession", label: "RSS/session", unit: "KB", better: "lower", digits: 1 },
      { key: "heapPerSession", label: "heap/session", unit: "KB", better: "lower", digits: 1 },
      { key: "timeMs", label: "open all", unit: "ms", better: "lower", digits: 0 },
    ];
    metrics[0]!.target = { op: "<=", ratio: 1.1 };
    const { medians } = await alternate(
      ctx,
      "sessions",
      async (variant) => {
        const r = await runChild({ variant, path: ctx.fake, task: "sessions", count }, 90_000);
        return {
          rssPerSession: Number(r["rssPerSession"]) / 1000,
          heapPerSession: Number(r["heapPerSession"]) / 1000,
          timeMs: Number(r["timeMs"]),
        };
      },
      false,
      oneShotRounds(ctx),
    );
    const title =
      `${count.toLocaleString("en")} sessions at once, fake server, child process, ` +
      `median of ${oneShotRounds(ctx)}`;
    return result("sessions", title, metrics, medians);
  },
};

/** Every row, in table order. */
export const ROWS: RowDef[] = [
  commandRow("seq-qemu", "qemu", false, 2000),
  commandRow("pipe-qemu", "qemu", true, 2000),
  commandRow("seq-fake", "fake", false, 5000),
  commandRow("pipe-fake", "fake", true, 5000),
  eventsRow,
  replyRow("reply-8m", 8 * MiB, false),
  replyRow("reply-64m", 64 * MiB, true),
  sessionsRow,
  schemaRow,
];
