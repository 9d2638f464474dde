// `qmp codegen`: write a typed QAPI module for a QEMU, from a live server or a saved schema.

import { readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { QMPClient } from "../index.js";
import { type SchemaSource, generateQAPIModule } from "../qapi/codegen.js";
import {
  type CliIO,
  ExitStatus,
  connectFailure,
  deadline,
  describe,
  isTimeout,
  optionError,
  parseSeconds,
  resolveAddress,
  usage,
  writeLine,
} from "./common.js";

/** `qmp codegen --help`. */
export const CODEGEN_HELP = `Usage: qmp codegen [options] [ADDRESS] -o FILE.ts
       qmp codegen --schema SCHEMA.json -o FILE.ts

Write a TypeScript module with the QAPI types of a QEMU (its commands'
arguments and returns, its events' data), for new QMPClient<QAPI>():

  import type { QAPI } from "./qemu-types.js";
  const qmp = new QMPClient<QAPI>();

The schema comes from the QMP server at ADDRESS (QEMU, qemu-storage-daemon;
query-qmp-schema), or from SCHEMA.json: a saved query-qmp-schema return
value (a list), or a whole reply ({"return": [...]}). ADDRESS is a UNIX
socket path, HOST:PORT or [IPV6]:PORT; when it is left out, QMP_SOCKET
gives it.

Options:
  -o, --output FILE   write the module to FILE ("-": stdout)
  -s, --schema FILE   read the schema from FILE, not from a server
  -n, --name TEXT     what the schema describes, for the module's header
  -t, --timeout S     give up after S seconds (default 30)
  -h, --help          show this help

Exit status:
  0  the module was written
  1  the schema could not be read or used, or the file not written
  2  usage error, connection error, or timeout
`;

/**
 * Run `qmp codegen` with `args` (what follows `codegen`).
 *
 * @returns the exit status; never throws.
 */
export async function runCodegen(args: string[], io: CliIO): Promise<ExitStatus> {
  let output: string;
  let schemaFile: string | undefined;
  let name: string | undefined;
  let timeout: number;
  let positional: string | undefined;
  try {
    const parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        output: { type: "string", short: "o" },
        schema: { type: "string", short: "s" },
        name: { type: "string", short: "n" },
        timeout: { type: "string", short: "t" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (parsed.values.help) {
      io.stdout.write(CODEGEN_HELP);
      return ExitStatus.OK;
    }
    if (parsed.values.output === undefined) throw new Error("-o FILE.ts is required");
    output = parsed.values.output;
    schemaFile = parsed.values.schema;
    name = parsed.values.name;
    timeout = parseSeconds("--timeout", parsed.values.timeout) ?? 30_000;
    if (parsed.positionals.length > 1) {
      throw new Error(`unexpected argument '${parsed.positionals[1]}'`);
    }
    positional = parsed.positionals[0];
    if (schemaFile !== undefined && positional !== undefined) {
      throw new Error("give either ADDRESS or --schema, not both");
    }
  } catch (err) {
    return usage(io, "codegen", optionError(err));
  }

  let entries: unknown;
  let source: SchemaSource;
  if (schemaFile !== undefined) {
    try {
      const parsed = JSON.parse(await readFile(schemaFile, "utf8")) as unknown;
      entries = isReply(parsed) ? parsed.return : parsed;
    } catch (err) {
      writeLine(io.stderr, `qmp codegen: cannot read ${schemaFile}: ${describe(err)}`);
      return ExitStatus.FAILED;
    }
    source = { product: name ?? schemaFile.replace(/^.*\//, "").replace(/\.json$/, "") };
  } else {
    let address: ReturnType<typeof resolveAddress>;
    try {
      address = resolveAddress(positional, io.env);
    } catch (err) {
      return usage(io, "codegen", optionError(err));
    }
    const fetched = await fetchSchema(address, timeout, io);
    if (typeof fetched === "number") return fetched;
    entries = fetched.entries;
    source = { product: name ?? fetched.product, package: fetched.package };
  }

  let text: string;
  try {
    text = generateQAPIModule(entries, source);
  } catch (err) {
    writeLine(io.stderr, `qmp codegen: not a usable schema: ${describe(err)}`);
    return ExitStatus.FAILED;
  }
  try {
    if (output === "-") io.stdout.write(text);
    else await writeFile(output, text);
  } catch (err) {
    writeLine(io.stderr, `qmp codegen: cannot write ${output}: ${describe(err)}`);
    return ExitStatus.FAILED;
  }
  return ExitStatus.OK;
}

function isReply(value: unknown): value is { return: unknown } {
  return typeof value === "object" && value !== null && !Array.isArray(value) && "return" in value;
}

/** `query-qmp-schema` from the server at `address`, or the exit status of a failure. */
async function fetchSchema(
  address: ReturnType<typeof resolveAddress>,
  timeout: number,
  io: CliIO,
): Promise<{ entries: unknown; product: string; package?: string } | ExitStatus> {
  const limit = deadline(timeout);
  const client = new QMPClient({ name: "qmp codegen" });
  try {
    try {
      await client.connect(address.address, { signal: limit.signal });
    } catch (err) {
      const why = isTimeout(err)
        ? `no QMP session within ${timeout / 1000} s`
        : connectFailure(err);
      writeLine(io.stderr, `qmp codegen: cannot connect to ${address.text}: ${why}`);
      return ExitStatus.USAGE;
    }
    const entries = await client.execute("query-qmp-schema", undefined, { signal: limit.signal });
    const version = client.greeting?.QMP.version;
    const v = version?.qemu;
    const product = v === undefined ? address.text : `QEMU ${v.major}.${v.minor}.${v.micro}`;
    await client.disconnect().catch(() => {});
    return version?.package ? { entries, product, package: version.package } : { entries, product };
  } catch (err) {
    const why = isTimeout(err) ? `no schema within ${timeout / 1000} s` : describe(err);
    writeLine(io.stderr, `qmp codegen: query-qmp-schema failed: ${why}`);
    return isTimeout(err) ? ExitStatus.USAGE : ExitStatus.FAILED;
  } finally {
    limit.clear();
    await client.destroy();
  }
}
