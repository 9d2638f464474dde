// `qmp shell` and `qmp wrap`: their --help texts and command-line options.

import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type InetAddress } from "../index.js";
import { resolveAddress } from "./common.js";
import { THROWAWAY_QEMU } from "./launch.js";

/** The "Typing:" block of the help; `leaving` says what Ctrl-D does to QEMU. */
function typing(leaving: string): string {
  return `Typing:
  COMMAND key=value ...   run a command: values are integers, true/false,
                          JSON objects and arrays, else strings; dotted keys
                          nest (a.b=1 gives {"a":{"b":1}})
  {"execute": ...}        send a JSON message as is
  transaction(            open a transaction (prompt TRANS>): then one
                          ACTION key=value ... per line, and ")" to run it
  Tab                     complete command names, argument names and values
  Ctrl-C                  clear the line, or stop waiting for a reply
  Ctrl-D                  leave (${leaving})
  # ...                   a comment

Reading a pipe instead of a terminal, results go to stdout and errors to
stderr ("line N: ..."), with no prompt. In HMP mode (-H), lines are human
monitor commands; "cpu N" picks the CPU the following commands run on.`;
}

const SHELL_OPTIONS = `  -H, --hmp               HMP mode: lines are human monitor commands
  -N, --skip-negotiation  no capabilities negotiation (for the guest agent)
  -p, --pretty            indent JSON output
  -v, --verbose           print each message sent, as JSON
  -l, --log FILE          append each exchange to FILE as JSON lines (secrets redacted)
      --record FILE       append a replayable transcript to FILE (secrets redacted)
      --history FILE      keep the history in FILE (default ~/.qmp_history; "" for none)`;

/** `qmp shell --help`. */
export const SHELL_HELP = `Usage: qmp shell [options] [ADDRESS]
       qmp shell [options] --ga ADDRESS

An interactive QMP shell: qmp-shell syntax, Tab completion from the
schema, history, and events printed as they arrive. With --ga, the same
shell on a guest agent (qemu-ga), resynced first, Tab completion from
guest-info.

ADDRESS is a UNIX socket path, HOST:PORT or [IPV6]:PORT; when it is left
out, QMP_SOCKET gives it. With neither, the shell starts a throwaway
"qemu-system-x86_64 -machine none -nodefaults -display none" of its own,
and stops it when you leave.

${typing("QEMU keeps running, unless it is the throwaway one")}

Options:
  -g, --ga ADDRESS        the guest agent (qemu-ga) at ADDRESS, not QMP
${SHELL_OPTIONS}
      --qemu BINARY       the throwaway QEMU's binary (default qemu-system-x86_64)
  -h, --help              show this help

Exit status:
  0  you left (Ctrl-D), or QEMU closed the connection
  1  the connection broke with an error; or, reading a pipe, a line failed
  2  usage error, or no connection
`;

/** `qmp wrap --help`. */
export const WRAP_HELP = `Usage: qmp wrap [options] -- QEMU-COMMAND [ARGS ...]

Start QEMU with a QMP monitor that connects to a private socket of ours,
then open the shell on it. Leaving the shell stops QEMU (SIGTERM) and
removes the socket. QEMU's own output is printed above the prompt.

  qmp wrap -- qemu-system-x86_64 -machine q35 -m 1G -display none

${typing("and stop QEMU")}

Options:
${SHELL_OPTIONS}
  -h, --help              show this help

Exit status:
  0  you left (Ctrl-D), or QEMU closed the connection
  1  the connection broke with an error; or, reading a pipe, a line failed
  2  usage error, or QEMU could not be started or did not connect
`;

/** The options the shell runs with (shared by `shell` and `wrap`). */
export interface ShellOptions {
  /** A guest agent (`--ga`): a `QGAClient`, no greeting, no negotiation. */
  ga: boolean;
  hmp: boolean;
  negotiate: boolean;
  pretty: boolean;
  verbose: boolean;
  log: string | undefined;
  /** `--record`: the transcript file (the client's `record` option); `undefined` for none. */
  record: string | undefined;
  /** The history file; `undefined` for none. */
  history: string | undefined;
}

