// Unit tests of the error tree: names, codes, the instanceof chain and each class's fields.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import * as pkg from "../../src/index.js";
import {
  AddressInUseError,
  BadReplyError,
  ConnectCancelledError,
  ValidationError,
  SyncError,
  QueueFullError,
  TransportError,
  ConnectError,
  DeserializationError,
  DuplicateIdError,
  ExecInterruptedError,
  ExecuteError,
  FdPassingError,
  GreetingError,
  ListenerError,
  MessageTooLargeError,
  NegotiationError,
  ProcessExitedError,
  ProtocolError,
  QMPError,
  ServerParseError,
  SessionEndedError,
  StateError,
  UnexpectedTypeError,
  TranscriptError,
  TranscriptMismatchError,
  JobError,
  MigrationError,
} from "../../src/index.js";

type AnyErrorClass = abstract new (...args: never[]) => Error;

/** Every error class of the package: an instance, its code, and whether it is a ProtocolError. */
const CASES: { cls: AnyErrorClass; make: () => QMPError; code: string; protocol: boolean }[] = [
  { cls: QMPError, make: () => new QMPError("m"), code: "QMP_ERR_GENERIC", protocol: false },
  {
    cls: ConnectError,
    make: () => new ConnectError("Failed to establish connection", new Error("x")),
    code: "QMP_ERR_CONNECT",
    protocol: false,
  },
  {
    cls: StateError,
    make: () => new StateError("m", "IDLE", "RUNNING"),
    code: "QMP_ERR_STATE",
    protocol: false,
  },
  {
    cls: ProtocolError,
    make: () => new ProtocolError("m"),
    code: "QMP_ERR_PROTOCOL",
    protocol: true,
  },
  {
    cls: DeserializationError,
    make: () => new DeserializationError("m", "raw"),
    code: "QMP_ERR_DESERIALIZATION",
    protocol: true,
  },
  {
    cls: UnexpectedTypeError,
    make: () => new UnexpectedTypeError("m", 1),
    code: "QMP_ERR_UNEXPECTED_TYPE",
    protocol: true,
  },
  {
    cls: ServerParseError,
    make: () => new ServerParseError("m", {}),
    code: "QMP_ERR_SERVER_PARSE",
    protocol: true,
  },
  {
    cls: BadReplyError,
    make: () => new BadReplyError("m", {}, {}),
    code: "QMP_ERR_BAD_REPLY",
    protocol: true,
  },
  {
    cls: GreetingError,
    make: () => new GreetingError("m"),
    code: "QMP_ERR_GREETING",
    protocol: true,
  },
  {
    cls: NegotiationError,
    make: () => new NegotiationError("m", {}),
    code: "QMP_ERR_NEGOTIATION",
    protocol: true,
  },
  {
    cls: ExecuteError,
    make: () => new ExecuteError({}, { error: { class: "GenericError", desc: "d" } }),
    code: "QMP_ERR_EXECUTE",
    protocol: false,
  },
  {
    cls: ExecInterruptedError,
    make: () => new ExecInterruptedError("m"),
    code: "QMP_ERR_EXEC_INTERRUPTED",
    protocol: false,
  },
  {
    cls: SessionEndedError,
    make: () => new SessionEndedError("m"),
    code: "QMP_ERR_SESSION_ENDED",
    protocol: false,
  },
  {
    cls: ListenerError,
    make: () => new ListenerError("m"),
    code: "QMP_ERR_LISTENER",
    protocol: false,
  },
  {
    cls: MessageTooLargeError,
    make: () => new MessageTooLargeError(20, 10),
    code: "QMP_ERR_MESSAGE_TOO_LARGE",
    protocol: false,
  },
  {
    cls: DuplicateIdError,
    make: () => new DuplicateIdError("m"),
    code: "QMP_ERR_DUPLICATE_ID",
    protocol: false,
  },
  {
    cls: FdPassingError,
    make: () => new FdPassingError("m"),
    code: "QMP_ERR_FD_PASSING",
    protocol: false,
  },
  {
    cls: ProcessExitedError,
    make: () => new ProcessExitedError({ pid: 42, exitCode: 1, signal: null }),
    code: "QMP_ERR_PROCESS_EXITED",
    protocol: false,
  },
  {
    cls: TransportError,
    make: () => new TransportError("m"),
    code: "QMP_ERR_TRANSPORT",
    protocol: false,
  },
  {
    cls: AddressInUseError,
    make: () => new AddressInUseError("m", "/run/x.sock"),
    code: "QMP_ERR_ADDRESS_IN_USE",
    protocol: false,
  },
  {
    cls: QueueFullError,
    make: () => new QueueFullError("m"),
    code: "QMP_ERR_QUEUE_FULL",
    protocol: false,
  },
  {
    cls: ConnectCancelledError,
    make: () => new ConnectCancelledError("m"),
    code: "QMP_ERR_CONNECT_CANCELLED",
    protocol: false,
  },
  {
    cls: SyncError,
    make: () => new SyncError("Failed to establish session", new Error("x")),
    code: "QMP_ERR_SYNC",
    protocol: false,
  },
  {
    cls: ValidationError,
    make: () => new ValidationError("device_del", [{ path: "id", message: "missing" }]),
    code: "QMP_ERR_VALIDATION",
    protocol: false,
  },
  {
    cls: TranscriptError,
    make: () => new TranscriptError("line 2: not JSON", 1, 2),
    code: "QMP_ERR_TRANSCRIPT",
    protocol: false,
  },
  {
    cls: TranscriptMismatchError,
    make: () =>
      new TranscriptMismatchError("m", { index: 3, line: 4 }, { execute: "stop" }, undefined),
    code: "QMP_ERR_TRANSCRIPT_MISMATCH",
    protocol: false,
  },
  {
    cls: JobError,
    make: () => new JobError("blockdev-backup", { id: "j", type: "backup", error: "No space" }),
    code: "QMP_ERR_JOB",
    protocol: false,
  },
  {
    cls: MigrationError,
    make: () => new MigrationError("failed", "Unable to write to socket"),
    code: "QMP_ERR_MIGRATION",
    protocol: false,
  },
];

