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
    /**
     * Topics listed in Apple's multi-topic extension (1.2.840.113635.100.6.3.6). Default: a
     * universal certificate lists the bundle id, `.voip` and `.complication` (as Apple's do), the
     * others have no extension (their only topic is the bundle id). `[]`: no extension.
     */
    topics?: string[];
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
      const kind = o.kind ?? "universal";
      const topics =
        o.topics ??
        (kind === "universal" ? [o.topic, `${o.topic}.voip`, `${o.topic}.complication`] : []);
      writeFileSync(
        p("ext.cnf"),
        "extendedKeyUsage=clientAuth\n" +
          (topics.length > 0
            ? `${TOPICS_OID}=DER:${encodeTopicsExtension(topics).toString("hex")}\n`
            : ""),
      );
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

/** Apple's multi-topic extension of push certificates. */
export const TOPICS_OID = "1.2.840.113635.100.6.3.6";
const TOPICS_OID_DER = Buffer.from("2a864886f763640603" + "06", "hex");
const TOPIC_KINDS: Record<string, string> = { voip: "voip", complication: "complication" };

/**
 * The extension's value as Apple encodes it: SEQUENCE { UTF8String topic, SEQUENCE { UTF8String
 * kind } ... }, kind "app" for the bundle id, else the topic's last label ("voip", "complication").
 */
export function encodeTopicsExtension(topics: string[]): Buffer {
  const items = topics.flatMap((t) => {
    const kind = TOPIC_KINDS[t.slice(t.lastIndexOf(".") + 1)] ?? "app";
    return [der(0x0c, Buffer.from(t, "utf8")), der(0x30, der(0x0c, Buffer.from(kind, "utf8")))];
  });
  return der(0x30, Buffer.concat(items));
}

/** The topics a certificate's (DER) multi-topic extension lists; undefined without one. */
export function certificateTopics(cert: Buffer): string[] | undefined {
  const tbs = children(cert, tlv(cert, 0))[0];
  const exts = tbs && children(cert, tbs).find((t) => t.tag === 0xa3);
  const list = exts && children(cert, exts)[0];
  if (!list) return undefined;
  for (const ext of children(cert, list)) {
    const parts = children(cert, ext);
    const oid = parts[0];
    if (!oid || !cert.subarray(oid.start, oid.end).equals(TOPICS_OID_DER)) continue;
    const octets = parts.find((t) => t.tag === 0x04);
    if (!octets) return [];
    const v = cert.subarray(octets.start, octets.end);
    return children(v, tlv(v, 0))
      .filter((t) => t.tag === 0x0c)
      .map((t) => v.subarray(t.start, t.end).toString("utf8"));
  }
  return undefined;
}

function der(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const len =
    n < 0x80
      ? Buffer.from([n])
      : n < 0x100
        ? Buffer.from([0x81, n])
        : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, content]);
}

function tlv(b: Buffer, off: number): { tag: number; start: number; end: number } {
  let len = b[off + 1] ?? 0;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (b[start + i] ?? 0);
    start += n;
  }
  if (start + len > b.length) throw new Error("truncated DER");
  return { tag: b[off] ?? 0, start, end: start + len };
}

function children(b: Buffer, p: { start: number; end: number }) {
  const out: ReturnType<typeof tlv>[] = [];
  for (let off = p.start; off < p.end; off = out[out.length - 1]!.end) out.push(tlv(b, off));
  return out;
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
