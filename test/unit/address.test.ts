// Unit tests of address parsing and formatting (SPEC §1, "Addresses").

import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";

import { parseAddress as publicParseAddress } from "../../src/index.js";
import { formatAddress, parseAddress } from "../../src/transport.js";

void test("parseAddress is exported from the package root", () => {
  assert.equal(publicParseAddress, parseAddress);
});

void test("UNIX socket paths come back as strings", () => {
  for (const path of [
    "/tmp/qmp.sock",
    "/run/qemu/vm:1.sock",
    "./qmp.sock",
    "../dir:with:colons/qmp.sock",
    ".hidden:1",
    "qmp.sock",
    "relative/path/qmp.sock",
  ]) {
    assert.equal(parseAddress(path), path);
  }
});

void test("host:port", () => {
  assert.deepEqual(parseAddress("localhost:4444"), { host: "localhost", port: 4444 });
  assert.deepEqual(parseAddress("127.0.0.1:0"), { host: "127.0.0.1", port: 0 });
  assert.deepEqual(parseAddress("vm.example.org:65535"), { host: "vm.example.org", port: 65535 });
  assert.deepEqual(parseAddress("h:007"), { host: "h", port: 7 });
});

void test("an empty host means localhost", () => {
  assert.deepEqual(parseAddress(":4444"), { host: "localhost", port: 4444 });
});

void test("bracketed IPv6", () => {
  assert.deepEqual(parseAddress("[::1]:4444"), { host: "::1", port: 4444 });
  assert.deepEqual(parseAddress("[fe80::1%eth0]:1"), { host: "fe80::1%eth0", port: 1 });
  assert.deepEqual(parseAddress("[2001:db8::42]:5900"), { host: "2001:db8::42", port: 5900 });
});

void test("the port is a number from 0 to 65535, else a clear TypeError", () => {
  for (const bad of [
    "localhost:abc",
    "localhost:",
    "localhost:65536",
    "localhost:99999",
    "localhost:-1",
    "localhost:1e3",
    "localhost:0x10",
    "localhost:44 ",
    "localhost: 44",
    "localhost:4.5",
    "localhost:123456",
    "[::1]:http",
    "[::1]:",
  ]) {
    assert.throws(
      () => parseAddress(bad),
      (err: unknown) =>
        err instanceof TypeError && err.message.includes(bad) && /port/.test(err.message),
      bad,
    );
  }
});

void test("malformed bracketed IPv6 is a TypeError", () => {
  for (const bad of ["[::1]", "[::1]4444", "[::1:4444", "[::1] :4444"]) {
    assert.throws(
      () => parseAddress(bad),
      (err: unknown) => err instanceof TypeError && err.message.includes(bad),
      bad,
    );
  }
});

void test("unbracketed IPv6 is a TypeError that shows the bracketed form", () => {
  assert.throws(
    () => parseAddress("::1:4444"),
    (err: unknown) => err instanceof TypeError && err.message.includes("[::1]:4444"),
  );
  assert.throws(
    () => parseAddress("fe80::1:22"),
    (err: unknown) => err instanceof TypeError && err.message.includes("[fe80::1]:22"),
  );
});

void test("formatAddress", () => {
  assert.equal(formatAddress("/tmp/qmp.sock"), "/tmp/qmp.sock");
  assert.equal(formatAddress({ path: "/run/q.sock" }), "/run/q.sock");
  assert.equal(formatAddress({ host: "localhost", port: 4444 }), "localhost:4444");
  assert.equal(formatAddress({ host: "::1", port: 4444 }), "[::1]:4444");
  assert.equal(formatAddress({ host: "2001:db8::42", port: 0 }), "[2001:db8::42]:0");
  const stream = new PassThrough();
  assert.equal(formatAddress(stream), "<stream>");
  stream.destroy();
});

void test("formatAddress(parseAddress(text)) gives back the text", () => {
  for (const text of ["/tmp/qmp.sock", "qmp.sock", "localhost:4444", "[::1]:4444", "10.0.0.1:1"]) {
    const parsed = parseAddress(text);
    assert.equal(formatAddress(parsed), text);
    if (typeof parsed !== "string") assert.deepEqual(parseAddress(formatAddress(parsed)), parsed);
  }
});

void test("an empty address is a TypeError", () => {
  assert.throws(() => parseAddress(""), TypeError);
  assert.throws(() => parseAddress("   "), TypeError);
});
