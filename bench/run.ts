// `npm run bench`: qmp, a raw reference client and node-qemu side by side on real sockets, against a fake server
// process and real QEMU; then the in-memory micro-benchmarks.
//
//   npm run bench -- [--only ROW[,ROW]] [--rounds N] [--scale F] [--markdown] [--readme]
//                    [--json FILE] [--compare FILE] [--list]
//
// Absolute numbers on a shared machine are noise; ratios between clients
// measured alternately in the same run are what we report. Progress goes to
// stderr, the report to stdout.

import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { VARIANTS, type VariantId } from "./clients.js";
import { type MicroResult, runMicro } from "./micro.js";
import { type TypecheckResult, runTypecheck } from "./typecheck.js";
import { type MuxResult, runMuxBench } from "./mux.js";
import {
  buildSchema,
  captureSchema,
  cleanupAll,
  type FakeServer,
  type Qemu,
  qemuVersionLine,
  startFakeServer,
  startQemu,
  tempDir,
} from "./peers.js";
import {
  type BenchReport,
  compareReports,
  markdownReport,
  replaceInReadme,
  textReport,
} from "./report.js";
import { type Context, ROWS, type RowResult } from "./workloads.js";

const USAGE = `usage: npm run bench -- [options]
  --only ROW[,ROW]  run a subset: ${[...ROWS.map((r) => r.id), "micro"].join(", ")}
  --rounds N        timed rounds per row (default 5, or BENCH_ROUNDS; at least 1)
  --scale F         multiply every N (default 1, or BENCH_SCALE)
  --markdown        also print the markdown table
  --readme          write the markdown table into README.md between the bench markers
  --json FILE       write the results as JSON
  --compare FILE    print the change per row against an earlier --json FILE
  --list            list the rows and exit`;

const log = (line: string): void => void process.stderr.write(line + "\n");

function parseOptions(): {
  only: Set<string> | undefined;
  rounds: number;
  scale: number;
  markdown: boolean;
  readme: boolean;
  json: string | undefined;
  compare: string | undefined;
  list: boolean;
} {
  const { values } = parseArgs({
    options: {
      only: { type: "string" },
      rounds: { type: "string" },
      scale: { type: "string" },
      markdown: { type: "boolean", default: false },
      readme: { type: "boolean", default: false },
      json: { type: "string" },
      compare: { type: "string" },
      list: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const only = values.only === undefined ? undefined : new Set(values.only.split(","));
  const known = new Set([...ROWS.map((r) => r.id), "micro", "typecheck", "mux"]);
  for (const id of only ?? []) {
    if (!known.has(id)) throw new Error(`Unknown row "${id}"\n${USAGE}`);
  }
  const rounds = Number(values.rounds ?? process.env["BENCH_ROUNDS"] ?? 5);
  const scale = Number(values.scale ?? process.env["BENCH_SCALE"] ?? 1);
  if (!(Number.isInteger(rounds) && rounds >= 1)) throw new Error("--rounds must be 1 or more");
  if (!(scale > 0)) throw new Error("--scale must be above 0");
  return {
    only,
    rounds,
    scale,
    markdown: values.markdown,
    readme: values.readme,
    json: values.json,
    compare: values.compare,
    list: values.list,
  };
}

/** "QEMU 10.0.2" from QEMU's `--version` line. */
function shortQemu(line: string | undefined): string {
  if (line === undefined) return "no QEMU";
  const m = /version (\S+)/.exec(line);
  return m === null ? line : `QEMU ${m[1]}`;
}

async function main(): Promise<void> {
  const options = parseOptions();
  if (options.list) {
    console.log([...ROWS.map((r) => r.id), "micro", "typecheck", "mux"].join("\n"));
    return;
  }
  const started = performance.now();
  const selected = ROWS.filter((r) => options.only?.has(r.id) ?? true);
  const wantMicro = options.only?.has("micro") ?? true;
  const wantTypecheck = options.only?.has("typecheck") ?? true;
  const wantMux = options.only?.has("mux") ?? true;
  const qemuLine = await qemuVersionLine();
  const dir = tempDir();
  let qemu: Qemu | undefined;
  let fake: FakeServer | undefined;
  const rows: RowResult[] = [];
  let micro: MicroResult[] = [];
  let typecheck: TypecheckResult | undefined;
  let mux: MuxResult | undefined;
  try {
    if (qemuLine !== undefined) {
      qemu = await startQemu(dir, VARIANTS.length).catch((err: unknown) => {
        log(`(no real QEMU: ${String(err)})`);
        return undefined;
      });
    } else {
      log("(no real QEMU: qemu-system-x86_64 cannot be run; the QEMU rows are skipped)");
    }
    // The schema reply: QEMU's own, captured once; a built one without QEMU.
    const schema = qemu !== undefined ? await captureSchema(qemu.paths[0]!) : buildSchema(186_000);
    fake = await startFakeServer(dir, schema);
    const ctx: Context = {
      fake: fake.path,
      qemu:
        qemu === undefined
          ? undefined
          : (Object.fromEntries(VARIANTS.map((v, i) => [v, qemu!.paths[i]!])) as Record<
              VariantId,
              string
            >),
      schemaBytes: Buffer.byteLength(schema),
      rounds: options.rounds,
      scale: options.scale,
      log,
    };
    if (options.scale !== 1) log(`(every N is scaled by ${options.scale})`);
    for (const row of selected) {
      if (row.qemu === true && ctx.qemu === undefined) {
        log(`${row.id}: skipped, no real QEMU`);
        continue;
      }
      const t0 = performance.now();
      log(`${row.id}: running…`);
      rows.push(await row.run(ctx));
      log(`${row.id}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    if (wantMicro) {
      const t0 = performance.now();
      log("micro: running…");
      micro = await runMicro(options.rounds, ctx.qemu?.qmp);
      log(`micro: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    if (wantTypecheck) {
      const t0 = performance.now();
      log("typecheck: running…");
      typecheck = runTypecheck(options.rounds);
      log(`typecheck: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    if (wantMux && qemuLine !== undefined) {
      const t0 = performance.now();
      log("mux: running…");
      mux = await runMuxBench(dir, options.rounds, options.scale);
      log(`mux: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    await fake?.stop();
    await qemu?.stop();
    cleanupAll();
  }

  const cpu = cpus();
  const report: BenchReport = {
    machine: {
      cpu: cpu[0]?.model.trim() ?? "unknown CPU",
      cores: cpu.length,
      node: process.version,
      qemu: shortQemu(qemuLine),
      date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
      rounds: options.rounds,
      scale: options.scale,
    },
    rows,
    micro,
    typecheck,
    mux,
  };
  console.log(textReport(report));
  const markdown = markdownReport(report);
  if (options.markdown) console.log(`\n${markdown}\n`);
  if (options.readme) {
    const path = new URL("../../README.md", import.meta.url);
    writeFileSync(path, replaceInReadme(readFileSync(path, "utf8"), markdown));
    log("README.md: bench table regenerated");
  }
  if (options.json !== undefined) {
    writeFileSync(options.json, JSON.stringify(report, null, 2) + "\n");
    log(`results written to ${options.json}`);
  }
  if (options.compare !== undefined) {
    const before = JSON.parse(readFileSync(options.compare, "utf8")) as BenchReport;
    console.log(`\n${compareReports(before, report)}`);
  }
  log(`total: ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

try {
  await main();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  cleanupAll();
}
