// Unit tests of the incremental JSON object scanner (SPEC §2): real QEMU traffic
// cut at every byte, escapes and UTF-8 at chunk ends, errors, and maxMessageSize.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import {
  DeserializationError,
  ProtocolError,
  QMPError,
  UnexpectedTypeError,
} from "../../src/errors.js";
import { DEFAULT_MAX_MESSAGE_SIZE, type Frame, JsonObjectScanner } from "../../src/framing.js";
import { prng } from "../../src/testing/faults.js";

// Tests run from dist/test/unit/, fixtures live in test/fixtures/ at the repo root.
function fixture(name: string): Buffer {
  return readFileSync(new URL(`../../../test/fixtures/${name}`, import.meta.url));
}

/** Real traffic of QEMU 10.0 (see test/fixtures/capture-qmp.sh). */
const COMPACT = fixture("qmp-compact.txt");
const PRETTY = fixture("qmp-pretty.txt");

/** Feed `chunks` to a fresh scanner and return every frame, after `end()`. */
function scan(chunks: readonly Uint8Array[], maxMessageSize?: number): Frame[] {
  const scanner = new JsonObjectScanner(maxMessageSize === undefined ? {} : { maxMessageSize });
  const frames: Frame[] = [];
  const sink = (f: Frame): void => {
    frames.push(f);
  };
  for (const chunk of chunks) scanner.push(chunk, sink);
  scanner.end(sink);
  return frames;
}

/** The values of the `message` frames; fails on any other frame. */
function messages(frames: readonly Frame[]): Record<string, unknown>[] {
  return frames.map((f) => {
    assert.equal(f.kind, "message", `unexpected frame ${JSON.stringify(f)}`);
    return f.kind === "message" ? f.value : {};
  });
}

/** `buf` cut into pieces of `size` bytes. */
function pieces(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

/** `buf` cut at the given (sorted) positions. */
function cutAt(buf: Buffer, ...positions: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of positions) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

/** Call `fn` and return what it threw; fails if it did not throw. */
function thrown(fn: () => void): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  assert.fail("expected an exception");
}

/** Replace every event timestamp (they differ between the two captures). */
function withoutTimestamps(msgs: Record<string, unknown>[]): Record<string, unknown>[] {
  return msgs.map((m) => ("timestamp" in m ? { ...m, timestamp: "T" } : m));
}

void describe("framing: real QEMU traffic", () => {
  // The reference decoding, made without the scanner: QEMU writes one object per line.
  const compactLines = COMPACT.toString("utf8").split("\r\n");
  assert.equal(compactLines.pop(), "", "the capture ends with \\r\\n");
  const expected = compactLines.map((l) => JSON.parse(l) as Record<string, unknown>);

  void test("the fixtures are raw QEMU output with \\r\\n line ends", () => {
    assert.equal(expected.length, 13);
    assert.ok(COMPACT.includes("\r\n"));
    assert.ok(!COMPACT.toString("latin1").replaceAll("\r\n", "").includes("\n"));
    assert.ok(PRETTY.includes("{\r\n    "), "pretty=on spreads objects over lines");
    assert.ok(PRETTY.toString("latin1").split("\r\n").length > 200);
  });

  void test("one chunk: every message, in order, with its size", () => {
    const frames = scan([COMPACT]);
    assert.deepEqual(messages(frames), expected);
    assert.deepEqual(
      frames.map((f) => f.size),
      compactLines.map((l) => Buffer.byteLength(l)),
    );
    const msgs = messages(frames);
    assert.deepEqual(Object.keys(msgs[0]!), ["QMP"]);
    assert.deepEqual((msgs[0] as { QMP: { capabilities: string[] } }).QMP.capabilities, ["oob"]);
    assert.deepEqual(msgs[1], { return: {} });
    assert.equal(msgs[2]!["id"], 1);
    assert.deepEqual(msgs[3], { return: { status: "running", running: true }, id: "s-2" });
    assert.deepEqual(msgs[4], {
      id: 3,
      error: { class: "CommandNotFound", desc: "The command no-such-command has not been found" },
    });
    assert.deepEqual(msgs[5], {
      id: 'q{"}\\',
      error: { class: "DeviceNotFound", desc: "Device '/x{\"}]\\[é€😀' not found" },
    });
    assert.equal(msgs[6]!["event"], "STOP");
    assert.deepEqual(msgs[7], { return: {}, id: 4 });
    assert.equal(msgs[8]!["event"], "RESUME");
    assert.equal(msgs[10]!["id"], 6);
    assert.ok(Array.isArray(msgs[10]!["return"]));
    assert.ok((msgs[10]!["return"] as unknown[]).length > 100);
    assert.equal(msgs[11]!["event"], "SHUTDOWN");
    assert.deepEqual(msgs[12], { return: {}, id: 7 });
  });

  void test("pretty=on decodes to the same messages as the compact monitor", () => {
    const pretty = messages(scan([PRETTY]));
    assert.deepEqual(withoutTimestamps(pretty), withoutTimestamps(expected));
  });

  for (const [name, buf] of [
    ["compact", COMPACT],
    ["pretty", PRETTY],
  ] as const) {
    void test(`${name}: split in two at every byte position`, () => {
      const reference = scan([buf]);
      assert.equal(reference.length, 13);
      for (let p = 0; p <= buf.length; p++) {
        const frames = scan(cutAt(buf, p));
        // deepEqual on 13 frames per position is slow; compare a canonical form.
        if (JSON.stringify(frames) !== JSON.stringify(reference)) {
          assert.deepEqual(frames, reference, `split at byte ${p}`);
        }
      }
    });

    void test(`${name}: byte by byte`, () => {
      assert.deepEqual(scan(pieces(buf, 1)), scan([buf]));
    });

    void test(`${name}: random chunk sizes (seeded)`, () => {
      const reference = scan([buf]);
      const rand = prng(buf.length);
      for (let round = 0; round < 50; round++) {
        const chunks: Buffer[] = [];
        let i = 0;
        while (i < buf.length) {
          const len = 1 + Math.floor(rand() * 64);
          chunks.push(buf.subarray(i, i + len));
          i += len;
        }
        assert.deepEqual(scan(chunks), reference, `round ${round}`);
      }
    });
  }

  void test("the sink is called synchronously, message by message, in wire order", () => {
    const scanner = new JsonObjectScanner();
    const seen: unknown[] = [];
    scanner.push(COMPACT, (f) => {
      seen.push(f.kind === "message" ? (f.value["id"] ?? f.value["event"] ?? "-") : "?");
    });
    assert.deepEqual(seen, [
      "-",
      "-",
      1,
      "s-2",
      3,
      'q{"}\\',
      "STOP",
      4,
      "RESUME",
      5,
      6,
      "SHUTDOWN",
      7,
    ]);
    assert.equal(scanner.idle, true);
    assert.equal(scanner.buffered, 0);
  });
});

