// Type tests of the typed client: compiled by the build, never run. Every
// line under `@ts-expect-error` must fail to compile (an unused directive
// fails the build), and everything else must compile: wrong usage is caught,
// right usage is typed precisely.

import {
  type AnyEvent,
  type CommandArgs,
  EventListener,
  type JsonValue,
  QMPClient,
  type QMPEvent,
} from "../../src/index.js";
import type {
  JobStatusChangeDataStatus,
  QAPI,
  QueryStatusReturnStatus,
} from "../../src/qapi/index.js";
import type { QAPI as QAPI72 } from "../../generated/qapi/qemu-7.2.js";
import type { QAPI as QSD } from "../../generated/qapi/qsd-10.0.js";

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

/** `is<T>()(value)` compiles only when `value`'s type is exactly `T`. */
function is<T>() {
  return <V>(_value: V, ..._exact: Same<V, T> extends true ? [] : [never]): void => {};
}

export async function commands(qmp: QMPClient<QAPI>): Promise<void> {
  // Returns are precise.
  const status = await qmp.execute("query-status");
  is<QueryStatusReturnStatus>()(status.status);
  is<boolean>()(status.running);
  // @ts-expect-error (the check itself fails on a wrong type)
  is<string>()(status.running);
  // @ts-expect-error (and on a wider one)
  is<string>()(status.status);
  const blocks = await qmp.execute("query-block");
  const first: string | undefined = blocks[0]?.device;
  void first;
  const hmp: string = await qmp.execute("human-monitor-command", { "command-line": "info" });
  void hmp;

  // No arguments: none, undefined or {}, with options after them.
  await qmp.execute("stop");
  await qmp.execute("stop", undefined, { timeout: 100 });
  await qmp.execute("stop", {}, { signal: AbortSignal.timeout(1000) });
  // @ts-expect-error a command that takes no arguments takes no member
  await qmp.execute("stop", { bogus: 1 });

  // Typos in names are caught; the escape hatch sends anything.
  // @ts-expect-error not a command of QEMU 10.0
  await qmp.execute("query-stat");
  await qmp.untyped.execute("x-not-in-the-schema", { any: "thing" });

  // Required arguments, their names and types.
  await qmp.execute("device_del", { id: "nic0" });
  // @ts-expect-error missing the arguments
  await qmp.execute("device_del");
  // @ts-expect-error missing a required member
  await qmp.execute("device_del", {});
  // @ts-expect-error a wrong member name (an unknown member of an object literal)
  await qmp.execute("device_del", { id: "nic0", ids: "nic1" });
  // @ts-expect-error a wrong type
  await qmp.execute("device_del", { id: 7 });
  // runJob() takes a command's arguments as execute() does.
  const job = await qmp.runJob(
    "blockdev-backup",
    { device: "d0", target: "t0", sync: "full" },
    { onProgress: (p) => void p.current },
  );
  const jobType: string = job.type;
  void jobType;
  // @ts-expect-error not a sync mode
  await qmp.runJob("blockdev-backup", { device: "d0", target: "t0", sync: "everything" });
  // @ts-expect-error not a command of QEMU 10.0
  await qmp.runJob("blockdev-bakup", {});

  // Optional arguments may be left out.
  await qmp.execute("query-block");
  await qmp.execute("query-named-block-nodes", { flat: true });

  // A flat union: the tag picks the branch, and its members.
  await qmp.execute("blockdev-add", {
    driver: "file",
    "node-name": "disk0",
    filename: "/tmp/disk.img",
  });
  await qmp.execute("blockdev-add", {
    driver: "qcow2",
    "node-name": "disk1",
    file: "disk0",
    // @ts-expect-error a member of another branch
    filename: "/tmp/x",
  });
  // @ts-expect-error a bad enum value for the tag
  await qmp.execute("blockdev-add", { driver: "qcow9", "node-name": "d" });
  // @ts-expect-error the file branch needs its filename
  await qmp.execute("blockdev-add", { driver: "file", "node-name": "d" });
  const args: CommandArgs<QAPI, "blockdev-add"> = { driver: "null-co", "node-name": "n" };
  await qmp.execute("blockdev-add", args);

  // device_add takes the device's own properties beside its schema's members.
  await qmp.execute("device_add", { driver: "virtio-blk-pci", id: "vd0", drive: "disk0" });
  // @ts-expect-error but its driver is still required
  await qmp.execute("device_add", { id: "vd0", drive: "disk0" });

  // A nested path: transaction actions.
  await qmp.execute("transaction", {
    actions: [{ type: "block-dirty-bitmap-add", data: { node: "disk0", name: "bm0" } }],
  });
  await qmp.execute("transaction", {
    // @ts-expect-error a nested member of the wrong type
    actions: [{ type: "block-dirty-bitmap-add", data: { node: "disk0", name: 7 } }],
  });

  // Options keep their types.
  // @ts-expect-error timeout is a number
  await qmp.execute("stop", undefined, { timeout: "1s" });
}

