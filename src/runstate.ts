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