void describe("framing: chunk boundaries", () => {
  void test("\\r\\n split between \\r and \\n", () => {
    const scanner = new JsonObjectScanner();
    const frames: Frame[] = [];
    scanner.push(Buffer.from('{"a":1}\r'), (f) => frames.push(f));
    assert.deepEqual(messages(frames), [{ a: 1 }]);
    assert.equal(scanner.idle, true);
    scanner.push(Buffer.from('\n{"b":2}\r'), (f) => frames.push(f));
    scanner.push(Buffer.from("\n"), (f) => frames.push(f));
    scanner.end();
    assert.deepEqual(messages(frames), [{ a: 1 }, { b: 2 }]);
  });

  void test("a message is delivered at its closing brace, before the line end arrives", () => {
    const scanner = new JsonObjectScanner();
    const frames: Frame[] = [];
    scanner.push(Buffer.from('{"return": {}, "id": 1}'), (f) => frames.push(f));
    assert.deepEqual(messages(frames), [{ return: {}, id: 1 }]);
    assert.equal(scanner.idle, true);
  });

  void test("\\n-only line ends (qemu-ga), also split anywhere", () => {
    const text =
      '{"return": {}}\n{"return": 12345}\n{"error": {"class": "GenericError", "desc": "x"}}\n';
    const buf = Buffer.from(text);
    const want = [
      { return: {} },
      { return: 12345 },
      { error: { class: "GenericError", desc: "x" } },
    ];
    assert.deepEqual(messages(scan([buf])), want);
    for (let p = 0; p <= buf.length; p++) {
      assert.deepEqual(messages(scan(cutAt(buf, p))), want, `split at ${p}`);
    }
  });

  void test("messages back to back, with spaces, tabs and blank lines between", () => {
    const buf = Buffer.from(
      ' \t{"a":1}{"b":[2]}\r\n\r\n\n  \t{"c":{}}  \n{"d":0} \t\r\n{"e":1}\t\n',
    );
    const want = [
      { kind: "message", value: { a: 1 }, size: 7 },
      { kind: "message", value: { b: [2] }, size: 9 },
      { kind: "message", value: { c: {} }, size: 8 },
      { kind: "message", value: { d: 0 }, size: 7 },
      { kind: "message", value: { e: 1 }, size: 7 },
    ];
    assert.deepEqual(scan([buf]), want);
    assert.deepEqual(scan(pieces(buf, 1)), want);
    for (let p = 0; p <= buf.length; p++)
      assert.deepEqual(scan(cutAt(buf, p)), want, `cut at ${p}`);
  });

  void test("two objects on one line, and one object over two lines, cut at every pair of positions", () => {
    // Regression: a line held whole for a fast JSON.parse must give way to
    // the scanner when it holds more (or less) than one object, wherever the
    // chunk boundaries fall.
    const buf = Buffer.from('{"a":1}{"b":[2]}\r\n{"c":\r\n3}\r\n{"d":"}"} {"e":{}}\n');
    const want = [{ a: 1 }, { b: [2] }, { c: 3 }, { d: "}" }, { e: {} }];
    for (let p = 0; p <= buf.length; p++) {
      for (let q = p; q <= buf.length; q++) {
        assert.deepEqual(messages(scan(cutAt(buf, p, q))), want, `cut at ${p}, ${q}`);
      }
    }
  });

  void test("a stream cut inside a message held whole is still an error at end()", () => {
    for (const chunks of [['{"a":1}{"b":'], ['{"a":1}{', '"b":'], ['{"a":', "1}{", '"b"']]) {
      const scanner = new JsonObjectScanner();
      const frames: Frame[] = [];
      const sink = (f: Frame): void => {
        frames.push(f);
      };
      for (const c of chunks) scanner.push(Buffer.from(c), sink);
      const err = thrown(() => scanner.end(sink));
      assert.ok(err instanceof DeserializationError, `${JSON.stringify(chunks)}: ${String(err)}`);
      assert.deepEqual(messages(frames), [{ a: 1 }]);
    }
  });

  void test("the size of a message is the bytes from its opening to its closing brace", () => {
    // Whitespace around a message is not part of it, whichever way it arrives.
    for (const text of ['{"a":1}', '{ "a" : [ 1 , 2 ] }', '{"s":"é€"}']) {
      const size = Buffer.byteLength(text);
      for (const around of ["", " ", "\t", "\r", "  \t "]) {
        for (const eol of ["\n", "\r\n", ""]) {
          const buf = Buffer.from(around + text + around + eol);
          for (let p = 0; p <= buf.length; p++) {
            const frames = scan(cutAt(buf, p));
            assert.deepEqual(
              frames.map((f) => f.size),
              [size],
              `${JSON.stringify(buf.toString())} cut at ${p}`,
            );
          }
        }
      }
    }
  });

  void test("a UTF-8 multi-byte character split at each of its bytes", () => {
    // 2-, 3- and 4-byte sequences, in a value and in a key.
    for (const ch of ["é", "€", "😀", "𝄞"]) {
      const value = { [`k${ch}`]: `a${ch}b`, id: ch };
      const buf = Buffer.from(JSON.stringify(value) + "\r\n");
      const at = buf.indexOf(Buffer.from(ch));
      const width = Buffer.byteLength(ch);
      assert.ok(width >= 2 && at > 0);
      for (let k = 1; k < width; k++) {
        const frames = scan(cutAt(buf, at + k));
        assert.deepEqual(messages(frames), [value], `${ch} cut after byte ${k}`);
        assert.equal(frames[0]!.size, buf.length - 2);
      }
    }
  });

  void test("UTF-8 text cut at every pair of positions", () => {
    const value = { s: "é€😀𝄞 ü", t: ["ß", { ключ: "значение" }] };
    const buf = Buffer.from(JSON.stringify(value));
    for (let p = 0; p <= buf.length; p++) {
      for (let q = p; q <= buf.length; q++) {
        assert.deepEqual(messages(scan(cutAt(buf, p, q))), [value], `cut at ${p}, ${q}`);
      }
    }
  });

  void test("strings holding braces, brackets, quotes and backslashes, cut at every pair of positions", () => {
    const value = {
      a: "}{][",
      b: '"}',
      c: "\\",
      d: '\\"',
      e: ["}", "\\\\", '\\"}]'],
      "}": { "{": "]\\" },
      f: "\\u0041 is not an escape here",
    };
    const text = JSON.stringify(value);
    assert.ok(text.includes('\\\\"'), "an escaped backslash right before a closing quote");
    assert.ok(text.includes('\\"}'), "an escaped quote right before a brace");
    const buf = Buffer.from(text + "\r\n" + text + "\n");
    const frames = scan([buf]);
    assert.deepEqual(messages(frames), [value, value]);
    for (let p = 0; p <= buf.length; p++) {
      for (let q = p; q <= buf.length; q += 3) {
        assert.deepEqual(scan(cutAt(buf, p, q)), frames, `cut at ${p}, ${q}`);
      }
    }
  });

  void test("a chunk ending on a backslash, on an escaped backslash, on an escaped quote", () => {
    const cases: [string[], Record<string, unknown>][] = [
      [['{"s":"a\\', '"b"}'], { s: 'a"b' }],
      [['{"s":"a\\', '\\"}'], { s: "a\\" }],
      [['{"s":"a\\\\', '"}'], { s: "a\\" }],
      [['{"s":"a\\"', '}"}'], { s: 'a"}' }],
      [['{"s":"\\', "u00e9", '"}'], { s: "é" }],
      [['{"s":"', "\\", '"', "}", '"}'], { s: '"}' }],
      [['{"s":"\\\\', "\\", "\\", '"}'], { s: "\\\\" }],
    ];
    for (const [chunks, want] of cases) {
      assert.deepEqual(
        messages(scan(chunks.map((c) => Buffer.from(c)))),
        [want],
        JSON.stringify(chunks),
      );
    }
  });

  void test("an empty chunk changes nothing", () => {
    const frames = scan([
      Buffer.alloc(0),
      Buffer.from('{"a":'),
      Buffer.alloc(0),
      Buffer.from("1}"),
    ]);
    assert.deepEqual(messages(frames), [{ a: 1 }]);
  });

  void test("a Uint8Array view into a larger buffer is read from its offset", () => {
    const backing = Buffer.from('XXXX{"a":"view"}YYYY');
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 4, 12);
    assert.deepEqual(messages(scan([view])), [{ a: "view" }]);
  });

  void test("idle and buffered follow an unfinished message", () => {
    const scanner = new JsonObjectScanner();
    const frames: Frame[] = [];
    assert.equal(scanner.idle, true);
    scanner.push(Buffer.from('  {"abc":'), (f) => frames.push(f));
    assert.equal(scanner.idle, false);
    assert.equal(scanner.buffered, 7, "leading whitespace is not part of the message");
    scanner.push(Buffer.from('"def"'), (f) => frames.push(f));
    assert.equal(scanner.buffered, 12);
    scanner.push(Buffer.from("}\r\n"), (f) => frames.push(f));
    assert.equal(scanner.idle, true);
    assert.equal(scanner.buffered, 0);
    assert.deepEqual(frames, [{ kind: "message", value: { abc: "def" }, size: 13 }]);
  });
});

