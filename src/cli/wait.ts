// `qmp exec … --wait`: a job-starting command (or migrate) followed to its end, with progress on
// stderr; Ctrl-C cancels the work and waits for it.

import {
  type CommandMessage,
  ExecuteError,
  JobError,
  MigrationError,
  type QMPClient,
} from "../index.js";
import { type CliIO, ExitStatus, describe, isTimeout, toJson, writeLine } from "./common.js";
import { ProgressView } from "./progress.js";

/**
 * Run `message` (`name`) with `runJob()`, or `migrate()` for `migrate`, and
 * report: progress on stderr, the end on stdout.
 *
 * @returns the exit status: 0 done, 1 refused or failed, 2 timeout, 130 interrupted.
 */
export async function waitFor(
  client: QMPClient,
  name: string,
  message: CommandMessage,
  io: CliIO,
  timeout: AbortSignal,
  pretty: boolean,
): Promise<ExitStatus> {
  const interrupt = new AbortController();
  const onSignal = (): void => interrupt.abort(new Error("interrupted"));
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const signal = AbortSignal.any([timeout, interrupt.signal]);
  const args = (message.arguments ?? {}) as Record<string, unknown>;
  const view = new ProgressView(io.stderr, name);
  try {
    let result: unknown;
    if (name === "migrate") {
      const target = (args["channels"] ?? args["uri"]) as string | object[] | undefined;
      if (target === undefined) throw new Error("migrate needs uri=… or channels=…");
      result = await client.migrate(target, {
        signal,
        onProgress: (p) =>
          view.update({ status: p.status, current: p.transferred, total: p.total }),
      });
    } else {
      result = await client.untyped.runJob(name, args, {
        signal,
        onProgress: (p) => view.update(p),
      });
    }
    view.done();
    writeLine(io.stdout, toJson(result, pretty));
    return ExitStatus.OK;
  } catch (err) {
    view.done();
    if (interrupt.signal.aborted) {
      writeLine(io.stderr, `qmp exec: ${name}: interrupted; cancelled`);
      return ExitStatus.INTERRUPTED;
    }
    if (err instanceof ExecuteError) {
      writeLine(io.stderr, `${err.errorClass}: ${err.desc}`);
      return ExitStatus.FAILED;
    }
    if (err instanceof JobError || err instanceof MigrationError) {
      writeLine(io.stderr, `qmp exec: ${name}: ${err.desc}`);
      return ExitStatus.FAILED;
    }
    const why = isTimeout(err) ? "timed out; cancelled" : describe(err);
    writeLine(io.stderr, `qmp exec: ${name}: ${why}`);
    return isTimeout(err) ? ExitStatus.USAGE : ExitStatus.FAILED;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
