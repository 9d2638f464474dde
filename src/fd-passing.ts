// Passing file descriptors to the peer with SCM_RIGHTS over a UNIX socket.
//
// Node's sockets cannot send ancillary data, so `sendmsg(2)` is called through
// the optional FFI package `koffi`, which ships prebuilt binaries inside its
// registry packages (no compiler, no download at install time). It is loaded
// on first use only; when it is missing, everything else works and fd passing
// fails with an FdPassingError that says what to install.

import { constants as osConstants } from "node:os";
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { FdPassingError } from "./errors.js";

/** The result of one `sendmsg(2)`: bytes sent, or -1 with `errno`. */
export interface SendmsgResult {
  sent: number;
  errno: number;
}

/** What the writer needs from the native side: one `sendmsg` of `data` with `fds`. */
export interface FdSender {
  sendmsg(socketFd: number, data: Buffer, fds: readonly number[]): SendmsgResult;
}

/** Loads the native side; rejects when it is not available. */
export type FdSenderLoader = () => Promise<FdSender>;

// ------------------------------------------------------------ the transport

/**
 * The file descriptor under a connected UNIX-domain `net.Socket`, or why
 * there is none.
 *
 * Node has no public API for this: a `net.Socket` keeps its libuv handle in
 * the undocumented `_handle` property, a `Pipe` for UNIX sockets (a `TCP`
 * for TCP, a `TLSWrap` for TLS), whose `fd` property is the descriptor on
 * POSIX systems. This is the only place that looks at those internals; every
 * property is checked, so a future Node that changes them gives a clear
 * error, never a wrong fd.
 */
export function unixSocketFd(stream: Duplex | undefined): number | { reason: string } {
  if (stream === undefined) return { reason: "there is no connection" };
  if (stream instanceof tls.TLSSocket) {
    return { reason: "this session runs over TLS; QEMU takes fds on a UNIX socket only" };
  }
  if (!(stream instanceof net.Socket)) {
    return { reason: "this session runs over a stream that is not a socket" };
  }
  const handle: unknown = Reflect.get(stream, "_handle");
  if (!isHandleWithFd(handle)) {
    return { reason: "the socket has no open descriptor (it is closed or not a native socket)" };
  }
  if (handle.constructor.name !== "Pipe") {
    const kind = handle.constructor.name === "TCP" ? "TCP" : `a ${handle.constructor.name}`;
    return { reason: `this session runs over ${kind}; fds can only be passed on a UNIX socket` };
  }
  return handle.fd;
}

/** A libuv handle object with a numeric, open `fd`. */
function isHandleWithFd(value: unknown): value is { fd: number; constructor: { name: string } } {
  if (typeof value !== "object" || value === null) return false;
  const fd: unknown = Reflect.get(value, "fd");
  const ctor: unknown = Reflect.get(value, "constructor");
  return (
    typeof fd === "number" &&
    Number.isInteger(fd) &&
    fd >= 0 &&
    typeof ctor === "function" &&
    typeof ctor.name === "string"
  );
}

/**
 * `undefined` when this platform can pass fds, else why not. The message
 * layout below is Linux's (glibc or musl) on a little-endian CPU.
 */
export function platformProblem(): string | undefined {
  if (process.platform !== "linux") {
    return `fd passing is implemented for Linux only (this is ${process.platform})`;
  }
  if (
    osConstants.errno.EAGAIN === undefined ||
    new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1
  ) {
    return "fd passing needs a little-endian Linux system";
  }
  return undefined;
}

/**
 * The descriptor to send fds on for `stream`.
 *
 * @throws {FdPassingError} when the platform or the transport cannot pass fds.
 */
export function fdPassingTarget(stream: Duplex | undefined): number {
  const platform = platformProblem();
  if (platform !== undefined) throw new FdPassingError(`Cannot pass file descriptors: ${platform}`);
  const fd = unixSocketFd(stream);
  if (typeof fd !== "number")
    throw new FdPassingError(`Cannot pass file descriptors: ${fd.reason}`);
  return fd;
}

/**
 * Check a list of fds given by a caller.
 *
 * @throws {TypeError} unless it is a non-empty array of integers ≥ 0.
 */
export function checkFds(fds: unknown): asserts fds is readonly number[] {
  if (!Array.isArray(fds) || fds.length === 0) {
    throw new TypeError("fds must be a non-empty array of file descriptors");
  }
  for (const fd of fds as unknown[]) {
    if (typeof fd !== "number" || !Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) {
      throw new TypeError(`Not a file descriptor: ${String(fd)}`);
    }
  }
}

