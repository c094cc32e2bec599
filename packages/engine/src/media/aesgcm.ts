// XEP-0454 (OMEMO media sharing): the file is AES-256-GCM encrypted with a fresh key and a 12-byte
// IV, the 16-byte tag appended to the ciphertext; the `https` URL becomes `aesgcm` and carries
// IV + key in hex in its fragment, so the upload service only ever stores ciphertext.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import {
  createReadStream,
  createWriteStream,
  openSync,
  readSync,
  closeSync,
  rmSync,
  statSync,
} from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { MediaError } from "./errors.js";

const TAG_BYTES = 16;

/** A new key and IV as the URL fragment: 24 hex digits of IV, then 64 of key. */
export function newAesgcmFragment(): string {
  return randomBytes(12).toString("hex") + randomBytes(32).toString("hex");
}

/** IV and key of a fragment; the legacy 16-byte IV (96 hex digits) is accepted as XEP-0454 asks. */
export function parseFragment(fragment: string): { iv: Buffer; key: Buffer } {
  if (!/^[0-9a-fA-F]+$/.test(fragment) || (fragment.length !== 88 && fragment.length !== 96))
    throw new MediaError(
      "bad-url",
      "aesgcm URL fragment is not 12 or 16 bytes of IV + 32 of key in hex",
    );
  const ivHex = fragment.length - 64;
  return {
    iv: Buffer.from(fragment.slice(0, ivHex), "hex"),
    key: Buffer.from(fragment.slice(ivHex), "hex"),
  };
}

/** `https://host/p` + fragment → `aesgcm://host/p#fragment`. */
export function toAesgcmUrl(httpsUrl: string, fragment: string): string {
  return `aesgcm://${httpsUrl.replace(/^https?:\/\//, "").replace(/#.*$/, "")}#${fragment}`;
}

/**
 * `aesgcm://host/p#f` → the URL to GET and the fragment. `plainHttp` (loopback test services)
 * maps it to http:// instead of https://.
 */
export function fromAesgcmUrl(
  url: string,
  plainHttp = false,
): { fetchUrl: string; fragment: string } {
  const m = /^aesgcm:\/\/([^#]+)#(.+)$/.exec(url);
  if (!m?.[1] || !m[2]) throw new MediaError("bad-url", `not an aesgcm:// URL with a key: ${url}`);
  return { fetchUrl: `${plainHttp ? "http" : "https"}://${m[1]}`, fragment: m[2] };
}

export async function encryptFile(src: string, dst: string, fragment: string): Promise<void> {
  const { iv, key } = parseFragment(fragment);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  const out = createWriteStream(dst);
  await pipeline(createReadStream(src), cipher, out, { end: false });
  await new Promise<void>((resolve, reject) =>
    out.end(cipher.getAuthTag(), () => resolve()).once("error", reject),
  );
}

/** Decrypts `src` (ciphertext + tag) into `dst`; a wrong key or altered file is a MediaError. */
export async function decryptFile(src: string, dst: string, fragment: string): Promise<void> {
  const { iv, key } = parseFragment(fragment);
  const size = statSync(src).size;
  if (size < TAG_BYTES)
    throw new MediaError("decrypt-failed", "encrypted file shorter than its tag");
  const tag = Buffer.alloc(TAG_BYTES);
  const fd = openSync(src, "r");
  try {
    readSync(fd, tag, 0, TAG_BYTES, size - TAG_BYTES);
  } finally {
    closeSync(fd);
  }
  const decipher = createDecipheriv("aes-256-gcm", key, iv);
  decipher.setAuthTag(tag);
  try {
    await pipeline(
      size > TAG_BYTES ? createReadStream(src, { end: size - TAG_BYTES - 1 }) : Readable.from([]),
      decipher,
      createWriteStream(dst),
    );
  } catch (err) {
    // GCM authenticates only at the end: what was written is unauthenticated plaintext, never kept.
    rmSync(dst, { force: true });
    throw new MediaError(
      "decrypt-failed",
      `AES-GCM decryption failed (wrong key or altered file): ${(err as Error).message}`,
    );
  }
}
