import { generateKeyPairSync, randomBytes } from "node:crypto";

export interface ApnsKey {
  /** 10-character key id (the `kid` of the provider JWT). */
  keyId: string;
  /** 10-character team id (the `iss` of the provider JWT). */
  teamId: string;
  /** PKCS#8 P-256 key, the format of Apple's .p8 files. */
  privateKeyPem: string;
  publicKeyPem: string;
}

export interface FcmServiceAccount {
  projectId: string;
  clientEmail: string;
  privateKeyId: string;
  /** PKCS#8 RSA key, the format of a service-account JSON `private_key`. */
  privateKeyPem: string;
  publicKeyPem: string;
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
function randomId(length: number): string {
  const bytes = randomBytes(length);
  let out = "";
  for (const b of bytes) out += ALNUM[b % ALNUM.length];
  return out;
}

/** A fresh APNs token-auth key, shaped like what the Apple developer portal hands out. */
export function generateApnsKey(o: { keyId?: string; teamId?: string } = {}): ApnsKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    keyId: o.keyId ?? randomId(10),
    teamId: o.teamId ?? randomId(10),
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

/** A fresh service account (RSA 2048), shaped like a Firebase service-account JSON. */
export function generateFcmServiceAccount(o: { projectId?: string } = {}): FcmServiceAccount {
  const projectId = o.projectId ?? `lichen-sim-${randomId(6).toLowerCase()}`;
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    projectId,
    clientEmail: `firebase-adminsdk-sim@${projectId}.iam.gserviceaccount.com`,
    privateKeyId: randomBytes(20).toString("hex"),
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}
