// `qmp exec`: run one command, print its `return` value as JSON, exit with a status for scripts.

import { parseArgs } from "node:util";
import { ExecuteError, QGAClient, QMPClient, type CommandMessage } from "../index.js";
import {
  type CliIO,
  ExitStatus,
  UsageError,
  checkRecordFile,
  connectFailure,
  deadline,
  describe,
  greetingHint,
  isTimeout,
  looksLikeAddress,
  optionError,
  parseSeconds,
  resolveAddress,
  toJson,
  usage,
  writeLine,
} from "./common.js";
import { ShellSyntaxError, TransactionBuilder, parseLine, parseTokens } from "./parse.js";
import { waitFor } from "./wait.js";

/** `qmp exec --help`. */
export const EXEC_HELP = `Usage: qmp exec [options] [ADDRESS] COMMAND [key=value ...]
       qmp exec [options] --ga ADDRESS COMMAND [key=value ...]

Run one QMP command and print its "return" value as JSON on stdout. With
--ga, run a guest agent command (qemu-ga: guest-ping, guest-info, ...)
instead; integers beyond 2^53 are printed exactly.

The arguments use the qmp-shell syntax: integers, true/false, JSON objects
and arrays, else strings; quoted values are always strings; dotted keys nest
(a.b=1 gives {"a":{"b":1}}); "transaction( ACTION key=value ... )" runs a
one-action transaction. A COMMAND that starts with "{" is a whole JSON
message, sent as is.

ADDRESS is a UNIX socket path, HOST:PORT or [IPV6]:PORT. When it is left
out, QMP_SOCKET gives it; the first word is then taken as ADDRESS only if it
holds a "/" or a ":".

Options:
  -g, --ga ADDRESS    talk to the guest agent (qemu-ga) at ADDRESS
  -t, --timeout S     give up after S seconds (connecting included)
  -p, --pretty        indent the JSON output
  -v, --verbose       echo the message sent, as JSON, on stderr
      --record FILE   append a replayable transcript to FILE (secrets redacted)
  -w, --wait          a job-starting command (or migrate): follow the job to its end
  -h, --help          show this help

With --wait, a job-starting command (blockdev-backup, block-stream,
blockdev-mirror, blockdev-create, snapshot-save, ...) is followed to its
end with a progress bar on stderr (plain lines on a pipe), and the job as
it ended printed; migrate is followed the same way. Ctrl-C cancels the job
(or the migration), waits for it, and exits with 130.

Exit status:
  0  success
  1  QEMU (or the agent) answered with an error ("Class: description" on stderr),
     or the job failed
  2  usage error, connection error or timeout
  130  interrupted (Ctrl-C): the job was cancelled
`;

/**
 * Run `qmp exec` with `args` (what follows `exec`).
 *
 * @returns the exit status; never throws for a usage, connection or QEMU error.
 */
