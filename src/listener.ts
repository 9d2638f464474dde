// Listening for exactly one peer: a UNIX socket put in place with no window for
// others, or a TCP port; TLS served to QEMU as a client.

import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, type Stats, unlinkSync } from "node:fs";
import { chmod, link, lstat, mkdir, rename, rm, unlink } from "node:fs/promises";
import net from "node:net";
import { dirname, join } from "node:path";
import tls from "node:tls";
import { AddressInUseError, TransportError } from "./errors.js";
import {
  type InetAddress,
  type UnixAddress,
  abortable,
  checkTlsAddress,
  formatAddress,
  isInet,
  unixPath,
} from "./transport.js";

/** Options of {@link Listener.listen}. */
export interface ListenOptions {
  /** Mode of a UNIX socket file; default `0o600` (owner only). */
  mode?: number;
  /**
   * Serve TLS (TCP only) to a QEMU that connects as a TLS client: Node's
   * `tls.TlsOptions` (`key`/`cert`; `requestCert` and `ca` to require and
   * verify the peer's certificate, rejected unless `rejectUnauthorized: false`).
   */
  tls?: tls.TlsOptions | undefined;
}

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

function errnoCode(err: unknown): unknown {
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
 * The peer's TLS handshake failed, or its certificate was rejected. The
 * latter has the shape of the error `tls.connect()` gives for the same
 * failure (`code` is Node's verification code), so that `connect()` and
 * `accept()` report a refused certificate alike.
 */
function peerTlsError(err: Error, socket: tls.TLSSocket): Error {
  const reason = socket.authorizationError as unknown as string | Error | null | undefined;
  if (reason === null || reason === undefined) return err;
  const code = typeof reason === "string" ? reason : String((reason as { code?: unknown }).code);
  const text = typeof reason === "string" ? reason : reason.message;
  return Object.assign(new Error(`The peer's certificate was rejected: ${text}`, { cause: err }), {
    code,
  });
}

/** A connection that failed (was reset) rather than one whose TLS handshake was refused. */
function isReset(err: Error): boolean {
  const code = errnoCode(err);
  return code === "ECONNRESET" || code === "EPIPE";
}

// A socket must never emit 'error' with no listener: that would crash the process.
const ignoreError = (): void => {};

/**
 * A listening socket that hands out exactly one peer.
 *
 * The first connection becomes the candidate; any other connection while
 * there is a candidate is closed at once. With TLS, the candidate is ready
 * once its handshake is done. The listener keeps listening until
 * {@link accept} takes the candidate (then it stops, and a UNIX socket file
 * is removed) or {@link close} is called.
 *
 * A candidate whose connection fails (is reset) before `accept()` takes it
 * is dropped, and the next connection becomes the candidate: a port scanner
 * or a QEMU that went away does not spoil the wait for the real peer. A
 * candidate that closed cleanly is still handed out (its data may be all it
 * had to say): the session then ends at once and says so. A TLS handshake
 * that fails in any other way (a certificate rejected, a TLS alert, a peer
 * that does not speak TLS) ends the wait with that error.
 */
export class Listener {
  readonly #server: net.Server;
  readonly #unixPath: string | undefined;
  /** Our socket file, to remove it only if it is still ours. */
  #unixFile: Stats | undefined;
  /** The first live connection (raw TCP under TLS until its handshake is done). */
  #candidate: net.Socket | undefined;
  /** The candidate, ready for a session. */
  #ready: net.Socket | undefined;
  /** Why no peer can be had (the candidate's TLS handshake failed). */
  #failure: Error | undefined;
  #waiter: { resolve: (s: net.Socket) => void; reject: (e: unknown) => void } | undefined;
  #taken = false;
  #closed = false;

  private constructor(
    server: net.Server,
    unixPath: string | undefined,
    tlsOptions?: tls.TlsOptions,
  ) {
    this.#server = server;
    this.#unixPath = unixPath;
    // TLS: a server that never listens does the handshake of the candidates
    // we hand it, so that its events are about those sockets only.
    const tlsServer = tlsOptions !== undefined ? tls.createServer(tlsOptions) : undefined;
    tlsServer?.on("secureConnection", (socket: tls.TLSSocket) => {
      socket.on("error", ignoreError);
      // Already dead: the raw socket's 'close' drops the candidate.
      if (socket.destroyed) return;
      this.#watch(socket);
      this.#offer(socket);
    });
    tlsServer?.on("tlsClientError", (err, socket) => {
      socket.destroy();
      // A reset (with no certificate refused) is a dead candidate like any
      // other: the raw socket's 'close' drops it.
      const error = peerTlsError(err, socket);
      if (error !== err || !isReset(err)) this.#fail(error);
    });
    server.on("connection", (socket: net.Socket) => {
      socket.on("error", ignoreError);
      if (this.#candidate !== undefined || this.#done) {
        socket.destroy();
        return;
      }
      this.#candidate = socket;
      this.#watch(socket);
      if (tlsServer !== undefined) tlsServer.emit("connection", socket);
      else this.#offer(socket);
    });
    // Errors after listen() (rare: EMFILE on accept) must not crash the process.
    server.on("error", ignoreError);
  }

  get #done(): boolean {
    return this.#taken || this.#closed || this.#failure !== undefined;
  }

  /** Drop `socket` as the candidate when it dies before it is taken. */
  #watch(socket: net.Socket): void {
    const onClose = (): void => {
      socket.off("close", onClose);
      this.#drop(socket);
    };
    socket.on("close", onClose);
  }

  #drop(socket: net.Socket): void {
    if (this.#taken || (socket !== this.#candidate && socket !== this.#ready)) return;
    // Under TLS the ready socket wraps the raw candidate: both go together.
    const candidate = this.#candidate;
    const ready = this.#ready;
    this.#candidate = undefined;
    this.#ready = undefined;
    candidate?.destroy();
    ready?.destroy();
  }

  #offer(socket: net.Socket): void {
    if (this.#done) {
      socket.destroy();
      return;
    }
    this.#ready = socket;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter !== undefined) waiter.resolve(this.#take(socket));
  }

  #fail(error: Error): void {
    if (this.#done) return;
    this.#failure = error;
    this.#stopListening();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(error);
  }

  /** Hand `socket` out: from now on its fate is the caller's (our error listener stays). */
  #take(socket: net.Socket): net.Socket {
    this.#taken = true;
    this.#stopListening();
    return socket;
  }

  /**
   * Listen on `address`. A UNIX socket is bound inside a private directory
   * and given `mode` there, so nobody can connect before its mode is set;
   * then it is hard-linked into place, which fails rather than overwrite a
   * file that appeared meanwhile (the path is then checked again, a few
   * times at most). A stale socket file (connecting is refused) is
   * replaced, and only if it still refuses connections once it is moved
   * aside: whatever else took its place meanwhile is put back.
   *
   * @throws {AddressInUseError} when a live listener owns the path or port
   *   (also one whose backlog is full), or a file that is not a socket is in
   *   the way (it is never deleted); other socket and file-system errors
   *   (`ENOENT` for a missing directory, `EACCES`, …) as they come.
   */
  static async listen(
    address: string | UnixAddress | InetAddress,
    options: ListenOptions = {},
  ): Promise<Listener> {
    if (options.tls !== undefined) checkTlsAddress(address);
    // Bad TLS options (a key that does not parse, …) fail here, before binding.
    if (options.tls !== undefined) tls.createSecureContext(options.tls);
    const server = net.createServer({ pauseOnConnect: false });
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
        server.listen({ host: address.host, port: address.port, backlog: 1 }, () => {
          server.off("error", onError);
          resolve();
        });
      });
      return new Listener(server, undefined, options.tls);
    }
    const path = unixPath(address);
    // Fail early, before binding anything, when the path is plainly taken.
    await inspectPath(path);
    const dir = join(dirname(path), `.qmp-${randomBytes(6).toString("hex")}`);
    await mkdir(dir, { mode: 0o700 });
    // Take connections from the moment the path is visible: a peer may
    // connect as soon as the socket is in place, before we return.
    const listener = new Listener(server, path);
    let keepDir = false;
    try {
      const tmp = join(dir, "s");
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen({ path: tmp, backlog: 1 }, () => {
          server.off("error", reject);
          resolve();
        });
      });
      try {
        await chmod(tmp, options.mode ?? 0o600);
        // The link keeps the inode: it identifies our file for removal.
        listener.#unixFile = await lstat(tmp);
        await place(tmp, path, join(dir, "aside"));
      } catch (err) {
        listener.#unixFile = undefined;
        server.close();
        if (err instanceof AddressInUseError && existsSync(join(dir, "aside"))) keepDir = true;
        throw err;
      }
    } finally {
      if (keepDir) await rm(join(dir, "s"), { force: true });
      else await rm(dir, { recursive: true, force: true });
    }
    return listener;
  }

  /** The address actually bound (with the real port when 0 was asked for). */
  get address(): string | InetAddress {
    if (this.#unixPath !== undefined) return this.#unixPath;
    const a = this.#server.address() as net.AddressInfo | null;
    return a === null ? { host: "", port: 0 } : { host: a.address, port: a.port };
  }

  /**
   * Take the peer: the candidate if it is ready, else the next one. With
   * TLS, a peer is ready once its handshake is done and its certificate (if
   * asked for) verified. Once a peer is taken, the listener stops. A
   * candidate that was reset before it was taken is dropped and the wait
   * goes on (see {@link Listener}).
   *
   * @throws the signal's reason on abort.
   * @throws {TransportError} when the listener was closed, or a peer was
   *   already taken.
   * @throws the peer's TLS error: its certificate rejected (`code` is
   *   Node's verification code, e.g. `UNABLE_TO_VERIFY_LEAF_SIGNATURE`), or
   *   Node's error (`ERR_SSL_…`).
   */
  accept(signal?: AbortSignal): Promise<net.Socket> {
    if (signal?.aborted) return Promise.reject(signal.reason as unknown);
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new TransportError("The listener is closed"));
    if (this.#taken) return Promise.reject(new TransportError("The peer was already taken"));
    const ready = this.#ready;
    if (ready !== undefined && !ready.destroyed) return Promise.resolve(this.#take(ready));
    if (ready !== undefined) this.#drop(ready);
    return abortable<net.Socket>(
      signal,
      (resolve, reject) => {
        this.#waiter = { resolve, reject };
      },
      () => {
        this.#waiter = undefined;
      },
    );
  }

  #stopListening(): void {
    if (!this.#server.listening) return;
    this.#server.close();
    this.#removeSocketFile();
  }

  #removeSocketFile(): void {
    const path = this.#unixPath;
    const ours = this.#unixFile;
    if (path === undefined || ours === undefined) return;
    this.#unixFile = undefined;
    // Remove the file only if it is still ours.
    try {
      if (sameFile(lstatSync(path), ours)) unlinkSync(path);
    } catch {
      // Already gone.
    }
  }

  /**
   * Stop listening, remove the socket file, and drop a peer not yet taken by
   * `accept()` (a taken one too, unless `keepPeer`). A pending `accept()`
   * rejects with a {@link TransportError}.
   */
  close(options: { keepPeer?: boolean } = {}): void {
    this.#closed = true;
    this.#stopListening();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(new TransportError("The listener is closed"));
    if (!this.#taken || !options.keepPeer) {
      this.#ready?.destroy();
      this.#candidate?.destroy();
    }
  }
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
