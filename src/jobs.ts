// Commands whose effect comes later, waited for: executeAndWait (a command and the event it
// causes), and runJob (a job-starting command run to its end, with progress, finalize and
// dismiss when the job needs them, its error read before QEMU forgets it, and cancel on abort).

import { setTimeout as sleep } from "node:timers/promises";
import { JobError } from "./errors.js";
import type { JsonValue, QMPEvent } from "./message.js";
import type { EventListener, NamedEvent } from "./events.js";
import type { ExecuteAndWaitOptions } from "./qmp-options.js";
import type { QMPClient } from "./qmp-client.js";
import { type CallOptions, checkCallOptions, deadline, typeName } from "./util.js";

/** The states of a QEMU job (`JobStatus` in QAPI). */
export type JobStatus =
  | "undefined"
  | "created"
  | "running"
  | "paused"
  | "ready"
  | "standby"
  | "waiting"
  | "pending"
  | "aborting"
  | "concluded"
  | "null";

/** A job's progress, as `onProgress` is told it. */
export interface JobProgress {
  /** The job's id. */
  id: string;
  /** Its state. */
  status: JobStatus;
  /** Work done, in the job's own unit (bytes for block jobs). */
  current: number;
  /** Work in all, as far as known (it may grow). */
  total: number;
}

/** A job as `query-jobs` last described it. */
export interface JobInfo extends JobProgress {
  /** The job's type (`backup`, `mirror`, `stream`, `commit`, `create`, `snapshot-save`, …). */
  type: string;
  /** QEMU's error text, when the job failed. */
  error?: string | undefined;
}

/**
 * Options of `QMPClient.runJob()`. The command is sent with a `job-id` (made
 * up unless the arguments give one) once the listener of its events is in
 * place; the job is followed through its states, completed when `ready` (a
 * mirror), finalized when `pending` with `auto-finalize: false`, and
 * dismissed once its end is read (block jobs are started with
 * `auto-dismiss: false`: QEMU forgets a dismissed job's error). Aborting
 * (`signal`, `timeout`) cancels the job and waits for it.
 */
export interface RunJobOptions extends CallOptions {
  /**
   * Told of the job's progress: at each status change, and every
   * `interval` ms while it runs.
   */
  onProgress?: ((progress: JobProgress) => void) | undefined;
  /** How often progress is read (`query-jobs`) while the job runs, in ms (default 500). */
  interval?: number | undefined;
  /**
   * A job that becomes `ready` (a mirror) is completed with `job-complete`
   * (default true); with false, `runJob()` resolves once it is ready.
   */
  complete?: boolean | undefined;
}

/** Commands that take `auto-dismiss`: their jobs are kept until we have read how they ended. */
const AUTO_DISMISS = new Set([
  "blockdev-backup",
  "drive-backup",
  "blockdev-mirror",
  "drive-mirror",
  "block-stream",
  "block-commit",
]);

/** How long a cancelled job may take to conclude before `runJob()` gives up waiting. */
const CANCEL_WAIT = 30_000;

let jobIds = 0;

/**
 * Run a command and wait for the event it causes: see
 * `QMPClient.executeAndWait()` (whose default timeout `options` carries).
 */
export async function executeAndWait(
  client: QMPClient,
  command: string,
  args: unknown,
  options: ExecuteAndWaitOptions<string, NamedEvent>,
): Promise<{ return: unknown; event: NamedEvent }> {
  const { signal, dispose } = deadline(
    { signal: options.signal, timeout: options.timeout },
    `executeAndWait('${command}')`,
  );
  using listener = client.listener(options.event, options.filter);
  try {
    const result = await client.execute(command, args as object | undefined, {
      oob: options.oob,
      fds: options.fds,
      signal,
      timeout: Infinity,
    });
    const event = await listener.get({ signal });
    return { return: result, event };
  } finally {
    dispose();
  }
}

function toJobInfo(entry: Record<string, unknown>): JobInfo {
  const info: JobInfo = {
    id: String(entry["id"]),
    type: String(entry["type"]),
    status: entry["status"] as JobStatus,
    current: Number(entry["current-progress"] ?? 0),
    total: Number(entry["total-progress"] ?? 0),
  };
  if (typeof entry["error"] === "string") info.error = entry["error"];
  return info;
}

/** The job `id` in `query-jobs`, or undefined once it is gone. */
async function queryJob(client: QMPClient, id: string): Promise<JobInfo | undefined> {
  const jobs = await client.execute("query-jobs", undefined, { timeout: Infinity });
  if (!Array.isArray(jobs)) return undefined;
  const entry = jobs.find(
    (j): j is Record<string, JsonValue> =>
      typeof j === "object" && j !== null && !Array.isArray(j) && j["id"] === id,
  );
  return entry === undefined ? undefined : toJobInfo(entry);
}

/** The id a job event is about (`JOB_STATUS_CHANGE` says `id`, `BLOCK_JOB_*` say `device`). */
function jobOf(event: QMPEvent): unknown {
  return event.data?.["id"] ?? event.data?.["device"];
}

/**
 * Run a job-starting command to its end: see `QMPClient.runJob()`.
 *
 * @throws {TypeError} {RangeError} for bad arguments, before anything is sent.
 * @throws what `execute()` throws when the command itself is refused.
 * @throws {JobError} when the job fails (QEMU's error text in `desc`).
 * @throws the signal's reason, or a `TimeoutError`, once the job is cancelled.
 */
