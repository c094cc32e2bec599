import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface SelfSignedCert {
  keyPath: string;
  certPath: string;
  /** key + cert in one file (ejabberd's format). */
  pemPath: string;
}

/** A self-signed certificate for localhost and *.localhost (openssl, ~0.1 s with EC keys). */
export function makeLocalhostCert(dir: string): SelfSignedCert {
  const keyPath = join(dir, "localhost.key");
  const certPath = join(dir, "localhost.crt");
  const pemPath = join(dir, "localhost.pem");
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
      "3650",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,DNS:*.localhost",
      "-keyout",
      keyPath,
      "-out",
      certPath,
    ],
    { stdio: "pipe" },
  );
  writeFileSync(pemPath, readFileSync(keyPath, "utf8") + readFileSync(certPath, "utf8"));
  return { keyPath, certPath, pemPath };
}
