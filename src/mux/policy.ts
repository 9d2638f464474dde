// Which commands a mux socket lets through: allow and deny lists of globs, and a read-only
// allow-list of commands without side effects.

import { typeName } from "../util.js";

/** What a mux socket lets its clients run (all of it applies; default: everything). */
export interface MuxPolicy {
  /** Only commands matching one of these globs (`*`, `?`), as a list or a comma-separated string. */
  allow?: string | readonly string[] | undefined;
  /** Never commands matching one of these globs. */
  deny?: string | readonly string[] | undefined;
  /** Only commands without side effects (see {@link READ_ONLY_COMMANDS}). */
  readOnly?: boolean | undefined;
}

/**
 * The commands a `readOnly` socket allows: those that only look. Not
 * `human-monitor-command` (HMP can do anything), nor `qom-set`.
 */
export const READ_ONLY_COMMANDS: readonly string[] = Object.freeze([
  "query-*",
  "x-query-*",
  "qom-get",
  "qom-list",
  "qom-list-types",
  "qom-list-properties",
  "device-list-properties",
  "trace-event-get-state",
]);

/** A glob (`*` any run of characters, `?` one) as an anchored regular expression. */
function globPattern(glob: string): RegExp {
  const source = glob
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${source}$`);
}

function globList(value: unknown, what: string): RegExp[] | undefined {
  if (value === undefined) return undefined;
  const items = typeof value === "string" ? value.split(",") : value;
  if (!Array.isArray(items) || !items.every((g): g is string => typeof g === "string")) {
    throw new TypeError(
      `${what} must be a list of globs or a comma-separated string, got ${typeName(value)}`,
    );
  }
  const globs = items.map((g) => g.trim()).filter((g) => g !== "");
  if (globs.length === 0) throw new TypeError(`${what} names no command`);
  return globs.map(globPattern);
}

/** A checked policy: `allows(command)` tells whether a command may run. */
export class CheckedPolicy {
  readonly #allow: RegExp[] | undefined;
  readonly #deny: RegExp[] | undefined;
  readonly #readOnly: RegExp[] | undefined;

  /**
   * @throws {TypeError} for an `allow` or `deny` that is not a list of
   *   globs (or names none), or a `readOnly` that is not a boolean.
   */
  constructor(policy: MuxPolicy = {}) {
    if (typeof policy !== "object" || policy === null) {
      throw new TypeError(`A policy must be an object, got ${typeName(policy)}`);
    }
    if (policy.readOnly !== undefined && typeof policy.readOnly !== "boolean") {
      throw new TypeError(`readOnly must be a boolean, got ${typeName(policy.readOnly)}`);
    }
    this.#allow = globList(policy.allow, "allow");
    this.#deny = globList(policy.deny, "deny");
    this.#readOnly = policy.readOnly === true ? READ_ONLY_COMMANDS.map(globPattern) : undefined;
  }

  /** Whether `command` may run on this socket. */
  allows(command: string): boolean {
    const hit = (list: RegExp[]): boolean => list.some((re) => re.test(command));
    if (this.#readOnly !== undefined && !hit(this.#readOnly)) return false;
    if (this.#allow !== undefined && !hit(this.#allow)) return false;
    return this.#deny === undefined || !hit(this.#deny);
  }
}
