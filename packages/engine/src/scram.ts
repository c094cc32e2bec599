// SCRAM-SHA-256 (RFC 7677) and SCRAM-SHA-1 (RFC 5802) for xmpp.js's SASL factory. xmpp.js 0.14
// only ships SCRAM-SHA-1, and never checks the server's signature; this one does (a server that
// cannot prove it knows the password is an impostor), see `verifyServerFinal`.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

type Hash = "sha1" | "sha256";

/** RFC 5802 §5.1: "=" and "," in names are escaped. */
const saslname = (s: string): string => s.replace(/=/g, "=3D").replace(/,/g, "=2C");

function parseAttributes(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(",")) {
    const i = part.indexOf("=");
    if (i > 0) out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

export class ScramError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ScramError";
  }
}

/** One SCRAM exchange (client side), in the shape saslmechanisms/xmpp.js expect. */
export class ScramMechanism {
  readonly clientFirst = true;
  readonly name: string;
  private stage: "initial" | "challenge" | "final" = "initial";
  private cnonce = "";
  private clientFirstBare = "";
  private serverFirst = "";
  private expectedServerSignature: Buffer | null = null;
  /** The server proved it knows the password. */
  verified = false;

  constructor(
    private readonly hash: Hash,
    private readonly genNonce: () => string = () => randomBytes(18).toString("base64"),
  ) {
    this.name = hash === "sha256" ? "SCRAM-SHA-256" : "SCRAM-SHA-1";
  }

  response(cred: { username?: string | null; password?: string | null }): string {
    if (this.stage === "initial") {
      this.cnonce = this.genNonce();
      this.clientFirstBare = `n=${saslname(cred.username ?? "")},r=${this.cnonce}`;
      this.stage = "challenge";
      return `n,,${this.clientFirstBare}`;
    }
    if (this.stage === "challenge") {
      const a = parseAttributes(this.serverFirst);
      if (a.e) throw new ScramError(`server refused: ${a.e}`);
      const nonce = a.r ?? "";
      const iterations = Number(a.i);
      // The server nonce must extend ours (RFC 5802 §5.1); a low count weakens the hash.
      if (!nonce.startsWith(this.cnonce) || nonce === this.cnonce)
        throw new ScramError("server nonce does not extend the client nonce");
      if (!Number.isInteger(iterations) || iterations < 1)
        throw new ScramError(`bad iteration count ${a.i}`);
      if (!a.s) throw new ScramError("server sent no salt");
      const len = this.hash === "sha256" ? 32 : 20;
      const salted = pbkdf2Sync(
        (cred.password ?? "").normalize("NFKC"),
        Buffer.from(a.s, "base64"),
        iterations,
        len,
        this.hash,
      );
      const clientKey = createHmac(this.hash, salted).update("Client Key").digest();
      const storedKey = createHash(this.hash).update(clientKey).digest();
      const withoutProof = `c=biws,r=${nonce}`;
      const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
      const signature = createHmac(this.hash, storedKey).update(authMessage).digest();
      const proof = Buffer.alloc(len);
      for (let i = 0; i < len; i++) proof[i] = clientKey[i]! ^ signature[i]!;
      const serverKey = createHmac(this.hash, salted).update("Server Key").digest();
      this.expectedServerSignature = createHmac(this.hash, serverKey).update(authMessage).digest();
      this.stage = "final";
      return `${withoutProof},p=${proof.toString("base64")}`;
    }
    return "";
  }

  challenge(chal: string): this {
    if (this.stage === "challenge") this.serverFirst = chal;
    else if (this.stage === "final") this.verifyServerFinal(chal);
    return this;
  }

  /** Checks the server-final message (`v=` in <success/>); throws on a wrong or missing proof. */
  verifyServerFinal(serverFinal: string): void {
    const a = parseAttributes(serverFinal);
    if (a.e) throw new ScramError(`server error: ${a.e}`);
    const v = a.v ? Buffer.from(a.v, "base64") : null;
    const want = this.expectedServerSignature;
    if (!want || !v || v.length !== want.length || !timingSafeEqual(v, want))
      throw new ScramError("server signature mismatch: the server does not know the password");
    this.verified = true;
  }
}

/** Mechanisms for saslmechanisms' `use(name, ctor)`, strongest first; reports each instance. */
export function scramMechanisms(
  onCreate: (m: ScramMechanism) => void,
): { name: string; ctor: new () => ScramMechanism }[] {
  const make = (hash: Hash) =>
    class extends ScramMechanism {
      constructor() {
        super(hash);
        onCreate(this);
      }
    };
  return [
    { name: "SCRAM-SHA-256", ctor: make("sha256") },
    { name: "SCRAM-SHA-1", ctor: make("sha1") },
  ];
}
