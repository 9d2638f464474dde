// The `qmp` command: dispatch to the subcommands, top-level --help and --version.

import { CODEGEN_HELP, runCodegen } from "./codegen.js";
import { ExitStatus, version, writeLine } from "./common.js";
import { EVENTS_HELP, runEvents } from "./events.js";
import { EXEC_HELP, runExec } from "./exec.js";
import { MUX_HELP, runMux } from "./mux.js";
import { QOM_HELP, runQom } from "./qom.js";
import { SHELL_HELP, type ShellIO, WRAP_HELP, runShell, runWrap } from "./shell.js";
import { TUI_HELP, runTui } from "./tui/tui.js";

/** `qmp --help`. */
export const MAIN_HELP = `Usage: qmp COMMAND [options] [ARGS ...]

A client for the QEMU Machine Protocol (QMP).

Commands:
  shell [ADDRESS]                           the interactive shell (a throwaway QEMU without ADDRESS)
  tui [ADDRESS]                             the full-screen console (a throwaway QEMU without ADDRESS)
  wrap -- QEMU-COMMAND [ARGS ...]           start QEMU connected to a shell
  exec [ADDRESS] COMMAND [key=value ...]    run one QMP command, print its return value as JSON
  events [ADDRESS]                          print QMP events as JSON lines
  codegen [ADDRESS] -o FILE.ts              write TypeScript types for a QEMU's QAPI schema
  mux [UPSTREAM] --listen ADDRESS ...       share one QMP monitor among many clients
  qom SUBCOMMAND [ADDRESS] ...              the QOM tree: list, get, set, tree

ADDRESS is a UNIX socket path, HOST:PORT or [IPV6]:PORT; when it is left
out, the QMP_SOCKET environment variable gives it.

Options:
  -h, --help        show this help
  -V, --version     print the version of qmp

Run "qmp COMMAND --help" for a command's options and exit statuses.
`;

/** The help text of each subcommand, by name (for tests and docs). */
export const HELP: Readonly<Record<string, string>> = {
  codegen: CODEGEN_HELP,
  exec: EXEC_HELP,
  mux: MUX_HELP,
  qom: QOM_HELP,
  events: EVENTS_HELP,
  shell: SHELL_HELP,
  tui: TUI_HELP,
  wrap: WRAP_HELP,
};

/**
 * Run `qmp` with `argv` (the arguments after the program name).
 * SIGINT and SIGTERM end `qmp events` cleanly.
 *
 * @returns the exit status: 0 success, 1 failure (see each command), 2 usage.
 */
export async function main(argv: string[], io: ShellIO = processIO()): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
      io.stderr.write(MAIN_HELP);
      return ExitStatus.USAGE;
    case "-h":
    case "--help":
      io.stdout.write(MAIN_HELP);
      return ExitStatus.OK;
    case "-V":
    case "--version":
      writeLine(io.stdout, version());
      return ExitStatus.OK;
    case "exec":
      return runExec(rest, io);
    case "events":
      return withStopSignal((stop) => runEvents(rest, io, stop));
    case "shell":
      return runShell(rest, io);
    case "tui":
      return runTui(rest, io);
    case "codegen":
      return runCodegen(rest, io);
    case "qom":
      return runQom(rest, io);
    case "mux":
      return withStopSignal((stop) => runMux(rest, io, stop));
    case "wrap":
      return runWrap(rest, io);
    default:
      writeLine(io.stderr, `qmp: unknown command '${command}'`);
      writeLine(io.stderr, "Try 'qmp --help' for more information.");
      return ExitStatus.USAGE;
  }
}

/** The process's own streams and environment. */
function processIO(): ShellIO {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env };
}

/** Run `fn` with a signal that SIGINT, SIGTERM or a closed stdout (EPIPE, e.g. `| head`) aborts. */
async function withStopSignal<T>(fn: (stop: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  const onError = (err: NodeJS.ErrnoException): void => {
    if (err.code !== "EPIPE") throw err;
    stop();
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  process.stdout.on("error", onError);
  try {
    return await fn(controller.signal);
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    process.stdout.off("error", onError);
  }
}
