// A measuring child process, one per variant and round, for what is per process (RSS): prints one JSON line.
//
// Run as `node --expose-gc measure-child.js '{"variant":…,"path":…,"task":…}'`:
//   task "blob":     one client runs `bench-blob {bytes}`; time, CPU, peak RSS,
//                    what became of the reply, whether the session survived.
//   task "sessions": `count` clients connect and run one query-status each;
//                    RSS and heap growth while they are all open.
//   task "run":      one client runs `workload` (`count` commands or events) to warm up
//                    (3 runs and 300 ms at least; the first one's socket writes counted),
//                    then 3 timed runs: wall and CPU time of the median one. Each
//                    variant in its own process, as a user's program runs one client
//                    library: no shared heap, GC or JIT state.

import { type BenchClient, connectClient, countWrites, type VariantId } from "./clients.js";

/** What the parent asks for. */
export interface ChildTask {
  variant: VariantId;
  path: string;
  task: "blob" | "sessions" | "run";
  bytes?: number;
  count?: number;
  workload?: "seq" | "pipe" | "events" | "schema";
}

/** What the child prints (one JSON line). */
export type ChildResult = Record<string, number | string>;

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

function errorName(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === "string" ? `${err.name} (${code})` : err.name;
  }
  return String(err);
}

async function blob(task: ChildTask): Promise<ChildResult> {
  const client = await connectClient(task.variant, task.path);
  gc();
  const rssBefore = process.memoryUsage.rss();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let outcome: string;
  try {
    const value = await client.execute("bench-blob", { bytes: task.bytes });
    outcome = `parsed (${Array.isArray(value) ? value.length : 0} entries)`;
  } catch (err) {
    outcome = `rejected: ${errorName(err)}`;
  }
  const timeMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  // maxRSS is the process's peak, in KiB; the value is still alive here, so it counts.
  const peakRss = process.resourceUsage().maxRSS * 1024;
  let alive: string;
  try {
    await Promise.race([
      client.execute("query-status"),
      new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 5000).unref()),
    ]);
    alive = "yes";
  } catch (err) {
    alive = `no (${errorName(err)})`;
  }
  await client.close();
  return {
    timeMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    peakRss,
    rssBefore,
    peakGrowth: peakRss - rssBefore,
    outcome,
    alive,
  };
}

async function sessions(task: ChildTask): Promise<ChildResult> {
  const count = task.count ?? 1000;
  // Load the client's code and warm it up first, so that only the sessions count.
  const first = await connectClient(task.variant, task.path);
  await first.execute("query-status");
  gc();
  const rss0 = process.memoryUsage.rss();
  const heap0 = process.memoryUsage().heapUsed;
  const clients: BenchClient[] = [];
  const t0 = performance.now();
  // "At once": all stay open; they connect in bursts of 100 so that no listen backlog overflows.
  for (let i = 0; i < count; i += 100) {
    const burst = Math.min(100, count - i);
    clients.push(
      ...(await Promise.all(
        Array.from({ length: burst }, () => connectClient(task.variant, task.path)),
      )),
    );
  }
  await Promise.all(clients.map((c) => c.execute("query-status")));
  const timeMs = performance.now() - t0;
  gc();
  const rss1 = process.memoryUsage.rss();
  const heap1 = process.memoryUsage().heapUsed;
  await Promise.all([first, ...clients].map((c) => c.close()));
  return {
    timeMs,
    rssPerSession: (rss1 - rss0) / count,
    heapPerSession: (heap1 - heap0) / count,
  };
}

/** The body of a "run" task, for `client`. */
function workload(task: ChildTask, client: BenchClient): () => Promise<unknown> {
  const count = task.count ?? 1000;
  switch (task.workload) {
    case "seq":
      return async () => {
        for (let i = 0; i < count; i++) await client.execute("query-status");
      };
    case "pipe":
      return () => Promise.all(Array.from({ length: count }, () => client.execute("query-status")));
    case "events":
      return async () => {
        const consumed = client.consumeEvents(count);
        await client.execute("bench-events", { count });
        await consumed;
      };
    case "schema":
      return async () => {
        for (let i = 0; i < count; i++) await client.execute("query-qmp-schema");
      };
    case undefined:
      break;
  }
  throw new Error("no workload given");
}

/** Warm-up: at least this many runs, and at least this long (ms), at most `WARM_MAX` runs. */
const WARM_RUNS = 3;
const WARM_MS = 300;
const WARM_MAX = 40;
/** Timed runs per child; the one with the median wall time is reported. */
const TIMED_RUNS = 3;

async function run(task: ChildTask): Promise<ChildResult> {
  const client = await connectClient(task.variant, task.path);
  const body = workload(task, client);
  const warm0 = performance.now();
  const writes = await countWrites(async () => void (await body()));
  // More warm-up runs, by count and by time: what is timed is the steady state
  // a long-running program sees, for every client alike (a cold JIT favours
  // the shortest code, and a 10 ms run is not yet optimized after three).
  // No forced gc() here: it shrinks the heap to what no running program has.
  for (let i = 1; i < WARM_MAX && (i < WARM_RUNS || performance.now() - warm0 < WARM_MS); i++) {
    await body();
  }
  const timed: { ms: number; cpuUs: number }[] = [];
  for (let i = 0; i < TIMED_RUNS; i++) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await body();
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    timed.push({ ms, cpuUs: cpu.user + cpu.system });
  }
  await client.close();
  timed.sort((a, b) => a.ms - b.ms);
  const { ms, cpuUs } = timed[TIMED_RUNS >> 1]!;
  return { ms, cpuUs, writes };
}

const task = JSON.parse(process.argv[2] ?? "{}") as ChildTask;
const result =
  task.task === "blob"
    ? await blob(task)
    : task.task === "run"
      ? await run(task)
      : await sessions(task);
process.stdout.write(JSON.stringify(result) + "\n");
// Sockets the clients left behind must not keep the child alive.
process.exit(0);
