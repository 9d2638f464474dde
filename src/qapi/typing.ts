// The types that make a client typed for a QAPI schema: `QMPClient<QAPI>`.
//
// A generated module (`qmp/qapi/qemu-10.0`, `qmp codegen`) exports
// `QAPI = { commands: { [name]: { args, returns } }, events: { [name]: data } }`.
// These helpers read it with one indexed access and one conditional per
// call, so that type-checking a typed call stays as cheap as an untyped one.

import type { JsonObject, JsonValue, QMPEvent } from "../message.js";

/** What a `QAPI` type looks like: commands and events, by name. */
export interface QAPIShape {
  /** `{ "query-status": { args: undefined; returns: StatusInfo }, … }` */
  commands: object;
  /** `{ STOP: undefined; BLOCK_JOB_COMPLETED: BlockJobCompletedData, … }` */
  events: object;
}

/**
 * The schema of a client given none (`new QMPClient()`): any command name,
 * arguments as an object, results as JSON (or the type given to
 * `execute<T>()`), events as {@link QMPEvent}.
 */
export interface Untyped {
  commands: { [name: string]: { args: object | undefined; returns: JsonValue } };
  events: { [name: string]: JsonObject | undefined };
  /** Tells the untyped schema from a generated one. */
  readonly untyped: true;
}

/** The empty object type: what `{} extends A` asks (are all of `A`'s members optional?). */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
type AllOptional = {};

/** Arguments of a command that takes none: nothing, `undefined` or `{}`. */
export type NoArguments = { [key: string]: never };

/** The command names of `Q` (any string when untyped). */
export type CommandName<Q extends QAPIShape> = Q extends Untyped
  ? string
  : keyof Q["commands"] & string;

/** The event names of `Q` (any string when untyped). */
export type EventName<Q extends QAPIShape> = Q extends Untyped
  ? string
  : keyof Q["events"] & string;

type Entry<Q extends QAPIShape, K> = K extends keyof Q["commands"] ? Q["commands"][K] : never;

/** The arguments of command `K` (`undefined` when it takes none). */
export type CommandArgs<Q extends QAPIShape, K> = Entry<Q, K> extends { args: infer A } ? A : never;

/** What command `K` returns. */
export type CommandReturn<Q extends QAPIShape, K> =
  Entry<Q, K> extends { returns: infer R } ? R : never;

/**
 * The parameters after the command name: the arguments (left out when the
 * command takes none or all are optional) and the call's options `O`.
 */
export type CommandParams<Q extends QAPIShape, K, O> = Q extends Untyped
  ? [args?: object, options?: O]
  : CommandArgs<Q, K> extends undefined
    ? [args?: NoArguments, options?: O]
    : AllOptional extends CommandArgs<Q, K>
      ? [args?: CommandArgs<Q, K>, options?: O]
      : [args: CommandArgs<Q, K>, options?: O];

/** The `args` parameter of `executeAndWait()`: required when the command needs arguments. */
export type CommandArgsParam<Q extends QAPIShape, K> = Q extends Untyped
  ? object | undefined
  : CommandArgs<Q, K> extends undefined
    ? NoArguments | undefined
    : AllOptional extends CommandArgs<Q, K>
      ? CommandArgs<Q, K> | undefined
      : CommandArgs<Q, K>;

/** What `execute()` resolves to: the command's return, or `T` on an untyped client. */
export type CommandResult<Q extends QAPIShape, K, T> = Q extends Untyped ? T : CommandReturn<Q, K>;

/**
 * One event name, or several (an array, a set, any iterable): how
 * listeners, `waitEvent()` and `executeAndWait()` take names. A typed
 * client infers the names given as a string, an array or a set (other
 * iterables are checked but not inferred).
 */
export type EventNames<N extends string> = N | readonly N[] | ReadonlySet<N> | Iterable<NoInfer<N>>;

/** An event of `Q` named `N` (a union for a union of names). */
export type EventOf<Q extends QAPIShape, N> = Q extends Untyped
  ? QMPEvent
  : N extends keyof Q["events"]
    ? Q["events"][N] extends undefined
      ? { event: N; data?: undefined; timestamp: QMPEvent["timestamp"] }
      : { event: N; data: Q["events"][N]; timestamp: QMPEvent["timestamp"] }
    : never;

/** Any event of `Q`: a union to narrow with `e.event === "STOP"`. */
export type AnyEvent<Q extends QAPIShape> = EventOf<Q, EventName<Q>>;
