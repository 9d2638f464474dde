// Listening for exactly one peer (on a socket bound by bind.ts); TLS served to QEMU as a client.

import net from "node:net";
import tls from "node:tls";
import { BoundSocket, errnoCode } from "./bind.js";
import { TransportError } from "./errors.js";
import { type InetAddress, type UnixAddress, abortable, checkTlsAddress } from "./transport.js";

export { listenHooks } from "./bind.js";

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
  readonly #bound: BoundSocket;
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
    address: string | UnixAddress | InetAddress,
    tlsOptions?: tls.TlsOptions,
  ) {
    this.#bound = new BoundSocket(server, address);
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
    // Take connections from the moment the socket is visible: a peer may
    // connect as soon as it is in place, before we return.
    const listener = new Listener(server, address, options.tls);
    await listener.#bound.bind({ mode: options.mode, backlog: 1 });
    return listener;
  }

  /** The address actually bound (with the real port when 0 was asked for). */
  get address(): string | InetAddress {
    return this.#bound.address;
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
    this.#bound.close();
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
