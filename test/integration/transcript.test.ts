// Recording transcripts (the `record` option) against the fake server: entries in wire order,
// timed per session, secrets redacted, files 0600 and appended to; bad options; failures that
// never break the client; the JSON-lines parser.

import assert from "node:assert/strict";
import { closeSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { test } from "node:test";
import {
  type JsonObject,
  type Logger,
  QGAClient,
  QMPClient,
  REDACTED,
  type TranscriptEntry,
  TranscriptError,
  parseTranscript,
  readTranscript,
} from "../../src/index.js";
import { FakeQMPServer, ReplayServer } from "../../src/testing/index.js";
import { newClient, watchUnhandledRejections } from "../helpers/common.js";
import { tempDir } from "../helpers/qemu.js";

const unhandled = watchUnhandledRejections();
const T = { timeout: 15_000 };

const require = createRequire(import.meta.url);
const needsKoffi = (() => {
  try {
    require("koffi");
    return false;
  } catch {
    return "koffi (optional dependency) is not installed";
  }
})();

/** A logger that keeps its warnings. */
function warningLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  const ignore = (): void => {};
  return { warnings, debug: ignore, info: ignore, error: ignore, warn: (m) => warnings.push(m) };
}

/** `[dir, msg]` of each entry. */
function exchange(entries: readonly TranscriptEntry[]): [string, JsonObject | undefined][] {
  return entries.map((e) => [e.dir, e.msg]);
}

void test("record (a function): every message in wire order, the greeting first", T, async (t) => {
  await using server = await FakeQMPServer.listen({
    handlers: {
      stop: (_args, _message, peer) => {
        peer.sendEvent("STOP");
        return { return: {} };
      },
    },
  });
  const entries: TranscriptEntry[] = [];
  const client = newClient(t, { record: (entry) => entries.push(entry) });
  await client.connect(server.address);
  await client.execute("query-status");
  await client.execute("stop");
  await client.disconnect();

  const greeting = entries[0]?.msg;
  assert.ok(greeting !== undefined && "QMP" in greeting, JSON.stringify(entries[0]));
  assert.deepEqual(
    exchange(entries).map(([dir, msg]) => [dir, msg?.["execute"] ?? msg?.["event"] ?? "reply"]),
    [
      ["in", "reply"], // the greeting
      ["out", "qmp_capabilities"],
      ["in", "reply"],
      ["out", "query-status"],
      ["in", "reply"],
      ["out", "stop"],
      ["in", "STOP"],
      ["in", "reply"],
    ],
  );
  // Ids: each command has one, and its reply carries it.
  assert.deepEqual(
    entries.filter((e) => e.msg?.["id"] !== undefined).map((e) => [e.dir, e.msg!["id"]]),
    [
      ["out", 1],
      ["in", 1],
      ["out", 2],
      ["in", 2],
      ["out", 3],
      ["in", 3],
    ],
  );
  assert.deepEqual(entries[4]!.msg, { return: { status: "running", running: true }, id: 2 });
  // Time: from the session's start, never backwards, at most 3 decimals.
  let last = 0;
  for (const e of entries) {
    assert.ok(e.t >= last, `t went backwards: ${JSON.stringify(entries)}`);
    assert.equal(Math.round(e.t * 1000) / 1000, e.t);
    last = e.t;
  }
  assert.deepEqual(Object.keys(entries[1]!), ["dir", "t", "msg"]);
});

