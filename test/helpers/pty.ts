// Running a program in a pseudo-terminal and rendering what it shows, so a test
// can drive an interactive (readline) program the way a person at a terminal
// would: type, press Tab, Ctrl-C ("\x03"), Ctrl-D ("\x04"), and look at the screen.
//
// The pty is opened through the optional FFI package `koffi` (as src/fd-passing.ts
// does), so no compiler, tmux or python is needed. Linux only.

import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import { constants as osConstants } from "node:os";
import { StringDecoder } from "node:string_decoder";
import type { TestContext } from "node:test";
import tty from "node:tty";
import xterm from "@xterm/headless";

const { Terminal } = xterm;
type Terminal = InstanceType<typeof Terminal>;

// ------------------------------------------------------------ the screen

/**
 * What a terminal `cols` wide and `rows` high shows after the text written
 * to it: a headless xterm (`@xterm/headless`, the emulator of VS Code's
 * terminal), read back as text, with the cursor and the modes a full-screen
 * program sets (alternate screen, hidden cursor, mouse tracking).
 *
 * xterm parses what it is given asynchronously: {@link Screen.write} takes a
 * callback, and {@link Screen.flushed} resolves once everything written so
 * far is on the screen.
 */
export class Screen {
  /** The width in cells. */
  readonly cols: number;
  /** The height in cells. */
  readonly rows: number;
  /** The emulator itself, for what the methods here do not cover (cell colours, scrollback). */
  readonly terminal: Terminal;
  #cursorHidden = false;

  /**
   * An empty screen with the cursor at the top left.
   *
   * @throws {RangeError} unless both sizes are integers ≥ 1.
   */
  constructor(cols: number, rows: number) {
    if (!Number.isInteger(cols) || cols < 1 || !Number.isInteger(rows) || rows < 1) {
      throw new RangeError(`Bad screen size ${cols}x${rows}`);
    }
    this.cols = cols;
    this.rows = rows;
    this.terminal = new Terminal({ cols, rows, scrollback: 10_000, allowProposedApi: true });
    // DECTCEM (ESC[?25l / ESC[?25h): xterm keeps it internal, so watch it go by.
    const watchCursor = (hidden: boolean) => (params: (number | number[])[]) => {
      if (params.includes(25)) this.#cursorHidden = hidden;
      return false; // and let xterm handle the sequence as usual
    };
    this.terminal.parser.registerCsiHandler({ prefix: "?", final: "l" }, watchCursor(true));
    this.terminal.parser.registerCsiHandler({ prefix: "?", final: "h" }, watchCursor(false));
  }

  /** The cursor position on the screen, 0-based. */
  get cursor(): { row: number; col: number } {
    const b = this.terminal.buffer.active;
    return { row: b.cursorY, col: b.cursorX };
  }

  /** Whether the program hid the cursor (`ESC[?25l`) and has not shown it again. */
  get cursorHidden(): boolean {
    return this.#cursorHidden;
  }

  /** Whether the alternate screen (a full-screen program's) is showing. */
  get alternate(): boolean {
    return this.terminal.buffer.active.type === "alternate";
  }

  /** Interpret `text` as terminal output; `done` runs once it is on the screen. */
  write(text: string, done?: () => void): void {
    this.terminal.write(text, done);
  }

  /** Resolves once everything written so far is on the screen. */
  flushed(): Promise<void> {
    return new Promise((resolve) => this.terminal.write("", resolve));
  }

  /** Each row of the screen, trailing spaces trimmed. */
  lines(): string[] {
    const b = this.terminal.buffer.active;
    return Array.from({ length: this.terminal.rows }, (_, i) =>
      (b.getLine(b.viewportY + i)?.translateToString(true) ?? "").replace(/ +$/, ""),
    );
  }

  /** The rows joined with "\n", trailing spaces of each row and trailing empty rows dropped. */
  text(): string {
    const lines = this.lines();
    while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
    return lines.join("\n");
  }
}

// ------------------------------------------------------------ the native side

/** The part of koffi's API used here (typed locally: koffi is an optional dependency). */
interface Koffi {
  load(path: string): KoffiLibrary;
  struct(members: Record<string, string>): unknown;
  pointer(type: unknown): unknown;
  errno(): number;
}
interface KoffiLibrary {
  func(prototype: string): KoffiFunction;
}
type KoffiFunction = (...args: unknown[]) => unknown;

