import { readFileSync } from "node:fs";
import { importPKCS8, SignJWT } from "jose";

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
