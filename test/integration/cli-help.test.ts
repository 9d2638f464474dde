// `qmp --help`, each command's `--help` and `--version`, checked against the README and package.json.

import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT, qmp, withoutSocket } from "../helpers/cli.js";
import { tempDir } from "../helpers/qemu.js";

const README = readFileSync(join(ROOT, "README.md"), "utf8");

/** The text of the README section that starts with `heading`, up to the next heading of that level or above. */
function section(text: string, heading: string): string {
  const start = text.indexOf(`\n${heading}\n`);
  assert.ok(start !== -1, `README has no '${heading}'`);
  const level = /^#+/.exec(heading)![0].length;
  const rest = text.slice(start + heading.length + 2);
  const next = new RegExp(`^#{1,${level}} `, "m").exec(rest);
  return next === null ? rest : rest.slice(0, next.index);
}

/** An option line of a help text: `  -t, --timeout S   text`, or `      --long-only X   text`. */
const OPTION_LINE = /^ {2}((?:-\w, | {4})--[\w-]+(?: [A-Z]+)?) {2,}(\S.*)$/;

/** The option lines of a help text (`-t, --timeout S`), from its "Options:" block. */
function helpOptions(help: string): string[] {
  const block = help.split("\nOptions:\n")[1];
  assert.ok(block !== undefined, `no Options: block in\n${help}`);
  const options: string[] = [];
  for (const line of block.split("\n")) {
    if (line === "") break;
    const m = OPTION_LINE.exec(line);
    assert.ok(m !== null, `unexpected option line: ${JSON.stringify(line)}`);
    options.push(m[1]!.trim());
  }
  return options;
}

/** The options of a README options table (rows like "| `-t, --timeout S` | …"). */
function readmeOptions(text: string): string[] {
  return [...text.matchAll(/^\| `(-[^`]+)` +\|/gm)].map((m) => m[1]!);
}

/** The commands of `qmp --help` ("Commands:" block), with their synopsis. */
function helpCommands(help: string): string[] {
  const block = help.split("\nCommands:\n")[1]!;
  const commands: string[] = [];
  for (const line of block.split("\n")) {
    if (line === "") break;
    const m = /^ {2}(\S.*?) {2,}\S/.exec(line);
    assert.ok(m !== null, `unexpected command line: ${JSON.stringify(line)}`);
    commands.push(`qmp ${m[1]!}`.replace("...", "…"));
  }
  return commands;
}

void test("qmp --help lists the commands of the README's table", async (t) => {
  const r = await qmp(t, ["--help"]);
  assert.equal(r.code, 0);
  assert.equal(r.stderr, "");
  const commands = helpCommands(r.stdout);
  const cli = section(README, "## The `qmp` command");
  const table = [...cli.matchAll(/^\| `(qmp [^`]+)` +\|/gm)].map((m) => m[1]!);
  assert.deepEqual(commands, table);
  assert.deepEqual(
    commands.map((c) => c.split(" ")[1]),
    ["shell", "tui", "wrap", "exec", "events", "codegen", "mux", "qom"],
  );
  assert.deepEqual(helpOptions(r.stdout), ["-h, --help", "-V, --version"]);
  assert.match(r.stdout, /^ {2}-h, --help {8}show this help$/m);
  for (const option of ["--help", "--version"])
    assert.ok(cli.includes(`\`qmp ${option}\``), option);
  assert.ok(cli.includes("`QMP_SOCKET`") && r.stdout.includes("QMP_SOCKET"));
});

