import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface SelfSignedCert {
  keyPem: string;
  certPem: string;
}

export interface CertOptions {
  commonName: string;
  /** subjectAltName entries, e.g. ["DNS:localhost", "IP:127.0.0.1"]. */
  altNames: readonly string[];
  days?: number;
}

/**
 * A self-signed P-256 certificate (~0.1 s). node:crypto cannot issue X.509 certificates, so this
 * runs the system `openssl` (present wherever Node's TLS is).
 */
export function selfSignedCert(o: CertOptions): SelfSignedCert {
  const dir = mkdtempSync(join(tmpdir(), "lichen-cert-"));
  try {
    const keyPath = join(dir, "key.pem");
    const certPath = join(dir, "cert.pem");
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        String(o.days ?? 30),
        "-subj",
        `/CN=${o.commonName}`,
        "-addext",
        `subjectAltName=${o.altNames.join(",")}`,
        "-keyout",
        keyPath,
        "-out",
        certPath,
      ],
      { stdio: "pipe" },
    );
    return { keyPem: readFileSync(keyPath, "utf8"), certPem: readFileSync(certPath, "utf8") };
  } catch (e) {
    throw new Error(`cannot create a self-signed certificate with openssl: ${String(e)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
