// `qmp shell` and `qmp wrap`: parse the arguments, start the session, end the process the right way.

import {
  type ExitStatus as Status,
  ExitStatus,
  checkRecordFile,
  describe,
  optionError,
  usage,
  writeLine,
} from "./common.js";
import {
  SHELL_HELP,
  WRAP_HELP,
  type ShellOptions,
  parseShellArgs,
  parseWrapArgs,
} from "./shell-options.js";
import { Shell, type ShellIO } from "./shell-session.js";

export { SHELL_HELP, WRAP_HELP, type ShellIO };

/**
 * Run `qmp shell` with `args` (what follows `shell`).
 *
 * @returns the exit status; never throws for a usage, connection or QEMU error.
 */
export async function runShell(args: string[], io: ShellIO): Promise<Status> {
  let parsed;
  try {
    parsed = parseShellArgs(args, io.env);
  } catch (err) {
    return usage(io, "shell", optionError(err));
  }
  if (parsed.help) {
    io.stdout.write(SHELL_HELP);
    return ExitStatus.OK;
  }
  if (!recordable(parsed.options, "shell", io)) return ExitStatus.USAGE;
  const shell = new Shell("shell", parsed.options, io);
  const status =
    parsed.address === undefined
      ? await shell.runLaunched(parsed.qemu, true)
      : await shell.runConnected(parsed.address.address, parsed.address.text);
  return hangUpOr(shell, io, status);
}

/**
 * Run `qmp wrap` with `args` (what follows `wrap`): options, then `--` (or
 * the first word that is not an option) and QEMU's command line.
 *
 * @returns the exit status; never throws for a usage, launch or QEMU error.
 */
export async function runWrap(args: string[], io: ShellIO): Promise<Status> {
  let parsed;
  try {
    parsed = parseWrapArgs(args, io.env);
  } catch (err) {
    return usage(io, "wrap", optionError(err));
  }
  if (parsed.help) {
    io.stdout.write(WRAP_HELP);
    return ExitStatus.OK;
  }
  if (!recordable(parsed.options, "wrap", io)) return ExitStatus.USAGE;
  const shell = new Shell("wrap", parsed.options, io);
  return hangUpOr(shell, io, await shell.runLaunched(parsed.argv, false));
}

/** Whether the `--record` transcript, if any, can be written (else says why on stderr). */
function recordable(options: ShellOptions, command: string, io: ShellIO): boolean {
  if (options.record === undefined) return true;
  try {
    checkRecordFile(options.record);
    return true;
  } catch (err) {
    writeLine(io.stderr, `qmp ${command}: cannot write the transcript: ${describe(err)}`);
    return false;
  }
}

/**
 * After a shell whose terminal went away (SIGHUP, EIO), end the process the
 * way SIGHUP does: exiting normally would make Node restore the terminal's
 * modes, which fails on a dead terminal with an assertion (a Node bug).
 */
function hangUpOr(shell: Shell, io: ShellIO, status: Status): Status {
  if (shell.hungUp && io.stdin === process.stdin) process.kill(process.pid, "SIGHUP");
  return status;
}
