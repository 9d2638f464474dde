// Fault injection for the fake server: what can go wrong with one message it sends, and the
// outbox that writes its messages in order, faults and all.

import type { Duplex } from "node:stream";
import type { JsonValue, QMPEvent } from "../message.js";
import { typeName } from "../util.js";

/**
 * Something that goes wrong with one message the fake server sends (its
 * greeting or a reply). Faults of one message apply in this order: the
 * ones that come first (`delay`, `stall`, `events-before`,
 * `second-greeting`, in the order given), then those that change what is
 * sent (`garbage`, `non-object`, `error-without-id`, `unknown-id`,
 * `oversized`, `pretty`), then those that change how it is written
 * (`split`, and `eof` or `reset` to cut it).
 */
export type Fault =
  /**
   * Write the message in pieces, a few milliseconds apart: cut at the byte
   * offsets `at`, or at `pieces - 1` random points (default 4 pieces) drawn
   * from `seed` (default: a random seed). `gap` is the pause between pieces
   * in ms (default 1).
   */
  | {
      kind: "split";
      at?: readonly number[] | undefined;
      pieces?: number | undefined;
      seed?: number | undefined;
      gap?: number | undefined;
    }
  /** Wait `ms` milliseconds before sending; later messages wait too (QEMU answers in order). */
  | { kind: "delay"; ms: number }
  /** Stop all output before this message, until `FakePeer.resume()` (a stopped QEMU). */
  | { kind: "stall" }
  /**
   * Send these events first (names or whole events; default one `RESUME`):
   * before the greeting, or between a command and its reply.
   */
  | { kind: "events-before"; events?: readonly (string | QMPEvent)[] | undefined }
  /** Send a greeting first (default: the connection's). QEMU never does. */
  | { kind: "second-greeting"; greeting?: Record<string, unknown> | undefined }
  /** Send only the first `at` bytes (default half), then end the connection (FIN). */
  | { kind: "eof"; at?: number | undefined }
  /**
   * Send only the first `at` bytes (default half), then, 10 ms later, reset
   * the connection (RST on TCP: the client sees ECONNRESET; elsewhere a
   * plain close).
   */
  | { kind: "reset"; at?: number | undefined }
  /** Send these bytes instead (default a line that is not JSON). */
  | { kind: "garbage"; bytes?: string | Uint8Array | undefined }
  /** Send this JSON value instead (default the message inside an array): valid JSON, not an object. */
  | { kind: "non-object"; value?: JsonValue | undefined }
  /**
   * Send an error without `id` instead, as QEMU does for input it could
   * not parse (default: a `GenericError` "JSON parse error").
   */
  | { kind: "error-without-id"; error?: { class: string; desc: string } | undefined }
  /** Send the reply with another `id` (default one no client uses). */
  | { kind: "unknown-id"; id?: string | number | undefined }
  /** Pad the reply's `return` with a string until the message is at least `bytes` long. */
  | { kind: "oversized"; bytes: number }
  /** Spread the message over many lines, as a monitor with `pretty=on` does. */
  | { kind: "pretty" };

/** The kinds of {@link Fault}. */
export type FaultKind = Fault["kind"];

/** One fault or several, as options take them. */
export type Faults = Fault | readonly Fault[];

/**
 * Faults on every connection of a fake server (see {@link Fault}). A
 * peer's `inject()` adds faults for one reply.
 */
export interface FaultPlan {
  /** Faults of the greeting. */
  greeting?: Faults | undefined;
  /** Faults of every reply. */
  replies?: Faults | undefined;
  /** Faults of every reply to the named commands (after those of `replies`). */
  commands?: Readonly<Record<string, Faults>> | undefined;
}

const KINDS: ReadonlySet<string> = new Set<FaultKind>([
  "split",
  "delay",
  "stall",
  "events-before",
  "second-greeting",
  "eof",
  "reset",
  "garbage",
  "non-object",
  "error-without-id",
  "unknown-id",
  "oversized",
  "pretty",
]);

