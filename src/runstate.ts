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

/** Why a method needs another runstate: the message of its `StateError`, naming the class. */
export function stateErrorMessage(cls: string, state: Runstate): string {
  switch (state) {
    case Runstate.CONNECTING:
      return `${cls} is currently connecting.`;
    case Runstate.DISCONNECTING:
      return `${cls} is disconnecting. Call disconnect() to return to IDLE state.`;
    case Runstate.RUNNING:
      return `${cls} is already connected and running.`;
    case Runstate.IDLE:
      return `${cls} is disconnected and idle.`;
  }
}

/**
 * Holds a runstate: the one place it changes, with the table enforced, and
 * a promise for the next transition.
 */
export class RunstateCell {
  #state: Runstate = Runstate.IDLE;
  /** The promise for the next transition, made when someone asks for it. */
  #next: Promise<Runstate> | undefined;
  #resolveNext: ((state: Runstate) => void) | undefined;
  readonly #onChange: (state: Runstate, previous: Runstate) => void;

  /** `onChange` hears every transition, after the state changed. */
  constructor(onChange: (state: Runstate, previous: Runstate) => void) {
    this.#onChange = onChange;
  }

  get state(): Runstate {
    return this.#state;
  }

  /** Resolves at the next transition, with the new state. */
  get next(): Promise<Runstate> {
    return (this.#next ??= new Promise<Runstate>((resolve) => (this.#resolveNext = resolve)));
  }

  /**
   * Move to `state` (nothing happens if already there).
   *
   * @throws {Error} for a transition the table does not allow (an engine bug).
   */
  set(state: Runstate): void {
    const previous = this.#state;
    if (state === previous) return;
    checkTransition(previous, state);
    this.#state = state;
    const resolve = this.#resolveNext;
    this.#next = undefined;
    this.#resolveNext = undefined;
    resolve?.(state);
    this.#onChange(state, previous);
  }
}
