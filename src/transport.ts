// Addresses and byte streams: connecting to UNIX and TCP sockets, and listening for one peer.
//
// This is the seam where TLS and file-descriptor passing plug in: everything
// above it sees a Duplex.

import { randomBytes } from "node:crypto";
import { statSync, unlinkSync } from "node:fs";
import { chmod, lstat, mkdir, rename, rm, stat } from "node:fs/promises";
import net from "node:net";
import { dirname, join } from "node:path";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { SessionEndedError } from "./errors.js";

/** A TCP address. */
export interface InetAddress {
  host: string;
  port: number;
}

/** A UNIX socket address given as an object. */
export interface UnixAddress {
  path: string;
}

/**
 * Where to connect or listen: a UNIX socket path, `{ path }`, `{ host, port }`,
 * or (for `connect()` only) an already-connected socket or any `Duplex`.
 */
export type SocketAddress = string | UnixAddress | InetAddress | Duplex;

/**
 * TLS for `connect()`: `true` for the defaults (the system's CAs), or Node's
 * `tls.ConnectionOptions` (`ca`, `cert`/`key` for a client certificate,
 * `servername`, …). The peer is verified unless `rejectUnauthorized: false`.
 */
export type TlsConnectOptions = true | tls.ConnectionOptions;

/**
 * Check that TLS is asked for on a TCP address: QEMU serves TLS on TCP only,
 * and a given stream is used as it is.
 *
 * @throws {TypeError} for a UNIX socket address or a stream.
 */
export function checkTlsAddress(address: SocketAddress): void {
  if (typeof address === "object" && isInet(address)) return;
  const what = isUnix(address)
    ? `a UNIX socket (${unixPath(address)}); QEMU serves TLS on TCP only`
    : "a stream, which is used as it is (connect it with tls.connect() and pass the TLSSocket)";
  throw new TypeError(`The tls option needs a TCP address { host, port }, not ${what}`);
}

/**
 * Parse an address as typed on a command line: `"/path/to/sock"`,
 * `"host:port"`, `"[::1]:port"`. Anything that starts with `/` or `.`, or has
 * no colon, is a UNIX socket path.
 *
 * @throws {TypeError} when the address is empty, the port is not a number
 *   from 0 to 65535, a bracketed IPv6 address is malformed, or an IPv6
 *   address is not bracketed (`a:b:c` is ambiguous; the Python CLI takes it
 *   as a path, we say what to write instead).
 */
export function parseAddress(text: string): string | InetAddress {
  if (text.trim() === "") throw new TypeError("Invalid address: it is empty");
  if (text.startsWith("/") || text.startsWith(".") || !text.includes(":")) return text;
  let host: string;
  let port: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close === -1 || text[close + 1] !== ":") {
      throw new TypeError(`Invalid address '${text}': expected '[ipv6]:port'`);
    }
    host = text.slice(1, close);
    port = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(":");
    host = text.slice(0, colon);
    port = text.slice(colon + 1);
    if (host.includes(":")) {
      throw new TypeError(`Invalid address '${text}': write IPv6 addresses as '[${host}]:${port}'`);
    }
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) {
    throw new TypeError(
      `Invalid address '${text}': port '${port}' is not a number from 0 to 65535`,
    );
  }
  return { host: host === "" ? "localhost" : host, port: Number(port) };
}

/** Human-readable form of an address, for logs and error messages. */
export function formatAddress(address: SocketAddress): string {
  if (typeof address === "string") return address;
  if ("path" in address && typeof address.path === "string") return address.path;
  if ("host" in address && "port" in address) {
    const { host, port } = address;
    return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  }
  return "<stream>";
}

function isInet(address: SocketAddress): address is InetAddress {
  return typeof address === "object" && "port" in address && "host" in address;
}

function isUnix(address: SocketAddress): address is string | UnixAddress {
  return typeof address === "string" || ("path" in address && typeof address.path === "string");
}

function unixPath(address: string | UnixAddress): string {
  return typeof address === "string" ? address : address.path;
}