function checkCount(value: unknown, what: string, min: number): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    const got = typeof value === "number" ? String(value) : typeName(value);
    throw new RangeError(`${what} must be a whole number from ${min}, got ${got}`);
  }
}

function checkFault(value: unknown, what: string): Fault {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`${what} must be a fault object, got ${typeName(value)}`);
  }
  const f = value as Record<string, unknown>;
  const kind = f["kind"];
  if (typeof kind !== "string" || !KINDS.has(kind)) {
    throw new TypeError(
      `${what}.kind must be one of ${[...KINDS].join(", ")}; got ${String(kind)}`,
    );
  }
  switch (kind) {
    case "split": {
      const at = f["at"];
      if (at !== undefined) {
        if (!Array.isArray(at)) throw new TypeError(`${what}.at must be an array of byte offsets`);
        at.forEach((n, i) => checkCount(n, `${what}.at[${i}]`, 0));
      }
      checkCount(f["pieces"], `${what}.pieces`, 2);
      checkCount(f["seed"], `${what}.seed`, 0);
      checkCount(f["gap"], `${what}.gap`, 0);
      break;
    }
    case "delay":
      checkCount(f["ms"], `${what}.ms`, 0);
      if (f["ms"] === undefined) throw new TypeError(`${what}.ms is required`);
      break;
    case "events-before": {
      const events = f["events"];
      if (events !== undefined && !Array.isArray(events)) {
        throw new TypeError(`${what}.events must be an array of event names or events`);
      }
      break;
    }
    case "eof":
    case "reset":
      checkCount(f["at"], `${what}.at`, 0);
      break;
    case "garbage": {
      const bytes = f["bytes"];
      if (bytes !== undefined && typeof bytes !== "string" && !(bytes instanceof Uint8Array)) {
        throw new TypeError(`${what}.bytes must be a string or bytes, got ${typeName(bytes)}`);
      }
      break;
    }
    case "non-object": {
      const v = f["value"];
      if (typeof v === "object" && v !== null && !Array.isArray(v)) {
        throw new TypeError(`${what}.value must not be an object`);
      }
      break;
    }
    case "unknown-id": {
      const id = f["id"];
      if (id !== undefined && typeof id !== "string" && typeof id !== "number") {
        throw new TypeError(`${what}.id must be a string or a number, got ${typeName(id)}`);
      }
      break;
    }
    case "oversized":
      checkCount(f["bytes"], `${what}.bytes`, 1);
      if (f["bytes"] === undefined) throw new TypeError(`${what}.bytes is required`);
      break;
  }
  return f as unknown as Fault;
}

/**
 * One fault or a list, checked, as a list.
 *
 * @throws {TypeError} {RangeError} for anything that is not a valid {@link Fault}.
 */
export function checkFaults(value: unknown, what = "faults"): readonly Fault[] {
  if (value === undefined) return [];
  if (Array.isArray(value)) return value.map((f, i) => checkFault(f, `${what}[${i}]`));
  return [checkFault(value, what)];
}

/** A {@link FaultPlan} with every list checked. */
export interface CheckedPlan {
  greeting: readonly Fault[];
  replies: readonly Fault[];
  commands: ReadonlyMap<string, readonly Fault[]>;
}

/**
 * Check a {@link FaultPlan}.
 *
 * @throws {TypeError} {RangeError} for a plan or fault of the wrong shape.
 */
export function checkFaultPlan(plan: unknown): CheckedPlan {
  if (plan === undefined) return { greeting: [], replies: [], commands: new Map() };
  if (typeof plan !== "object" || plan === null || Array.isArray(plan)) {
    throw new TypeError(
      `faults must be an object { greeting, replies, commands }, got ${typeName(plan)}`,
    );
  }
  const p = plan as Record<string, unknown>;
  const commands = new Map<string, readonly Fault[]>();
  const byCommand = p["commands"];
  if (byCommand !== undefined) {
    if (typeof byCommand !== "object" || byCommand === null || Array.isArray(byCommand)) {
      throw new TypeError(`faults.commands must map command names to faults`);
    }
    for (const [name, faults] of Object.entries(byCommand)) {
      commands.set(name, checkFaults(faults, `faults.commands[${JSON.stringify(name)}]`));
    }
  }
  return {
    greeting: checkFaults(p["greeting"], "faults.greeting"),
    replies: checkFaults(p["replies"], "faults.replies"),
    commands,
  };
}