void describe("framing: errors", () => {
  void test("invalid JSON is a DeserializationError carrying the text", () => {
    for (const bad of [
      '{"a":}',
      "{a:1}",
      '{"a":1,}',
      '{"a" 1}',
      "{'a':1}",
      '{"a":1]',
      '{"a":[1}]',
    ]) {
      const scanner = new JsonObjectScanner();
      const err = thrown(() =>
        scanner.push(Buffer.from(bad + "\r\n"), () => assert.fail("no frame")),
      );
      assert.ok(err instanceof DeserializationError, `${bad}: ${String(err)}`);
      assert.ok(err instanceof ProtocolError);
      assert.ok(err instanceof QMPError);
      assert.equal(err.code, "QMP_ERR_DESERIALIZATION");
      assert.equal(err.raw, bad);
      assert.ok(err.cause instanceof SyntaxError, "the JSON.parse error is the cause");
    }
  });

  void test("a valid JSON value that is not an object is an UnexpectedTypeError", () => {
    const cases: [string, unknown][] = [
      ["[1, 2]", [1, 2]],
      ["[]", []],
      ['[{"a": 1}]', [{ a: 1 }]],
      ["42", 42],
      ["-1.5e3", -1500],
      ['"text"', "text"],
      ['"{not an object}"', "{not an object}"],
      ["null", null],
      ["true", true],
      ["false", false],
    ];
    for (const [text, value] of cases) {
      for (const eol of ["\r\n", "\n"]) {
        const scanner = new JsonObjectScanner();
        const err = thrown(() =>
          scanner.push(Buffer.from(text + eol), () => assert.fail("no frame")),
        );
        assert.ok(err instanceof UnexpectedTypeError, `${text}: ${String(err)}`);
        assert.ok(err instanceof ProtocolError);
        assert.equal(err.code, "QMP_ERR_UNEXPECTED_TYPE");
        assert.deepEqual(err.value, value);
      }
    }
  });

  void test("a non-object split across chunks is still an UnexpectedTypeError", () => {
    const scanner = new JsonObjectScanner();
    scanner.push(Buffer.from("  12"), () => assert.fail("no frame"));
    scanner.push(Buffer.from("34"), () => assert.fail("no frame"));
    const err = thrown(() => scanner.push(Buffer.from("5\r\n"), () => assert.fail("no frame")));
    assert.ok(err instanceof UnexpectedTypeError);
    assert.equal(err.value, 12345);
  });

  void test("a non-object at the end of the stream, without a newline", () => {
    const scanner = new JsonObjectScanner();
    scanner.push(Buffer.from("true"), () => assert.fail("no frame"));
    const err = thrown(() => scanner.end());
    assert.ok(err instanceof UnexpectedTypeError);
    assert.equal(err.value, true);
  });

  void test("a garbage line is a DeserializationError", () => {
    for (const bad of ["garbage", "xx{}", "}", "]", 'QMP {"a":1}', "\x00\x01\x02"]) {
      const scanner = new JsonObjectScanner();
      const err = thrown(() =>
        scanner.push(Buffer.from(bad + "\n"), () => assert.fail("no frame")),
      );
      assert.ok(err instanceof DeserializationError, `${JSON.stringify(bad)}: ${String(err)}`);
      assert.equal(err.raw, bad);
    }
  });

  void test("a garbage line cut into pieces", () => {
    const scanner = new JsonObjectScanner();
    scanner.push(Buffer.from("gar"), () => assert.fail("no frame"));
    assert.equal(scanner.idle, false);
    scanner.push(Buffer.from("bage"), () => assert.fail("no frame"));
    const err = thrown(() => scanner.push(Buffer.from("!\r\n"), () => assert.fail("no frame")));
    assert.ok(err instanceof DeserializationError);
    assert.equal(err.raw, "garbage!");
  });

  void test("the stream ending inside a message is a DeserializationError", () => {
    for (const chunks of [
      ['{"a":'],
      ['{"a":"str'],
      ['{"a":"str\\'],
      ['{"a":[1,2]', "   "],
      ["{"],
    ]) {
      const scanner = new JsonObjectScanner();
      for (const c of chunks) scanner.push(Buffer.from(c), () => assert.fail("no frame"));
      const err = thrown(() => scanner.end());
      assert.ok(err instanceof DeserializationError, `${JSON.stringify(chunks)}: ${String(err)}`);
      assert.equal(err.raw, chunks.join(""));
    }
  });

  void test("the stream ending between messages is fine", () => {
    const scanner = new JsonObjectScanner();
    const frames: Frame[] = [];
    scanner.push(Buffer.from('{"a":1}\r\n  \n'), (f) => frames.push(f));
    scanner.end();
    assert.deepEqual(messages(frames), [{ a: 1 }]);
    new JsonObjectScanner().end();
  });

  void test("messages before an error in the same chunk are delivered", () => {
    const scanner = new JsonObjectScanner();
    const frames: Frame[] = [];
    const err = thrown(() =>
      scanner.push(Buffer.from('{"a":1}\r\n{"b":2}\r\n{bad}\r\n{"c":3}\r\n'), (f) =>
        frames.push(f),
      ),
    );
    assert.ok(err instanceof DeserializationError);
    assert.deepEqual(messages(frames), [{ a: 1 }, { b: 2 }]);
  });

  void test("messages before a non-object in the same chunk are delivered", () => {
    const scanner = new JsonObjectScanner();
    const frames: Frame[] = [];
    const err = thrown(() =>
      scanner.push(Buffer.from('{"a":1}\n[1]\n{"c":3}\n'), (f) => frames.push(f)),
    );
    assert.ok(err instanceof UnexpectedTypeError);
    assert.deepEqual(messages(frames), [{ a: 1 }]);
  });

  void test("an exception thrown by the sink propagates", () => {
    const scanner = new JsonObjectScanner();
    const boom = new Error("sink");
    assert.throws(
      () =>
        scanner.push(Buffer.from('{"a":1}'), () => {
          throw boom;
        }),
      (e) => e === boom,
    );
  });
});

