// What a client tells the outside world: log lines with its name, message traces
// (secrets redacted), and diagnostics_channel publications.

import { channel } from "node:diagnostics_channel";
import { Runstate } from "./runstate.js";
import { describe } from "./errors.js";
import { TranscriptRecorder, type TranscriptTarget } from "./transcript.js";
import { type Logger, debugEnabled, debugLogger, traceText } from "./util.js";

/** `diagnostics_channel` for every message sent: `{ client, name, message }`. */
export const sendChannel = channel("qmp:message:send");
/** `diagnostics_channel` for every message received: `{ client, name, message }`. */
export const receiveChannel = channel("qmp:message:receive");
/** `diagnostics_channel` for runstate changes: `{ client, name, state, previous }`. */
export const runstateChannel = channel("qmp:runstate");

/** One client's log lines, traces, transcript and channel messages. */
export class Observer {
  readonly #client: object;
  readonly #name: string | undefined;
  readonly #trace: boolean;
  /** The `record` option's recorder; undefined (one branch per message) without it. */
  readonly #recorder: TranscriptRecorder | undefined;
  /** Where log lines go. */
  readonly logger: Logger;
  /** Prefix of log lines: `[name] `, or nothing. */
  readonly tag: string;
  /** Whether debug lines go anywhere (the default logger drops them unless NODE_DEBUG names qmp). */
  readonly debugOn: boolean;

  constructor(
    client: object,
    name: string | undefined,
    logger: Logger,
    trace: boolean,
    record?: TranscriptTarget,
  ) {
    this.#client = client;
    this.#name = name;
    this.logger = logger;
    this.#trace = trace;
    this.tag = name !== undefined ? `[${name}] ` : "";
    this.debugOn = logger !== debugLogger || debugEnabled();
    this.#recorder =
      record === undefined
        ? undefined
        : new TranscriptRecorder(record, (text) => logger.warn(`${this.tag}${text}`));
  }

  /** A session's connection came up: a transcript times its entries from now. */
  sessionStarted(): void {
    this.#recorder?.sessionStarted();
  }

  /** A debug line, prefixed with the client's name. */
  debug(text: string): void {
    this.logger.debug(`${this.tag}${text}`);
  }

  /** An error line, prefixed with the client's name; `err` described on one line. */
  error(text: string, err: unknown): void {
    this.logger.error(`${this.tag}${text}: ${describe(err)}`);
  }

  /** A message (or fds alone) was written. */
  sent(message: object | undefined, fds: readonly number[] | undefined): void {
    if (this.#recorder !== undefined) this.#recorder.sent(message, fds);
    if (this.#trace) {
      const withFds = fds !== undefined ? ` (with fds ${fds.join(", ")})` : "";
      const text = message !== undefined ? traceText(message) : "(fds only)";
      this.logger.debug(`${this.tag}--> ${text}${withFds}`);
    }
    if (message !== undefined && sendChannel.hasSubscribers) {
      sendChannel.publish({ client: this.#client, name: this.#name, message });
    }
  }

  /** A message was read. */
  received(message: object): void {
    if (this.#recorder !== undefined) this.#recorder.received(message);
    if (this.#trace) this.logger.debug(`${this.tag}<-- ${traceText(message)}`);
    if (receiveChannel.hasSubscribers) {
      receiveChannel.publish({ client: this.#client, name: this.#name, message });
    }
  }

  /** The runstate changed. */
  runstate(state: Runstate, previous: Runstate): void {
    // The session is ending or over: a transcript file is closed (not left open for a client never disconnected).
    if (
      this.#recorder !== undefined &&
      (state === Runstate.DISCONNECTING || state === Runstate.IDLE)
    ) {
      this.#recorder.release();
    }
    if (this.debugOn) this.debug(`Transitioning from '${previous}' to '${state}'.`);
    if (runstateChannel.hasSubscribers) {
      runstateChannel.publish({ client: this.#client, name: this.#name, state, previous });
    }
  }
}