void describe("errors: every exported class", () => {
  void test("the table above covers every Error class the package root exports", () => {
    const exported = Object.entries(pkg)
      .filter(([, v]) => typeof v === "function" && v.prototype instanceof Error)
      .map(([k]) => k)
      .sort();
    assert.deepEqual(exported, CASES.map((c) => c.cls.name).sort());
    for (const c of CASES) {
      assert.equal((pkg as Record<string, unknown>)[c.cls.name], c.cls, `${c.cls.name} exported`);
    }
  });

  for (const c of CASES) {
    void test(`${c.cls.name}: name, code, instanceof chain`, () => {
      const err = c.make();
      assert.equal(err.name, c.cls.name);
      assert.equal(err.code, c.code);
      assert.match(err.code, /^QMP_ERR_[A-Z_]+$/);
      assert.ok(err instanceof c.cls);
      assert.ok(err instanceof QMPError);
      assert.ok(err instanceof Error);
      assert.equal(err instanceof ProtocolError, c.protocol);
      assert.equal(Object.getPrototypeOf(err), c.cls.prototype);
      assert.equal(typeof err.stack, "string");
      assert.ok(err.stack!.startsWith(`${c.cls.name}: `), err.stack);
      assert.ok(String(err).startsWith(`${c.cls.name}: `), String(err));
    });
  }

  void test("the codes are distinct", () => {
    const codes = CASES.map((c) => c.code);
    assert.equal(new Set(codes).size, codes.length);
    const made = CASES.map((c) => c.make().code);
    assert.equal(new Set(made).size, made.length);
  });

  void test("names are literal: a user's subclass names itself, as ours do", () => {
    class Unnamed extends ExecInterruptedError {}
    assert.equal(new Unnamed("m").name, "ExecInterruptedError");
    class MyError extends ExecInterruptedError {
      override readonly name: string = "MyError";
    }
    const err = new MyError("m");
    assert.equal(err.name, "MyError");
    assert.equal(err.code, "QMP_ERR_EXEC_INTERRUPTED");
    assert.ok(err instanceof ExecInterruptedError);
  });

  void test("QMPError passes cause through", () => {
    const cause = new Error("root");
    assert.equal(new QMPError("m", { cause }).cause, cause);
    assert.equal(new ExecInterruptedError("m", { cause }).cause, cause);
    assert.equal(new SessionEndedError("m", { cause }).cause, cause);
    assert.equal(new ProtocolError("m").cause, undefined);
  });
});