// ------------------------------------------------------------ the native side

/** The part of koffi's API used here (typed locally: koffi is optional). */
interface Koffi {
  load(path: string): { func(name: string, result: string, args: unknown[]): KoffiFn };
  struct(members: Record<string, unknown>): unknown;
  pointer(type: unknown): unknown;
  sizeof(type: string): number;
  errno(): number;
}
type KoffiFn = (...args: unknown[]) => unknown;

function isKoffi(value: unknown): value is Koffi {
  if (typeof value !== "object" && typeof value !== "function") return false;
  if (value === null) return false;
  return ["load", "struct", "pointer", "sizeof", "errno"].every(
    (k) => typeof Reflect.get(value, k) === "function",
  );
}

/** Bind libc's `sendmsg` with koffi; the structs are laid out by koffi from their C types. */
function bindSendmsg(koffi: Koffi): FdSender {
  const iovec = koffi.struct({ iov_base: "void *", iov_len: "size_t" });
  const msghdr = koffi.struct({
    msg_name: "void *",
    msg_namelen: "uint32_t",
    msg_iov: koffi.pointer(iovec),
    msg_iovlen: "size_t",
    msg_control: "void *",
    msg_controllen: "size_t",
    msg_flags: "int",
  });
  // glibc is libc.so.6; musl's loader answers to libc.so.
  let libc: ReturnType<Koffi["load"]>;
  try {
    libc = koffi.load("libc.so.6");
  } catch {
    libc = koffi.load("libc.so");
  }
  const sendmsg = libc.func("sendmsg", "intptr_t", ["int", koffi.pointer(msghdr), "int"]);
  const sizeT = koffi.sizeof("size_t");
  const layout = cmsgLayout(sizeT);
  const flags = MSG_DONTWAIT | MSG_NOSIGNAL;
  return {
    sendmsg(socketFd, data, fds) {
      const control = scmRights(fds, layout);
      const result = Number(
        sendmsg(
          socketFd,
          {
            msg_name: null,
            msg_namelen: 0,
            msg_iov: { iov_base: data, iov_len: data.length },
            msg_iovlen: 1,
            msg_control: control,
            msg_controllen: control.length,
            msg_flags: 0,
          },
          flags,
        ),
      );
      return { sent: result, errno: result < 0 ? koffi.errno() : 0 };
    },
  };
}

/** Linux's MSG_DONTWAIT (the socket is non-blocking anyway) and MSG_NOSIGNAL (no SIGPIPE). */
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;

/** Sizes of a `struct cmsghdr` for a given `sizeof(size_t)`, as Linux's CMSG_* macros compute them. */
export interface CmsgLayout {
  /** `sizeof(size_t)`: width of `cmsg_len`, and the alignment of CMSG_ALIGN. */
  sizeT: number;
  /** CMSG_ALIGN(sizeof(struct cmsghdr)): where the data starts. */
  header: number;
}

