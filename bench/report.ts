// The bench's output: the console table with targets, markdown for the README, JSON results and their comparison.

import { VARIANTS, type VariantId } from "./clients.js";
import type { MicroResult } from "./micro.js";
import type { MuxResult } from "./mux.js";
import { TYPECHECK_TARGET, type TypecheckResult } from "./typecheck.js";
import type { Metric, RowResult } from "./workloads.js";

/** Where and how the numbers were taken. */
export interface Machine {
  cpu: string;
  cores: number;
  node: string;
  qemu: string;
  date: string;
  rounds: number;
  scale: number;
}

/** Everything one run measured: what `--json` writes and `--compare` reads. */
export interface BenchReport {
  machine: Machine;
  rows: RowResult[];
  micro: MicroResult[];
  /** Type-checking a typed program against an untyped one (absent from older results). */
  typecheck?: TypecheckResult | undefined;
  mux?: MuxResult | undefined;
}

export const README_START = "<!-- bench:start -->";
export const README_END = "<!-- bench:end -->";

function value(row: RowResult, variant: VariantId, metric: Metric): number | null {
  return row.values[variant][metric.key] ?? null;
}

function fmt(v: number | null, metric: Metric): string {
  if (v === null || !Number.isFinite(v)) return "n/a";
  const digits = metric.digits ?? 2;
  const text = v.toLocaleString("en", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
  return metric.unit === "" ? text : `${text} ${metric.unit}`;
}

function ratio(row: RowResult, metric: Metric, variant: VariantId): number | null {
  const a = value(row, variant, metric);
  const b = value(row, "raw", metric);
  return a === null || b === null || b === 0 ? null : a / b;
}

function fmtRatio(r: number | null): string {
  return r === null || !Number.isFinite(r) ? "n/a" : `${r.toFixed(2)}×`;
}

/** "PASS"/"FAIL" against the metric's target for qmp ÷ raw; "" without a target. */
export function verdict(row: RowResult, metric: Metric): string {
  if (metric.target === undefined) return "";
  const r = ratio(row, metric, "qmp");
  if (r === null) return "n/a";
  const ok = metric.target.op === ">=" ? r >= metric.target.ratio : r <= metric.target.ratio;
  return ok ? "PASS" : "FAIL";
}

/** Whether qmp is ahead of node-qemu on this metric. */
function versusNodeQemu(row: RowResult, metric: Metric): string {
  if (metric.better === "none") return "";
  const q = value(row, "qmp", metric);
  const n = value(row, "node-qemu", metric);
  if (q === null || n === null) return "n/a";
  const ahead = metric.better === "higher" ? q > n : q < n;
  return ahead ? "ahead" : "behind";
}

const HEADER = [
  "workload",
  "metric",
  ...VARIANTS,
  "qmp÷raw",
  "node-qemu÷raw",
  "target",
  "result",
  "qmp vs node-qemu",
];

function cells(rows: RowResult[]): string[][] {
  const out: string[][] = [];
  for (const row of rows) {
    row.metrics.forEach((metric, i) => {
      const t = metric.target;
      out.push([
        i === 0 ? row.title : "",
        metric.label,
        ...VARIANTS.map((v) => fmt(value(row, v, metric), metric)),
        fmtRatio(ratio(row, metric, "qmp")),
        fmtRatio(ratio(row, metric, "node-qemu")),
        t === undefined ? "" : `${t.op === ">=" ? "≥" : "≤"} ${t.ratio.toFixed(2)}×`,
        verdict(row, metric),
        versusNodeQemu(row, metric),
      ]);
    });
  }
  return out;
}

function notes(rows: RowResult[]): string[] {
  const out: string[] = [];
  for (const row of rows) {
    for (const v of VARIANTS) {
      const note = row.notes[v];
      if (note !== undefined) out.push(`${row.id}, ${v}: ${note}`);
    }
  }
  return out;
}

function pad(text: string, width: number): string {
  return text + " ".repeat(Math.max(0, width - text.length));
}

/** A table with padded columns; `markdown` gives the pipes and delimiter row Prettier would. */
function table(header: string[], body: string[][], markdown: boolean): string {
  const widths = header.map((h, i) => Math.max(h.length, 3, ...body.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    markdown
      ? `| ${r.map((c, i) => pad(c, widths[i]!)).join(" | ")} |`
      : r
          .map((c, i) => pad(c, widths[i]!))
          .join("  ")
          .trimEnd();
  const rule = markdown
    ? `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`
    : widths.map((w) => "-".repeat(w)).join("  ");
  return [line(header), rule, ...body.map(line)].join("\n");
}

function machineLine(m: Machine): string {
  const scale = m.scale === 1 ? "" : `, N scaled by ${m.scale}`;
  return (
    `${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.qemu}; ${m.date}; ` +
    `median of ${m.rounds} alternated rounds${scale}`
  );
}

function microTable(micro: MicroResult[], markdown: boolean): string {
  const body: string[][] = [];
  for (const m of micro) {
    m.lines.forEach((l, i) => {
      body.push([
        i === 0 ? m.title : "",
        l.name,
        `${l.ms.toFixed(2)} ms`,
        `${l.ratio.toFixed(2)}×`,
      ]);
    });
  }
  return table(["micro-benchmark", "variant", "median", "ratio to first"], body, markdown);
}

/** The type-check section: both programs' times, their ratio against the target, module sizes. */
function typecheckTable(tc: TypecheckResult, markdown: boolean): string {
  const ms = (v: number): string => `${Math.round(v).toLocaleString("en")} ms`;
  const r = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
  const total = tc.typed.totalMs / tc.untyped.totalMs;
  const result = total <= TYPECHECK_TARGET ? "PASS" : "FAIL";
  const body = [
    [
      "tsc --noEmit, wall",
      ms(tc.typed.totalMs),
      ms(tc.untyped.totalMs),
      r(tc.typed.totalMs, tc.untyped.totalMs),
      `≤ ${TYPECHECK_TARGET.toFixed(2)}×`,
      result,
    ],
    [
      "tsc check time",
      ms(tc.typed.checkMs),
      ms(tc.untyped.checkMs),
      r(tc.typed.checkMs, tc.untyped.checkMs),
      "",
      "",
    ],
  ];
  const sizes = Object.entries(tc.modules)
    .map(([name, bytes]) => `${name} ${Math.round(bytes / 1000)} KB`)
    .join(", ");
  return (
    table(
      [
        "20 calls, type-checked",
        "typed (`QMPClient<QAPI>`)",
        "untyped",
        "typed÷untyped",
        "target",
        "result",
      ],
      body,
      markdown,
    ) + `\n\n${markdown ? "" : "  "}Generated declarations (.d.ts): ${sizes}.`
  );
}

/** The mux section: each line's two sides, their ratio against its target; memory per client. */
function muxTable(mux: MuxResult, markdown: boolean): string {
  const n = (v: number): string => Math.round(v).toLocaleString("en");
  const body = mux.lines.map((l) => [
    l.label,
    `${l.baseLabel}: ${n(l.base)} ${l.metric}`,
    `${l.muxLabel}: ${n(l.muxed)} ${l.metric}`,
    `${l.ratio.toFixed(2)}×`,
    l.target === undefined ? "" : `≥ ${l.target.toFixed(2)}×`,
    l.target === undefined ? "" : l.ratio >= l.target ? "PASS" : "FAIL",
  ]);
  const memory = `Memory: a QMPMux's heap grows by ${mux.heapPerClientKB.toFixed(1)} KB per connected client (${mux.clients} idle clients, negotiated, from another process).`;
  return (
    table(["qmp mux, real QEMU", "without", "with", "ratio", "target", "result"], body, markdown) +
    `\n\n${markdown ? "" : "  "}${memory}`
  );
}

/** The console report: table, PASS/FAIL summary, notes, micro-benchmarks. */
export function textReport(report: BenchReport): string {
  const parts = [`# qmp bench — ${machineLine(report.machine)}`, ""];
  if (report.rows.length > 0) {
    parts.push(table(HEADER, cells(report.rows), false), "");
    const verdicts = report.rows.flatMap((r) => r.metrics.map((m) => verdict(r, m)));
    const pass = verdicts.filter((v) => v === "PASS").length;
    const fail = verdicts.filter((v) => v === "FAIL").length;
    parts.push(`targets (qmp÷raw): ${pass} PASS, ${fail} FAIL`, "");
    const n = notes(report.rows);
    if (n.length > 0) parts.push("notes:", ...n.map((x) => `  ${x}`), "");
  }
  if (report.micro.length > 0) {
    parts.push("## in-memory micro-benchmarks (framing, client CPU)", "");
    parts.push(microTable(report.micro, false), "");
  }
  if (report.typecheck !== undefined) {
    parts.push("## typed QAPI at compile time", "");
    parts.push(typecheckTable(report.typecheck, false), "");
  }
  if (report.mux !== undefined) {
    parts.push("## qmp mux", "");
    parts.push(muxTable(report.mux, false), "");
  }
  return parts.join("\n");
}

/** The markdown block for the README (Prettier-formatted already). */
export function markdownReport(report: BenchReport): string {
  const parts = [`Measured on ${machineLine(report.machine)}.`, ""];
  if (report.rows.length > 0) {
    parts.push(table(HEADER, cells(report.rows), true), "");
    const n = notes(report.rows);
    if (n.length > 0) parts.push(...n.map((x) => `- ${x}`), "");
  }
  if (report.micro.length > 0) {
    parts.push(
      "In-memory micro-benchmarks (no socket, no other process; the last case is on real QEMU):",
      "",
    );
    parts.push(microTable(report.micro, true), "");
  }
  if (report.typecheck !== undefined) {
    parts.push(
      "Typed QAPI at compile time (`tsc --noEmit` of one program making 20 calls, typed and untyped, alternated):",
      "",
    );
    parts.push(typecheckTable(report.typecheck, true), "");
  }
  if (report.mux !== undefined) {
    parts.push(
      "What `qmp mux` costs (the command in a process of its own, QMPClients through it; medians of alternated rounds):",
      "",
    );
    parts.push(muxTable(report.mux, true), "");
  }
  return parts.join("\n").trimEnd();
}

/** `readme` with the text between the bench markers replaced by `markdown`. */
export function replaceInReadme(readme: string, markdown: string): string {
  const start = readme.indexOf(README_START);
  const end = readme.indexOf(README_END);
  if (start === -1 || end < start) {
    throw new Error(`README.md has no ${README_START} … ${README_END} markers`);
  }
  return `${readme.slice(0, start + README_START.length)}\n\n${markdown}\n\n${readme.slice(end)}`;
}

function change(before: number | null, after: number | null): string {
  if (before === null || after === null || before === 0) return "n/a";
  const pct = ((after - before) / before) * 100;
  return `${pct >= 0 ? "+" : ""}${pct.toFixed(1)} %`;
}

/** Per row and metric: qmp's value before → after, its change, and qmp÷raw before → after. */
export function compareReports(before: BenchReport, after: BenchReport): string {
  const body: string[][] = [];
  for (const row of after.rows) {
    const old = before.rows.find((r) => r.id === row.id);
    if (old === undefined) continue;
    row.metrics.forEach((metric, i) => {
      const oldMetric = old.metrics.find((m) => m.key === metric.key) ?? metric;
      const q0 = value(old, "qmp", oldMetric);
      const q1 = value(row, "qmp", metric);
      body.push([
        i === 0 ? row.id : "",
        metric.label,
        `${fmt(q0, metric)} → ${fmt(q1, metric)}`,
        change(q0, q1),
        `${fmtRatio(ratio(old, oldMetric, "qmp"))} → ${fmtRatio(ratio(row, metric, "qmp"))}`,
        `${verdict(old, oldMetric) || "-"} → ${verdict(row, metric) || "-"}`,
      ]);
    });
  }
  const header = ["row", "metric", "qmp before → after", "change", "qmp÷raw", "target"];
  return [
    `# change since ${before.machine.date} (${before.machine.cpu}, Node ${before.machine.node})`,
    "",
    table(header, body, false),
  ].join("\n");
}