export async function runExec(args: string[], io: CliIO): Promise<ExitStatus> {
  let options: {
    timeout: number | undefined;
    pretty: boolean;
    verbose: boolean;
    ga: string | undefined;
    record: string | undefined;
    wait: boolean;
  };
  let words: string[];
  try {
    const parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        ga: { type: "string", short: "g" },
        timeout: { type: "string", short: "t" },
        pretty: { type: "boolean", short: "p", default: false },
        verbose: { type: "boolean", short: "v", default: false },
        record: { type: "string" },
        wait: { type: "boolean", short: "w", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (parsed.values.help) {
      io.stdout.write(EXEC_HELP);
      return ExitStatus.OK;
    }
    options = {
      timeout: parseSeconds("--timeout", parsed.values.timeout),
      pretty: parsed.values.pretty,
      verbose: parsed.values.verbose,
      ga: parsed.values.ga,
      record: parsed.values.record,
      wait: parsed.values.wait,
    };
    if (options.record === "") throw new UsageError("--record needs a file name");
    if (options.wait && options.ga !== undefined) {
      throw new UsageError("--wait follows QEMU's jobs: it cannot go with --ga");
    }
    words = parsed.positionals;
  } catch (err) {
    return usage(io, "exec", optionError(err));
  }

  let addressText: string | undefined = options.ga;
  const first = words[0];
  const envSet = options.ga !== undefined || (io.env["QMP_SOCKET"] ?? "") !== "";
  if (options.ga === undefined && first !== undefined && (!envSet || looksLikeAddress(first))) {
    addressText = first;
    words = words.slice(1);
  }
  if (words.length === 0) return usage(io, "exec", missingWords(first, envSet));

  let message: CommandMessage;
  try {
    message = buildMessage(words);
  } catch (err) {
    if (err instanceof ShellSyntaxError) {
      writeLine(io.stderr, `qmp exec: ${err.message}`);
      writeLine(io.stderr, err.usage);
      return ExitStatus.USAGE;
    }
    return usage(io, "exec", describe(err));
  }

  let address: ReturnType<typeof resolveAddress>;
  try {
    address = resolveAddress(addressText, io.env);
  } catch (err) {
    return usage(io, "exec", describe(err));
  }

  if (options.record !== undefined) {
    try {
      checkRecordFile(options.record);
    } catch (err) {
      writeLine(io.stderr, `qmp exec: cannot write the transcript: ${describe(err)}`);
      return ExitStatus.USAGE;
    }
  }

  const seconds = options.timeout === undefined ? "" : `${options.timeout / 1000} s`;
  const limit = deadline(options.timeout);
  const signal = limit.signal;
  const ga = options.ga !== undefined;
  const clientOptions = { name: "qmp exec", record: options.record };
  const client = ga ? new QGAClient(clientOptions) : new QMPClient(clientOptions);
  try {
    // A guest agent sends no greeting: nothing to hint about while waiting for one.
    const hint = ga ? () => {} : greetingHint(io, "exec", address.text);
    try {
      await client.connect(address.address, { signal });
    } catch (err) {
      const session = ga ? "guest agent session" : "QMP session";
      const why = isTimeout(err) ? `no ${session} within ${seconds}` : connectFailure(err);
      writeLine(io.stderr, `qmp exec: cannot connect to ${address.text}: ${why}`);
      return ExitStatus.USAGE;
    } finally {
      hint();
    }
    if (options.verbose) writeLine(io.stderr, JSON.stringify(message));
    const name = String(message.execute ?? message["exec-oob"]);
    if (options.wait && client instanceof QMPClient && !(client instanceof QGAClient)) {
      const status = await waitFor(client, name, message, io, signal, options.pretty);
      await client.disconnect().catch(() => {});
      return status;
    }
    let result: unknown;
    try {
      result =
        client instanceof QGAClient && message.id === undefined
          ? await client.execute(name, message.arguments, { signal, bigint: true })
          : await client.executeMsg(message, { signal });
    } catch (err) {
      if (err instanceof ExecuteError) {
        writeLine(io.stderr, `${err.errorClass}: ${err.desc}`);
        return ExitStatus.FAILED;
      }
      const why = isTimeout(err) ? `no reply within ${seconds}` : describe(err);
      writeLine(io.stderr, `qmp exec: ${name}: ${why}`);
      return ExitStatus.USAGE;
    }
    writeLine(io.stdout, toJson(result, options.pretty));
    await client.disconnect().catch(() => {});
    return ExitStatus.OK;
  } finally {
    limit.clear();
    await client.destroy();
  }
}

/**
 * What is missing when no word is left for COMMAND: `first` is the only
 * word given (taken for the address), if any; `envSet` whether QMP_SOCKET is.
 */
function missingWords(first: string | undefined, envSet: boolean): string {
  if (first === undefined) return envSet ? "no COMMAND given" : "no ADDRESS or COMMAND given";
  // A lone word that does not look like an address was meant as the command.
  if (envSet || looksLikeAddress(first)) return "no COMMAND given";
  return `no ADDRESS given and QMP_SOCKET is not set (got only '${first}')`;
}

/**
 * The message for the words after the address: a raw JSON object (one
 * word), or `COMMAND key=value …` / a one-line transaction.
 *
 * @throws {ShellSyntaxError} for a syntax error.
 * @throws {UsageError} for a transaction left open, or a message without a command.
 */
function buildMessage(words: string[]): CommandMessage {
  const first = words[0]!;
  if (first.trimStart().startsWith("{")) {
    if (words.length > 1)
      throw new UsageError("a JSON message must be the only word after ADDRESS");
    const result = parseLine(first);
    if (result.kind !== "command") throw new UsageError("not a command");
    const message = result.message;
    if (typeof message["execute"] !== "string" && typeof message["exec-oob"] !== "string") {
      throw new UsageError('a JSON message needs an "execute" (or "exec-oob") string');
    }
    if (message["id"] !== undefined && typeof message["id"] !== "string") {
      throw new UsageError('the "id" of a JSON message must be a string');
    }
    return message;
  }
  const result = parseTokens(words, new TransactionBuilder());
  if (result.kind !== "command") {
    throw new UsageError('the transaction is not closed: end it with ")"');
  }
  return result.message;
}