/** A small seeded generator (mulberry32), so that a seed gives the same numbers every time. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Where to cut `length` bytes for a split fault: sorted offsets strictly inside. */
export function cutPoints(fault: Extract<Fault, { kind: "split" }>, length: number): number[] {
  let points: number[];
  if (fault.at !== undefined) {
    points = [...fault.at];
  } else {
    const next = prng(fault.seed ?? Math.floor(Math.random() * 2 ** 32));
    const wanted = Math.min((fault.pieces ?? 4) - 1, length - 1);
    const set = new Set<number>();
    // Bounded: at most 64 draws per wanted point.
    for (let i = 0; set.size < wanted && i < wanted * 64; i++) {
      set.add(1 + Math.floor(next() * (length - 1)));
    }
    points = [...set];
  }
  return [...new Set(points.filter((p) => p > 0 && p < length))].sort((a, b) => a - b);
}

let unknownIds = 0;

/** The message after the faults that change it: bytes to write, without the line ending or with. */
function encode(message: unknown, faults: readonly Fault[], ending: string): Buffer {
  let m = message;
  let text: string | undefined;
  let raw: Buffer | undefined;
  let pretty = false;
  for (const f of faults) {
    switch (f.kind) {
      case "garbage":
        raw = Buffer.from(f.bytes ?? `}{ this is not JSON ]${ending}`);
        break;
      case "non-object":
        text = JSON.stringify(f.value ?? [m]);
        break;
      case "error-without-id":
        m = {
          error: f.error ?? {
            class: "GenericError",
            desc: "JSON parse error, invalid keyword 'x'",
          },
        };
        break;
      case "unknown-id":
        m = { ...(m as object), id: f.id ?? `fake-unknown-${++unknownIds}` };
        break;
      case "oversized": {
        const base = JSON.stringify({ ...(m as object), return: "" }).length + ending.length;
        m = { ...(m as object), return: "x".repeat(Math.max(0, f.bytes - base)) };
        break;
      }
      case "pretty":
        pretty = true;
        break;
      case "split":
      case "delay":
      case "stall":
      case "events-before":
      case "second-greeting":
      case "eof":
      case "reset":
        // These change when or how the bytes go out, not what they are.
        break;
    }
  }
  if (raw !== undefined) return raw;
  text ??= pretty ? JSON.stringify(m, null, 2).replace(/\n/g, ending) : JSON.stringify(m);
  return Buffer.from(text + ending);
}

type Step = () => void | Promise<void>;

/** Milliseconds between the last bytes of a message cut by a `reset` fault and the reset. */
const RESET_PAUSE = 10;

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Writes one connection's output in order: a message waits for the faults
 * of the one before it (a delay, a stall, a split) as QEMU's replies do.
 */
export class Outbox {
  readonly #socket: Duplex;
  readonly #ending: string;
  readonly #greeting: () => unknown;
  readonly #steps: Step[] = [];
  #busy = false;
  #stalled: { promise: Promise<void>; resolve: () => void } | undefined;
  /** How many times the socket was written to (a split message counts each piece). */
  writes = 0;

  constructor(socket: Duplex, ending: string, greeting: () => unknown) {
    this.#socket = socket;
    this.#ending = ending;
    this.#greeting = greeting;
  }

  /** Queue `message` with its faults. */
  send(message: unknown, faults: readonly Fault[] = []): void {
    if (faults.length === 0) {
      this.#push(() => this.#write(Buffer.from(JSON.stringify(message) + this.#ending)));
      return;
    }
    for (const f of faults) {
      if (f.kind === "delay") this.#push(() => pause(f.ms));
      else if (f.kind === "stall") this.#push(() => this.stall());
      else if (f.kind === "second-greeting") {
        this.#push(() => this.#write(this.#encode(f.greeting ?? this.#greeting(), [])));
      } else if (f.kind === "events-before") {
        for (const e of f.events ?? ["RESUME"]) {
          const event = typeof e === "string" ? makeEvent(e) : e;
          this.#push(() => this.#write(this.#encode(event, [])));
        }
      }
    }
    // Encoded when its turn comes: an event or greeting above goes first, and nothing is built early.
    this.#push(() => this.#writeFaulty(this.#encode(message, faults), faults));
  }

