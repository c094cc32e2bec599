// The OMEMO 0.3 payload: AES-128-GCM; the 16-byte key and the 16-byte tag travel, concatenated,
// inside each device's Signal message.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

export interface SealedPayload {
  iv: Buffer;
  payload: Buffer;
  /** key (16) || tag (16), encrypted per recipient device. */
  keyAndTag: Buffer;
}

export function sealPayload(plaintext: string): SealedPayload {
  const key = randomBytes(16);
  const iv = randomBytes(12); // 12 bytes: what Conversations, Dino and Profanity send
  const cipher = createCipheriv("aes-128-gcm", key, iv);
  const payload = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return { iv, payload, keyAndTag: Buffer.concat([key, cipher.getAuthTag()]) };
}

/**
 * Opens a payload. Accepts 12- and 16-byte IVs, and the old form where the key material is the
 * 16-byte key alone and the tag is appended to the payload. Throws on a tag mismatch.
 */
export function openPayload(keyMaterial: Buffer, iv: Buffer, payload: Buffer): string {
  let key: Buffer;
  let tag: Buffer;
  let ciphertext: Buffer;
  if (keyMaterial.length >= 32) {
    key = keyMaterial.subarray(0, 16);
    tag = keyMaterial.subarray(16, 32);
    ciphertext = payload;
  } else if (keyMaterial.length === 16 && payload.length >= 16) {
    key = keyMaterial;
    tag = payload.subarray(payload.length - 16);
    ciphertext = payload.subarray(0, payload.length - 16);
  } else throw new Error(`key material of ${keyMaterial.length} bytes`);
  const decipher = createDecipheriv("aes-128-gcm", key, iv, { authTagLength: 16 });
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString("utf8");
  } catch {
    throw new Error("payload authentication failed (GCM tag mismatch)");
  }
}