void test("record (a file): JSON lines, mode 0600, secrets redacted both ways", T, async (t) => {
  const path = join(tempDir(t), "session.jsonl");
  const ok = () => ({ return: {} });
  await using server = await FakeQMPServer.listen({
    handlers: {
      set_password: ok,
      "object-add": ok,
      "blockdev-add": ok,
      // A reply that carries a secret of its own.
      "query-secret": () => ({ return: { password: "from-qemu-1" } }),
    },
  });
  const client = newClient(t, { record: path });
  await client.connect(server.address);
  await client.execute("set_password", { protocol: "vnc", password: "hunter2-a" });
  await client.execute("object-add", { "qom-type": "secret", id: "sec0", data: "hunter2-b" });
  await client.execute("blockdev-add", {
    "node-name": "n0",
    driver: "luks",
    file: { driver: "null-co", password: "hunter2-c" },
  });
  await client.execute("query-secret");
  await client.disconnect();

  const text = readFileSync(path, "utf8");
  assert.equal(statSync(path).mode & 0o777, 0o600);
  for (const secret of ["hunter2-a", "hunter2-b", "hunter2-c", "from-qemu-1"]) {
    assert.ok(!text.includes(secret), `${secret} in the transcript:\n${text}`);
  }
  assert.ok(text.endsWith("\n"));
  const lines = text.slice(0, -1).split("\n");
  assert.equal(lines.length, 11);
  assert.match(
    lines[1]!,
    /^\{"dir":"out","t":\d+(\.\d{1,3})?,"msg":\{"execute":"qmp_capabilities"/,
  );
  const entries = parseTranscript(text);
  const sent = entries.filter((e) => e.dir === "out").map((e) => e.msg);
  assert.deepEqual(sent.slice(1), [
    { execute: "set_password", arguments: { protocol: "vnc", password: REDACTED }, id: 2 },
    {
      execute: "object-add",
      arguments: { "qom-type": "secret", id: "sec0", data: REDACTED },
      id: 3,
    },
    {
      execute: "blockdev-add",
      arguments: {
        "node-name": "n0",
        driver: "luks",
        file: { driver: "null-co", password: REDACTED },
      },
      id: 4,
    },
    { execute: "query-secret", id: 5 },
  ]);
  assert.deepEqual(entries.at(-1)!.msg, { return: { password: REDACTED }, id: 5 });
  assert.deepEqual(await readTranscript(path), entries);
});

void test(
  "record (a file): each session appends, its t counted from its own start",
  T,
  async (t) => {
    const path = join(tempDir(t), "session.jsonl");
    await using server = await FakeQMPServer.listen();
    const client = newClient(t, { record: path });
    await client.connect(server.address);
    await client.execute("query-status");
    await client.disconnect();
    const first = readTranscript(path);
    const before = performance.now();
    await client.connect(server.address);
    const greeted = performance.now();
    await client.execute("query-version");
    await client.disconnect();

    const firstEntries = await first;
    const all = await readTranscript(path);
    assert.equal(firstEntries.length, 5);
    assert.deepEqual(all.slice(0, 5), firstEntries);
    const second = all.slice(5);
    assert.deepEqual(
      second.map((e) => [e.dir, e.msg?.["execute"] ?? Object.keys(e.msg!)[0]]),
      [
        ["in", "QMP"],
        ["out", "qmp_capabilities"],
        ["in", "return"],
        ["out", "query-version"],
        ["in", "return"],
      ],
    );
    // The second greeting came within connect(), so within that much of the second session's start.
    assert.ok(second[0]!.t <= greeted - before + 0.001, `${second[0]!.t} > ${greeted - before}`);
  },
);

void test("record (a function): t restarts at each session's connection", T, async (t) => {
  await using server = await FakeQMPServer.listen();
  // When each entry came, so that each session's origin (when minus t) can be told.
  const seen: { entry: TranscriptEntry; at: number }[] = [];
  const client = newClient(t, { record: (entry) => seen.push({ entry, at: performance.now() }) });
  const starts: number[] = [];
  for (let i = 0; i < 2; i++) {
    starts.push(performance.now());
    await client.connect(server.address);
    await client.execute("query-status");
    await client.disconnect();
  }
  assert.equal(seen.length, 10);
  const origins = seen.map((s) => s.at - s.entry.t);
  for (const [i, origin] of origins.entries()) {
    const start = starts[i < 5 ? 0 : 1]!;
    const end = i < 5 ? starts[1]! : performance.now();
    // Within its own session (rounding of t: 0.0005 ms).
    assert.ok(
      origin >= start - 0.001 && origin <= end,
      `entry ${i}: ${origin} not in ${start}…${end}`,
    );
  }
});

void test("a bad record option is a TypeError, thrown before anything is set up", () => {
  for (const record of ["", 42, {}, null, true, ["a"]]) {
    for (const Client of [QMPClient, QGAClient]) {
      assert.throws(
        () => new Client({ record: record as never }),
        (err: unknown) =>
          err instanceof TypeError &&
          /^record must be a file path or a function, got /.test(err.message),
        `${Client.name} ${JSON.stringify(record)}`,
      );
    }
  }
});

void test(
  "a transcript that cannot be written: one warning a session, the client goes on",
  T,
  async (t) => {
    const dir = tempDir(t);
    await using server = await FakeQMPServer.listen();
    const logger = warningLogger();
    // A directory is no file to append to.
    const client = newClient(t, { name: "vm1", logger, record: dir });
    await client.connect(server.address);
    assert.deepEqual(await client.execute("query-status"), { status: "running", running: true });
    await client.execute("query-version");
    assert.equal(logger.warnings.length, 1, logger.warnings.join("\n"));
    assert.match(
      logger.warnings[0]!,
      /^\[vm1\] Transcript recording to .+ stopped for this session: .*EISDIR/,
    );
    await client.disconnect();
    // The next session tries again, and says so again, once.
    await client.connect(server.address);
    await client.execute("query-status");
    await client.disconnect();
    assert.equal(logger.warnings.length, 2, logger.warnings.join("\n"));
  },
);

void test("a record function that throws: one warning, the client goes on", T, async (t) => {
  await using server = await FakeQMPServer.listen();
  const logger = warningLogger();
  let calls = 0;
  const client = newClient(t, {
    logger,
    record: () => {
      calls++;
      throw new Error("disk full");
    },
  });
  await client.connect(server.address);
  await client.execute("query-status");
  await client.disconnect();
  assert.equal(calls, 1);
  assert.deepEqual(logger.warnings, [
    "Transcript recording stopped for this session: Error: disk full",
  ]);
});

void test(
  "record: fds passed with a message are counted; fds alone are an entry without msg",
  {
    ...T,
    skip: needsKoffi,
  },
  async (t) => {
    const dir = tempDir(t);
    const file = join(dir, "passed");
    writeFileSync(file, "x");
    await using server = await FakeQMPServer.listen({
      handlers: { getfd: () => ({ return: {} }) },
    });
    const entries: TranscriptEntry[] = [];
    const client = newClient(t, { record: (e) => entries.push(e) });
    await client.connect(server.address);
    const fd = openSync(file, "r");
    t.after(() => closeSync(fd));
    await client.execute("getfd", { fdname: "f0" }, { fds: [fd] });
    await client.sendFdScm(fd);
    await client.disconnect();
    const out = entries.filter((e) => e.dir === "out").slice(1);
    assert.deepEqual(
      out.map((e) => ({ msg: e.msg, fds: e.fds })),
      [
        { msg: { execute: "getfd", arguments: { fdname: "f0" }, id: 2 }, fds: 1 },
        { msg: undefined, fds: 1 },
      ],
    );
    assert.deepEqual(Object.keys(out[1]!), ["dir", "t", "fds"]);
    // Replayed, the fds are not checked (Node cannot receive them) and cost nothing.
    await using replay = await ReplayServer.listen(entries);
    const again = newClient(t, { timeout: 5000 });
    await again.connect(replay.address);
    await again.execute("getfd", { fdname: "f0" }, { fds: [fd] });
    await again.sendFdScm(fd);
    await replay.done({ timeout: 5000 });
  },
);

void test("parseTranscript: blank lines skipped, CRLF taken; bad lines named by number", () => {
  const good = '{"dir":"in","t":0,"msg":{"QMP":{}}}\r\n\n{"dir":"out","t":1.5,"fds":1}\n';
  assert.deepEqual(parseTranscript(good), [
    { dir: "in", t: 0, msg: { QMP: {} } },
    { dir: "out", t: 1.5, fds: 1 },
  ]);
  const cases: [string, RegExp][] = [
    ['{"dir":"in","t":0,"msg":{}}\n{"dir":"in"', /^line 2: not JSON: /],
    ["\n\n[1]", /^line 3: an entry must be an object, got an array$/],
    ['{"dir":"sideways","t":0,"msg":{}}', /^line 1: "dir" must be "in" or "out"/],
    ['{"dir":"in","t":-1,"msg":{}}', /^line 1: "t" must be a number >= 0, got number -1$/],
    ['{"dir":"in","t":0,"msg":"stop"}', /^line 1: "msg" must be an object/],
    ['{"dir":"out","t":0,"msg":{},"fds":1.5}', /^line 1: "fds" must be a whole number/],
    ['{"dir":"in","t":0,"fds":1}', /^line 1: an entry needs a "msg"/],
    ['{"dir":"out","t":0}', /^line 1: an entry needs a "msg"/],
  ];
  for (const [text, message] of cases) {
    assert.throws(
      () => parseTranscript(text),
      (err: unknown) => err instanceof TranscriptError && message.test(err.message),
      text,
    );
  }
  const err = (() => {
    try {
      parseTranscript('{"dir":"in","t":0,"msg":{}}\n\n{"dir":1}');
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(err instanceof TranscriptError);
  assert.deepEqual(
    [err.line, err.index, err.code, err.name],
    [3, 1, "QMP_ERR_TRANSCRIPT", "TranscriptError"],
  );
  assert.throws(() => parseTranscript(42 as never), TypeError);
});

void test("readTranscript: the file's name in the error; the file system's own errors as they are", async (t) => {
  const dir = tempDir(t);
  const bad = join(dir, "bad.jsonl");
  writeFileSync(bad, '{"dir":"in","t":0,"msg":{}}\nnope\n');
  await assert.rejects(readTranscript(bad), (err: unknown) => {
    assert.ok(err instanceof TranscriptError);
    assert.ok(err.message.startsWith(`${bad}: line 2: not JSON: `), err.message);
    return true;
  });
  await assert.rejects(readTranscript(join(dir, "missing.jsonl")), { code: "ENOENT" });
});

void test("no unhandled rejections", () => {
  assert.deepEqual(unhandled, []);
});