export function cmsgLayout(sizeT: number): CmsgLayout {
  // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; }
  return { sizeT, header: align(sizeT + 4 + 4, sizeT) };
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** CMSG_LEN(n): the header plus n bytes of data. */
export function cmsgLen(n: number, layout: CmsgLayout): number {
  return layout.header + n;
}

/** CMSG_SPACE(n): the header plus n bytes of data, padded to the alignment. */
export function cmsgSpace(n: number, layout: CmsgLayout): number {
  return layout.header + align(n, layout.sizeT);
}

/** One SOL_SOCKET/SCM_RIGHTS control message carrying `fds` (little-endian). */
export function scmRights(fds: readonly number[], layout: CmsgLayout): Buffer {
  const dataLen = 4 * fds.length;
  const buf = Buffer.alloc(cmsgSpace(dataLen, layout));
  const len = cmsgLen(dataLen, layout);
  if (layout.sizeT === 8) buf.writeBigUInt64LE(BigInt(len), 0);
  else buf.writeUInt32LE(len, 0);
  buf.writeInt32LE(SOL_SOCKET, layout.sizeT);
  buf.writeInt32LE(SCM_RIGHTS, layout.sizeT + 4);
  fds.forEach((fd, i) => buf.writeInt32LE(fd, layout.header + 4 * i));
  return buf;
}

/**
 * A loader that binds `sendmsg` through the koffi module `importKoffi()`
 * gives. Exported for tests, which simulate a missing koffi with it.
 */
export function koffiLoader(importKoffi: () => Promise<unknown>): FdSenderLoader {
  return async () => {
    let mod: unknown;
    try {
      mod = await importKoffi();
    } catch (err) {
      throw new FdPassingError(
        "Cannot pass file descriptors: the optional native module 'koffi' could not be loaded " +
          `(${err instanceof Error ? err.message : String(err)}). ` +
          "Install the optional dependency koffi (npm install koffi) to pass fds.",
        { cause: err },
      );
    }
    const koffi: unknown =
      typeof mod === "object" && mod !== null ? (Reflect.get(mod, "default") ?? mod) : mod;
    if (!isKoffi(koffi)) {
      throw new FdPassingError(
        "Cannot pass file descriptors: 'koffi' does not have the expected API",
      );
    }
    try {
      return bindSendmsg(koffi);
    } catch (err) {
      throw new FdPassingError("Cannot pass file descriptors: binding libc's sendmsg failed", {
        cause: err,
      });
    }
  };
}

/** The real loader: `import("koffi")`, on first use only. */
const defaultLoader = koffiLoader(() => {
  // A variable specifier: TypeScript must not need koffi's types, which are
  // absent when the optional dependency was not installed.
  const specifier = "koffi";
  return import(specifier) as Promise<unknown>;
});

let loader: FdSenderLoader = defaultLoader;
let loaded: Promise<FdSender> | undefined;

/**
 * The native side, loaded once (the outcome, success or failure, is kept).
 *
 * @throws {FdPassingError} when koffi is missing or unusable.
 */
export function loadFdSender(): Promise<FdSender> {
  if (loaded === undefined) {
    loaded = loader();
    loaded.catch(() => {});
  }
  return loaded;
}

/**
 * For tests only: replace the loader (e.g. one that fails as a missing koffi
 * would); `undefined` restores the real one. Forgets the last outcome.
 */
export function setFdSenderLoaderForTests(replacement: FdSenderLoader | undefined): void {
  loader = replacement ?? defaultLoader;
  loaded = undefined;
}

// ------------------------------------------------------------ sending

const SPACE = Buffer.from(" ");

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(osConstants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

/** The errors that mean the connection is gone (they end the session, as a failed write would). */
const CONNECTION_LOST = new Set(["EPIPE", "ECONNRESET", "ENOTCONN", "ECONNABORTED"]);

/**
 * Send `fds` in one SCM_RIGHTS message on a single space byte (which QEMU's
 * JSON parser skips as whitespace). On a full socket buffer (EAGAIN), retry
 * once the socket may have room again: soon at first, then backing off to
 * 50 ms, for as long as `stillOpen()` holds — the same backpressure as any
 * write.
 *
 * @throws {FdPassingError} when the kernel refuses the fds (a bad fd, too
 *   many, not a socket); nothing was sent then.
 * @throws an errno error (`code` EPIPE, ECONNRESET, …) when the connection is gone.
 */
export async function sendFdsOn(
  sender: FdSender,
  socketFd: number,
  fds: readonly number[],
  stillOpen: () => boolean,
): Promise<void> {
  const { EAGAIN, EWOULDBLOCK, EINTR } = osConstants.errno;
  for (let attempt = 0; ; attempt++) {
    if (!stillOpen()) throw new FdPassingError("The connection closed before the fds were sent");
    const { sent, errno } = sender.sendmsg(socketFd, SPACE, fds);
    if (sent === SPACE.length) return;
    if (sent >= 0) throw new FdPassingError(`sendmsg() sent ${sent} bytes instead of 1`);
    if (errno === EAGAIN || errno === EWOULDBLOCK || errno === EINTR) {
      await new Promise<void>((resolve) => {
        if (attempt < 16) setImmediate(resolve);
        else setTimeout(resolve, Math.min(50, 2 ** (attempt - 16)));
      });
      continue;
    }
    const code = errnoName(errno);
    const err = Object.assign(new Error(`sendmsg ${code}`), { code, errno, syscall: "sendmsg" });
    if (CONNECTION_LOST.has(code)) throw err;
    throw new FdPassingError(`Cannot pass file descriptors [${fds.join(", ")}]: ${code}`, {
      cause: err,
    });
  }
}