export async function events(qmp: QMPClient<QAPI>): Promise<void> {
  for await (const e of qmp.events) {
    if (e.event === "JOB_STATUS_CHANGE") {
      is<JobStatusChangeDataStatus>()(e.data.status);
      // @ts-expect-error no such member in the event's data
      void e.data.state;
    }
    if (e.event === "STOP") is<undefined>()(e.data);
    break;
  }
  const deleted = await qmp.waitEvent("DEVICE_DELETED", (e) => e.data.path.startsWith("/"), {
    timeout: 1000,
  });
  is<string>()(deleted.data.path);
  // @ts-expect-error not an event of QEMU 10.0
  await qmp.waitEvent("DEVICE_DELETE");
  const either = await qmp.waitEvent(["STOP", "RESUME"]);
  is<"STOP" | "RESUME">()(either.event);

  using jobs = qmp.listener("JOB_STATUS_CHANGE");
  const job = await jobs.get();
  is<string>()(job.data.id);
  // @ts-expect-error a listener of events not in the schema
  qmp.listener("NO_SUCH_EVENT");

  const done = await qmp.executeAndWait(
    "device_del",
    { id: "nic0" },
    { event: "DEVICE_DELETED", filter: (e) => e.data.device === "nic0", timeout: 5000 },
  );
  is<{ device?: string; path: string }>()(done.event.data);
  is<{ [key: string]: never }>()(done.return);
  // @ts-expect-error executeAndWait checks the command's arguments too
  await qmp.executeAndWait("device_del", { id: 1 }, { event: "DEVICE_DELETED" });

  // Plain listeners register on a typed client, typed ones on an untyped client.
  const plain = new EventListener({ names: "STOP" });
  const typed = new EventListener<AnyEvent<QAPI>>({ names: ["STOP", "RESUME"] });
  // @ts-expect-error a typed listener's names are checked
  new EventListener<AnyEvent<QAPI>>({ names: "STOPP" });
  using _scope = qmp.listen(plain, typed);
  new QMPClient().registerListener(typed);
}

export async function untyped(qmp: QMPClient): Promise<void> {
  const value = await qmp.execute("query-status");
  is<JsonValue>()(value);
  // @ts-expect-error JSON is not known to have `running` (give execute<T>() a type)
  void value.running;
  const status = await qmp.execute<{ running: boolean }>("query-status");
  is<boolean>()(status.running);
  await qmp.execute("anything-at-all", { a: 1 }, { timeout: 5 });
  const e = await qmp.waitEvent("ANY_NAME");
  is<QMPEvent>()(e);
  for await (const event of qmp.events) is<QMPEvent>()(event);
}

export async function otherSchemas(q72: QMPClient<QAPI72>, qsd: QMPClient<QSD>): Promise<void> {
  await q72.execute("query-status");
  await qsd.execute("query-block-exports");
  // @ts-expect-error qemu-storage-daemon has no query-status
  await qsd.execute("query-status");
}