void describe("errors: fields", () => {
  void test("ConnectError: '<phase>: <cause>', with cause and errorMessage", () => {
    const root = Object.assign(new Error("connect ECONNREFUSED /tmp/qmp.sock"), {
      code: "ECONNREFUSED",
    });
    const err = new ConnectError("Failed to establish connection", root);
    assert.ok(err.message.startsWith("Failed to establish connection: "), err.message);
    assert.ok(err.message.endsWith("connect ECONNREFUSED /tmp/qmp.sock"), err.message);
    assert.equal(err.cause, root);
    assert.equal(err.errorMessage, "Failed to establish connection");

    const greeting = new GreetingError("Expected a greeting, got an event");
    const session = new ConnectError("Failed to establish session", greeting);
    assert.ok(session.message.startsWith("Failed to establish session: "), session.message);
    assert.ok(session.message.includes("Expected a greeting, got an event"), session.message);
    assert.equal(session.cause, greeting);
    assert.equal(session.errorMessage, "Failed to establish session");

    const plain = new ConnectError("Failed to establish connection", "boom");
    assert.equal(plain.message, "Failed to establish connection: boom");
    assert.equal(plain.cause, "boom");
  });

  void test("ConnectError keeps a cause that is not an Error", () => {
    const cause = { reason: "odd" };
    const err = new ConnectError("Failed to establish session", cause);
    assert.equal(err.cause, cause);
    assert.ok(err.message.startsWith("Failed to establish session: "));
  });

  void test("StateError: state, required, message", () => {
    const err = new StateError("QMPClient is disconnected and idle.", "IDLE", "RUNNING");
    assert.equal(err.state, "IDLE");
    assert.equal(err.required, "RUNNING");
    assert.equal(err.message, "QMPClient is disconnected and idle.");
    assert.equal(err.name, "StateError");
  });

  void test("ExecuteError: errorClass, desc, sent, received; message === desc", () => {
    const sent = { execute: "no-such-command", id: 3 };
    const received = {
      id: 3,
      error: { class: "CommandNotFound", desc: "The command no-such-command has not been found" },
    };
    const err = new ExecuteError(sent, received);
    assert.equal(err.errorClass, "CommandNotFound");
    assert.equal(err.desc, "The command no-such-command has not been found");
    assert.equal(err.message, err.desc);
    assert.equal(err.sent, sent);
    assert.equal(err.received, received);
    assert.deepEqual(sent, { execute: "no-such-command", id: 3 }, "not mutated");
  });

  void test("MessageTooLargeError: size and limit, in the message, naming maxMessageSize", () => {
    const err = new MessageTooLargeError(12_345_678, 10_485_760);
    assert.equal(err.size, 12_345_678);
    assert.equal(err.limit, 10_485_760);
    assert.ok(err.message.includes("12345678"), err.message);
    assert.ok(err.message.includes("10485760"), err.message);
    assert.ok(err.message.includes("maxMessageSize"), err.message);
  });

  void test("DeserializationError: raw text and cause", () => {
    const cause = new SyntaxError("Unexpected token");
    const err = new DeserializationError("Received invalid JSON", "{bad}", { cause });
    assert.equal(err.raw, "{bad}");
    assert.equal(err.cause, cause);
    assert.equal(err.message, "Received invalid JSON");
  });

  void test("UnexpectedTypeError: value", () => {
    assert.deepEqual(new UnexpectedTypeError("m", [1, 2]).value, [1, 2]);
    assert.equal(new UnexpectedTypeError("m", null).value, null);
  });

  void test("ServerParseError, BadReplyError, GreetingError, NegotiationError: what was received", () => {
    const received = { error: { class: "GenericError", desc: "JSON parse error" } };
    assert.equal(new ServerParseError("m", received).received, received);
    const sent = { execute: "x", id: 1 };
    const reply = { id: 1 };
    const bad = new BadReplyError("m", sent, reply);
    assert.equal(bad.sent, sent);
    assert.equal(bad.received, reply);
    assert.equal(new GreetingError("m").received, undefined);
    const event = { event: "STOP" };
    assert.equal(new GreetingError("m", event).received, event);
    assert.equal(new NegotiationError("m", received).received, received);
  });

  void test("ProcessExitedError: exit status, stderr and cause, each in the message", () => {
    const cause = Object.assign(new Error("connect ENOENT /x"), { code: "ENOENT" });
    const err = new ProcessExitedError(
      { pid: 7, exitCode: 1, signal: null, stderr: "qemu: -foo: invalid option" },
      { cause },
    );
    assert.equal(err.pid, 7);
    assert.equal(err.exitCode, 1);
    assert.equal(err.signal, null);
    assert.equal(err.stderr, "qemu: -foo: invalid option");
    assert.equal(err.cause, cause);
    assert.equal(
      err.message,
      "The process 7 exited with code 1 before a connection was made; stderr:\nqemu: -foo: invalid option",
    );
    const killed = new ProcessExitedError({ pid: 8, exitCode: null, signal: "SIGKILL" });
    assert.equal(
      killed.message,
      "The process 8 was killed by SIGKILL before a connection was made",
    );
    assert.equal(killed.stderr, undefined);
    const gone = new ProcessExitedError({ pid: 9, exitCode: null, signal: null });
    assert.equal(gone.message, "The process 9 exited before a connection was made");
    const unborn = new ProcessExitedError({ exitCode: null, signal: null });
    assert.equal(unborn.message, "The process could not be started");
  });
});

void test("ValidationError: every problem in the message, the unknown command alone", () => {
  const err = new ValidationError("transaction", [
    { path: "actions[0].data.name", message: "expected string, got integer" },
    { path: "bogus", message: "unknown member" },
  ]);
  assert.equal(
    err.message,
    "Invalid arguments for 'transaction': actions[0].data.name: expected string, got integer; " +
      "bogus: unknown member",
  );
  assert.equal(err.command, "transaction");
  assert.equal(err.problems.length, 2);
  const unknown = new ValidationError("x-foo", [
    { path: "", message: "QEMU has no command 'x-foo'" },
  ]);
  assert.equal(unknown.message, "QEMU has no command 'x-foo'");
});

void test("JobError: the job and QEMU's text in the message and fields", () => {
  const e = new JobError("blockdev-backup", { id: "j1", type: "backup", error: "No space left" });
  assert.equal(e.message, "The backup job j1 (blockdev-backup) failed: No space left");
  assert.deepEqual(
    [e.command, e.jobId, e.jobType, e.desc],
    ["blockdev-backup", "j1", "backup", "No space left"],
  );
});
