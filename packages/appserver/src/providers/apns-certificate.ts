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
  // Apple's universal certificates also cover <bundle id>.voip and .complication.
  const topics = [info.bundleId, `${info.bundleId}.voip`, `${info.bundleId}.complication`];
  if (topic !== undefined && !topics.includes(topic))
    out.push(`is for ${info.bundleId}, not topic ${topic}`);
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
