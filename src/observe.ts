// What a client tells the outside world: log lines with its name, message traces
// (secrets redacted), and diagnostics_channel publications.

import { channel } from "node:diagnostics_channel";
import type { Runstate } from "./runstate.js";
import { describe } from "./errors.js";
import { type Logger, debugEnabled, debugLogger, traceText } from "./util.js";

/** `diagnostics_channel` for every message sent: `{ client, name, message }`. */
export const sendChannel = channel("qmp:message:send");
/** `diagnostics_channel` for every message received: `{ client, name, message }`. */
export const receiveChannel = channel("qmp:message:receive");
/** `diagnostics_channel` for runstate changes: `{ client, name, state, previous }`. */
export const runstateChannel = channel("qmp:runstate");

/** One client's log lines, traces and channel messages. */
export class Observer {
  readonly #client: object;
  readonly #name: string | undefined;
  readonly #trace: boolean;
  /** Where log lines go. */
  readonly logger: Logger;
  /** Prefix of log lines: `[name] `, or nothing. */
  readonly tag: string;
  /** Whether debug lines go anywhere (the default logger drops them unless NODE_DEBUG names qmp). */
  readonly debugOn: boolean;

  constructor(client: object, name: string | undefined, logger: Logger, trace: boolean) {
    this.#client = client;
    this.#name = name;
    this.logger = logger;
    this.#trace = trace;
    this.tag = name !== undefined ? `[${name}] ` : "";
    this.debugOn = logger !== debugLogger || debugEnabled();
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
    if (this.#trace) this.logger.debug(`${this.tag}<-- ${traceText(message)}`);
    if (receiveChannel.hasSubscribers) {
      receiveChannel.publish({ client: this.#client, name: this.#name, message });
    }
  }

  /** The runstate changed. */
  runstate(state: Runstate, previous: Runstate): void {
    if (this.debugOn) this.debug(`Transitioning from '${previous}' to '${state}'.`);
    if (runstateChannel.hasSubscribers) {
      runstateChannel.publish({ client: this.#client, name: this.#name, state, previous });
    }
  }
}
