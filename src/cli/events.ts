// `qmp events`: stream QMP events as JSON lines, until K events, S seconds, or the end of the session.

import { parseArgs } from "node:util";
import { QMPClient, SessionEndedError } from "../index.js";
import {
  type CliIO,
  ExitStatus,
  connectFailure,
  deadline,
  describe,
  greetingHint,
  isTimeout,
  optionError,
  parseCount,
  parseSeconds,
  resolveAddress,
  usage,
  writeLine,
} from "./common.js";

/** `qmp events --help`. */
export const EVENTS_HELP = `Usage: qmp events [options] [ADDRESS]

Print QMP events as they arrive, one JSON object per line (for jq):
{"timestamp":{"seconds":…,"microseconds":…},"event":"STOP"}

Stops after --count events, after --timeout seconds, when QEMU closes the
connection, or on Ctrl-C. ADDRESS is a UNIX socket path, HOST:PORT or
[IPV6]:PORT; when it is left out, QMP_SOCKET gives it.

Options:
  -n, --name N      only events named N (repeat for more names)
  -c, --count K     stop after K events
  -t, --timeout S   stop after S seconds (connecting included)
  -v, --verbose     say on stderr when connected and listening
  -h, --help        show this help

Exit status:
  0  at least one event arrived
  1  no event arrived
  2  usage error, connection error, or timeout while connecting
`;

/**
 * Run `qmp events` with `args` (what follows `events`). `stop`, when it
 * aborts (SIGINT, SIGTERM), ends the stream like a timeout does.
 *
 * @returns the exit status; never throws for a usage or connection error.
 */
export async function runEvents(
  args: string[],
  io: CliIO,
  stop: AbortSignal = new AbortController().signal,
): Promise<ExitStatus> {
  let names: string[];
  let count: number | undefined;
  let timeout: number | undefined;
  let verbose: boolean;
  let address: ReturnType<typeof resolveAddress>;
  try {
    const parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        name: { type: "string", short: "n", multiple: true, default: [] },
        count: { type: "string", short: "c" },
        timeout: { type: "string", short: "t" },
        verbose: { type: "boolean", short: "v", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (parsed.values.help) {
      io.stdout.write(EVENTS_HELP);
      return ExitStatus.OK;
    }
    names = parsed.values.name;
    count = parseCount("--count", parsed.values.count);
    timeout = parseSeconds("--timeout", parsed.values.timeout);
    verbose = parsed.values.verbose;
    if (parsed.positionals.length > 1) {
      throw new Error(`unexpected argument '${parsed.positionals[1]}'`);
    }
    address = resolveAddress(parsed.positionals[0], io.env);
  } catch (err) {
    return usage(io, "events", optionError(err));
  }

  const limit = deadline(timeout, stop);
  const signal = limit.signal;
  const client = new QMPClient({ name: "qmp events" });
  // Registered before connecting: events sent right after the greeting count too.
  const listener = client.listener(names, undefined, { maxPending: 100_000 });
  let received = 0;
  try {
    const hint = greetingHint(io, "events", address.text);
    try {
      await client.connect(address.address, { signal });
    } catch (err) {
      if (stop.aborted) return ExitStatus.FAILED;
      const why = isTimeout(err)
        ? `no QMP session within ${timeout! / 1000} s`
        : connectFailure(err);
      writeLine(io.stderr, `qmp events: cannot connect to ${address.text}: ${why}`);
      return ExitStatus.USAGE;
    } finally {
      hint();
    }
    if (verbose) {
      const v = client.greeting?.QMP.version.qemu;
      const qemu = v === undefined ? "QEMU" : `QEMU ${v.major}.${v.minor}.${v.micro}`;
      writeLine(io.stderr, `qmp events: connected to ${qemu} at ${address.text}, listening`);
    }
    while (count === undefined || received < count) {
      let event;
      try {
        event = await listener.get({ signal });
      } catch (err) {
        // The end of the stream: time is up, Ctrl-C, or QEMU went away.
        if (signal.aborted || err instanceof SessionEndedError) break;
        throw err;
      }
      writeLine(io.stdout, JSON.stringify(event));
      received++;
    }
    await client.disconnect().catch(() => {});
  } catch (err) {
    writeLine(io.stderr, `qmp events: ${describe(err)}`);
  } finally {
    limit.clear();
    await client.destroy();
  }
  return received > 0 ? ExitStatus.OK : ExitStatus.FAILED;
}
