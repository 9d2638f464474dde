// Addresses and byte streams: connecting to UNIX and TCP sockets (listening is in listener.ts).
//
// This is the seam where TLS and file-descriptor passing plug in: everything
// above it sees a Duplex.

import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { SessionEndedError, TransportError } from "./errors.js";
import type { Abortable } from "./util.js";

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

export function isInet(address: SocketAddress): address is InetAddress {
  return typeof address === "object" && "port" in address && "host" in address;
}

function isUnix(address: SocketAddress): address is string | UnixAddress {
  return typeof address === "string" || ("path" in address && typeof address.path === "string");
}

export function unixPath(address: string | UnixAddress): string {
  return typeof address === "string" ? address : address.path;
}

/** Run `fn` until it settles or `signal` aborts; on abort, `cleanup` and reject with the reason. */
export function abortable<T>(
  signal: Abortable | undefined,
  fn: (resolve: (v: T) => void, reject: (e: unknown) => void) => void,
  cleanup: () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) {
      cleanup();
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      cleanup();
      reject(signal!.reason);
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
  signal?: Abortable,
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
        return Promise.reject(new TransportError("The given stream is already destroyed"));
      return signal?.aborted ? Promise.reject(signal.reason) : Promise.resolve(socket);
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