function isKoffi(value: unknown): value is Koffi {
  if ((typeof value !== "object" && typeof value !== "function") || value === null) return false;
  return ["load", "struct", "pointer", "errno"].every(
    (k) => typeof Reflect.get(value, k) === "function",
  );
}

/** A new pty pair: the master (ours) and the slave (the program's), both open. */
interface PtyPair {
  master: number;
  slave: number;
}

/** The libc calls that open a pty, bound once. */
interface PtyBinding {
  open(cols: number, rows: number): PtyPair;
}

/** TIOCSWINSZ of the generic Linux ioctl numbering (x86, ARM, RISC-V, s390, LoongArch). */
const TIOCSWINSZ = 0x5414;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(osConstants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

/** Bind the libc functions; the result lives in `binding` for good, so koffi never frees them. */
function bind(koffi: Koffi): PtyBinding {
  // glibc is libc.so.6; musl's loader answers to libc.so.
  let libc: KoffiLibrary;
  try {
    libc = koffi.load("libc.so.6");
  } catch {
    libc = koffi.load("libc.so");
  }
  const posixOpenpt = libc.func("int posix_openpt(int flags)");
  const grantpt = libc.func("int grantpt(int fd)");
  const unlockpt = libc.func("int unlockpt(int fd)");
  const ptsnameR = libc.func("int ptsname_r(int fd, _Out_ uint8_t *buf, size_t buflen)");
  const fcntl = libc.func("int fcntl(int fd, int cmd, ...)");
  const ioctl = libc.func("int ioctl(int fd, unsigned long request, ...)");
  const winsizePtr = koffi.pointer(
    koffi.struct({
      ws_row: "unsigned short",
      ws_col: "unsigned short",
      ws_xpixel: "unsigned short",
      ws_ypixel: "unsigned short",
    }),
  );

  /** Throw with errno's name when a libc call returned -1. */
  const check = (what: string, result: unknown): void => {
    if (Number(result) === -1) throw new Error(`${what} failed: ${errnoName(koffi.errno())}`);
  };

  return {
    open(cols, rows) {
      const master = Number(posixOpenpt(fs.constants.O_RDWR | fs.constants.O_NOCTTY));
      if (master < 0) throw new Error(`posix_openpt failed: ${errnoName(koffi.errno())}`);
      let slave: number | undefined;
      try {
        // Not inherited by this or any other child (JS is single-threaded: no spawn in between).
        check("fcntl(FD_CLOEXEC)", fcntl(master, F_SETFD, "int", FD_CLOEXEC));
        check("grantpt", grantpt(master));
        check("unlockpt", unlockpt(master));
        const name = Buffer.alloc(256);
        const failed = Number(ptsnameR(master, name, name.length)); // an errno, not -1
        if (failed !== 0) throw new Error(`ptsname_r failed: ${errnoName(failed)}`);
        const path = name.toString("utf8", 0, name.indexOf(0));
        // Node opens files with O_CLOEXEC; spawn's dup2 onto 0-2 clears it in the child.
        slave = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
        const size = { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        check("ioctl(TIOCSWINSZ)", ioctl(slave, TIOCSWINSZ, winsizePtr, size));
        return { master, slave };
      } catch (err) {
        if (slave !== undefined) fs.closeSync(slave);
        fs.closeSync(master);
        throw err;
      }
    },
  };
}

let binding: Promise<PtyBinding> | undefined;

/** The native side, loaded on first use; throws (never skips) when it cannot be. */
function loadBinding(): Promise<PtyBinding> {
  binding ??= (async () => {
    if (process.platform !== "linux") {
      throw new Error(`spawnInPty works on Linux only (this is ${process.platform})`);
    }
    if (["ppc", "ppc64", "mips", "mipsel", "mips64", "mips64el"].includes(process.arch)) {
      throw new Error(`spawnInPty does not know TIOCSWINSZ on ${process.arch}`);
    }
    let mod: unknown;
    try {
      // A variable specifier: TypeScript must not need koffi's types (it is optional).
      const specifier = "koffi";
      mod = await import(specifier);
    } catch (err) {
      throw new Error(
        "spawnInPty needs the optional dependency 'koffi' to open a pseudo-terminal, and it " +
          `could not be loaded (${err instanceof Error ? err.message : String(err)}). ` +
          "Install it with: npm install koffi",
        { cause: err },
      );
    }
    const koffi: unknown =
      typeof mod === "object" && mod !== null ? (Reflect.get(mod, "default") ?? mod) : mod;
    if (!isKoffi(koffi)) throw new Error("spawnInPty: 'koffi' does not have the expected API");
    return bind(koffi);
  })();
  return binding;
}

// ------------------------------------------------------------ the program

/** Options of {@link spawnInPty}. */
export interface SpawnInPtyOptions {
  /**
   * The program's environment; default: ours with `TERM=xterm` (ours may be
   * "dumb", which turns readline's editing off). A given one gets
   * `TERM=xterm` only if it has no `TERM`.
   */
  env?: NodeJS.ProcessEnv;
  /** The program's working directory; default: ours. */
  cwd?: string;
  /** The terminal width; default 100. */
  cols?: number;
  /** The terminal height; default 30. */
  rows?: number;
}

/** Options of {@link PtyProcess.waitFor}. */
export interface WaitForOptions {
  /** How long to wait, in milliseconds; default 10 000. */
  timeout?: number;
  /** What is waited for, for the error message; default: the pattern. */
  what?: string;
}

/** How a program in a pty ended: its exit code, or the signal that killed it. */
export interface PtyExit {
  /** The exit code, or null when a signal ended the program. */
  code: number | null;
  /** The signal that ended the program, or null when it exited. */
  signal: NodeJS.Signals | null;
}

/** A program running in a pseudo-terminal, as {@link spawnInPty} started it. */
export interface PtyProcess {
  /** The program's process (its stdio are the pty: `stdin`, `stdout` and `stderr` are null). */
  readonly child: ChildProcess;
  /** What the terminal shows, updated as output arrives. */
  readonly screen: Screen;
  /**
   * Type `data`: write it to the pty master (synchronously; keep it small).
   * Bytes the program reads while its terminal is in cooked mode are echoed
   * by the kernel and "\r" becomes "\n"; readline's raw mode turns that off.
   *
   * @throws {Error} once the pty is closed (the program ended).
   */
  write(data: string): void;
  /** All output so far, decoded from UTF-8, escape sequences and all. */
  output(): string;
  /**
   * Close the terminal, as when its window is closed or the connection to it
   * drops: the pty master is closed, so the program's reads and writes fail
   * with EIO (it gets no SIGHUP: it has no controlling terminal). Its output
   * from then on is lost; {@link PtyProcess.done} still tells how it ended.
   */
  hangUp(): void;
  /**
   * Resolves once `test` holds for the screen text ({@link Screen.text}). It is
   * checked now and after every chunk of output.
   *
   * @throws {Error} (rejects) after `timeout`, or once the program has ended
   *   and its last output did not match; the message shows the screen.
   */
  waitFor(
    test: RegExp | ((screenText: string) => boolean),
    options?: WaitForOptions,
  ): Promise<void>;
  /**
   * Resolves once the program has exited and all its output is read (the
   * master is closed then). Rejects only on a read error other than the EIO
   * that ends every pty session.
   */
  readonly done: Promise<PtyExit>;
}

/**
 * Run `command args` with a new pseudo-terminal as its stdin, stdout and
 * stderr, in a new session (it has no controlling terminal, so the kernel
 * sends it no SIGINT, SIGWINCH or SIGHUP; a raw-mode program sees Ctrl-C as
 * "\x03"). When the test ends, its process group is killed (SIGKILL) if it is
 * still running, and the pty is closed.
 *
 * @throws {Error} when koffi cannot be loaded, the pty cannot be opened or
 *   the program cannot be started.
 */
export async function spawnInPty(
  t: TestContext,
  command: string,
  args: string[],
  options: SpawnInPtyOptions = {},
): Promise<PtyProcess> {
  const cols = options.cols ?? 100;
  const rows = options.rows ?? 30;
  const screen = new Screen(cols, rows);
  const env =
    options.env === undefined
      ? { ...process.env, TERM: "xterm" }
      : { TERM: "xterm", ...options.env };

  const native = await loadBinding();
  const { master, slave } = native.open(cols, rows);

  // Reading: libuv's tty handle reads the master as data arrives. Its fd is
  // closed when the stream is destroyed, which happens on EIO (the last slave
  // fd was closed, i.e. the program and its children are gone) or at cleanup.
  let stream: tty.ReadStream;
  try {
    stream = new tty.ReadStream(master);
  } catch (err) {
    fs.closeSync(slave);
    fs.closeSync(master);
    throw err;
  }
  const decoder = new StringDecoder("utf8");
  let raw = "";
  let readError: Error | undefined;
  const watchers = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...watchers]) w();
  };
  stream.on("data", (chunk: Buffer) => {
    const text = decoder.write(chunk);
    if (text === "") return;
    raw += text;
    screen.write(text, notify);
  });
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EIO") readError = err;
  });
  const closed = new Promise<void>((resolve) => {
    stream.once("close", () => {
      const rest = decoder.end();
      raw += rest;
      // Resolved once the last output is on the screen.
      screen.write(rest, resolve);
    });
  });

  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      stdio: [slave, slave, slave],
      detached: true,
      env,
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    });
  } catch (err) {
    stream.destroy();
    await closed;
    throw err;
  } finally {
    // The child has its copies now; with ours closed, EIO on the master means it is gone.
    fs.closeSync(slave);
  }
  try {
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
  } catch (err) {
    stream.destroy();
    await closed;
    throw err;
  }
  // A later 'error' (a failed kill) must not crash the test process.
  child.on("error", () => {});

  const exited = new Promise<PtyExit>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
    } else child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  let ended: PtyExit | undefined;
  const done = Promise.all([exited, closed]).then(([exit]) => {
    ended = exit;
    notify(); // the waiters see the final screen, then give up
    if (readError !== undefined) throw readError;
    return exit;
  });
  done.catch(() => {}); // handled by whoever awaits it; never unhandled

  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(-child.pid, "SIGKILL"); // its process group: detached made it a leader
      } catch {
        child.kill("SIGKILL");
      }
    }
    // Let the last output drain; a process outside the group may keep the pty open, so not forever.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      done.catch(() => {}),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000))),
    ]);
    clearTimeout(timer);
    stream.destroy();
    await closed;
  });

  const describeEnd = (exit: PtyExit): string =>
    exit.signal === null ? `exited with code ${exit.code}` : `was killed by ${exit.signal}`;
  const showScreen = (): string => {
    const bar = "-".repeat(cols);
    return `\n${bar}\n${screen.text()}\n${bar}\ncursor at row ${screen.cursor.row}, col ${screen.cursor.col}`;
  };

  return {
    child,
    screen,
    write(data) {
      if (stream.destroyed) {
        throw new Error(`Cannot type ${JSON.stringify(data)}: the pty is closed`);
      }
      const bytes = Buffer.from(data, "utf8");
      for (let at = 0; at < bytes.length;) at += fs.writeSync(master, bytes, at);
    },
    output: () => raw,
    hangUp() {
      stream.destroy();
    },
    waitFor(test, waitOptions = {}) {
      const timeout = waitOptions.timeout ?? 10_000;
      const what =
        waitOptions.what ?? (test instanceof RegExp ? String(test) : "the screen to match");
      const holds = (): boolean => {
        const text = screen.text();
        if (typeof test === "function") return test(text);
        test.lastIndex = 0; // a /g or /y pattern must not remember the last try
        return test.test(text);
      };
      return new Promise<void>((resolve, reject) => {
        const settle = (err?: Error): void => {
          watchers.delete(check);
          clearTimeout(timer);
          if (err === undefined) resolve();
          else reject(err);
        };
        function check(): void {
          let ok: boolean;
          try {
            ok = holds();
          } catch (err) {
            settle(err instanceof Error ? err : new Error(String(err)));
            return;
          }
          if (ok) settle();
          else if (ended !== undefined) {
            const why =
              readError === undefined ? "" : ` (reading the pty failed: ${readError.message})`;
            settle(
              new Error(
                `The program ${describeEnd(ended)}${why} before ${what}; the screen shows:${showScreen()}`,
              ),
            );
          }
        }
        watchers.add(check);
        const timer = setTimeout(() => {
          settle(
            new Error(
              `Timed out after ${timeout} ms waiting for ${what}; the screen shows:${showScreen()}`,
            ),
          );
        }, timeout);
        check(); // now: it may hold already, or the program may be gone
      });
    },
    done,
  };
}
