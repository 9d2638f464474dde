// Property-based tests of the framing (fast-check): any chunking of a valid stream gives the same
// messages; random bytes never throw anything but the framing's own errors, and never make the
// scanner hold more than the size limit.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";

import { DeserializationError, UnexpectedTypeError } from "../../src/errors.js";
import { type Frame, JsonObjectScanner } from "../../src/framing.js";
import { fuzzRuns } from "../helpers/common.js";

/** How many cases each property runs (fast-check's default is 100; `QMP_FUZZ_RUNS` overrides). */
const RUNS = fuzzRuns(300);

/** JSON objects as QEMU sends them: any keys (`__proto__` too), any JSON values, non-ASCII text. */
const message = fc.dictionary(fc.string({ unit: "binary" }), fc.jsonValue({ maxDepth: 4 }), {
  maxKeys: 6,
});

/** How a peer writes its messages one after another. */
const layout = fc.constantFrom("compact\\n", "compact\\r\\n", "pretty", "no newline");

function render(messages: Record<string, unknown>[], how: string): Buffer {
  const text = messages
    .map((m) => {
      switch (how) {
        case "compact\\n":
          return JSON.stringify(m) + "\n";
        case "compact\\r\\n":
          return JSON.stringify(m) + "\r\n";
        case "pretty":
          return JSON.stringify(m, null, 4) + "\n";
        default:
          return JSON.stringify(m);
      }
    })
    .join("");
  return Buffer.from(text, "utf8");
}

/** `bytes` cut at the (sorted, deduplicated) `cuts`. */
function chunks(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(bytes.subarray(at, p));
    at = p;
  }
  out.push(bytes.subarray(at));
  return out;
}

/** Everything a fresh scanner makes of `parts`, its end included. */
function scan(parts: Buffer[], maxMessageSize?: number): Frame[] {
  const scanner = new JsonObjectScanner(maxMessageSize === undefined ? {} : { maxMessageSize });
  const frames: Frame[] = [];
  for (const part of parts) scanner.push(part, (f) => frames.push(f));
  scanner.end((f) => frames.push(f));
  return frames;
}

void test("any chunking of a valid stream gives the same messages, in order", () => {
  fc.assert(
    fc.property(
      fc.array(message, { minLength: 1, maxLength: 8 }),
      layout,
      fc.array(fc.nat(), { maxLength: 20 }),
      (messages, how, cuts) => {
        const bytes = render(messages, how);
        const frames = scan(chunks(bytes, cuts));
        assert.deepEqual(
          frames.map((f) => (f.kind === "message" ? f.value : f)),
          messages.map((m) => JSON.parse(JSON.stringify(m)) as unknown),
        );
      },
    ),
    { numRuns: RUNS },
  );
});

void test("a byte at a time gives the same messages as one chunk", () => {
  fc.assert(
    fc.property(fc.array(message, { minLength: 1, maxLength: 4 }), layout, (messages, how) => {
      const bytes = render(messages, how);
      const whole = scan([bytes]);
      const bytewise = scan([...bytes].map((b) => Buffer.of(b)));
      assert.deepEqual(bytewise, whole);
    }),
    { numRuns: fuzzRuns(100) },
  );
});

void test("random bytes: only the framing's own errors, and never more held than the limit", () => {
  const limit = 256;
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 2048 }),
      fc.array(fc.nat(), { maxLength: 16 }),
      (bytes, cuts) => {
        const scanner = new JsonObjectScanner({ maxMessageSize: limit });
        try {
          for (const part of chunks(Buffer.from(bytes), cuts)) {
            scanner.push(part, () => {});
            // What an unfinished message holds stays within the limit (plus one chunk).
            assert.ok(scanner.buffered <= limit + part.length, `holds ${scanner.buffered}`);
          }
          scanner.end(() => {});
        } catch (err) {
          if (err instanceof DeserializationError || err instanceof UnexpectedTypeError) return;
          throw err;
        }
      },
    ),
    { numRuns: RUNS },
  );
});

void test("random bytes between valid messages: what parses is what was sent, or a named error", () => {
  fc.assert(
    fc.property(
      fc.array(message, { minLength: 1, maxLength: 4 }),
      fc.uint8Array({ minLength: 1, maxLength: 64 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      (messages, garbage, cuts) => {
        const bytes = Buffer.concat([render(messages, "compact\\n"), Buffer.from(garbage)]);
        const frames: Frame[] = [];
        const scanner = new JsonObjectScanner();
        try {
          for (const part of chunks(bytes, cuts)) scanner.push(part, (f) => frames.push(f));
          scanner.end((f) => frames.push(f));
        } catch (err) {
          if (!(err instanceof DeserializationError || err instanceof UnexpectedTypeError))
            throw err;
        }
        // The valid messages before the garbage come out whole, in order.
        const values = frames.map((f) => (f.kind === "message" ? f.value : f));
        assert.deepEqual(
          values.slice(0, messages.length),
          messages.map((m) => JSON.parse(JSON.stringify(m)) as unknown),
        );
      },
    ),
    { numRuns: RUNS },
  );
});