const OPTION_SPEC = {
  hmp: { type: "boolean", short: "H", default: false },
  "skip-negotiation": { type: "boolean", short: "N", default: false },
  pretty: { type: "boolean", short: "p", default: false },
  verbose: { type: "boolean", short: "v", default: false },
  log: { type: "string", short: "l" },
  record: { type: "string" },
  history: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** What `qmp shell`'s arguments ask for: its help, or a shell. */
export type ShellArgs =
  | { help: true }
  | {
      help: false;
      options: ShellOptions;
      /** Where to connect; `undefined` for a throwaway QEMU. */
      address: { address: string | InetAddress; text: string } | undefined;
      /** The throwaway QEMU's command line. */
      qemu: string[];
    };

/**
 * Parse `qmp shell`'s arguments (what follows `shell`).
 *
 * @throws {Error} (a usage error) for a bad option, address or combination.
 */
export function parseShellArgs(args: string[], env: NodeJS.ProcessEnv): ShellArgs {
  const parsed = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: { ...OPTION_SPEC, qemu: { type: "string" }, ga: { type: "string", short: "g" } },
  });
  if (parsed.values.help) return { help: true };
  const ga = parsed.values.ga;
  const options = shellOptions(parsed.values, env, ga !== undefined);
  if (parsed.positionals.length > (ga !== undefined ? 0 : 1)) {
    throw new Error(`unexpected argument '${parsed.positionals.at(-1)}'`);
  }
  if (ga !== undefined && parsed.values.qemu !== undefined) {
    throw new Error("--qemu is for the throwaway QEMU: it cannot go with --ga");
  }
  const addressText = ga ?? parsed.positionals[0] ?? (env["QMP_SOCKET"] || undefined);
  let address;
  if (addressText !== undefined) {
    if (parsed.values.qemu !== undefined) {
      throw new Error("--qemu is for the throwaway QEMU: give it without an ADDRESS");
    }
    address = resolveAddress(addressText, env);
  }
  const qemu = [parsed.values.qemu ?? THROWAWAY_QEMU[0], ...THROWAWAY_QEMU.slice(1)];
  return { help: false, options, address, qemu };
}

/** What `qmp wrap`'s arguments ask for: its help, or a shell on QEMU's command line `argv`. */
export type WrapArgs = { help: true } | { help: false; options: ShellOptions; argv: string[] };

/**
 * Parse `qmp wrap`'s arguments: options, then `--` (or the first word that
 * is not an option) and QEMU's command line.
 *
 * @throws {Error} (a usage error) for a bad option, or a missing or daemonizing QEMU.
 */
export function parseWrapArgs(args: string[], env: NodeJS.ProcessEnv): WrapArgs {
  const split = splitWrapArgs(args);
  const parsed = parseArgs({
    args: split.own,
    allowPositionals: false,
    strict: true,
    options: OPTION_SPEC,
  });
  if (parsed.values.help) return { help: true };
  const options = shellOptions(parsed.values, env, false);
  const argv = split.qemu;
  if (argv.length === 0) {
    throw new Error("no QEMU command given (qmp wrap -- qemu-system-… ARGS)");
  }
  if (argv.some((a) => a === "-daemonize" || a === "--daemonize")) {
    throw new Error(
      "QEMU must stay in the foreground to be stopped when you leave: drop -daemonize",
    );
  }
  return { help: false, options, argv };
}

/** Split `qmp wrap`'s arguments into its own options and QEMU's command line. */
function splitWrapArgs(args: string[]): { own: string[]; qemu: string[] } {
  const dashes = args.indexOf("--");
  if (dashes !== -1) return { own: args.slice(0, dashes), qemu: args.slice(dashes + 1) };
  const { tokens } = parseArgs({
    args,
    strict: false,
    allowPositionals: true,
    tokens: true,
    options: OPTION_SPEC,
  });
  const first = tokens.find((t) => t.kind === "positional");
  if (first === undefined) return { own: args, qemu: [] };
  return { own: args.slice(0, first.index), qemu: args.slice(first.index) };
}

function shellOptions(
  values: {
    hmp: boolean;
    "skip-negotiation": boolean;
    pretty: boolean;
    verbose: boolean;
    log?: string | undefined;
    record?: string | undefined;
    history?: string | undefined;
  },
  env: NodeJS.ProcessEnv,
  ga: boolean,
): ShellOptions {
  if (values.hmp && values["skip-negotiation"]) {
    throw new Error("-H (HMP) needs a negotiated session: it cannot go with -N");
  }
  if (ga && values.hmp) throw new Error("-H (HMP) is QEMU's: it cannot go with --ga");
  if (values.log === "") throw new Error("--log needs a file name");
  if (values.record === "") throw new Error("--record needs a file name");
  const home = env["HOME"] ?? homedir();
  const history = values.history ?? join(home, ".qmp_history");
  return {
    ga,
    hmp: values.hmp,
    negotiate: !ga && !values["skip-negotiation"],
    pretty: values.pretty,
    verbose: values.verbose,
    log: values.log,
    record: values.record,
    history: history === "" ? undefined : history,
  };
}