void describe("framing: maxMessageSize", () => {
  /** `{"return": "xxx…"}` of exactly `size` bytes, with `id` placed as asked. */
  function reply(size: number, id?: { value: unknown; first: boolean }): string {
    const idText = id === undefined ? "" : `"id": ${JSON.stringify(id.value)}`;
    const frame = (pad: string): string => {
      if (id === undefined) return `{"return": "${pad}"}`;
      return id.first ? `{${idText}, "return": "${pad}"}` : `{"return": "${pad}", ${idText}}`;
    };
    const overhead = Buffer.byteLength(frame(""));
    assert.ok(size >= overhead);
    const text = frame("x".repeat(size - overhead));
    assert.equal(Buffer.byteLength(text), size);
    return text;
  }

  void test("the default limit is 10 MiB", () => {
    assert.equal(DEFAULT_MAX_MESSAGE_SIZE, 10 * 1024 * 1024);
  });

  void test("a non-positive limit is a RangeError", () => {
    for (const bad of [0, -1, Number.NaN, -Infinity]) {
      assert.throws(() => new JsonObjectScanner({ maxMessageSize: bad }), RangeError, String(bad));
    }
  });

  void test("size == limit is kept, limit + 1 is skipped", () => {
    const limit = 64;
    const fits = reply(limit, { value: 1, first: false });
    const over = reply(limit + 1, { value: 2, first: false });
    assert.deepEqual(scan([Buffer.from(fits + "\r\n")], limit), [
      { kind: "message", value: JSON.parse(fits) as unknown, size: limit },
    ]);
    assert.deepEqual(scan([Buffer.from(over + "\r\n")], limit), [
      { kind: "oversize", size: limit + 1, id: 2 },
    ]);
  });

  void test("the boundary holds at every split position", () => {
    const limit = 48;
    const buf = Buffer.from(
      reply(limit, { value: 1, first: true }) +
        "\r\n" +
        reply(limit + 1, { value: 2, first: true }) +
        "\r\n" +
        reply(limit, { value: 3, first: false }) +
        "\r\n" +
        reply(limit + 1, { value: 4, first: false }) +
        "\r\n",
    );
    const want = scan([buf], limit);
    assert.deepEqual(
      want.map((f) => [f.kind, f.size]),
      [
        ["message", limit],
        ["oversize", limit + 1],
        ["message", limit],
        ["oversize", limit + 1],
      ],
    );
    assert.deepEqual(
      want.map((f) => (f.kind === "oversize" ? f.id : f.value["id"])),
      [1, 2, 3, 4],
    );
    for (let p = 0; p <= buf.length; p++) {
      for (let q = p; q <= buf.length; q += 5) {
        assert.deepEqual(scan(cutAt(buf, p, q), limit), want, `cut at ${p}, ${q}`);
      }
    }
    assert.deepEqual(scan(pieces(buf, 1), limit), want);
  });

  void test("the size counts bytes, not characters", () => {
    const text = '{"s":"€€"}'; // 10 characters, 14 bytes
    assert.equal(Buffer.byteLength(text), 14);
    assert.equal(scan([Buffer.from(text)], 14)[0]!.kind, "message");
    assert.deepEqual(scan([Buffer.from(text)], 13), [
      { kind: "oversize", size: 14, id: undefined },
    ]);
  });

  void test("the default limit: 10 MiB is kept, one byte more is skipped", () => {
    const fits = Buffer.from(reply(DEFAULT_MAX_MESSAGE_SIZE, { value: 9, first: false }));
    const frames = scan(pieces(fits, 65536));
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.kind, "message");
    assert.equal(frames[0]!.size, DEFAULT_MAX_MESSAGE_SIZE);
    const over = Buffer.from(reply(DEFAULT_MAX_MESSAGE_SIZE + 1, { value: 10, first: false }));
    assert.deepEqual(scan(pieces(over, 65536)), [
      { kind: "oversize", size: DEFAULT_MAX_MESSAGE_SIZE + 1, id: 10 },
    ]);
  });

  void test("maxMessageSize: Infinity keeps a message larger than the default", () => {
    const big = reply(DEFAULT_MAX_MESSAGE_SIZE + 1000, { value: "big", first: false });
    const frames = scan(pieces(Buffer.from(big), 1 << 20), Infinity);
    assert.equal(frames.length, 1);
    const f = frames[0]!;
    assert.equal(f.kind, "message");
    assert.equal(f.size, DEFAULT_MAX_MESSAGE_SIZE + 1000);
    assert.equal(f.kind === "message" ? f.value["id"] : undefined, "big");
    assert.equal(
      f.kind === "message" ? (f.value["return"] as string).length : 0,
      big.length - '{"return": "", "id": "big"}'.length,
    );
  });

  void test("an oversized message fed in many chunks is never buffered", () => {
    const limit = 4096;
    const scanner = new JsonObjectScanner({ maxMessageSize: limit });
    const frames: Frame[] = [];
    const sink = (f: Frame): void => {
      frames.push(f);
    };
    scanner.push(Buffer.from('{"return": ['), sink);
    const element = Buffer.from('{"name": "a{b}[c]\\"\\\\", "x": [1, 2, {"id": 0}]}, ');
    let size = 12;
    let maxBuffered = 0;
    // 4 MiB of elements in chunks of 1000 bytes, cut at unaligned places.
    const body = Buffer.concat(Array.from({ length: 4096 * 20 }, () => element));
    for (const chunk of pieces(body, 1000)) {
      scanner.push(chunk, sink);
      size += chunk.length;
      maxBuffered = Math.max(maxBuffered, scanner.buffered);
      assert.equal(scanner.idle, false);
    }
    const tail = Buffer.from('{}], "id": "req-7"}\r\n{"return": {}, "id": 8}\r\n');
    scanner.push(tail, sink);
    scanner.end();
    size += tail.indexOf("\r\n");
    assert.ok(maxBuffered <= limit, `buffered reached ${maxBuffered} bytes`);
    assert.equal(scanner.buffered, 0);
    assert.deepEqual(frames, [
      { kind: "oversize", size, id: "req-7" },
      { kind: "message", value: { return: {}, id: 8 }, size: 23 },
    ]);
  });

  void test("the id of real QEMU traffic is recovered (id after return, id before error)", () => {
    // query-commands (id 6) is the only reply over 1000 bytes in the capture.
    for (const buf of [COMPACT, PRETTY]) {
      const frames = scan([buf], 1000);
      const reference = scan([buf]);
      assert.equal(frames.length, 13);
      for (let i = 0; i < 13; i++) {
        if (i === 10) {
          assert.deepEqual(frames[i], { kind: "oversize", size: reference[10]!.size, id: 6 });
        } else {
          assert.deepEqual(frames[i], reference[i]);
        }
      }
    }
    // The error reply with a tricky string id (id first, as QEMU writes errors).
    const errLine = COMPACT.toString("utf8").split("\r\n")[5]!;
    assert.ok(errLine.startsWith('{"id": "q{\\"}\\\\", "error"'));
    assert.deepEqual(scan([Buffer.from(errLine)], 20), [
      { kind: "oversize", size: Buffer.byteLength(errLine), id: 'q{"}\\' },
    ]);
  });

  void test("the oversize id at every split position: id first, id last, pretty", () => {
    const limit = 40;
    const texts = [
      reply(120, { value: 12345, first: true }),
      reply(120, { value: 12345, first: false }),
      reply(120, { value: 'a"}\\,:id', first: true }),
      reply(120, { value: 'a"}\\,:id', first: false }),
      '{\r\n    "return": [\r\n        "' + "y".repeat(60) + '"\r\n    ],\r\n    "id": 12345\r\n}',
      '{\r\n    "id"\r\n :\r\n 12345\r\n ,\r\n    "return": "' + "y".repeat(60) + '"\r\n}',
    ];
    for (const text of texts) {
      const buf = Buffer.from(text);
      const id = (JSON.parse(text) as { id: unknown }).id;
      const want: Frame[] = [{ kind: "oversize", size: buf.length, id }];
      for (let p = 0; p <= buf.length; p++) {
        assert.deepEqual(scan(cutAt(buf, p), limit), want, `${text} cut at ${p}`);
        for (let q = p; q <= buf.length; q++) {
          assert.deepEqual(scan(cutAt(buf, p, q), limit), want, `${text} cut at ${p}, ${q}`);
        }
      }
      assert.deepEqual(scan(pieces(buf, 1), limit), want);
    }
  });

  void test("a nested id is not the message's id", () => {
    const pad = "z".repeat(100);
    const cases: [string, unknown][] = [
      [`{"return": {"id": 99, "pad": "${pad}"}}`, undefined],
      [`{"return": [{"id": 98}, "${pad}"]}`, undefined],
      [`{"return": {"a": {"id": 97}}, "pad": "${pad}"}`, undefined],
      [`{"return": {"id": 99, "pad": "${pad}"}, "id": 7}`, 7],
      [`{"id": 6, "return": {"id": 99, "pad": "${pad}"}}`, 6],
      [`{"return": {"pad": "${pad}"}, "id": 5, "error": {"id": 1}}`, 5],
    ];
    for (const [text, id] of cases) {
      const buf = Buffer.from(text);
      const want: Frame[] = [{ kind: "oversize", size: buf.length, id }];
      assert.deepEqual(scan([buf], 50), want, text);
      for (let p = 0; p <= buf.length; p++) {
        assert.deepEqual(scan(cutAt(buf, p), 50), want, `${text} cut at ${p}`);
      }
    }
  });

  void test("strings that look like an id key are not taken", () => {
    const pad = "z".repeat(100);
    const cases: [string, unknown][] = [
      [`{"return": "id", "pad": "${pad}"}`, undefined],
      [`{"return": ["id", 1], "pad": "${pad}"}`, undefined],
      [`{"x": "\\"id\\": 4", "pad": "${pad}"}`, undefined],
      [`{"idx": 4, "pad": "${pad}"}`, undefined],
      [`{"i": 4, "d": 5, "pad": "${pad}"}`, undefined],
      [`{"xid": 4, "pad": "${pad}"}`, undefined],
      [`{"iid": 4, "id": 3, "pad": "${pad}"}`, 3],
    ];
    for (const [text, id] of cases) {
      const buf = Buffer.from(text);
      const want: Frame[] = [{ kind: "oversize", size: buf.length, id }];
      for (let p = 0; p <= buf.length; p++) {
        assert.deepEqual(scan(cutAt(buf, p), 50), want, `${text} cut at ${p}`);
      }
    }
  });

  void test("id values of every JSON type are recovered; no id gives undefined", () => {
    const pad = "w".repeat(80);
    for (const id of [
      "str",
      "",
      0,
      7,
      -3,
      1.5,
      null,
      true,
      false,
      [1, "a"],
      { k: [1, { id: 2 }] },
    ]) {
      const last = `{"return": "${pad}", "id": ${JSON.stringify(id)}}`;
      const first = `{"id": ${JSON.stringify(id)}, "return": "${pad}"}`;
      for (const text of [last, first]) {
        assert.deepEqual(scan([Buffer.from(text)], 40), [
          { kind: "oversize", size: Buffer.byteLength(text), id },
        ]);
      }
    }
    assert.deepEqual(scan([Buffer.from(`{"return": "${pad}"}`)], 40), [
      { kind: "oversize", size: pad.length + 14, id: undefined },
    ]);
  });

  void test("a huge id is not kept (memory stays bounded)", () => {
    const id = "i".repeat(5000);
    const text = `{"return": 1, "id": "${id}"}`;
    const frames = scan(pieces(Buffer.from(text), 100), 1000);
    assert.deepEqual(frames, [{ kind: "oversize", size: text.length, id: undefined }]);
  });

  void test("scanning goes on with the next message after an oversized one", () => {
    const big = reply(500, { value: 1, first: false });
    const small = '{"return": {}, "id": 2}';
    const event = '{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}';
    const buf = Buffer.from(`${big}\r\n${small}\r\n${big}${event}\n${big}`);
    const want: Frame[] = [
      { kind: "oversize", size: 500, id: 1 },
      { kind: "message", value: { return: {}, id: 2 }, size: small.length },
      { kind: "oversize", size: 500, id: 1 },
      { kind: "message", value: JSON.parse(event) as Record<string, unknown>, size: event.length },
      { kind: "oversize", size: 500, id: 1 },
    ];
    assert.deepEqual(scan([buf], 100), want);
    for (let p = 0; p <= buf.length; p += 7) {
      assert.deepEqual(scan(cutAt(buf, p), 100), want, `cut at ${p}`);
    }
  });

  void test("an oversized message is followed through nested strings and escapes", () => {
    const value = { return: [{ s: '}}}]]]"\\' }, ["{{{", "\\\\"], { "}": "{" }], id: "end" };
    const text = JSON.stringify(value);
    const buf = Buffer.from(text + '{"after": true}');
    const want: Frame[] = [
      { kind: "oversize", size: Buffer.byteLength(text), id: "end" },
      { kind: "message", value: { after: true }, size: 15 },
    ];
    for (let p = 0; p <= buf.length; p++) {
      assert.deepEqual(scan(cutAt(buf, p), 20), want, `cut at ${p}`);
    }
  });

  void test("an oversized top-level array is still an UnexpectedTypeError, not a skipped message", () => {
    // SPEC §2: a non-object kills the session whatever its size.
    const small = '{"return": {}, "id": 1}';
    const array = JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ id: i })));
    for (const chunks of [[small + array], [small, ...pieces(Buffer.from(array), 7)]]) {
      const scanner = new JsonObjectScanner({ maxMessageSize: 50 });
      const frames: Frame[] = [];
      const err = thrown(() => {
        for (const c of chunks) scanner.push(Buffer.from(c), (f) => frames.push(f));
      });
      assert.ok(err instanceof UnexpectedTypeError, String(err));
      assert.deepEqual(messages(frames), [{ return: {}, id: 1 }]);
    }
  });

  void test("the stream ending inside an oversized message is a DeserializationError", () => {
    const scanner = new JsonObjectScanner({ maxMessageSize: 10 });
    scanner.push(Buffer.from('{"return": "' + "x".repeat(100)), () => assert.fail("no frame"));
    assert.equal(scanner.buffered, 0);
    const err = thrown(() => scanner.end());
    assert.ok(err instanceof DeserializationError);
  });

  void test("non-JSON text longer than the limit without a newline is a DeserializationError", () => {
    const scanner = new JsonObjectScanner({ maxMessageSize: 100 });
    scanner.push(Buffer.from("x".repeat(60)), () => assert.fail("no frame"));
    const err = thrown(() =>
      scanner.push(Buffer.from("y".repeat(60)), () => assert.fail("no frame")),
    );
    assert.ok(err instanceof DeserializationError);
    assert.equal(err.raw, "x".repeat(60) + "y".repeat(60));
  });
});

