import {
  createHmac,
  createCipheriv,
  createDecipheriv,
  hash as sha,
  hkdfSync,
  randomBytes,
} from "node:crypto";

/** Bounds for a push node = device token. APNs tokens are 64 hex chars, FCM tokens ~150-200 chars. */
export interface TokenRules {
  minLength: number;
  maxLength: number;
}

export const DEFAULT_TOKEN_RULES: TokenRules = { minLength: 64, maxLength: 512 };

// APNs: hex; FCM: base64url plus ':'; some apps use '.'. Nothing else is ever part of a token.
const TOKEN_CHARSET = /^[A-Za-z0-9_:.-]+$/;

export type TokenCheck = { ok: true } | { ok: false; reason: string };

/** Validates a pubsub node as a device token. Runs before anything else looks at the request. */
export function checkToken(
  node: string | undefined,
  rules: TokenRules = DEFAULT_TOKEN_RULES,
): TokenCheck {
  if (node === undefined || node.length === 0) return { ok: false, reason: "missing node" };
  if (node.length < rules.minLength)
    return { ok: false, reason: `node shorter than ${rules.minLength}` };
  if (node.length > rules.maxLength)
    return { ok: false, reason: `node longer than ${rules.maxLength}` };
  if (!TOKEN_CHARSET.test(node))
    return { ok: false, reason: "node has characters outside [A-Za-z0-9_:.-]" };
  return { ok: true };
}

/** SHA-256's block size: HMAC pads its key to it. */
const BLOCK = 64;
/** Tokens up to this many UTF-8 bytes are hashed in a preallocated buffer (tokens: <= 512 chars). */
const INLINE_TOKEN_BYTES = 1536;

/**
 * Keyed hash of a device token: the only form in which a token is stored, logged or shared (Redis).
 * All nodes of one cluster share the secret so that their blacklist keys agree.
 */
export class TokenHasher {
  private readonly key: Buffer;
  private readonly queueKey: Buffer;
  /** HMAC's inner block (key XOR ipad) followed by room for the token (RFC 2104). */
  private readonly inner: Buffer;
  /** HMAC's outer block (key XOR opad) followed by the inner digest. */
  private readonly outer: Buffer;
  /** `inner` up to the end of a token of each UTF-8 length seen (APNs: one length). */
  private readonly innerViews: Buffer[] = [];

  constructor(secret: string | Buffer) {
    this.key = Buffer.isBuffer(secret) ? secret : Buffer.from(secret, "utf8");
    if (this.key.length < 16) throw new Error("token hash secret must be at least 16 bytes");
    this.queueKey = Buffer.from(
      hkdfSync("sha256", this.key, Buffer.alloc(0), "lichen-push queued tokens", 32),
    );
    // HMAC-SHA256 = SHA256((K ^ opad) || SHA256((K ^ ipad) || m)), K padded to the 64-byte block
    // (hashed first when longer). The padded key blocks are made once: `hash` then costs two
    // one-shot SHA-256 calls instead of an Hmac object that re-derives them for every token.
    const k = Buffer.alloc(BLOCK);
    (this.key.length > BLOCK ? sha("sha256", this.key, "buffer") : this.key).copy(k);
    this.inner = Buffer.alloc(BLOCK + INLINE_TOKEN_BYTES);
    this.outer = Buffer.alloc(BLOCK + 32);
    for (let i = 0; i < BLOCK; i++) {
      this.inner[i] = k[i]! ^ 0x36;
      this.outer[i] = k[i]! ^ 0x5c;
    }
  }

  /**
   * 32 hex chars (128 bits of HMAC-SHA256): collision-free in practice, short in memory.
   * `caseInsensitive` (APNs: tokens are hex, either case names the same device) hashes the
   * lower-cased token, so that both spellings are one entry for the rate limiter and the blacklists.
   * FCM tokens are case-sensitive and are hashed as given.
   */
  hash(token: string, caseInsensitive = false): string {
    const t = caseInsensitive ? token.toLowerCase() : token;
    // UTF-8 needs at most 3 bytes per UTF-16 unit: a longer token takes the generic path.
    if (t.length * 3 > INLINE_TOKEN_BYTES) {
      return createHmac("sha256", this.key).update(t).digest().toString("hex", 0, 16);
    }
    const n = this.inner.write(t, BLOCK, "utf8");
    // Digests as "binary" (latin1: one char per byte) strings written back into the preallocated
    // blocks: no Buffer per digest, no view per token (one per token length, kept).
    const view = (this.innerViews[n] ??= this.inner.subarray(0, BLOCK + n));
    this.outer.write(sha("sha256", view, "binary"), BLOCK, "binary");
    this.outer.write(sha("sha256", this.outer, "binary"), BLOCK, "binary");
    // Hex of the first 16 bytes, not digest("hex").slice(0, 32): V8 makes a slice a view that keeps
    // the 64-char parent alive, ~60 MB more per million keys held by the limiter. Same value.
    return this.outer.toString("hex", BLOCK, BLOCK + 16);
  }

  /**
   * Encrypts a token for the few seconds it sits in the persisted push queue (AES-256-GCM with a key
   * derived from the node secret), so the DB file never holds a raw token.
   */
  seal(token: string): string {
    const iv = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", this.queueKey, iv);
    const body = Buffer.concat([c.update(token, "utf8"), c.final()]);
    return Buffer.concat([iv, c.getAuthTag(), body]).toString("base64");
  }

  /** Inverse of `seal`; throws when the value was not sealed with this secret or was altered. */
  unseal(sealed: string): string {
    const raw = Buffer.from(sealed, "base64");
    if (raw.length < 29) throw new Error("sealed token too short");
    const d = createDecipheriv("aes-256-gcm", this.queueKey, raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString("utf8");
  }
}

// Domain names as they appear in a stanza's `from` (RFC 1035 labels, plus IDN already in A-label or
// UTF-8 form as servers pass them). Bounded to 253 chars.
const DOMAIN_CHARSET = /^[^\s@/"'<>&]+$/u;

/**
 * Reduces a stanza `from` to the server domain (drops any local part and resource) and validates it.
 * Returns undefined when there is no usable domain. The local part is never kept anywhere.
 */
export function domainOf(from: string | undefined): string | undefined {
  if (!from) return undefined;
  let s = from;
  const slash = s.indexOf("/");
  if (slash >= 0) s = s.slice(0, slash);
  const at = s.lastIndexOf("@");
  if (at >= 0) s = s.slice(at + 1);
  s = s.toLowerCase();
  if (s.endsWith(".")) s = s.slice(0, -1);
  if (s.length === 0 || s.length > 253 || !DOMAIN_CHARSET.test(s)) return undefined;
  return s;
}
