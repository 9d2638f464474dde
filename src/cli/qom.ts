// `qmp qom list|get|set|tree`: the QOM tree at hand, in the output forms of QEMU's qom-* scripts,
// or as JSON; the tree read with concurrent, bounded queries.

import { parseArgs } from "node:util";
import { ExecuteError, type JsonValue, QMPClient } from "../index.js";
import { list, printTree, pythonish, readTree } from "./qom-tree.js";
import {
  type CliIO,
  ExitStatus,
  connectFailure,
  deadline,
  describe,
  greetingHint,
  isTimeout,
  optionError,
  parseSeconds,
  resolveAddress,
  usage,
  writeLine,
} from "./common.js";

/** `qmp qom --help`. */
export const QOM_HELP = `Usage: qmp qom [options] list [ADDRESS] PATH
       qmp qom [options] get [ADDRESS] PATH.PROPERTY
       qmp qom [options] set [ADDRESS] PATH.PROPERTY VALUE
       qmp qom [options] tree [ADDRESS] [PATH]

The QEMU object model (QOM) at hand, as QEMU's qom-list, qom-get, qom-set
and qom-tree scripts show it:
  list   the properties at PATH: "name/" a child, "@name/" a link, else "name"
  get    a property's value ("key: value" lines for an object)
  set    set a property; VALUE is JSON when it parses as JSON, else a string
  tree   the objects below PATH (default /) with their types; with --values,
         each object's readable properties too ("  name: value (type)")

ADDRESS is a UNIX socket path, HOST:PORT or [IPV6]:PORT; when it is left
out, QMP_SOCKET gives it (then a lone word after "tree" is the PATH).

Options:
  -j, --json              print JSON (one document) instead
      --values            tree: read every property's value (qom-tree style)
  -t, --timeout S         give up after S seconds (default 30)
  -h, --help              show this help

Exit status:
  0  done
  1  QEMU refused (no such path or property, a value it does not take)
  2  usage error, connection error, or timeout
`;

/** VALUE of `set`: JSON when it parses, else the text. */
export function qomValue(text: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return text;
  }
}

/** `PATH.PROPERTY` split at its last dot. */
function pathProperty(text: string): { path: string; property: string } {
  const dot = text.lastIndexOf(".");
  if (dot <= 0 || dot === text.length - 1) {
    throw new Error(`expected PATH.PROPERTY, got '${text}'`);
  }
  return { path: text.slice(0, dot), property: text.slice(dot + 1) };
}

/** `qmp qom …`: the subcommand's words and options, checked. */
interface QomArgs {
  command: "list" | "get" | "set" | "tree";
  address: ReturnType<typeof resolveAddress>;
  words: string[];
  json: boolean;
  values: boolean;
  timeout: number;
}

const NEEDS: Record<QomArgs["command"], [number, number]> = {
  list: [1, 1],
  get: [1, 1],
  set: [2, 2],
  tree: [0, 1],
};

/**
 * Parse `qmp qom`'s arguments: the first extra word is the ADDRESS.
 *
 * @throws {Error} for a usage error.
 */
export function parseQomArgs(args: string[], env: NodeJS.ProcessEnv): QomArgs | "help" {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: "boolean", short: "j", default: false },
      values: { type: "boolean", default: false },
      timeout: { type: "string", short: "t" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  const [command, ...rest] = positionals;
  if (command === undefined) throw new Error("no subcommand given (list, get, set or tree)");
  if (!(command in NEEDS))
    throw new Error(`unknown subcommand '${command}' (list, get, set or tree)`);
  const cmd = command as QomArgs["command"];
  const [min, max] = NEEDS[cmd];
  const envSet = (env["QMP_SOCKET"] ?? "") !== "";
  // One word more than the subcommand takes is the ADDRESS; so is the only word of "tree"
  // when QMP_SOCKET is not set.
  const hasAddress = rest.length > max || (cmd === "tree" && rest.length === 1 && !envSet);
  const address = resolveAddress(hasAddress ? rest[0] : undefined, env);
  const words = hasAddress ? rest.slice(1) : rest;
  if (words.length < min) throw new Error(`qom ${cmd}: too few arguments`);
  if (words.length > max) throw new Error(`unexpected argument '${words[max]}'`);
  if (values.values && cmd !== "tree") throw new Error("--values is for qom tree");
  return {
    command: cmd,
    address,
    words,
    json: values.json,
    values: values.values,
    timeout: parseSeconds("--timeout", values.timeout) ?? 30_000,
  };
}

/**
 * Run `qmp qom` with `args` (what follows `qom`).
 *
 * @returns the exit status; never throws for a usage, connection or QEMU error.
 */
export async function runQom(args: string[], io: CliIO): Promise<ExitStatus> {
  let parsed;
  let target: { path: string; property: string } | undefined;
  try {
    parsed = parseQomArgs(args, io.env);
    if (parsed !== "help" && (parsed.command === "get" || parsed.command === "set")) {
      target = pathProperty(parsed.words[0]!);
    }
  } catch (err) {
    return usage(io, "qom", optionError(err));
  }
  if (parsed === "help") {
    io.stdout.write(QOM_HELP);
    return ExitStatus.OK;
  }
  const limit = deadline(parsed.timeout);
  const client = new QMPClient({ name: "qmp qom", timeout: parsed.timeout });
  try {
    const hint = greetingHint(io, "qom", parsed.address.text);
    try {
      await client.connect(parsed.address.address, { signal: limit.signal });
    } catch (err) {
      const why = isTimeout(err)
        ? `no QMP session within ${parsed.timeout / 1000} s`
        : connectFailure(err);
      writeLine(io.stderr, `qmp qom: cannot connect to ${parsed.address.text}: ${why}`);
      return ExitStatus.USAGE;
    } finally {
      hint();
    }
    const out: string[] = [];
    switch (parsed.command) {
      case "list": {
        const props = await list(client, parsed.words[0]!);
        if (parsed.json) out.push(JSON.stringify(props));
        else {
          for (const p of props) {
            out.push(
              p.type.startsWith("child<")
                ? `${p.name}/`
                : p.type.startsWith("link<")
                  ? `@${p.name}/`
                  : p.name,
            );
          }
        }
        break;
      }
      case "get": {
        const value = await client.execute("qom-get", {
          path: target!.path,
          property: target!.property,
        });
        if (parsed.json) out.push(JSON.stringify(value));
        else if (typeof value === "object" && value !== null && !Array.isArray(value)) {
          for (const [k, v] of Object.entries(value)) out.push(`${k}: ${pythonish(v)}`);
        } else out.push(pythonish(value));
        break;
      }
      case "set": {
        const value = qomValue(parsed.words[1]!);
        const reply = await client.execute("qom-set", { ...target!, value });
        out.push(JSON.stringify(reply));
        break;
      }
      case "tree": {
        const tree = await readTree(client, parsed.words[0] ?? "/", parsed.values);
        if (parsed.json) out.push(JSON.stringify(tree));
        else printTree(tree, parsed.values, out);
        break;
      }
    }
    io.stdout.write(out.map((l) => `${l}\n`).join(""));
    return ExitStatus.OK;
  } catch (err) {
    if (isTimeout(err)) {
      writeLine(io.stderr, `qmp qom: no answer within ${parsed.timeout / 1000} s`);
      return ExitStatus.USAGE;
    }
    const text = err instanceof ExecuteError ? `${err.errorClass}: ${err.desc}` : describe(err);
    writeLine(io.stderr, `qmp qom: ${text}`);
    return ExitStatus.FAILED;
  } finally {
    limit.clear();
    await client.disconnect().catch(() => {});
    await client.destroy();
  }
}
