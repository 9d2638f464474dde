// Real QEMU: passing fds with getfd/closefd, add-fd/query-fdsets/remove-fd, a temp file and a
// pipe, server mode, and QEMU's rules (first fd of a message, named fds survive reconnects,
// unused fd sets are dropped with the connection). Needs the optional dependency koffi.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { closeSync, openSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { ExecuteError, Runstate } from "../../src/index.js";
import { asArray, asObject, qemuVersion, startQemu, tempDir, testClient } from "../helpers/qemu.js";

const require = createRequire(import.meta.url);
let hasKoffi = true;
try {
  require.resolve("koffi");
} catch {
  hasKoffi = false;
}
const T = {
  timeout: 30_000,
  skip: hasKoffi ? false : "koffi (optional dependency) is not installed",
};

/** A temp file opened read-only; closed after the test. */
function openFile(t: TestContext, dir: string, name: string): { path: string; fd: number } {
  const path = join(dir, name);
  writeFileSync(path, name);
  const fd = openSync(path, "r");
  t.after(() => closeSync(fd));
  return { path, fd };
}

/** A FIFO opened read-write (so the open does not block); closed after the test. */
function openPipe(t: TestContext, dir: string, name: string): { path: string; fd: number } {
  const path = join(dir, name);
  execFileSync("mkfifo", [path]);
  const fd = openSync(path, "r+");
  t.after(() => closeSync(fd));
  return { path, fd };
}