for (const command of ["exec", "events", "shell", "tui", "wrap", "codegen", "mux", "qom"]) {
  void test(`qmp ${command} --help matches the README's options table`, async (t) => {
    const r = await qmp(t, [command, "--help"]);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, "");
    assert.match(r.stdout, new RegExp(`^Usage: qmp ${command} \\[options\\]`));
    const readme = section(README, `### \`qmp ${command}\``);
    const fromHelp = helpOptions(r.stdout);
    assert.ok(fromHelp.length >= 3);
    assert.deepEqual(readmeOptions(readme), fromHelp);
    // The same text for each option, too.
    for (const line of r.stdout.split("\n")) {
      const m = OPTION_LINE.exec(line);
      if (m === null) continue;
      const option = m[1]!.trim();
      const row = new RegExp(`^\\| \`${option}\` +\\| (.*?) +\\|$`, "m").exec(readme);
      assert.ok(row !== null, `${option} missing from the README`);
      assert.equal(row[1], m[2], `${option}: README and --help differ`);
    }
    // Every help says the same of --help, in a whole sentence.
    assert.match(r.stdout, /^ {2}-h, --help {2,}show this help$/m);
    // Both document every exit status.
    for (const status of ["0", "1", "2"]) {
      assert.match(r.stdout, new RegExp(`^ {2}${status} {2}\\S`, "m"));
      assert.ok(readme.includes(`\`${status}\``), `README: exit status ${status}`);
    }
    assert.equal((await qmp(t, [command, "-h"])).stdout, r.stdout);
  });
}

void test("README: each example's error lines name the command that printed them", () => {
  const cli = section(README, "## The `qmp` command");
  let checked = 0;
  for (const block of cli.matchAll(/^```sh\n([\s\S]*?)^```$/gm)) {
    let command: string | undefined;
    for (const line of block[1]!.split("\n")) {
      const run = /^\$ (?:\S+=\S+ )*qmp (\w+)/.exec(line);
      if (run !== null) command = run[1];
      else if (/^qmp[ :]/.test(line)) {
        assert.ok(line.startsWith(`qmp ${command}: `), `${line} (after qmp ${command})`);
        checked++;
      }
    }
  }
  assert.ok(checked >= 1, "no error line found");
});

void test("qmp events --help shows an event's members in QEMU's order, as the README does", async (t) => {
  const help = (await qmp(t, ["events", "--help"])).stdout;
  const example = /^\{"timestamp".*$/m.exec(help)?.[0];
  assert.ok(example !== undefined, help);
  const keys = (line: string): string[] =>
    Object.keys(JSON.parse(line.replaceAll("…", "0")) as object);
  const readme = /^\{"timestamp".*"event".*\}$/m.exec(section(README, "### `qmp events`"))?.[0];
  assert.ok(readme !== undefined);
  assert.deepEqual(keys(example), keys(readme));
  assert.deepEqual(keys(example), ["timestamp", "event"]);
});

void test("Ctrl-D in the help: wrap stops QEMU, shell stops only its throwaway one", async (t) => {
  const ctrlD = async (command: string): Promise<string> =>
    /^ {2}Ctrl-D +(.*)$/m.exec((await qmp(t, [command, "--help"])).stdout)![1]!;
  assert.equal(await ctrlD("wrap"), "leave (and stop QEMU)");
  assert.equal(await ctrlD("shell"), "leave (QEMU keeps running, unless it is the throwaway one)");
});

void test("qmp --version prints the package's version", async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
  for (const flag of ["--version", "-V"]) {
    const r = await qmp(t, [flag]);
    assert.deepEqual(r, { code: 0, signal: null, stdout: `${pkg.version}\n`, stderr: "" });
  }
});