void describe("framing: the line fast path never holds a message back", () => {
  /** Frames delivered so far, without calling end(). */
  function pushAll(chunks: readonly Uint8Array[]): Frame[] {
    const scanner = new JsonObjectScanner({ maxMessageSize: Infinity });
    const frames: Frame[] = [];
    for (const chunk of chunks) scanner.push(chunk, (f) => frames.push(f));
    return frames;
  }

  void test("a message with no newline after it is delivered at its closing brace", () => {
    const frames = pushAll([Buffer.from('{"return": {}, '), Buffer.from('"id": 1}')]);
    assert.deepEqual(messages(frames), [{ return: {}, id: 1 }]);
  });

  void test("a large message (> 64 KiB) whose chunks end in '}' inside it, with no newline", () => {
    const inner = Array.from({ length: 4000 }, (_, i) => `{"name":"n${i}","x":{}}`);
    const text = `{"return":[${inner.join(",")}],"id":9}`;
    const whole = Buffer.from(text);
    assert.ok(whole.length > 64 * 1024);
    // Cut right after every 50th inner '}' so that many chunks end in a brace.
    const chunks: Buffer[] = [];
    let from = 0;
    let braces = 0;
    for (let i = 0; i < whole.length; i++) {
      if (whole[i] === 0x7d && ++braces % 50 === 0) {
        chunks.push(whole.subarray(from, i + 1));
        from = i + 1;
      }
    }
    if (from < whole.length) chunks.push(whole.subarray(from));
    assert.ok(chunks.length > 10);
    const frames = pushAll(chunks);
    assert.equal(frames.length, 1);
    assert.deepEqual(messages(frames)[0], JSON.parse(text));
  });

  void test("a peer that never sends newlines: every message arrives without end()", () => {
    const objects = Array.from({ length: 100 }, (_, i) => ({ return: { n: i }, id: i + 1 }));
    const stream = Buffer.from(objects.map((o) => JSON.stringify(o)).join(""));
    for (const size of [1, 7, 64, 1000, stream.length]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < stream.length; i += size) chunks.push(stream.subarray(i, i + size));
      assert.deepEqual(messages(pushAll(chunks)), objects, `chunks of ${size}`);
    }
  });

  void test("compact lines after a pretty-printed stretch are still read correctly", () => {
    const pretty = JSON.stringify({ return: { a: [1, 2, { b: "}" }] }, id: 1 }, null, 2);
    const lines = [pretty, pretty, pretty, pretty, pretty, pretty, pretty, pretty, pretty, pretty];
    const compact = Array.from({ length: 20 }, (_, i) => JSON.stringify({ return: {}, id: i }));
    const stream = Buffer.from([...lines, ...compact].join("\r\n") + "\r\n");
    const frames = pushAll([stream.subarray(0, 100), stream.subarray(100)]);
    assert.equal(frames.length, 30);
    assert.deepEqual(
      messages(frames).slice(10),
      compact.map((c) => JSON.parse(c) as unknown),
    );
  });
});