/** QEMU's own descriptors that point at `path` (from /proc/<pid>/fd). */
function qemuFdsOn(pid: number, path: string): number[] {
  const out: number[] = [];
  for (const n of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${n}`) === path) out.push(Number(n));
    } catch {
      // Closed meanwhile.
    }
  }
  return out;
}

/** query-fdsets as `{ setId: [[fd, opaque?], …] }`. */
async function fdsets(
  client: ReturnType<typeof testClient>,
): Promise<Map<number, [number, unknown][]>> {
  const sets = new Map<number, [number, unknown][]>();
  for (const s of asArray(await client.execute("query-fdsets"))) {
    const set = asObject(s);
    const fds = asArray(set["fds"]).map((f): [number, unknown] => {
      const info = asObject(f);
      return [info["fd"] as number, info["opaque"]];
    });
    sets.set(set["fdset-id"] as number, fds);
  }
  return sets;
}

void test("getfd + closefd with execute({ fds }) and with sendFdScm", T, async (t) => {
  const qemu = await startQemu(t);
  const pid = qemu.process.pid!;
  const dir = tempDir(t);
  const a = openFile(t, dir, "a");
  const b = openFile(t, dir, "b");
  const client = testClient(t);
  await client.connect(qemu.socketPath);

  assert.deepEqual(qemuFdsOn(pid, a.path), []);
  assert.deepEqual(await client.execute("getfd", { fdname: "fa" }, { fds: [a.fd] }), {});
  assert.equal(qemuFdsOn(pid, a.path).length, 1, "QEMU holds the file after getfd");

  await client.sendFdScm(b.fd);
  assert.deepEqual(await client.execute("getfd", { fdname: "fb" }), {});
  assert.equal(qemuFdsOn(pid, b.path).length, 1);

  assert.deepEqual(await client.execute("closefd", { fdname: "fa" }), {});
  assert.deepEqual(qemuFdsOn(pid, a.path), [], "closefd closed it in QEMU");
  assert.equal(qemuFdsOn(pid, b.path).length, 1);
  await assert.rejects(client.execute("closefd", { fdname: "fa" }), (err: unknown) => {
    assert.ok(err instanceof ExecuteError, `got ${String(err)}`);
    assert.equal(err.errorClass, "GenericError");
    return true;
  });
  assert.deepEqual(await client.execute("closefd", { fdname: "fb" }), {});
  assert.deepEqual(qemuFdsOn(pid, b.path), []);
});

void test("getfd with no fd attached: GenericError as an ExecuteError", T, async (t) => {
  const qemu = await startQemu(t);
  const client = testClient(t);
  await client.connect(qemu.socketPath);
  await assert.rejects(client.execute("getfd", { fdname: "none" }), (err: unknown) => {
    assert.ok(err instanceof ExecuteError, `got ${String(err)}`);
    assert.equal(err.errorClass, "GenericError");
    assert.match(err.desc, /SCM_RIGHTS/);
    return true;
  });
  assert.equal(client.runstate, Runstate.RUNNING);
});

void test(
  "add-fd with and without fdset-id, query-fdsets, remove-fd; a file and a pipe",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const pid = qemu.process.pid!;
    const dir = tempDir(t);
    const file = openFile(t, dir, "file");
    const pipe = openPipe(t, dir, "fifo");
    const client = testClient(t);
    await client.connect(qemu.socketPath);

    const r1 = asObject(await client.execute("add-fd", { "fdset-id": 7 }, { fds: [file.fd] }));
    assert.equal(r1["fdset-id"], 7);
    const fd1 = r1["fd"] as number;
    assert.deepEqual(qemuFdsOn(pid, file.path), [fd1], "QEMU's fd is our file");

    const r2 = asObject(await client.execute("add-fd", { opaque: "the pipe" }, { fds: [pipe.fd] }));
    const set2 = r2["fdset-id"] as number;
    const fd2 = r2["fd"] as number;
    assert.notEqual(set2, 7);
    assert.deepEqual(qemuFdsOn(pid, pipe.path), [fd2], "QEMU's fd is our pipe");

    // A second fd into set 7.
    const r3 = asObject(await client.execute("add-fd", { "fdset-id": 7 }, { fds: [pipe.fd] }));
    const fd3 = r3["fd"] as number;

    let sets = await fdsets(client);
    assert.deepEqual(
      sets
        .get(7)
        ?.map(([fd]) => fd)
        .sort(),
      [fd1, fd3].sort(),
    );
    assert.deepEqual(sets.get(set2), [[fd2, "the pipe"]]);

    assert.deepEqual(await client.execute("remove-fd", { "fdset-id": 7, fd: fd1 }), {});
    sets = await fdsets(client);
    assert.deepEqual(sets.get(7), [[fd3, undefined]]);
    assert.deepEqual(qemuFdsOn(pid, file.path), [], "remove-fd closed it (set not in use)");
    assert.deepEqual(await client.execute("remove-fd", { "fdset-id": set2 }), {});
    assert.equal((await fdsets(client)).has(set2), false);
    await assert.rejects(client.execute("remove-fd", { "fdset-id": set2 }), ExecuteError);
  },
);

void test("fds for concurrent commands each reach their own command", T, async (t) => {
  // With oob negotiated QEMU reads ahead of the commands it runs, and a new
  // fd replaces one not yet taken: the client makes fds wait for the replies
  // to the commands before them.
  const qemu = await startQemu(t);
  const pid = qemu.process.pid!;
  const dir = tempDir(t);
  const files = ["f0", "f1", "f2", "f3"].map((n) => openFile(t, dir, n));
  const client = testClient(t);
  await client.connect(qemu.socketPath);
  const replies = await Promise.all(
    files.map((f) => client.execute("add-fd", { "fdset-id": 3 }, { fds: [f.fd] })),
  );
  replies.forEach((r, i) => {
    assert.deepEqual(qemuFdsOn(pid, files[i]!.path), [asObject(r)["fd"]], files[i]!.path);
  });
});

void test("QEMU keeps only the first fd of a message", T, async (t) => {
  const qemu = await startQemu(t);
  const pid = qemu.process.pid!;
  const dir = tempDir(t);
  const first = openFile(t, dir, "first");
  const second = openFile(t, dir, "second");
  const client = testClient(t);
  await client.connect(qemu.socketPath);
  const r = asObject(await client.execute("add-fd", {}, { fds: [first.fd, second.fd] }));
  assert.deepEqual(qemuFdsOn(pid, first.path), [r["fd"]]);
  assert.deepEqual(qemuFdsOn(pid, second.path), [], "the second fd was closed by QEMU");
});

void test(
  "named fds survive a reconnect; unused fd sets are dropped with it before QEMU 9.1",
  T,
  async (t) => {
    const qemu = await startQemu(t);
    const pid = qemu.process.pid!;
    // QEMU drops unused fd sets when its last monitor connection closes: close
    // the helper's readiness monitor (fd 3), so that ours is the only one.
    const ready = qemu.process.stdio[3] as Socket;
    const readyClosed = new Promise((resolve) => ready.once("close", resolve));
    ready.destroy();
    await readyClosed;
    const dir = tempDir(t);
    const named = openFile(t, dir, "named");
    const inSet = openFile(t, dir, "inset");
    const client = testClient(t);
    await client.connect(qemu.socketPath);
    await client.execute("getfd", { fdname: "keep" }, { fds: [named.fd] });
    const r = asObject(await client.execute("add-fd", { "fdset-id": 9 }, { fds: [inSet.fd] }));
    assert.deepEqual(qemuFdsOn(pid, inSet.path), [r["fd"]]);
    await client.disconnect();

    await client.connect(qemu.socketPath);
    const [major, minor] = await qemuVersion();
    if (major < 9 || (major === 9 && minor < 1)) {
      // Before 9.1, an fd set not in use is dropped when the last monitor connection closes.
      assert.equal((await fdsets(client)).has(9), false);
      assert.deepEqual(qemuFdsOn(pid, inSet.path), []);
    } else {
      // Since 9.1, fd sets stay until remove-fd.
      assert.deepEqual((await fdsets(client)).get(9), [[r["fd"], undefined]]);
      assert.deepEqual(qemuFdsOn(pid, inSet.path), [r["fd"]]);
      await client.execute("remove-fd", { "fdset-id": 9 });
      assert.deepEqual(qemuFdsOn(pid, inSet.path), []);
    }
    // The named fd is still there.
    assert.equal(qemuFdsOn(pid, named.path).length, 1);
    assert.deepEqual(await client.execute("closefd", { fdname: "keep" }), {});
    assert.deepEqual(qemuFdsOn(pid, named.path), []);
  },
);

void test("server mode: QEMU connects to us and takes fds", T, async (t) => {
  const dir = tempDir(t);
  const path = join(dir, "listen.sock");
  const file = openFile(t, dir, "file");
  const client = testClient(t);
  await client.startServer(path);
  const [qemu] = await Promise.all([
    startQemu(t, {
      qmpSocket: false,
      args: ["-chardev", `socket,id=c,path=${path}`, "-mon", "chardev=c,mode=control"],
    }),
    client.accept(),
  ]);
  const pid = qemu.process.pid!;
  assert.equal(client.runstate, Runstate.RUNNING);
  await client.execute("getfd", { fdname: "srv" }, { fds: [file.fd] });
  assert.equal(qemuFdsOn(pid, file.path).length, 1);
  const r = asObject(await client.execute("add-fd", { "fdset-id": 2 }, { fds: [file.fd] }));
  assert.ok((await fdsets(client)).get(2)?.some(([fd]) => fd === r["fd"]));
  assert.equal(qemuFdsOn(pid, file.path).length, 2);
  await client.execute("closefd", { fdname: "srv" });
  assert.deepEqual(qemuFdsOn(pid, file.path), [r["fd"]]);
});
