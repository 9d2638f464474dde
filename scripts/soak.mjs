#!/usr/bin/env node
// Soak: many sessions, many events, many supervised reconnects, against real QEMU and the bench's
// fake server; open fds, handles and heap must stay flat, with no unhandled rejection and no
// MaxListenersExceeded warning. Run `npm run build` first, then:
//
//   node --expose-gc scripts/soak.mjs [--short]
//
// Full: 10,000 connect/execute/disconnect cycles, 1,000,000 events, 1,000 supervised reconnects
// through a QEMU killed and restarted. --short (CI): 500, 100,000 and 20. Exits 1 on a leak.

import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { QMPClient, QMPSupervisor } from "../dist/src/index.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const short = process.argv.includes("--short");
const CYCLES = short ? 500 : 10_000;
const EVENTS = short ? 100_000 : 1_000_000;
const RESTARTS = short ? 20 : 1_000;
const gc = globalThis.gc ?? (() => {});

const problems = [];
process.on("unhandledRejection", (err) => problems.push(`unhandled rejection: ${String(err)}`));
process.on("warning", (w) => {
  if (w.name === "MaxListenersExceededWarning") problems.push(`warning: ${w.message}`);
});

const dir = mkdtempSync(join(tmpdir(), "qmp-soak-"));
const children = new Set();

/** Open fds, active handles and heap (after a GC). */
function measure() {
  gc();
  gc();
  return {
    fds: readdirSync("/proc/self/fd").length,
    handles: process.getActiveResourcesInfo().length,
    heapMB: process.memoryUsage().heapUsed / 1e6,
  };
}

function show(label, m) {
  return `${label}: ${m.fds} fds, ${m.handles} handles, heap ${m.heapMB.toFixed(1)} MB`;
}

/** Compare a workload's start and end; a leak is a problem. */
function check(name, start, end) {
  console.log(`${name}\n  ${show("start", start)}\n  ${show("end  ", end)}`);
  if (end.fds > start.fds + 2) problems.push(`${name}: fds ${start.fds} -> ${end.fds}`);
  if (end.handles > start.handles + 2) {
    problems.push(`${name}: handles ${start.handles} -> ${end.handles}`);
  }
  if (end.heapMB > start.heapMB * 1.5 + 5) {
    problems.push(`${name}: heap ${start.heapMB.toFixed(1)} -> ${end.heapMB.toFixed(1)} MB`);
  }
}

function startQemu(socket) {
  const child = spawn(
    process.env["QMP_TEST_QEMU"] ?? "qemu-system-x86_64",
    [
      "-machine",
      "none",
      "-nodefaults",
      "-display",
      "none",
      "-qmp",
      `unix:${socket},server=on,wait=off`,
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  children.add(child);
  const exited = new Promise((resolve) => child.once("exit", resolve));
  exited.then(() => children.delete(child));
  return { child, exited };
}

async function cycles() {
  const socket = join(dir, "cycles.sock");
  const qemu = startQemu(socket);
  const client = new QMPClient({ name: "soak" });
  // The first connect waits for QEMU's socket.
  await client.connect(socket, { retry: { attempts: 100, delay: 20 }, timeout: 10_000 });
  await client.execute("query-status");
  await client.disconnect();
  const start = measure();
  for (let i = 0; i < CYCLES; i++) {
    await client.connect(socket, { timeout: 10_000 });
    await client.execute("query-status", undefined, { timeout: 10_000 });
    await client.disconnect();
  }
  check(
    `${CYCLES.toLocaleString("en")} connect/execute/disconnect cycles (one client, real QEMU)`,
    start,
    measure(),
  );
  qemu.child.kill("SIGKILL");
  await qemu.exited;
}

async function events() {
  const socket = join(dir, "events.sock");
  const schema = join(dir, "schema.json");
  writeFileSync(schema, "[]");
  const server = spawn(
    process.execPath,
    [join(root, "dist/bench/fake-qmp-server.js"), socket, schema],
    {
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  children.add(server);
  await new Promise((resolve) => server.stdout.once("data", resolve));
  const client = new QMPClient({ name: "soak-events" });
  await client.connect(socket, { timeout: 10_000 });
  await client.execute("query-status");
  const start = measure();
  let seen = 0;
  const consumed = (async () => {
    for await (const _ of client.events) if (++seen >= EVENTS) break;
  })();
  await client.execute("bench-events", { count: EVENTS });
  await consumed;
  const end = measure();
  await client.disconnect();
  check(`${EVENTS.toLocaleString("en")} events through one session (for await)`, start, end);
  if (seen !== EVENTS) problems.push(`events: ${seen} of ${EVENTS} arrived`);
  server.stdin.end();
}

async function restarts() {
  const socket = join(dir, "restart.sock");
  let qemu = startQemu(socket);
  const client = new QMPClient({ name: "soak-supervised" });
  const supervisor = new QMPSupervisor(client, socket, { retry: { delay: 10, maxDelay: 100 } });
  await supervisor.start({ timeout: 10_000 });
  await client.execute("query-status");
  const start = measure();
  for (let i = 0; i < RESTARTS; i++) {
    const back = new Promise((resolve) => supervisor.once("reconnected", resolve));
    qemu.child.kill("SIGKILL");
    await qemu.exited;
    qemu = startQemu(socket);
    await back;
    await client.execute("query-status", undefined, { timeout: 10_000 });
  }
  const end = measure();
  await supervisor.stop();
  await client.disconnect().catch(() => {});
  check(
    `${RESTARTS.toLocaleString("en")} supervised reconnects (QEMU killed and restarted)`,
    start,
    end,
  );
  qemu.child.kill("SIGKILL");
  await qemu.exited;
}

try {
  const t0 = performance.now();
  await cycles();
  await events();
  await restarts();
  console.log(`soak: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
} catch (err) {
  problems.push(`failed: ${err instanceof Error ? err.stack : String(err)}`);
} finally {
  for (const child of children) child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
if (problems.length > 0) {
  console.error(`soak: ${problems.length} problem(s):\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log("soak: fds, handles and heap flat; no unhandled rejection, no listener warning");
process.exit(0);