void test("the line fast path survives any chunking of compact output (issue 9)", () => {
  // Messages with nested objects, so that many cuts fall right after a nested `}`.
  const lines = Array.from(
    { length: 60 },
    (_, i) =>
      `{"return": {"status": "running", "nested": {"a": {"b": ${i}}}, "list": [{"x": 1}, {"y": 2}]}, "id": ${i}}\r\n`,
  );
  const bytes = Buffer.from(lines.join(""));
  for (const cut of [1, 2, 3, 5, 7, 11, 13, 17, 31, 64]) {
    const scanner = new JsonObjectScanner();
    const got: unknown[] = [];
    for (let i = 0; i < bytes.length; i += cut) {
      scanner.push(bytes.subarray(i, i + cut), (f) => {
        if (f.kind === "message") got.push(f.value["id"]);
      });
    }
    assert.deepEqual(
      got,
      Array.from({ length: 60 }, (_, i) => i),
      `cut ${cut}`,
    );
    assert.equal(scanner.lineFastPath, true, `cut ${cut}`);
  }
  // Cuts right after every nested `}`.
  const scanner = new JsonObjectScanner();
  let count = 0;
  let from = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x7d) {
      scanner.push(bytes.subarray(from, i + 1), () => count++);
      from = i + 1;
    }
  }
  scanner.push(bytes.subarray(from), () => count++);
  assert.equal(count, 60);
  assert.equal(scanner.lineFastPath, true);
});

