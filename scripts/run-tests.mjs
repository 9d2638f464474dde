// Runs the compiled tests with node:test. Usage: node scripts/run-tests.mjs [unit|integration|qemu ...]
// Node 20's test runner takes files, not globs, so we list them here.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const tiers = process.argv.slice(2);
const roots = (tiers.length > 0 ? tiers : ["unit", "integration", "qemu"]).map((t) =>
  join("dist", "test", t),
);
const files = [];
function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith(".test.js")) files.push(path);
  }
}
for (const root of roots) {
  try {
    walk(root);
  } catch {
    // A tier with no tests yet.
  }
}
if (files.length === 0) {
  console.error("No test files found under", roots.join(", "));
  process.exit(1);
}
const result = spawnSync(process.execPath, ["--test", "--test-reporter=spec", ...files], {
  stdio: "inherit",
});
process.exit(result.status ?? 1);