/** Run `fn` until it settles or `signal` aborts; on abort, `cleanup` and reject with the reason. */
function abortable<T>(
  signal: AbortSignal | undefined,
  fn: (resolve: (v: T) => void, reject: (e: unknown) => void) => void,
  cleanup: () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) {
      cleanup();
      reject(signal.reason as unknown);
      return;
    }
    const onAbort = (): void => {
      cleanup();
      reject(signal!.reason as unknown);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    fn(
      (v) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal?.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/**
 * Open a byte stream to `address`. A `Duplex` is used as it is (a socket
 * still connecting is waited for). With `tlsOptions` (TCP only), resolves
 * once the TLS handshake is done and the server verified; `servername`
 * defaults to the host when it is a name (an IP address is checked against
 * the certificate's IP subjectAltNames).
 *
 * @throws the socket's error (`ECONNREFUSED`, `ENOENT`, …), the TLS error
 *   (`UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `ERR_TLS_CERT_ALTNAME_INVALID`,
 *   `CERT_HAS_EXPIRED`, …), or the signal's reason on abort.
 * @throws {TypeError} for TLS on anything but a TCP address.
 */
export function openStream(
  address: SocketAddress,
  signal?: AbortSignal,
  tlsOptions?: TlsConnectOptions,
): Promise<Duplex> {
  let socket: Duplex;
  let ready = "connect";
  if (tlsOptions !== undefined) {
    checkTlsAddress(address);
    const { host, port } = address as InetAddress;
    const options = tlsOptions === true ? {} : tlsOptions;
    const servername = options.servername ?? (net.isIP(host) === 0 ? host : undefined);
    socket = tls.connect({
      ...options,
      host,
      port,
      ...(servername !== undefined ? { servername } : {}),
    });
    ready = "secureConnect";
  } else if (isInet(address)) {
    socket = net.connect({ host: address.host, port: address.port });
  } else if (isUnix(address)) {
    socket = net.connect({ path: unixPath(address) });
  } else {
    socket = address;
    if (!(socket instanceof net.Socket) || !socket.connecting) {
      if (socket.destroyed)
        return Promise.reject(new Error("The given stream is already destroyed"));
      return signal?.aborted ? Promise.reject(signal.reason as unknown) : Promise.resolve(socket);
    }
  }
  const sock = socket as net.Socket;
  return abortable<Duplex>(
    signal,
    (resolve, reject) => {
      const onError = (err: Error): void => {
        sock.off(ready, onConnect);
        sock.destroy();
        reject(err);
      };
      const onConnect = (): void => {
        sock.off("error", onError);
        resolve(sock);
      };
      sock.once("error", onError);
      sock.once(ready, onConnect);
    },
    () => sock.destroy(),
  );
}

/**
 * For a TLS stream about to carry a session: a function that tells whether an
 * error while the session is being established is really the TLS layer's (so
 * a connection failure), and gives the error to report. With TLS 1.3 the
 * server checks a client's certificate after the client's side of the
 * handshake is done: a TLS alert (`ERR_SSL_…`, e.g.
 * `ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED`) or a close before the peer
 * said a word (QEMU just hangs up) comes then. `undefined` for other streams.
 */
export function tlsSessionFailure(stream: Duplex): ((err: unknown) => unknown) | undefined {
  if (!(stream instanceof tls.TLSSocket)) return undefined;
  let heard = false;
  stream.once("data", () => (heard = true));
  return (err) => {
    const code = (err as { code?: unknown } | null)?.code;
    if (typeof code === "string" && code.startsWith("ERR_SSL_")) return err;
    if (heard || !(err instanceof SessionEndedError || code === "ECONNRESET")) return undefined;
    return new SessionEndedError(
      "The peer closed the TLS connection right after the handshake, before its greeting: " +
        "it may have refused our certificate (or the lack of one)",
      { cause: err },
    );
  };
}

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

function addressInUse(path: string): Error {
  return Object.assign(new Error(`listen EADDRINUSE: address already in use ${path}`), {
    code: "EADDRINUSE",
    path,
  });
}

/** Whether something accepts connections on the UNIX socket at `path`. */
function probeUnix(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** The peer's TLS handshake failed, or its certificate was rejected. */
function peerTlsError(err: Error, socket: tls.TLSSocket): Error {
  const reason = socket.authorizationError as unknown as string | Error | null | undefined;
  if (reason === null || reason === undefined) return err;
  const code = typeof reason === "string" ? reason : String((reason as { code?: unknown }).code);
  const text = typeof reason === "string" ? reason : reason.message;
  return Object.assign(new Error(`The peer's certificate was rejected: ${text}`, { cause: err }), {
    code,
  });
}

/**
 * A listening socket that accepts exactly one peer: the first connection is
 * kept, the listener stops at once, and any connection racing with it is
 * closed. With TLS, the peer is ready once its handshake is done.
 */
export class Listener {
  readonly #server: net.Server;
  readonly #unixPath: string | undefined;
  #unixIno: number | undefined;
  /** The first connection (raw TCP under TLS, until the handshake is done). */
  #peer: net.Socket | undefined;
  /** The peer, ready for a session; or why it cannot be had. */
  #result: { socket: net.Socket } | { error: Error } | undefined;
  #waiter: { resolve: (s: net.Socket) => void; reject: (e: unknown) => void } | undefined;
  #closed = false;

  private constructor(
    server: net.Server,
    unixPath: string | undefined,
    tlsOptions?: tls.TlsOptions,
  ) {
    this.#server = server;
    this.#unixPath = unixPath;
    // TLS: a server that never listens does the handshake of the one peer
    // we hand it, so that its events are about that peer only.
    const tlsServer = tlsOptions !== undefined ? tls.createServer(tlsOptions) : undefined;
    tlsServer?.on("secureConnection", (socket) => this.#settle({ socket }));
    tlsServer?.on("tlsClientError", (err, socket) => {
      socket.destroy();
      this.#settle({ error: peerTlsError(err, socket) });
    });
    server.on("connection", (socket) => {
      if (this.#peer !== undefined || this.#closed) {
        socket.destroy();
        return;
      }
      this.#peer = socket;
      this.#stopListening();
      if (tlsServer !== undefined) tlsServer.emit("connection", socket);
      else this.#settle({ socket });
    });
    // Errors after listen() (rare: EMFILE on accept) must not crash the process.
    server.on("error", () => {});
  }

  #settle(result: { socket: net.Socket } | { error: Error }): void {
    if (this.#result !== undefined) return;
    this.#result = result;
    if ("socket" in result) this.#peer = result.socket;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (waiter === undefined) return;
    if ("socket" in result) waiter.resolve(result.socket);
    else waiter.reject(result.error);
  }

  /**
   * Listen on `address`. A UNIX socket is bound inside a private directory,
   * given `mode`, then renamed into place, so nobody can connect before its
   * mode is set. A stale socket file (nobody listening) is replaced.
   *
   * @throws an `EADDRINUSE` error when a live listener owns the path or port;
   *   an `EEXIST` error when a non-socket file is in the way (it is never
   *   deleted); other socket errors as they come.
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
        server.once("error", reject);
        server.listen({ host: address.host, port: address.port, backlog: 1 }, () => {
          server.off("error", reject);
          resolve();
        });
      });
      return new Listener(server, undefined, options.tls);
    }
    const path = unixPath(address);
    const existing = await lstat(path).catch(() => undefined);
    if (existing !== undefined) {
      if (!existing.isSocket()) {
        throw Object.assign(
          new Error(`Refusing to listen on ${path}: a file that is not a socket is in the way`),
          { code: "EEXIST", path },
        );
      }
      if (await probeUnix(path)) throw addressInUse(path);
    }
    const dir = join(dirname(path), `.qmp-${randomBytes(6).toString("hex")}`);
    await mkdir(dir, { mode: 0o700 });
    // Take connections from the moment the path is visible: a peer may
    // connect as soon as the rename below is done, before we return.
    const listener = new Listener(server, path);
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
        // A live listener may have appeared since the probe; do not steal its path.
        if (existing === undefined && (await lstat(path).catch(() => undefined)) !== undefined) {
          if (await probeUnix(path)) throw addressInUse(path);
        }
        // The rename keeps the inode: it identifies our file for removal.
        listener.#unixIno = (await stat(tmp)).ino;
        await rename(tmp, path);
      } catch (err) {
        server.close();
        throw err;
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
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
   * Wait for the one peer (or take the one that already came); with TLS,
   * until its handshake is done and its certificate (if asked for) verified.
   *
   * @throws the signal's reason on abort; an error if the listener was
   *   closed; the peer's TLS error (its certificate rejected: `code` is
   *   Node's verification code, e.g. `UNABLE_TO_VERIFY_LEAF_SIGNATURE`).
   */
  accept(signal?: AbortSignal): Promise<net.Socket> {
    const result = this.#result;
    if (result !== undefined) {
      if (signal?.aborted) return Promise.reject(signal.reason as unknown);
      return "socket" in result ? Promise.resolve(result.socket) : Promise.reject(result.error);
    }
    if (this.#closed) return Promise.reject(new Error("The listener is closed"));
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
    const ino = this.#unixIno;
    if (path === undefined || ino === undefined) return;
    this.#unixIno = undefined;
    // Remove the file only if it is still ours.
    try {
      if (statSync(path).ino === ino) unlinkSync(path);
    } catch {
      // Already gone.
    }
  }

  /** Stop listening, remove the socket file, and drop a peer not yet taken by `accept()`. */
  close(options: { keepPeer?: boolean } = {}): void {
    this.#closed = true;
    this.#stopListening();
    if (!options.keepPeer) this.#peer?.destroy();
  }
}
