// Quick-start demo: a throwaway QEMU connects to us; print its version and status, then a STOP/RESUME pair.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QMPClient, type QMPEvent } from "../src/index.js";

const binary = process.env["QMP_TEST_QEMU"] ?? "qemu-system-x86_64";
const dir = mkdtempSync(join(tmpdir(), "qmp-demo-"));
const socketPath = join(dir, "qmp.sock");
const qmp = new QMPClient({ name: "demo" });

function show(event: QMPEvent): string {
  const { seconds, microseconds } = event.timestamp;
  const when = new Date(seconds * 1000 + microseconds / 1000).toISOString();
  return `${when}  ${event.event}${event.data ? " " + JSON.stringify(event.data) : ""}`;
}

// We listen; QEMU connects to us (no polling for a socket to appear).
await qmp.startServer(socketPath);
const args = ["-machine", "none", "-nodefaults", "-display", "none"];
args.push("-chardev", `socket,id=qmp,path=${socketPath}`, "-mon", "chardev=qmp,mode=control");
console.log(`$ ${binary} ${args.join(" ")}`);
const qemu = spawn(binary, args, { stdio: ["ignore", "inherit", "inherit"] });
const spawnFailed = new Promise<never>((_, reject) => qemu.once("error", reject));

try {
  await Promise.race([qmp.accept({ timeout: 10_000 }), spawnFailed]);
  const { major, minor, micro } = qmp.greeting!.QMP.version.qemu;
  console.log(
    `Connected to QEMU ${major}.${minor}.${micro} (${qmp.greeting!.QMP.version.package})`,
  );
  console.log("query-status ->", JSON.stringify(await qmp.execute("query-status")));

  const stop = await qmp.executeAndWait("stop", undefined, { event: "STOP", timeout: 5000 });
  console.log("event:", show(stop.event));
  const resume = await qmp.executeAndWait("cont", undefined, { event: "RESUME", timeout: 5000 });
  console.log("event:", show(resume.event));

  await qmp.execute("quit");
  console.log("QEMU quit; bye.");
} catch (err) {
  const code = (err as NodeJS.ErrnoException).code;
  console.error(code === "ENOENT" ? `${binary} not found: run ./scripts/setup.sh first` : err);
  process.exitCode = 1;
} finally {
  await qmp.disconnect().catch(() => {});
  qemu.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
