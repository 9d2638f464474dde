// Where the test kit's servers listen: a UNIX socket in a private temp directory, or an address.

import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { InetAddress } from "../transport.js";

/** A listening server, the address it is bound to, and its temp directory (if it made one). */
export interface Listening {
  server: net.Server;
  address: string | InetAddress;
  dir: string | undefined;
}

/**
 * Listen at `address`, or on `qmp.sock` in a new temp directory named
 * `prefix…` (`{ host, port: 0 }` picks a free port, given back in `address`).
 *
 * @throws the server's error (`EADDRINUSE`, `EACCES`, …); a temp directory made for it is removed.
 */
export async function listenAt(
  address: string | InetAddress | undefined,
  prefix: string,
): Promise<Listening> {
  let dir: string | undefined;
  let where = address;
  if (where === undefined) {
    dir = mkdtempSync(join(tmpdir(), prefix));
    where = join(dir, "qmp.sock");
  }
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      if (typeof where === "string") server.listen(where, resolve);
      else server.listen({ host: where.host, port: where.port }, resolve);
    });
  } catch (err) {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const bound =
    typeof where === "string"
      ? where
      : { host: where.host, port: (server.address() as net.AddressInfo).port };
  return { server, address: bound, dir };
}
