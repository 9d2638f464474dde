// Binding a server's socket safely: a UNIX socket put in place with no window for others to
// connect before its mode is set, never over a file that is not ours; or a TCP port.

import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, type Stats, unlinkSync } from "node:fs";
import { chmod, link, lstat, mkdir, rename, rm, unlink } from "node:fs/promises";
import net from "node:net";
import { dirname, join } from "node:path";
import { AddressInUseError } from "./errors.js";
import {
  type InetAddress,
  type UnixAddress,
  formatAddress,
  isInet,
  unixPath,
} from "./transport.js";

/**
 * Test seam, not part of the package's API: `beforePlace` runs after the
 * path was checked and before the socket is put there, so that a test can
 * make a file appear in that window.
 *
 * @internal
 */
export const listenHooks: { beforePlace?: (path: string) => void | Promise<void> } = {};

/** How many times the path is checked again when files keep appearing at it. */
const PLACE_ATTEMPTS = 5;

export function errnoCode(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}

/**
 * Connect to the UNIX socket at `path` and hang up: `"live"` when it
 * accepts, `"stale"` when refused (a socket file nobody listens on), `"gone"`
 * when the file vanished meanwhile, else the connect error (`EAGAIN`: a
 * listener whose backlog is full; `EACCES`, …).
 */
function probeUnix(path: string): Promise<"live" | "stale" | "gone" | Error> {
  return new Promise((resolve) => {
    const s = net.connect({ path });
    // `on`, not `once`: the socket must never be left without an error listener.
    s.on("error", (err: Error) => {
      const code = errnoCode(err);
      resolve(code === "ECONNREFUSED" ? "stale" : code === "ENOENT" ? "gone" : err);
    });
    s.once("connect", () => {
      s.destroy();
      resolve("live");
    });
  });
}

/**
 * What is at `path`: `"none"`, or `"stale"` for a socket file nobody listens
 * on (connecting is refused).
 *
 * @throws {AddressInUseError} for a live listener (also one whose backlog is
 *   full), a socket we cannot probe, or a file that is not a socket.
 */
async function inspectPath(path: string): Promise<"none" | "stale"> {
  let stats: Stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return "none";
    throw err;
  }
  if (!stats.isSocket()) {
    throw new AddressInUseError(
      `Cannot listen on ${path}: a file that is not a socket is in the way (it is left alone)`,
      path,
    );
  }
  const probe = await probeUnix(path);
  if (probe === "stale") return "stale";
  if (probe === "gone") return "none";
  if (probe === "live") {
    throw new AddressInUseError(`Cannot listen on ${path}: a live listener owns it`, path);
  }
  const why =
    errnoCode(probe) === "EAGAIN"
      ? "a live listener owns it (its backlog is full)"
      : "it may be in use (connecting to it failed other than by a refusal)";
  throw new AddressInUseError(`Cannot listen on ${path}: ${why}`, path, { cause: probe });
}

/** The same file: inode, device and type (an inode number is reused once freed). */
function sameFile(a: Stats, b: Stats): boolean {
  return a.ino === b.ino && a.dev === b.dev && (a.mode & 0o170000) === (b.mode & 0o170000);
}

/**
 * Remove the stale socket at `path`, unless something else took its place
 * since it was probed. Moving the file into our private directory is atomic,
 * so what we then check is exactly what we took: a socket that still refuses
 * connections is deleted; anything else (a file, a new live socket, even one
 * that reuses the old inode number) is put back with `link`, which never
 * overwrites. Resolves `false` when the path must be checked again.
 *
 * @throws {AddressInUseError} in the unlikely case that what we took cannot be
 *   put back because yet another file appeared: it is left at `aside`.
 */
async function removeStale(path: string, aside: string): Promise<boolean> {
  try {
    await rename(path, aside);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return true;
    throw err;
  }
  const taken = await lstat(aside);
  if (taken.isSocket() && (await probeUnix(aside)) === "stale") {
    await unlink(aside);
    return true;
  }
  try {
    if (taken.isDirectory()) await rename(aside, path);
    else await link(aside, path);
  } catch (err) {
    throw new AddressInUseError(
      `Cannot listen on ${path}: files kept appearing at that path; one that appeared ` +
        `while the stale socket was being removed is now at ${aside}`,
      path,
      { cause: err },
    );
  }
  if (!taken.isDirectory()) await unlink(aside);
  return false;
}

/**
 * Put the bound socket `tmp` at `path` without ever overwriting what is
 * there: `link` fails with `EEXIST` if a file appeared since the check, and
 * the check is then done again.
 */
