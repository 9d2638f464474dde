// Capabilities negotiation: `qmp_capabilities` (with `oob` when QEMU offers it), bounded when a
// QEMU before 8.0 is known to stall on a TLS monitor, and its failure told clearly.

import type { Attempt } from "./attempt.js";
import type { Reply } from "./calls.js";
import { NegotiationError, ProtocolError } from "./errors.js";
import { type CommandMessage, type Greeting, isErrorReply } from "./message.js";
import { NO_OPTIONS, TLS_STALL_TIMEOUT } from "./qmp-options.js";
import { type CallOptions, deadline } from "./util.js";

/**
 * Negotiate over `call` (the client's, under `connect()`'s deadline).
 * `stall` is the warning for a QEMU known to stall on TLS, if that is the
 * case: the call then gets a few seconds of its own.
 *
 * @returns whether `oob` was enabled.
 * @throws {NegotiationError} when QEMU refuses; a {@link ProtocolError}
 *   when a known TLS stall holds the reply back; what `call` throws.
 */
export async function negotiate(
  greeting: Greeting | undefined,
  stall: string | undefined,
  attempt: Attempt,
  call: (message: CommandMessage, options: CallOptions) => Promise<Reply>,
): Promise<boolean> {
  const offersOob = greeting?.QMP.capabilities.includes("oob") ?? false;
  const message: CommandMessage = { execute: "qmp_capabilities" };
  if (offersOob) message.arguments = { enable: ["oob"] };
  // A known stall must not hang the connect until the caller's timeout
  // (or forever, without one): give it a few seconds, then say why.
  const bounded =
    stall === undefined
      ? undefined
      : deadline(
          { signal: attempt.signal, timeout: TLS_STALL_TIMEOUT },
          "execute('qmp_capabilities')",
        );
  let reply: Reply;
  try {
    // connect()'s own deadline covers the call: it needs none of its own
    // (a session that ends fails it), unless bounded for a TLS stall.
    reply = await call(message, bounded !== undefined ? { signal: bounded.signal } : NO_OPTIONS);
  } catch (err) {
    if (bounded !== undefined && !attempt.aborted && bounded.signal.aborted) {
      throw new ProtocolError(
        `No reply to qmp_capabilities within ${TLS_STALL_TIMEOUT} ms: ${stall}`,
        { cause: err },
      );
    }
    throw err;
  } finally {
    bounded?.dispose();
  }
  if (!("return" in reply)) {
    const text = isErrorReply(reply)
      ? `${reply.error.class}: ${reply.error.desc}`
      : "a malformed reply";
    throw new NegotiationError(`qmp_capabilities failed with ${text}`, reply);
  }
  return offersOob;
}
