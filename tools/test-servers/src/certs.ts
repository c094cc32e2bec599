import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { selfSignedCert } from "@lichen/test-kit";

export interface SelfSignedCert {
  keyPath: string;
  certPath: string;
  /** key + cert in one file (ejabberd's format). */
  pemPath: string;
}

/** A self-signed certificate for localhost and *.localhost (the shared test kit's openssl call). */
export function makeLocalhostCert(dir: string): SelfSignedCert {
  const { keyPem, certPem } = selfSignedCert({
    commonName: "localhost",
    altNames: ["DNS:localhost", "DNS:*.localhost"],
    days: 3650,
  });
  const keyPath = join(dir, "localhost.key");
  const certPath = join(dir, "localhost.crt");
  const pemPath = join(dir, "localhost.pem");
  writeFileSync(keyPath, keyPem);
  writeFileSync(certPath, certPem);
  writeFileSync(pemPath, keyPem + certPem);
  return { keyPath, certPath, pemPath };
}
