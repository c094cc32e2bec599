import { readFileSync } from "node:fs";
import { importPKCS8, SignJWT } from "jose";
import { apnsCertificateProblems, readApnsCertificate } from "./providers/apns-certificate.js";

/** The fields of one app that carry credentials (validated or raw config). */
export interface CredentialFields {
  type?: unknown;
  privateKeyPem?: unknown;
  privateKeyFile?: unknown;
  caPem?: unknown;
  caFile?: unknown;
  keyId?: unknown;
  teamId?: unknown;
  clientEmail?: unknown;
  certificateFile?: unknown;
  certificatePassphrase?: unknown;
  topic?: unknown;
  endpoint?: unknown;
}

function readField(
  path: string,
  inline: unknown,
  file: unknown,
  issues: string[],
  fileField: string,
): string | undefined {
  if (typeof inline === "string") return inline;
  if (typeof file !== "string") return undefined;
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    issues.push(
      `${path}.${fileField}: cannot read ${file}: ${code === "ENOENT" ? "no such file" : (e as Error).message}`,
    );
    return undefined;
  }
}

/**
 * Checks one app's credentials the way the provider will use them: the key file is read, parsed as
 * PKCS#8 of the right kind (APNs .p8: P-256 for ES256; FCM service account: RSA for RS256) and a
 * test JWT is signed. Returns one line per problem, named by field; [] when all is well.
 */
export async function checkAppCredentials(name: string, app: CredentialFields): Promise<string[]> {
  const path = `apps.${name}`;
  const issues: string[] = [];
  if (app.type === "apns" && typeof app.certificateFile === "string") {
    readField(path, app.caPem, app.caFile, issues, "caFile");
    return [...issues, ...checkApnsCertificateFile(path, app)];
  }
  const keyField = typeof app.privateKeyPem === "string" ? "privateKeyPem" : "privateKeyFile";
  const pem = readField(path, app.privateKeyPem, app.privateKeyFile, issues, "privateKeyFile");
  readField(path, app.caPem, app.caFile, issues, "caFile");
  if (pem === undefined || (app.type !== "apns" && app.type !== "fcm")) return issues;
  const alg = app.type === "apns" ? "ES256" : "RS256";
  const what =
    app.type === "apns"
      ? "an APNs .p8 key (PKCS#8, P-256)"
      : "an RSA private key (PKCS#8, the service account's private_key)";
  try {
    const key = await importPKCS8(pem, alg);
    await new SignJWT(
      app.type === "apns" ? { iss: String(app.teamId ?? "check") } : { scope: "check" },
    )
      .setProtectedHeader({
        alg,
        ...(app.type === "apns" ? { kid: String(app.keyId ?? "check") } : {}),
      })
      .setIssuedAt()
      .sign(key);
  } catch (e) {
    const src = keyField === "privateKeyFile" ? ` in ${String(app.privateKeyFile)}` : "";
    issues.push(`${path}.${keyField}: not ${what}${src}: ${(e as Error).message}`);
  }
  return issues;
}

/**
 * An APNs .p12: opened as the TLS connection will open it (passphrase, encryption), then the
 * certificate checked against the app: expiry, topic (the bundle id in its subject UID) and the
 * endpoint's environment.
 */
function checkApnsCertificateFile(path: string, app: CredentialFields): string[] {
  const file = String(app.certificateFile);
  let pfx: Buffer;
  try {
    pfx = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return [
      `${path}.certificateFile: cannot read ${file}: ${code === "ENOENT" ? "no such file" : (e as Error).message}`,
    ];
  }
  try {
    const passphrase =
      typeof app.certificatePassphrase === "string" ? app.certificatePassphrase : undefined;
    const info = readApnsCertificate(pfx, passphrase);
    return apnsCertificateProblems(
      info,
      typeof app.topic === "string" ? app.topic : undefined,
      typeof app.endpoint === "string" ? app.endpoint : undefined,
      Date.now(),
    ).map((p) => `${path}.certificateFile: the certificate in ${file} ${p}`);
  } catch (e) {
    return [`${path}.certificateFile: ${file}: ${(e as Error).message}`];
  }
}

/** checkAppCredentials for every app of a (raw or validated) config's `apps`. */
export async function checkCredentials(apps: unknown): Promise<string[]> {
  if (typeof apps !== "object" || apps === null || Array.isArray(apps)) return [];
  const out: string[] = [];
  for (const [name, app] of Object.entries(apps as Record<string, unknown>)) {
    if (typeof app === "object" && app !== null)
      out.push(...(await checkAppCredentials(name, app)));
  }
  return out;
}
