// The states of a connection and the transitions between them.

/**
 * The lifecycle of a client:
 *
 * ```
 *   IDLE ──connect()/startServer()──▶ CONNECTING ──session up──▶ RUNNING
 *    ▲                                   │                          │
 *    │                          failure, abort, timeout      error, EOF, disconnect()
 *    │                                   ▼                          ▼
 *    └────────────disconnect() done──── DISCONNECTING ◀─────────────┘
 * ```
 */
export const Runstate = {
  /** No connection; `connect()`, `startServer()` are allowed. */
  IDLE: "IDLE",
  /** Transport or session being established. */
  CONNECTING: "CONNECTING",
  /** Session up: commands can be sent. */
  RUNNING: "RUNNING",
  /** Session over or ending; call `disconnect()` to return to IDLE. */
  DISCONNECTING: "DISCONNECTING",
} as const;

/** One of the {@link Runstate} values. */
export type Runstate = (typeof Runstate)[keyof typeof Runstate];

/** The transitions the engine may make (`from` → allowed `to`s). */
export const RUNSTATE_TRANSITIONS: Readonly<Record<Runstate, readonly Runstate[]>> = {
  IDLE: ["CONNECTING"],
  CONNECTING: ["RUNNING", "DISCONNECTING"],
  RUNNING: ["DISCONNECTING"],
  DISCONNECTING: ["IDLE"],
};

/** Whether the engine may move from `from` to `to`. */
export function isTransitionAllowed(from: Runstate, to: Runstate): boolean {
  return RUNSTATE_TRANSITIONS[from].includes(to);
}

/**
 * Enforce the transition table where the runstate is set.
 *
 * @throws {Error} for a transition the table does not allow: a bug in the
 *   engine, never a condition of the peer or of the caller.
 */
export function checkTransition(from: Runstate, to: Runstate): void {
  if (!isTransitionAllowed(from, to)) {
    throw new Error(`qmp internal error: illegal runstate transition ${from} -> ${to}`);
  }
}