async function place(tmp: string, path: string, aside: string): Promise<void> {
  for (let attempt = 0; attempt < PLACE_ATTEMPTS; attempt++) {
    const found = await inspectPath(path);
    await listenHooks.beforePlace?.(path);
    if (found === "stale" && !(await removeStale(path, aside))) continue;
    try {
      await link(tmp, path);
      return;
    } catch (err) {
      if (errnoCode(err) !== "EEXIST") throw err;
    }
  }
  throw new AddressInUseError(
    `Cannot listen on ${path}: other files kept appearing at that path`,
    path,
  );
}

/**
 * A server's listening socket: {@link bind} puts it at its address,
 * {@link close} stops it and removes a UNIX socket file if it is still ours.
 * `close()` may come at any time, also while `bind()` runs.
 */
export class BoundSocket {
  readonly #server: net.Server;
  readonly #unixPath: string | undefined;
  /** Our socket file, to remove it only if it is still ours. */
  #unixFile: Stats | undefined;

  constructor(server: net.Server, address: string | UnixAddress | InetAddress) {
    this.#server = server;
    this.#unixPath = isInet(address) ? undefined : unixPath(address);
    this.#address = address;
  }

  readonly #address: string | UnixAddress | InetAddress;

  /**
   * Listen. A UNIX socket is bound inside a private directory and given
   * `mode` there, so nobody can connect before its mode is set; then it is
   * hard-linked into place, which fails rather than overwrite a file that
   * appeared meanwhile (the path is then checked again, a few times at
   * most). A stale socket file (connecting is refused) is replaced, and only
   * if it still refuses connections once it is moved aside: whatever else
   * took its place meanwhile is put back.
   *
   * @throws {AddressInUseError} when a live listener owns the path or port
   *   (also one whose backlog is full), or a file that is not a socket is in
   *   the way (it is never deleted); other socket and file-system errors
   *   (`ENOENT` for a missing directory, `EACCES`, …) as they come.
   */
  async bind(
    options: { mode?: number | undefined; backlog?: number | undefined } = {},
  ): Promise<void> {
    const server = this.#server;
    const backlog = options.backlog ?? 511;
    const address = this.#address;
    if (isInet(address)) {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error): void => {
          if (errnoCode(err) !== "EADDRINUSE") {
            reject(err);
            return;
          }
          const where = formatAddress(address);
          reject(
            new AddressInUseError(`Cannot listen on ${where}: the port is in use`, where, {
              cause: err,
            }),
          );
        };
        server.once("error", onError);
        server.listen({ host: address.host, port: address.port, backlog }, () => {
          server.off("error", onError);
          resolve();
        });
      });
      return;
    }
    const path = this.#unixPath!;
    // Fail early, before binding anything, when the path is plainly taken.
    await inspectPath(path);
    const dir = join(dirname(path), `.qmp-${randomBytes(6).toString("hex")}`);
    await mkdir(dir, { mode: 0o700 });
    let keepDir = false;
    try {
      const tmp = join(dir, "s");
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ path: tmp, backlog }, () => {
          server.off("error", reject);
          resolve();
        });
      });
      try {
        await chmod(tmp, options.mode ?? 0o600);
        // The link keeps the inode: it identifies our file for removal.
        this.#unixFile = await lstat(tmp);
        await place(tmp, path, join(dir, "aside"));
      } catch (err) {
        this.#unixFile = undefined;
        server.close();
        if (err instanceof AddressInUseError && existsSync(join(dir, "aside"))) keepDir = true;
        throw err;
      }
    } finally {
      if (keepDir) await rm(join(dir, "s"), { force: true });
      else await rm(dir, { recursive: true, force: true });
    }
  }

  /** The address actually bound (with the real port when 0 was asked for). */
  get address(): string | InetAddress {
    if (this.#unixPath !== undefined) return this.#unixPath;
    const a = this.#server.address() as net.AddressInfo | null;
    return a === null ? { host: "", port: 0 } : { host: a.address, port: a.port };
  }

  /** Stop listening and remove the socket file, if it is still ours (idempotent). */
  close(): void {
    if (this.#server.listening) this.#server.close();
    const path = this.#unixPath;
    const ours = this.#unixFile;
    if (path === undefined || ours === undefined) return;
    this.#unixFile = undefined;
    try {
      if (sameFile(lstatSync(path), ours)) unlinkSync(path);
    } catch {
      // Already gone.
    }
  }
}
