// What typed QAPI costs at compile time: `tsc --noEmit` of a small program making 20 calls, on a
// typed client (QMPClient<QAPI> from qmp/qapi) and on an untyped one, alternated; and the sizes of
// the generated modules.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** One program's `tsc` run: wall time and tsc's own check time (`--extendedDiagnostics`). */
export interface TscTime {
  totalMs: number;
  checkMs: number;
}

/** The section's result. */
export interface TypecheckResult {
  untyped: TscTime;
  typed: TscTime;
  /** Bytes of each shipped module's declarations (`dist/generated/qapi/*.d.ts`). */
  modules: Record<string, number>;
}

/** The target: a typed program type-checks in at most this many times the untyped one's time. */
export const TYPECHECK_TARGET = 2;

const root = fileURLToPath(new URL("../../", import.meta.url));

/** 20 calls a VM manager might make: no-argument commands, arguments, events. */
const CALLS = [
  `await qmp.execute("query-status");`,
  `await qmp.execute("query-block");`,
  `await qmp.execute("query-named-block-nodes", { flat: true });`,
  `await qmp.execute("blockdev-add", { driver: "file", "node-name": "f0", filename: "/tmp/x" });`,
  `await qmp.execute("blockdev-add", { driver: "qcow2", "node-name": "q0", file: "f0" });`,
  `await qmp.execute("block_resize", { "node-name": "q0", size: 1 << 30 });`,
  `await qmp.execute("device_add", { driver: "virtio-blk-pci", id: "vd0", drive: "q0" });`,
  `await qmp.execute("device_del", { id: "vd0" });`,
  `await qmp.execute("stop");`,
  `await qmp.execute("cont");`,
  `await qmp.execute("query-cpus-fast");`,
  `await qmp.execute("qom-list", { path: "/machine" });`,
  `await qmp.execute("qom-get", { path: "/machine", property: "type" });`,
  `await qmp.execute("human-monitor-command", { "command-line": "info version" });`,
  `await qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "xbzrle", state: true }] });`,
  `await qmp.execute("query-migrate");`,
  `await qmp.execute("transaction", { actions: [{ type: "block-dirty-bitmap-add", data: { node: "q0", name: "b0" } }] });`,
  `await qmp.execute("system_powerdown");`,
  `await qmp.waitEvent("DEVICE_DELETED", (e) => e.data !== undefined);`,
  `for await (const e of qmp.events) if (e.event === "SHUTDOWN") break;`,
];

function program(typed: boolean): string {
  const index = JSON.stringify(join(root, "dist/src/index.js"));
  const qapi = JSON.stringify(join(root, "dist/src/qapi/index.js"));
  return [
    `import { QMPClient } from ${index};`,
    typed ? `import type { QAPI } from ${qapi};` : "",
    `export async function run(): Promise<void> {`,
    `  const qmp = new QMPClient${typed ? "<QAPI>" : ""}();`,
    ...CALLS.map((c) => `  ${c}`),
    `}`,
    "",
  ].join("\n");
}

function tsconfig(file: string): string {
  return JSON.stringify({
    compilerOptions: {
      target: "ES2022",
      lib: ["ES2023", "ESNext.Disposable"],
      module: "NodeNext",
      moduleResolution: "NodeNext",
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: ["node"],
      typeRoots: [join(root, "node_modules/@types")],
    },
    files: [file],
  });
}

function runTsc(config: string): TscTime {
  const tsc = join(root, "node_modules/typescript/lib/tsc.js");
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [tsc, "-p", config, "--extendedDiagnostics"], {
    encoding: "utf8",
  });
  const totalMs = performance.now() - t0;
  if (r.status !== 0) throw new Error(`tsc failed on ${config}:\n${r.stdout}${r.stderr}`);
  const check = /^Check time:\s+([\d.]+)s$/m.exec(r.stdout);
  return { totalMs, checkMs: check === null ? NaN : Number(check[1]) * 1000 };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1]!;
}

/** Type-check both programs `rounds` times, alternated (after one warm-up each); medians. */
export function runTypecheck(rounds: number): TypecheckResult {
  const dir = mkdtempSync(join(tmpdir(), "qmp-typecheck-"));
  try {
    const configs = { untyped: "", typed: "" };
    for (const kind of ["untyped", "typed"] as const) {
      const file = join(dir, `${kind}.ts`);
      writeFileSync(file, program(kind === "typed"));
      configs[kind] = join(dir, `tsconfig.${kind}.json`);
      writeFileSync(configs[kind], tsconfig(file));
      runTsc(configs[kind]);
    }
    const times = { untyped: [] as TscTime[], typed: [] as TscTime[] };
    for (let i = 0; i < rounds; i++) {
      for (const kind of ["untyped", "typed"] as const) times[kind].push(runTsc(configs[kind]));
    }
    const summary = (list: TscTime[]): TscTime => ({
      totalMs: median(list.map((t) => t.totalMs)),
      checkMs: median(list.map((t) => t.checkMs)),
    });
    const modules: Record<string, number> = {};
    for (const name of ["qemu-10.0", "qemu-7.2", "qsd-10.0"]) {
      modules[name] = statSync(join(root, "dist/generated/qapi", `${name}.d.ts`)).size;
    }
    return { untyped: summary(times.untyped), typed: summary(times.typed), modules };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
