import { selfSignedCert, type SelfSignedCert } from "@lichen/test-kit";

export type { SelfSignedCert };

/** A self-signed P-256 certificate for 127.0.0.1 and localhost (the shared test kit's openssl call). */
export function makeLoopbackCert(): SelfSignedCert {
  return selfSignedCert({
    commonName: "lichen push simulator",
    altNames: ["IP:127.0.0.1", "DNS:localhost"],
  });
}
