// `qmp mux`: one QMP monitor shared by any number of clients, on sockets with policies of their own.

import { parseArgs } from "node:util";
import {
  type InetAddress,
  type Logger,
  type MuxListenOptions,
  QMPClient,
  QMPMux,
  QMPSupervisor,
  Runstate,
  parseAddress,
} from "../index.js";
import {
  type CliIO,
  ExitStatus,
  connectFailure,
  describe,
  greetingHint,
  optionError,
  parseCount,
  resolveAddress,
  usage,
  writeLine,
} from "./common.js";
import { type LaunchedQemu, launchQemu } from "./launch.js";

/** `qmp mux --help`. */
export const MUX_HELP = `Usage: qmp mux [options] UPSTREAM --listen ADDRESS [--listen ADDRESS ...]
       qmp mux [options] --listen ADDRESS ... --launch -- QEMU-COMMAND [ARGS ...]

Share one QMP monitor among any number of clients: qmp mux connects to
QEMU's monitor at UPSTREAM (or, with --launch, starts QEMU connected to it)
and serves QMP on each --listen address. Every client gets QEMU's greeting,
negotiates as usual, gets the replies to its commands with its own ids, and
every event; qmp shell, qmp tui, qmp exec and qmp events work against a mux
address unchanged.

--allow, --deny, --read-only and --mode apply to the --listen before them;
given before any --listen, to all of them. A refused command gets a QMP
error reply. getfd and add-fd are refused: file descriptors are not passed
on. UPSTREAM and ADDRESS are UNIX socket paths, HOST:PORT or [IPV6]:PORT;
UPSTREAM defaults to QMP_SOCKET.

Options:
  -l, --listen ADDRESS    serve clients at ADDRESS (repeat for more sockets)
      --allow LIST        only the commands LIST names (globs, comma-separated)
      --deny LIST         never the commands LIST names (globs, comma-separated)
      --read-only         only commands that only look (queries, qom-get, ...)
      --mode MODE         the UNIX socket's file mode, in octal (default 600)
      --client-queue N    events held for a client that does not read (default 10000)
      --slow-client WHAT  drop its oldest events (default), or disconnect it
      --reconnect         when QEMU goes away, wait for it to come back
      --launch            start QEMU (the command after --) instead of UPSTREAM
  -v, --verbose           say on stderr what happens (listening, clients, QEMU)
  -h, --help              show this help

Exit status:
  0  stopped (SIGINT, SIGTERM), or QEMU quit (it sent SHUTDOWN)
  1  the connection to QEMU ended otherwise (QEMU crashed or was killed)
  2  usage error, or QEMU or a listen address could not be had
`;

/** One `--listen` and the policy that applies to it. */
interface ListenSpec {
  text: string;
  address: string | InetAddress;
  options: MuxListenOptions;
}

/** `qmp mux`'s parsed command line. */
interface MuxArgs {
  upstream: ReturnType<typeof resolveAddress> | undefined;
  launch: string[] | undefined;
  listens: ListenSpec[];
  clientQueue: number;
  slowClient: "drop" | "disconnect";
  reconnect: boolean;
  verbose: boolean;
}

/**
 * Parse `qmp mux`'s arguments; the policy options apply to the `--listen`
 * before them, or, before any, to all.
 *
 * @throws {Error} for a usage error (the message says which).
 */
