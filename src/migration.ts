// Migration watched: `migrate` run to its end, with progress from query-migrate (events on, but
// never waited on alone), QEMU's error on failure, and migrate_cancel on abort.

import { setTimeout as sleep } from "node:timers/promises";
import { MigrationError } from "./errors.js";
import { nextEvent } from "./jobs.js";
import type { JsonValue } from "./message.js";
import type { QMPClient } from "./qmp-client.js";
import { type CallOptions, checkCallOptions, deadline, typeName } from "./util.js";

/** The states of a migration (`MigrationStatus` in QAPI). */
export type MigrationStatus =
  | "none"
  | "setup"
  | "cancelling"
  | "cancelled"
  | "active"
  | "postcopy-active"
  | "postcopy-paused"
  | "postcopy-recover-setup"
  | "postcopy-recover"
  | "completed"
  | "failed"
  | "colo"
  | "pre-switchover"
  | "device"
  | "wait-unplug";

/** A migration's progress, from `query-migrate`. */
export interface MigrationProgress {
  status: MigrationStatus;
  /** RAM bytes sent so far. */
  transferred: number;
  /** RAM bytes still to send. */
  remaining: number;
  /** RAM bytes in all. */
  total: number;
  /** Pages dirtied per second (how fast the guest undoes the work). */
  dirtyPagesRate: number;
  /** The downtime QEMU expects, in ms, while active. */
  expectedDowntime?: number | undefined;
}

/** How a migration ended, from the last `query-migrate`. */
export interface MigrationInfo extends MigrationProgress {
  /** Milliseconds it took in all, once completed. */
  totalTime?: number | undefined;
  /** The downtime it had, in ms, once completed. */
  downtime?: number | undefined;
}

/**
 * Options of `QMPClient.migrate()`. The `events` migration capability is
 * turned on, but the progress is read from `query-migrate`: at each
 * `MIGRATION` event and every `interval` ms. Aborting (`signal`,
 * `timeout`) sends `migrate_cancel` and waits for the migration to stop.
 */
export interface MigrateOptions extends CallOptions {
  /** Told of the progress at each `MIGRATION` event and every `interval` ms. */
  onProgress?: ((progress: MigrationProgress) => void) | undefined;
  /** How often `query-migrate` is read while the migration runs, in ms (default 500). */
  interval?: number | undefined;
}

/** The states a migration ends in. */
const FINAL = new Set<string>(["completed", "failed", "cancelled"]);

/** How long a cancelled migration may take to stop before `migrate()` gives up waiting. */
const CANCEL_WAIT = 30_000;

function num(v: JsonValue | undefined): number {
  return typeof v === "number" ? v : 0;
}

function toInfo(reply: JsonValue): MigrationInfo & { error?: string } {
  const r = (
    typeof reply === "object" && reply !== null && !Array.isArray(reply) ? reply : {}
  ) as Record<string, JsonValue>;
  const ram = (typeof r["ram"] === "object" && r["ram"] !== null ? r["ram"] : {}) as Record<
    string,
    JsonValue
  >;
  const info: MigrationInfo & { error?: string } = {
    status: (typeof r["status"] === "string" ? r["status"] : "none") as MigrationStatus,
    transferred: num(ram["transferred"]),
    remaining: num(ram["remaining"]),
    total: num(ram["total"]),
    dirtyPagesRate: num(ram["dirty-pages-rate"]),
  };
  if (typeof r["expected-downtime"] === "number") info.expectedDowntime = r["expected-downtime"];
  if (typeof r["total-time"] === "number") info.totalTime = r["total-time"];
  if (typeof r["downtime"] === "number") info.downtime = r["downtime"];
  if (typeof r["error-desc"] === "string") info.error = r["error-desc"];
  return info;
}

async function query(client: QMPClient): Promise<MigrationInfo & { error?: string }> {
  return toInfo(await client.execute("query-migrate", undefined, { timeout: Infinity }));
}

/**
 * Migrate to `target` (a URI, or `channels` for QEMU 8.2+) and follow it to
 * its end: see `QMPClient.migrate()`.
 *
 * @throws {TypeError} {RangeError} for bad arguments, before anything is sent.
 * @throws what `execute()` throws when `migrate` is refused.
 * @throws {MigrationError} when the migration fails or is cancelled by someone else.
 * @throws the signal's reason, or a `TimeoutError`, once the migration is cancelled.
 */
export async function migrate(
  client: QMPClient,
  target: string | readonly object[],
  options: MigrateOptions = {},
): Promise<MigrationInfo> {
  const channels = Array.isArray(target);
  if (!channels && (typeof target !== "string" || target === "")) {
    throw new TypeError(`target must be a URI or a list of channels, got ${typeName(target)}`);
  }
  checkCallOptions(options);
  const interval = options.interval ?? 500;
  if (!(interval > 0) || interval === Infinity) {
    throw new RangeError(`interval must be a positive number of ms, got ${String(interval)}`);
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
    throw new TypeError(`onProgress must be a function, got ${typeName(options.onProgress)}`);
  }
  const { signal, dispose } = deadline(
    { signal: options.signal, timeout: options.timeout },
    "migrate()",
  );
  const report = (info: MigrationProgress): void => {
    if (options.onProgress === undefined) return;
    const { status, transferred, remaining, total, dirtyPagesRate, expectedDowntime } = info;
    try {
      options.onProgress({
        status,
        transferred,
        remaining,
        total,
        dirtyPagesRate,
        expectedDowntime,
      });
    } catch (err) {
      client.logger.warn(`migrate: onProgress threw: ${String(err)}`);
    }
  };
  // MIGRATION events wake the loop early; the loop never depends on them alone.
  using events = client.untyped.listener("MIGRATION", undefined, { maxPending: 1000 });
  let started = false;
  try {
    await client.execute(
      "migrate-set-capabilities",
      { capabilities: [{ capability: "events", state: true }] },
      { signal, timeout: Infinity },
    );
    await client.execute("migrate", channels ? { channels: target } : { uri: target }, {
      signal,
      timeout: Infinity,
    });
    started = true;
    for (;;) {
      events.clear();
      const info = await query(client);
      report(info);
      if (info.status === "completed") {
        const { error: _error, ...done } = info;
        return done;
      }
      if (info.status === "failed" || info.status === "cancelled") {
        throw new MigrationError(info.status, info.error ?? `The migration was ${info.status}`);
      }
      await nextEvent(events, signal, interval);
    }
  } catch (err) {
    if (!signal.aborted || !started) throw err;
    await cancel(client);
    throw signal.reason;
  } finally {
    dispose();
  }
}

/** `migrate_cancel`, then wait (bounded) until the migration has stopped. */
async function cancel(client: QMPClient): Promise<void> {
  try {
    await client.execute("migrate_cancel", undefined, { timeout: CANCEL_WAIT });
  } catch {
    return;
  }
  const until = Date.now() + CANCEL_WAIT;
  while (Date.now() < until) {
    let status: string;
    try {
      status = (await query(client)).status;
    } catch {
      return;
    }
    if (FINAL.has(status) || status === "none") return;
    await sleep(50);
  }
}