export async function runJob(
  client: QMPClient,
  command: string,
  args: Record<string, unknown> = {},
  options: RunJobOptions = {},
): Promise<JobInfo> {
  if (typeof command !== "string" || command === "") {
    throw new TypeError(`command must be a command name, got ${typeName(command)}`);
  }
  if (typeof args !== "object" || args === null || Array.isArray(args)) {
    throw new TypeError(`args must be an object, got ${typeName(args)}`);
  }
  checkCallOptions(options);
  const interval = options.interval ?? 500;
  if (!(interval > 0) || interval === Infinity) {
    throw new RangeError(`interval must be a positive number of ms, got ${String(interval)}`);
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
    throw new TypeError(`onProgress must be a function, got ${typeName(options.onProgress)}`);
  }
  const given = args["job-id"];
  if (given !== undefined && typeof given !== "string") {
    throw new TypeError(`job-id must be a string, got ${typeName(given)}`);
  }
  const id = given ?? `qmp-job-${process.pid}-${++jobIds}`;
  const sent: Record<string, unknown> = { ...args, "job-id": id };
  // Kept until we have read how it ended (else QEMU may forget its error first).
  const dismiss = AUTO_DISMISS.has(command) ? args["auto-dismiss"] !== true : true;
  if (AUTO_DISMISS.has(command) && args["auto-dismiss"] === undefined) sent["auto-dismiss"] = false;
  const finalize = args["auto-finalize"] === false;
  const { signal, dispose } = deadline(
    { signal: options.signal, timeout: options.timeout },
    `runJob('${command}')`,
  );
  // Listening before the command goes: no status change can be missed.
  using events = client.untyped.listener(
    ["JOB_STATUS_CHANGE", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR"],
    (e) => jobOf(e) === id,
    { maxPending: 10_000 },
  );
  const report = (info: JobInfo): void => {
    if (options.onProgress === undefined) return;
    try {
      options.onProgress({ id, status: info.status, current: info.current, total: info.total });
    } catch (err) {
      client.logger.warn(`runJob: onProgress threw: ${String(err)}`);
    }
  };
  let completed: QMPEvent | undefined;
  /** Read the job's state: `query-jobs`, and the events that came meanwhile. */
  const poll = async (): Promise<JobInfo | undefined> => {
    for (const e of events.clear()) if (e.event === "BLOCK_JOB_COMPLETED") completed = e;
    return queryJob(client, id);
  };
  try {
    await client.untyped.execute(command, sent, { signal, timeout: Infinity });
    let last: JobInfo | undefined;
    for (;;) {
      if (signal.aborted) throw signal.reason;
      const info = await poll();
      if (info === undefined) {
        // Gone: it was dismissed by itself (auto-dismiss), having told BLOCK_JOB_COMPLETED.
        const error = completed?.data?.["error"];
        const final: JobInfo = {
          ...(last ?? { id, type: command, current: 0, total: 0 }),
          status: "null",
        };
        if (typeof error === "string") throw new JobError(command, { ...final, error });
        return final;
      }
      last = info;
      report(info);
      if (info.status === "ready" && options.complete !== false) {
        await client.untyped.execute("job-complete", { id }, { timeout: Infinity });
      } else if (info.status === "ready") {
        return info;
      } else if (info.status === "pending" && finalize) {
        await client.untyped.execute("job-finalize", { id }, { timeout: Infinity });
      } else if (info.status === "concluded") {
        // Its end is read; a job that dismissed itself meanwhile is no error.
        if (dismiss) await dismissJob(client, id);
        if (info.error !== undefined) throw new JobError(command, { ...info, error: info.error });
        return info;
      }
      // The next status change, or the next poll.
      if (events.pending === 0) {
        const event = await nextEvent(events, signal, interval);
        if (event?.event === "BLOCK_JOB_COMPLETED") completed = event;
      }
    }
  } catch (err) {
    if (!signal.aborted) throw err;
    await cancel(client, id, dismiss);
    throw signal.reason;
  } finally {
    dispose();
  }
}

/**
 * Wait for the listener's next event or `interval` ms, whichever first (the
 * event, or undefined); the signal's reason on abort. Also migrate()'s wait.
 */
export async function nextEvent(
  events: EventListener,
  signal: AbortSignal,
  interval: number,
): Promise<QMPEvent | undefined> {
  try {
    return await events.get({ signal, timeout: interval });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    if ((err as Error).name !== "TimeoutError") throw err;
    return undefined;
  }
}

/** `job-dismiss`, unless the job is gone already (it dismissed itself). */
async function dismissJob(client: QMPClient, id: string): Promise<void> {
  try {
    await client.untyped.execute("job-dismiss", { id }, { timeout: Infinity });
  } catch (err) {
    if ((await queryJob(client, id)) !== undefined) throw err;
  }
}

/** Cancel job `id` (if it still runs) and wait, bounded, until it concluded; dismiss it then. */
async function cancel(client: QMPClient, id: string, dismiss: boolean): Promise<void> {
  const until = Date.now() + CANCEL_WAIT;
  try {
    await client.untyped.execute("job-cancel", { id }, { timeout: CANCEL_WAIT });
  } catch {
    // Already concluded, or gone.
  }
  while (Date.now() < until) {
    let info: JobInfo | undefined;
    try {
      info = await queryJob(client, id);
    } catch {
      return;
    }
    if (info === undefined) return;
    if (info.status === "concluded") {
      if (dismiss) await dismissJob(client, id).catch(() => {});
      return;
    }
    await sleep(100);
  }
}