export function parseMuxArgs(args: string[], env: NodeJS.ProcessEnv): MuxArgs | "help" {
  const dashes = args.indexOf("--");
  const own = dashes === -1 ? args : args.slice(0, dashes);
  const qemu = dashes === -1 ? [] : args.slice(dashes + 1);
  const { values, positionals, tokens } = parseArgs({
    args: own,
    allowPositionals: true,
    tokens: true,
    options: {
      listen: { type: "string", short: "l", multiple: true },
      allow: { type: "string", multiple: true },
      deny: { type: "string", multiple: true },
      "read-only": { type: "boolean", multiple: true },
      mode: { type: "string", multiple: true },
      "client-queue": { type: "string" },
      "slow-client": { type: "string" },
      reconnect: { type: "boolean", default: false },
      launch: { type: "boolean", default: false },
      verbose: { type: "boolean", short: "v", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  const all: MuxListenOptions = {};
  const listens: ListenSpec[] = [];
  for (const token of tokens) {
    if (token.kind !== "option") continue;
    const target = listens.at(-1)?.options ?? all;
    const value = token.value ?? "";
    switch (token.name) {
      case "listen": {
        if (value === "") throw new Error("--listen needs an address");
        listens.push({ text: value, address: parseAddress(value), options: {} });
        break;
      }
      case "allow":
      case "deny":
        if (target[token.name] !== undefined)
          throw new Error(`--${token.name} given twice for one socket`);
        target[token.name] = value;
        break;
      case "read-only":
        target.readOnly = true;
        break;
      case "mode":
        if (!/^[0-7]{3,4}$/.test(value))
          throw new Error(`--mode needs an octal file mode such as 660, got '${value}'`);
        target.mode = parseInt(value, 8);
        break;
      case "client-queue":
      case "slow-client":
      case "reconnect":
      case "launch":
      case "verbose":
      case "help":
        // Not per socket: read from `values` below.
        break;
    }
  }
  if (listens.length === 0) throw new Error("no --listen address given");
  for (const l of listens) l.options = { ...all, ...l.options };
  const slow = values["slow-client"] ?? "drop";
  if (slow !== "drop" && slow !== "disconnect") {
    throw new Error(`--slow-client is drop or disconnect, got '${slow}'`);
  }
  if (values.launch) {
    if (positionals.length > 0) throw new Error("--launch starts QEMU: give no UPSTREAM");
    if (qemu.length === 0) throw new Error("--launch needs the QEMU command after --");
    if (values.reconnect)
      throw new Error("--reconnect waits for a QEMU of someone else's: it cannot go with --launch");
  } else if (qemu.length > 0) {
    throw new Error("a command after -- is for --launch");
  }
  if (positionals.length > 1) throw new Error(`unexpected argument '${positionals[1]}'`);
  return {
    upstream: values.launch ? undefined : resolveAddress(positionals[0], env),
    launch: values.launch ? qemu : undefined,
    listens,
    clientQueue: parseCount("--client-queue", values["client-queue"]) ?? 10_000,
    slowClient: slow,
    reconnect: values.reconnect,
    verbose: values.verbose,
  };
}

/** A logger that writes warnings and errors (and, verbose, info) on stderr. */
function stderrLogger(io: CliIO, verbose: boolean): Logger {
  const line = (text: string): void => writeLine(io.stderr, `qmp mux: ${text}`);
  return { debug: () => {}, info: verbose ? line : () => {}, warn: line, error: line };
}

/**
 * Run `qmp mux` with `args` (what follows `mux`), until `stop` aborts
 * (SIGINT, SIGTERM) or the upstream session ends (unless `--reconnect`).
 *
 * @returns the exit status; never throws for a usage or connection error.
 */
export async function runMux(args: string[], io: CliIO, stop: AbortSignal): Promise<ExitStatus> {
  let parsed;
  try {
    parsed = parseMuxArgs(args, io.env);
  } catch (err) {
    return usage(io, "mux", optionError(err));
  }
  if (parsed === "help") {
    io.stdout.write(MUX_HELP);
    return ExitStatus.OK;
  }
  const say = (text: string): void => {
    if (parsed.verbose) writeLine(io.stderr, `qmp mux: ${text}`);
  };
  const client = new QMPClient({ name: "qmp mux", logger: stderrLogger(io, parsed.verbose) });
  // A SHUTDOWN before the end means QEMU quit: exit 0 rather than 1.
  const shutdown = client.listener("SHUTDOWN", undefined, { maxPending: 1 });
  let qemu: LaunchedQemu | undefined;
  let supervisor: QMPSupervisor | undefined;
  const mux = new QMPMux(client, {
    clientQueue: parsed.clientQueue,
    slowClient: parsed.slowClient,
  });
  const upstream = parsed.upstream;
  try {
    try {
      if (parsed.launch !== undefined) {
        qemu = await launchQemu(client, parsed.launch, {
          signal: stop,
          onOutput: (line, stream) => writeLine(stream === "stdout" ? io.stdout : io.stderr, line),
        });
      } else if (parsed.reconnect) {
        supervisor = new QMPSupervisor(client, upstream!.address);
        supervisor.on("disconnected", () => say("QEMU went away; waiting for it to come back"));
        supervisor.on("reconnected", () => say("QEMU is back"));
        await supervisor.start({ signal: stop });
      } else {
        const hint = greetingHint(io, "mux", upstream!.text);
        try {
          await client.connect(upstream!.address, { signal: stop });
        } finally {
          hint();
        }
      }
    } catch (err) {
      if (stop.aborted) return ExitStatus.OK;
      const where = upstream?.text ?? "QEMU";
      writeLine(
        io.stderr,
        `qmp mux: cannot connect to ${where}: ${parsed.launch !== undefined ? describe(err) : connectFailure(err)}`,
      );
      return ExitStatus.USAGE;
    }
    for (const l of parsed.listens) {
      try {
        await mux.listen(l.address, l.options);
      } catch (err) {
        writeLine(io.stderr, `qmp mux: cannot listen on ${l.text}: ${describe(err)}`);
        return ExitStatus.USAGE;
      }
      say(`listening on ${l.text}`);
    }
    const ended = new Promise<"ended" | "failed">((resolve) => {
      if (supervisor !== undefined) {
        supervisor.once("reconnectFailed", () => resolve("failed"));
        return;
      }
      const watch = (state: Runstate): void => {
        if (state === Runstate.RUNNING) return;
        client.off("runstate", watch);
        resolve("ended");
      };
      client.on("runstate", watch);
      if (client.runstate !== Runstate.RUNNING) resolve("ended");
    });
    const stopped = new Promise<"stopped">((resolve) => {
      if (stop.aborted) resolve("stopped");
      stop.addEventListener("abort", () => resolve("stopped"), { once: true });
    });
    const how = await Promise.race([ended, stopped]);
    if (how === "stopped") return ExitStatus.OK;
    if (how === "failed") return ExitStatus.FAILED;
    const quit = shutdown.pending > 0 || shutdown.dropped > 0;
    say(quit ? "QEMU quit" : "the connection to QEMU ended");
    return quit ? ExitStatus.OK : ExitStatus.FAILED;
  } finally {
    await mux.close();
    await supervisor?.stop();
    await client.disconnect().catch(() => {});
    await qemu?.stop();
  }
}
