import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Which APNs environment a push certificate is for, named after the common-name prefixes of the
 * certificates Apple issues: "Apple Development IOS Push Services" (sandbox only), "Apple Production
 * IOS Push Services" (production only), "Apple Push Services" (universal: both).
 */
export type ApnsCertificateKind = "development" | "production" | "universal";

const CN_PREFIX: Record<ApnsCertificateKind, string> = {
  development: "Apple Development IOS Push Services",
  production: "Apple Production IOS Push Services",
  universal: "Apple Push Services",
};

/** The environment(s) a certificate's subject common name allows (Apple's naming). */
export function apnsCertificateKind(commonName: string): ApnsCertificateKind | undefined {
  // longest prefixes first: "Apple Push Services" is not a prefix of the others, but be explicit
  for (const kind of ["development", "production", "universal"] as const) {
    if (commonName.startsWith(`${CN_PREFIX[kind]}:`)) return kind;
  }
  return undefined;
}

export interface ApnsClientCertificate {
  /** PKCS#12 (key + certificate), what Keychain Access exports and fpush reads. */
  p12: Buffer;
  passphrase: string;
  certPem: string;
  keyPem: string;
}

/**
 * A certificate authority standing in for Apple's WWDR CA: it issues push client certificates shaped
 * like Apple's (subject UID = the bundle id, CN = "<kind prefix>: <bundle id>", OU = team id), made
 * with the openssl command line.
 */
export class ApnsCertificateAuthority {
  readonly certPem: string;
  private readonly keyPem: string;

  constructor() {
    const out = openssl((dir) => {
      run([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=Lichen simulated Apple WWDR CA",
        "-keyout",
        join(dir, "ca.key"),
        "-out",
        join(dir, "ca.pem"),
      ]);
      return {
        key: readFileSync(join(dir, "ca.key"), "utf8"),
        cert: readFileSync(join(dir, "ca.pem"), "utf8"),
      };
    });
    this.keyPem = out.key;
    this.certPem = out.cert;
  }

  /** Issues a push certificate for `topic` (a bundle id), packed as a .p12. */
  issue(o: {
    topic: string;
    kind?: ApnsCertificateKind;
    teamId?: string;
    passphrase?: string;
    days?: number;
    /** Encrypt the .p12 the old way (RC2/3DES, as older Keychain exports): OpenSSL 3 refuses it. */
    legacy?: boolean;
  }): ApnsClientCertificate {
    const passphrase = o.passphrase ?? "";
    return openssl((dir) => {
      const p = (f: string) => join(dir, f);
      writeFileSync(p("ca.key"), this.keyPem, { mode: 0o600 });
      writeFileSync(p("ca.pem"), this.certPem);
      const subj = `/UID=${o.topic}/CN=${CN_PREFIX[o.kind ?? "universal"]}: ${o.topic}/OU=${o.teamId ?? "SIMTEAM001"}/O=Lichen simulator/C=US`;
      run([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        subj,
        "-keyout",
        p("k.pem"),
        "-out",
        p("r.csr"),
      ]);
      writeFileSync(p("ext.cnf"), "extendedKeyUsage=clientAuth\n");
      run([
        "x509",
        "-req",
        "-in",
        p("r.csr"),
        "-CA",
        p("ca.pem"),
        "-CAkey",
        p("ca.key"),
        "-CAcreateserial",
        "-days",
        String(o.days ?? 30),
        "-extfile",
        p("ext.cnf"),
        "-out",
        p("c.pem"),
      ]);
      run([
        "pkcs12",
        "-export",
        ...(o.legacy ? ["-legacy"] : []),
        "-in",
        p("c.pem"),
        "-inkey",
        p("k.pem"),
        "-out",
        p("c.p12"),
        "-passout",
        `pass:${passphrase}`,
      ]);
      return {
        p12: readFileSync(p("c.p12")),
        passphrase,
        certPem: readFileSync(p("c.pem"), "utf8"),
        keyPem: readFileSync(p("k.pem"), "utf8"),
      };
    });
  }
}

function run(args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: "pipe" });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`openssl ${args[0]} failed: ${stderr || String(e)}`);
  }
}

function openssl<T>(f: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "lichen-apns-ca-"));
  try {
    return f(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