void test("unknown commands are usage errors", async (t) => {
  const unknown = await qmp(t, ["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^qmp: unknown command 'frobnicate'\nTry 'qmp --help'/);
  const none = await qmp(t, []);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /^Usage: qmp /);
});

void test("usage errors are one line and a pointer to --help, exit 2", async (t) => {
  const cases: [string[], string][] = [
    [["shell", "-H", "-N"], "qmp shell: -H (HMP) needs a negotiated session: it cannot go with -N"],
    [["shell", "a.sock", "b.sock"], "qmp shell: unexpected argument 'b.sock'"],
    [["shell", "--qemu", "q", "/run/vm.sock"], "qmp shell: --qemu is for the throwaway QEMU"],
    [["shell", "--bogus"], "qmp shell: unknown option '--bogus'\n"],
    [["exec", "--bogus", "x.sock", "stop"], "qmp exec: unknown option '--bogus'\n"],
    [["exec"], "qmp exec: no ADDRESS or COMMAND given\n"],
    [["exec", "-p"], "qmp exec: no ADDRESS or COMMAND given\n"],
    [
      ["exec", "query-status"],
      "qmp exec: no ADDRESS given and QMP_SOCKET is not set (got only 'query-status')\n",
    ],
    [["exec", "/run/vm1.qmp"], "qmp exec: no COMMAND given\n"],
    [["events"], "qmp events: no ADDRESS given and QMP_SOCKET is not set\n"],
    [["events", "-x"], "qmp events: unknown option '-x'\n"],
    [["shell", "-l", ""], "qmp shell: --log needs a file name"],
    [["shell", "--record", ""], "qmp shell: --record needs a file name"],
    [["wrap", "--record", "", "--", "qemu"], "qmp wrap: --record needs a file name"],
    [["exec", "--record", "", "x.sock", "stop"], "qmp exec: --record needs a file name\n"],
    [["shell", "host:port:x"], "qmp shell: "],
    [["wrap"], "qmp wrap: no QEMU command given"],
    [["wrap", "-p", "--"], "qmp wrap: no QEMU command given"],
    [["wrap", "--qemu", "x", "--", "qemu"], "qmp wrap: unknown option '--qemu'\n"],
    [["wrap", "--", "qemu", "-daemonize"], "qmp wrap: QEMU must stay in the foreground"],
    [["tui", "--bogus"], "qmp tui: unknown option '--bogus'\n"],
    [["tui", "a.sock", "b.sock"], "qmp tui: unexpected argument 'b.sock'"],
    [["tui", "-n", "x"], "qmp tui: --num-retries needs a positive integer, got 'x'"],
    [["tui", "-r", "0"], "qmp tui: --retry-delay needs a positive number of seconds, got '0'"],
    [["tui", "--qemu", "q", "/run/vm.sock"], "qmp tui: --qemu is for the throwaway QEMU"],
    [["tui", "-l", ""], "qmp tui: --log-file needs a file name"],
    [["qom"], "qmp qom: no subcommand given (list, get, set or tree)"],
    [["qom", "walk", "x.sock"], "qmp qom: unknown subcommand 'walk'"],
    [["qom", "get", "x.sock", "/machine"], "qmp qom: expected PATH.PROPERTY, got '/machine'"],
    [["qom", "list", "x.sock"], "qmp qom: no ADDRESS given and QMP_SOCKET is not set"],
    [["qom", "list", "--values", "x.sock", "/"], "qmp qom: --values is for qom tree"],
    [["mux", "x.sock"], "qmp mux: no --listen address given"],
  ];
  for (const [args, message] of cases) {
    const r = await qmp(t, args, { stdin: "" });
    const command = args[0]!;
    assert.equal(r.code, 2, args.join(" "));
    assert.equal(r.stdout, "", args.join(" "));
    assert.ok(r.stderr.startsWith(message), `${args.join(" ")}: ${r.stderr}`);
    assert.ok(r.stderr.endsWith(`\nTry 'qmp ${command} --help' for more information.\n`), r.stderr);
    assert.equal(r.stderr.split("\n").length, 3, r.stderr);
  }
  // With QMP_SOCKET set, what is missing is the command only.
  const env = withoutSocket({ QMP_SOCKET: "/run/vm1.qmp" });
  const bare = await qmp(t, ["exec"], { env });
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /^qmp exec: no COMMAND given\nTry /);
});

void test("wrap: a QEMU binary that does not exist is a one-line error, exit 2", async (t) => {
  const env = withoutSocket({ TMPDIR: tempDir(t) });
  const r = await qmp(t, ["wrap", "--", "no-such-qemu-binary", "-machine", "none"], {
    stdin: "",
    env,
  });
  assert.deepEqual(r, {
    code: 2,
    signal: null,
    stdout: "",
    stderr: "qmp wrap: cannot run 'no-such-qemu-binary': command not found\n",
  });
  // Its private socket directory is gone too.
  assert.deepEqual(readdirSync(env["TMPDIR"]!), []);
});

void test("tui: without a terminal it says so, exit 2", async (t) => {
  const r = await qmp(t, ["tui", "/run/vm1.qmp"], { stdin: "" });
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr, "qmp tui: needs a terminal (use qmp shell or qmp exec in scripts)\n");
});

void test("shell: an address nobody listens on is a connection error, exit 2", async (t) => {
  const path = join(tempDir(t), "nobody.sock");
  const r = await qmp(t, ["shell", path], { stdin: "query-status\n" });
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, new RegExp(`^qmp shell: cannot connect to ${path}: .*\n$`));
});
