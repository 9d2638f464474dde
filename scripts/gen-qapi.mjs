#!/usr/bin/env node
// Regenerate the shipped QAPI modules (generated/qapi/qemu-10.0.ts, qemu-7.2.ts, qsd-10.0.ts) from the
// QEMU binaries on this machine, with `qmp codegen` (the built one, in dist/). Run `npm run build` first.
//
//   node scripts/gen-qapi.mjs [--check] [NAME ...]     NAME: qemu-10.0, qemu-7.2, qsd-10.0 (default: all)
//
// qemu-10.0 and qsd-10.0 come from the installed QEMU (Debian bookworm-backports); qemu-7.2 from
// .cache/qemu-7.2 (scripts/qemu-7.2.sh unpacks it). With --check nothing is written: the generated
// declarations are compared with the committed ones (the header, which names the exact build, is
// not), and the script fails on a difference: the generator, or QEMU's schema, changed.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { main } from "../dist/src/cli/main.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cache72 = join(root, ".cache/qemu-7.2");

/** The modules: what runs, with which arguments, for which file. */
const TARGETS = {
  "qemu-10.0": { binary: "qemu-system-x86_64", expect: "10.0", kind: "qemu", data: [] },
  "qemu-7.2": {
    binary: join(cache72, "usr/bin/qemu-system-x86_64"),
    expect: "7.2",
    kind: "qemu",
    data: ["-L", join(cache72, "usr/share/qemu")],
  },
  "qsd-10.0": { binary: "qemu-storage-daemon", expect: "10.0", kind: "qsd", data: [] },
};

const args = process.argv.slice(2);
const check = args.includes("--check");
const names = args.filter((a) => a !== "--check");
for (const name of names) {
  if (!(name in TARGETS)) {
    console.error(`gen-qapi: unknown module '${name}' (known: ${Object.keys(TARGETS).join(", ")})`);
    process.exit(2);
  }
}

/** The module's text without its header comment: what --check compares. */
function body(text) {
  return text.replace(/^(\/\/[^\n]*\n)+/, "");
}

let failed = false;
for (const name of names.length > 0 ? names : Object.keys(TARGETS)) {
  const target = TARGETS[name];
  const dir = mkdtempSync(join(tmpdir(), "gen-qapi-"));
  const socket = join(dir, "qmp.sock");
  const argv =
    target.kind === "qsd"
      ? ["--chardev", `socket,id=m,path=${socket},server=on,wait=off`, "--monitor", "chardev=m"]
      : ["-machine", "none", "-nodefaults", "-display", "none", ...target.data];
  if (target.kind === "qemu") argv.push("-qmp", `unix:${socket},server=on,wait=off`);
  const child = spawn(target.binary, argv, { stdio: ["ignore", "ignore", "inherit"] });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.once("error", (err) => {
    console.error(`gen-qapi: cannot start ${target.binary}: ${err.message}`);
  });
  const out = join(dir, `${name}.ts`);
  const label = target.kind === "qsd" ? "qemu-storage-daemon" : "QEMU";
  try {
    // QEMU creates the socket right away; give it a moment to appear.
    let status = 2;
    let said = "";
    for (let i = 0; i < 50 && status === 2 && child.exitCode === null; i++) {
      const io = quietIO();
      status = await main(["codegen", "-o", out, "-t", "10", socket], io);
      said = io.said();
      if (status === 2) await new Promise((r) => setTimeout(r, 100));
    }
    if (status !== 0) throw new Error(`qmp codegen failed for ${name} (exit ${status}): ${said}`);
    let text = readFileSync(out, "utf8");
    // The header names the product; say which one, as `qmp codegen -n` would.
    text = text.replace(/^\/\/ QAPI types of QEMU /, `// QAPI types of ${label} `);
    const version = /QAPI types of \S+ (\d+\.\d+)/.exec(text)?.[1];
    if (version !== target.expect) {
      throw new Error(`${target.binary} is ${label} ${version}, not ${target.expect}`);
    }
    const file = join(root, "generated/qapi", `${name}.ts`);
    if (check) {
      const committed = existsSync(file) ? readFileSync(file, "utf8") : "";
      if (body(committed) !== body(text)) {
        failed = true;
        console.error(`gen-qapi: ${file} differs from what ${target.binary} generates now`);
        writeFileSync(join(root, `${name}.generated.ts`), text);
        console.error(`gen-qapi: the new text is in ${name}.generated.ts`);
      } else {
        console.log(`gen-qapi: ${name} is up to date`);
      }
    } else {
      writeFileSync(file, text);
      console.log(`gen-qapi: wrote ${file} (${text.length} bytes)`);
    }
  } catch (err) {
    failed = true;
    console.error(`gen-qapi: ${err.message}`);
  } finally {
    child.kill("SIGKILL");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}
process.exit(failed ? 1 : 0);

/** Streams that keep a failed connect attempt (the socket not there yet) quiet; `said()` tells what it said. */
function quietIO() {
  let text = "";
  const sink = {
    write: (chunk) => {
      text += String(chunk);
      return true;
    },
  };
  return { stdin: process.stdin, stdout: sink, stderr: sink, env: {}, said: () => text.trim() };
}