  /** Queue raw bytes. */
  write(data: string | Uint8Array): void {
    this.#push(() => this.#write(typeof data === "string" ? Buffer.from(data) : data));
  }

  /** Queue a clean close (FIN) after everything queued. */
  end(): void {
    this.#push(() => {
      this.#socket.end();
    });
  }

  /** Hold all output from now on (queued messages wait) until {@link resume}. */
  stall(): void {
    if (this.#stalled !== undefined) return;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.#stalled = { promise, resolve };
  }

  /** Let held output go. */
  resume(): void {
    const stalled = this.#stalled;
    this.#stalled = undefined;
    stalled?.resolve();
  }

  /** Drop everything queued (the connection is gone). */
  clear(): void {
    this.#steps.length = 0;
    this.resume();
  }

  #encode(message: unknown, faults: readonly Fault[]): Buffer {
    return encode(message, faults, this.#ending);
  }

  #push(step: Step): void {
    this.#steps.push(step);
    if (!this.#busy) this.#pump();
  }

  /** Run steps in order; synchronous ones at once, a promise holds the rest until it settles. */
  #pump(): void {
    while (this.#steps.length > 0) {
      const stalled = this.#stalled;
      if (stalled !== undefined) {
        this.#wait(stalled.promise);
        return;
      }
      const result = this.#steps.shift()!();
      if (result !== undefined) {
        this.#wait(result);
        return;
      }
    }
  }

  #wait(promise: Promise<void>): void {
    this.#busy = true;
    void promise.then(() => {
      this.#busy = false;
      this.#pump();
    });
  }

  #write(bytes: Uint8Array): void {
    const s = this.#socket;
    if (s.destroyed || s.writableEnded) return;
    this.writes++;
    s.write(bytes);
  }

  #writeFaulty(bytes: Buffer, faults: readonly Fault[]): Promise<void> | undefined {
    const cut = faults.findLast((f) => f.kind === "eof" || f.kind === "reset");
    const split = faults.findLast((f) => f.kind === "split");
    let body = bytes;
    if (cut !== undefined) body = bytes.subarray(0, cut.at ?? Math.max(1, bytes.length >> 1));
    if (split === undefined && cut?.kind !== "reset") {
      this.#write(body);
      if (cut?.kind === "eof") this.#socket.end();
      return undefined;
    }
    return (async () => {
      let from = 0;
      const points = split !== undefined ? cutPoints(split, body.length) : [];
      for (const to of [...points, body.length]) {
        if (from > 0) await pause(split?.gap ?? 1);
        this.#write(body.subarray(from, to));
        from = to;
      }
      if (cut?.kind === "eof") this.#socket.end();
      else if (cut?.kind === "reset") {
        // An RST that overtakes unread bytes may reach the client as a plain end of stream:
        // give the bytes a moment to be read, so that the client sees the reset itself.
        await pause(RESET_PAUSE);
        resetSocket(this.#socket);
      }
    })();
  }
}

/** Close abruptly: RST on TCP, a plain destroy elsewhere. */
export function resetSocket(socket: Duplex): void {
  const s = socket as Duplex & { resetAndDestroy?: () => void; remoteFamily?: string };
  if (typeof s.resetAndDestroy === "function" && s.remoteFamily !== undefined) {
    s.resetAndDestroy();
  } else {
    socket.destroy();
  }
}

/** A QMP event with the current time as its timestamp. */
export function makeEvent(name: string, data?: Record<string, unknown>): QMPEvent {
  const now = Date.now();
  const event: QMPEvent = {
    timestamp: { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 },
    event: name,
  };
  if (data !== undefined) event.data = data as NonNullable<QMPEvent["data"]>;
  return event;
}
