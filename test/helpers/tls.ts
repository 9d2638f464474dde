// Certificates for the TLS tests, made with openssl at test time in a temp dir.

import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A certificate and its key, in PEM. */
export interface CertPair {
  cert: string;
  key: string;
}

/** Everything the TLS tests need; `remove()` deletes the directory. */
export interface TestPki {
  /** The directory holding every file. */
  dir: string;
  /** The test CA's certificate (PEM). */
  ca: string;
  /** A second CA that signed nothing we use (PEM). */
  otherCa: string;
  /** Server certificate for 127.0.0.1, ::1 and localhost, signed by `ca`. */
  server: CertPair;
  /** Client certificate (CN qmp-test-client), signed by `ca`. */
  client: CertPair;
  /** A server certificate for 127.0.0.1/localhost that expired in 2020. */
  expired: CertPair;
  /** A server certificate for `qemu.example` only, signed by `ca`. */
  otherHost: CertPair;
  /** A client certificate signed by `otherCa`. */
  strangerClient: CertPair;
  /** QEMU `tls-creds-x509` dir, `endpoint=server`: ca-cert, server-cert, server-key. */
  qemuServerDir: string;
  /** QEMU `tls-creds-x509` dir, `endpoint=client`: ca-cert, client-cert, client-key. */
  qemuClientDir: string;
  /** QEMU `tls-creds-x509` dir, `endpoint=client`, trusting `otherCa` only, no client cert. */
  qemuStrangerDir: string;
  remove: () => void;
}

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  try {
    await run("openssl", args, { cwd });
  } catch (err) {
    const e = err as { code?: unknown; stderr?: string };
    if (e.code === "ENOENT") {
      throw new Error("The TLS tests need openssl (apt-get install openssl)", { cause: err });
    }
    throw new Error(`openssl ${args.join(" ")} failed: ${e.stderr ?? String(err)}`, {
      cause: err,
    });
  }
}

const SERVER_EXT = [
  "basicConstraints=critical,CA:FALSE",
  "keyUsage=critical,digitalSignature,keyEncipherment",
  "extendedKeyUsage=serverAuth",
];
const CLIENT_EXT = [
  "basicConstraints=critical,CA:FALSE",
  "keyUsage=critical,digitalSignature,keyEncipherment",
  "extendedKeyUsage=clientAuth",
];

// A minimal `openssl ca` setup: the only way (OpenSSL 3.0) to choose the dates of a certificate.
const CA_CONFIG = `[ca]
default_ca = test
[test]
database = db/index.txt
new_certs_dir = db
serial = db/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
`;

/**
 * Make a CA, a second unrelated CA, server/client/expired/wrong-host
 * certificates (RSA 2048, so that QEMU's GnuTLS checks of key usage pass),
 * and the directories QEMU's `tls-creds-x509` wants.
 */
export async function makePki(): Promise<TestPki> {
  const dir = mkdtempSync(join(tmpdir(), "qmp-tls-"));
  try {
    const key = (name: string): Promise<void> =>
      openssl(
        dir,
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        name,
      );
    await Promise.all(["ca", "other-ca", "server", "client"].map((n) => key(`${n}-key.pem`)));
    const makeCa = (name: string, cn: string): Promise<void> =>
      openssl(
        dir,
        "req",
        "-x509",
        "-new",
        "-key",
        `${name}-key.pem`,
        "-out",
        `${name}-cert.pem`,
        "-days",
        "2",
        "-subj",
        `/CN=${cn}`,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
      );
    await Promise.all([makeCa("ca", "qmp test CA"), makeCa("other-ca", "qmp unrelated CA")]);
    const sign = async (
      name: string,
      keyName: string,
      cn: string,
      ext: string[],
      caName = "ca",
    ): Promise<void> => {
      writeFileSync(join(dir, `${name}.ext`), ext.join("\n") + "\n");
      await openssl(
        dir,
        "req",
        "-new",
        "-key",
        `${keyName}-key.pem`,
        "-subj",
        `/CN=${cn}`,
        "-out",
        `${name}.csr`,
      );
      await openssl(
        dir,
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        `${caName}-cert.pem`,
        "-CAkey",
        `${caName}-key.pem`,
        "-set_serial",
        String(Math.floor(Math.random() * 2 ** 31)),
        "-days",
        "2",
        "-extfile",
        `${name}.ext`,
        "-out",
        `${name}-cert.pem`,
      );
    };
    const localSan = "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost";
    await Promise.all([
      sign("server", "server", "localhost", [...SERVER_EXT, localSan]),
      sign("client", "client", "qmp-test-client", CLIENT_EXT),
      sign("other-host", "server", "qemu.example", [
        ...SERVER_EXT,
        "subjectAltName=DNS:qemu.example",
      ]),
      sign("stranger", "client", "qmp-stranger", CLIENT_EXT, "other-ca"),
    ]);
    // Expired: valid for one day in 2020.
    mkdirSync(join(dir, "db"));
    writeFileSync(join(dir, "db", "index.txt"), "");
    writeFileSync(join(dir, "db", "serial"), "01\n");
    writeFileSync(join(dir, "ca.cnf"), CA_CONFIG);
    writeFileSync(join(dir, "expired.ext"), [...SERVER_EXT, localSan].join("\n") + "\n");
    await openssl(
      dir,
      "req",
      "-new",
      "-key",
      "server-key.pem",
      "-subj",
      "/CN=localhost",
      "-out",
      "expired.csr",
    );
    await openssl(
      dir,
      "ca",
      "-batch",
      "-notext",
      "-config",
      "ca.cnf",
      "-cert",
      "ca-cert.pem",
      "-keyfile",
      "ca-key.pem",
      "-in",
      "expired.csr",
      "-out",
      "expired-cert.pem",
      "-startdate",
      "20200101000000Z",
      "-enddate",
      "20200102000000Z",
      "-extfile",
      "expired.ext",
    );
    const read = (name: string): string => readFileSync(join(dir, name), "utf8");
    const pair = (cert: string, key: string): CertPair => ({ cert: read(cert), key: read(key) });
    const qemuDir = (name: string, files: Record<string, string>): string => {
      const d = join(dir, name);
      mkdirSync(d, { mode: 0o700 });
      for (const [to, from] of Object.entries(files)) writeFileSync(join(d, to), read(from));
      return d;
    };
    return {
      dir,
      ca: read("ca-cert.pem"),
      otherCa: read("other-ca-cert.pem"),
      server: pair("server-cert.pem", "server-key.pem"),
      client: pair("client-cert.pem", "client-key.pem"),
      expired: pair("expired-cert.pem", "server-key.pem"),
      otherHost: pair("other-host-cert.pem", "server-key.pem"),
      strangerClient: pair("stranger-cert.pem", "client-key.pem"),
      qemuServerDir: qemuDir("qemu-server", {
        "ca-cert.pem": "ca-cert.pem",
        "server-cert.pem": "server-cert.pem",
        "server-key.pem": "server-key.pem",
      }),
      qemuClientDir: qemuDir("qemu-client", {
        "ca-cert.pem": "ca-cert.pem",
        "client-cert.pem": "client-cert.pem",
        "client-key.pem": "client-key.pem",
      }),
      qemuStrangerDir: qemuDir("qemu-stranger", { "ca-cert.pem": "other-ca-cert.pem" }),
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
