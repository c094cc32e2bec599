import { X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";

/** What the appserver needs to know about an APNs push certificate (.p12). */
export interface ApnsCertificateInfo {
  /** Subject UID: the app's bundle id, the certificate's default topic. */
  bundleId: string;
  /** Subject common name, e.g. "Apple Push Services: im.example.app". */
  commonName: string;
  /** Environments the certificate is for, from Apple's common-name prefixes. */
  environments: ("production" | "sandbox")[];
  /**
   * Topics the certificate may push to: those its multi-topic extension lists (Apple's universal
   * certificates: the bundle id, `.voip`, `.complication`), else only the bundle id.
   */
  topics: string[];
  validTo: Date;
  validFrom: Date;
}

/**
 * Opens a .p12 the way the TLS connection will (so that what passes here also connects) and reads
 * its certificate. Throws an Error whose message tells the operator what to do.
 */
export function readApnsCertificate(pfx: Buffer, passphrase?: string): ApnsCertificateInfo {
  let der: Buffer | undefined;
  try {
    const ctx = createSecureContext({ pfx, ...(passphrase !== undefined ? { passphrase } : {}) });
    // SecureContext.getCertificate(): the DER of the loaded certificate (what TLSSocket uses).
    const native = (ctx as unknown as { context?: { getCertificate?: () => Buffer | null } })
      .context;
    der = native?.getCertificate?.() ?? undefined;
  } catch (e) {
    const msg = (e as Error).message;
    if (/mac verify failure/i.test(msg))
      throw new Error("wrong certificatePassphrase (or a damaged file)", { cause: e });
    if (/unsupported/i.test(msg))
      throw new Error(
        "the .p12 uses legacy encryption (RC2/3DES, older Keychain exports) that OpenSSL 3 refuses: re-encode it with `openssl pkcs12 -legacy -in old.p12 -nodes | openssl pkcs12 -export -out new.p12`",
        { cause: e },
      );
    throw new Error(`not a PKCS#12 (.p12) file with a certificate and its key: ${msg}`, {
      cause: e,
    });
  }
  if (!der) throw new Error("the .p12 holds no certificate");
  const x = new X509Certificate(der);
  const field = (name: string): string =>
    x.subject
      .split("\n")
      .find((l) => l.startsWith(`${name}=`))
      ?.slice(name.length + 1) ?? "";
  const commonName = field("CN");
  const bundleId = field("UID");
  if (!bundleId)
    throw new Error(
      `not an APNs push certificate: its subject has no UID (bundle id): ${commonName}`,
    );
  const environments: ApnsCertificateInfo["environments"] = commonName.startsWith(
    "Apple Development IOS Push Services:",
  )
    ? ["sandbox"]
    : commonName.startsWith("Apple Production IOS Push Services:")
      ? ["production"]
      : ["production", "sandbox"];
  return {
    bundleId,
    commonName,
    environments,
    topics: apnsCertificateTopics(der) ?? [bundleId],
    validFrom: new Date(x.validFrom),
    validTo: new Date(x.validTo),
  };
}

/**
 * Problems of using this certificate for `topic` at `endpoint` (Apple answers them with 403
 * BadCertificateEnvironment, 400 TopicDisallowed or a failed handshake), as messages; [] if none.
 */
export function apnsCertificateProblems(
  info: ApnsCertificateInfo,
  topic: string | undefined,
  endpoint: string | undefined,
  now: number,
): string[] {
  const out: string[] = [];
  if (info.validTo.getTime() < now) out.push(`expired on ${info.validTo.toISOString()}`);
  if (info.validFrom.getTime() > now) out.push(`not valid before ${info.validFrom.toISOString()}`);
  if (topic !== undefined && !info.topics.includes(topic))
    out.push(`is for ${info.topics.join(", ")}, not topic ${topic}`);
  const env =
    endpoint === "https://api.push.apple.com"
      ? "production"
      : endpoint === "https://api.sandbox.push.apple.com"
        ? "sandbox"
        : undefined;
  if (env && !info.environments.includes(env))
    out.push(`is for ${info.environments.join("/")} only, endpoint ${endpoint} is ${env}`);
  return out;
}

/** Apple's multi-topic extension, 1.2.840.113635.100.6.3.6, as DER content octets of the OID. */
const TOPICS_OID = Buffer.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x63, 0x64, 0x06, 0x03, 0x06]);

/**
 * The topics listed by the certificate's multi-topic extension, or undefined without one. Its value
 * is SEQUENCE { UTF8String topic, SEQUENCE { UTF8String kind ("app", "voip"...) }, ... }. A dozen
 * lines of DER walking for one extension instead of an ASN.1 dependency: node's X509Certificate
 * does not expose unknown extensions. Throws on a malformed certificate or extension.
 */
export function apnsCertificateTopics(der: Buffer): string[] | undefined {
  const cert = derChildren(der, readTlv(der, 0));
  const tbs = cert[0];
  if (!tbs || tbs.tag !== 0x30) throw new Error("malformed certificate");
  const extensions = derChildren(der, tbs).find((t) => t.tag === 0xa3);
  if (!extensions) return undefined;
  const list = derChildren(der, extensions)[0];
  if (!list) return undefined;
  for (const ext of derChildren(der, list)) {
    const [oid, ...rest] = derChildren(der, ext);
    if (oid?.tag !== 0x06 || !der.subarray(oid.start, oid.end).equals(TOPICS_OID)) continue;
    const value = rest.find((t) => t.tag === 0x04);
    if (!value) throw new Error("malformed APNs topics extension");
    const inner = der.subarray(value.start, value.end);
    const seq = readTlv(inner, 0);
    if (seq.tag !== 0x30) throw new Error("malformed APNs topics extension");
    const topics = derChildren(inner, seq)
      .filter((t) => t.tag === 0x0c)
      .map((t) => inner.subarray(t.start, t.end).toString("utf8"));
    if (topics.length === 0) throw new Error("APNs topics extension lists no topic");
    return topics;
  }
  return undefined;
}

interface Tlv {
  tag: number;
  /** content start and end offsets */
  start: number;
  end: number;
}

function readTlv(buf: Buffer, off: number): Tlv {
  if (off + 2 > buf.length) throw new Error("malformed certificate (truncated DER)");
  const tag = buf[off]!;
  let len = buf[off + 1]!;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > buf.length)
      throw new Error("malformed certificate (DER length)");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]!;
    start += n;
  }
  const end = start + len;
  if (end > buf.length) throw new Error("malformed certificate (truncated DER)");
  return { tag, start, end };
}

function derChildren(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let off = parent.start; off < parent.end;) {
    const t = readTlv(buf, off);
    if (t.end > parent.end) throw new Error("malformed certificate (DER nesting)");
    out.push(t);
    off = t.end;
  }
  return out;
}
