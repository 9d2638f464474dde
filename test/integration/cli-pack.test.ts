// The published tarball (`npm pack --dry-run`): the launcher's code, and the sources every source map names.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, posix } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { ROOT } from "../helpers/cli.js";

const T = { timeout: 60_000 };

void test("npm pack ships the sources its source maps point at, and qmp's code", T, async () => {
  // --ignore-scripts: no prepack build; the test runs on the build it was compiled into.
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const { stdout } = await promisify(execFile)(
    npm,
    ["pack", "--dry-run", "--json", "--ignore-scripts"],
    { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 },
  );
  const [pack] = JSON.parse(stdout) as [{ files: { path: string }[] }];
  const files = new Set(pack.files.map((f) => f.path));
  for (const path of ["bin/qmp.js", "dist/src/cli/main.js", "dist/src/index.d.ts", "README.md"]) {
    assert.ok(files.has(path), `${path} is not packed`);
  }
  const maps = [...files].filter((path) => path.endsWith(".map"));
  assert.ok(maps.length > 0, "no source maps packed");
  const missing: string[] = [];
  for (const map of maps) {
    const { sources } = JSON.parse(readFileSync(join(ROOT, map), "utf8")) as { sources: string[] };
    for (const source of sources) {
      const path = posix.normalize(posix.join(dirname(map), source));
      if (!files.has(path)) missing.push(`${map} → ${path}`);
    }
  }
  assert.deepEqual(missing, []);
  // Tests and benchmarks stay out.
  assert.ok(![...files].some((path) => /^(?:dist\/)?(?:test|bench)\//.test(path)));
});