void test("pretty=on output still turns the line fast path off", () => {
  const scanner = new JsonObjectScanner();
  const pretty = Buffer.from(
    Array.from({ length: 20 }, (_, i) => `{\n    "return": {\n    },\n    "id": ${i}\n}\n`).join(
      "",
    ),
  );
  let count = 0;
  scanner.push(pretty, () => count++);
  assert.equal(count, 20);
  assert.equal(scanner.lineFastPath, false);
});

void test("a peer that ends messages with newlines: a held message waits for its newline, and is read once", () => {
  const scanner = new JsonObjectScanner();
  const got: Frame[] = [];
  const sink = (f: Frame): void => void got.push(f);
  scanner.push(Buffer.from('{"QMP": {"version": {}, "capabilities": []}}\r\n'), sink);
  assert.equal(got.length, 1);
  // Cut after a nested '}' and after the final one: nothing is tried before the newline.
  scanner.push(Buffer.from('{"return": {"a": {}}'), sink);
  scanner.push(Buffer.from(', "id": 1}'), sink);
  assert.equal(got.length, 1, "held until its newline");
  scanner.push(Buffer.from("\r"), sink);
  scanner.push(Buffer.from("\n"), sink);
  assert.deepEqual(got[1], {
    kind: "message",
    value: { return: { a: {} }, id: 1 },
    size: '{"return": {"a": {}}, "id": 1}'.length,
  });
  assert.equal(scanner.lineFastPath, true);
});

void test("a held line that is not one object is scanned again byte for byte, UTF-8 split included", () => {
  const scanner = new JsonObjectScanner();
  const got: unknown[] = [];
  const sink = (f: Frame): void => void (f.kind === "message" && got.push(f.value));
  scanner.push(Buffer.from('{"QMP": {"version": {}, "capabilities": []}}\r\n'), sink);
  // Two objects on one line, held across chunks, with a 3-byte character cut in two.
  const line = Buffer.from('{"a": "é€"} {"b": "€"}\r\n');
  const cut = line.indexOf(Buffer.from("€")) + 1;
  scanner.push(line.subarray(0, cut), sink);
  scanner.push(line.subarray(cut), sink);
  assert.deepEqual(got.slice(1), [{ a: "é€" }, { b: "€" }]);
});
