// `qmp --help`, each command's `--help` and `--version`, checked against the README and package.json.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT, qmp } from "../helpers/cli.js";

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

/** The option lines of a help text (`-t, --timeout S`), from its "Options:" block. */
function helpOptions(help: string): string[] {
  const block = help.split("\nOptions:\n")[1];
  assert.ok(block !== undefined, `no Options: block in\n${help}`);
  const options: string[] = [];
  for (const line of block.split("\n")) {
    if (line === "") break;
    const m = /^ {2}(-\w, --[\w-]+(?: [A-Z]+)?) {2,}\S/.exec(line);
    assert.ok(m !== null, `unexpected option line: ${JSON.stringify(line)}`);
    options.push(m[1]!);
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
    ["exec", "events", "shell", "wrap"],
  );
  // The coming ones are marked as such in both.
  for (const name of ["shell", "wrap"]) {
    assert.match(r.stdout, new RegExp(`^ {2}${name} .*not implemented yet`, "m"));
    assert.match(cli, new RegExp(`^\\| \`qmp ${name}\` .*not implemented yet`, "m"));
  }
  assert.deepEqual(helpOptions(r.stdout), ["-h, --help", "-V, --version"]);
  for (const option of ["--help", "--version"])
    assert.ok(cli.includes(`\`qmp ${option}\``), option);
  assert.ok(cli.includes("`QMP_SOCKET`") && r.stdout.includes("QMP_SOCKET"));
});

for (const command of ["exec", "events"]) {
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
      const m = /^ {2}(-\w, --[\w-]+(?: [A-Z]+)?) {2,}(.*)$/.exec(line);
      if (m === null) continue;
      const row = new RegExp(`^\\| \`${m[1]!}\` +\\| (.*?) +\\|$`, "m").exec(readme);
      assert.ok(row !== null, `${m[1]} missing from the README`);
      assert.equal(row[1], m[2], `${m[1]}: README and --help differ`);
    }
    // Both document every exit status.
    for (const status of ["0", "1", "2"]) {
      assert.match(r.stdout, new RegExp(`^ {2}${status} {2}\\S`, "m"));
      assert.ok(readme.includes(`\`${status}\``), `README: exit status ${status}`);
    }
    assert.equal((await qmp(t, [command, "-h"])).stdout, r.stdout);
  });
}

void test("qmp --version prints the package's version", async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
  for (const flag of ["--version", "-V"]) {
    const r = await qmp(t, [flag]);
    assert.deepEqual(r, { code: 0, signal: null, stdout: `${pkg.version}\n`, stderr: "" });
  }
});

void test("shell and wrap say they are not implemented yet; unknown commands are usage errors", async (t) => {
  for (const command of ["shell", "wrap"]) {
    const r = await qmp(t, [command]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, new RegExp(`^qmp ${command}: not implemented yet`));
  }
  const unknown = await qmp(t, ["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^qmp: unknown command 'frobnicate'\nTry 'qmp --help'/);
  const none = await qmp(t, []);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /^Usage: qmp /);
});
