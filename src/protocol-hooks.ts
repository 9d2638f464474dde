// What a protocol on the engine provides: its session set-up, its inbound messages, its end.

import { EventEmitter } from "node:events";
import type { Attempt } from "./attempt.js";
import type { ProtocolEvents } from "./protocol-options.js";

/**
 * The part of {@link Protocol} its subclasses fill in (`QMPClient`,
 * `QGAClient`): the engine calls these. An `EventEmitter` of
 * {@link ProtocolEvents}.
 */
export abstract class ProtocolHooks<TMessage extends object> extends EventEmitter<ProtocolEvents> {
  /**
   * Do what the session needs before `RUNNING` (greeting, negotiation),
   * within `attempt` (its `signal` is a real `AbortSignal` for the rare wait
   * that needs one; the attempt itself serves `raceSignal`).
   * Inbound messages already flow to {@link handleMessage}. Throwing fails
   * the connect with "Failed to establish session". It must settle once the
   * session ends ({@link sessionEnded} comes first: fail there what it
   * waits for); the engine adds no race of its own, to keep a connect cheap.
   */
  protected abstract establishSession(attempt: Attempt): Promise<void>;

  /** One inbound message, in wire order. Throwing ends the session with that error. */
  protected abstract handleMessage(message: Record<string, unknown>): void;

  /** An inbound message larger than `maxMessageSize` was skipped. */
  protected abstract handleOversize(size: number, limit: number, id: unknown): void;

  /**
   * The session is over (called once per session, after the runstate left
   * `RUNNING`). `cause` is the error that ended it, or undefined for a
   * clean end; `reason` is what to fail waiting calls with.
   */
  protected abstract sessionEnded(cause: unknown, reason: Error): void;

  /**
   * Whether the peer is expected to go away now (e.g. after `quit`), so that
   * a connection reset is a normal end of session, not an error.
   */
  protected peerMayVanish(): boolean {
    return false;
  }

  /**
   * Whether `disconnect()`, after half-closing, waits (within
   * `disconnectTimeout`) for the peer to close its side, reading what it
   * still sends: for a peer that exits when reset with a reply unread
   * (qemu-ga). Default false.
   */
  protected get drainOnClose(): boolean {
    return false;
  }

  /** The message as a string for the wire. */
  protected serialize(message: TMessage): string {
    return JSON.stringify(message);
  }
}
