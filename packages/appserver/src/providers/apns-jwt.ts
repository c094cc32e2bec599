import { importPKCS8, SignJWT, type CryptoKey } from "jose";

/** Apple rejects refreshes within 20 min (429) and tokens older than 60 min (403). */
export const APNS_JWT_REFRESH_MS = 40 * 60_000;
export const APNS_JWT_MIN_AGE_MS = 20 * 60_000;
export const APNS_JWT_MAX_AGE_MS = 60 * 60_000;

interface Issued {
  jwt: string;
  /** `bearer <jwt>`, the authorization header: built once per token, not per push. */
  authorization: string;
  issuedAt: number;
}

/** Imports an APNs .p8 key once; fails on anything but a PKCS#8 P-256 key. */
export function loadApnsKey(privateKeyPem: string): Promise<CryptoKey> {
  return importPKCS8(privateKeyPem, "ES256");
}

/**
 * The provider authentication token of one APNs key on one connection: ES256 {alg, kid} /
 * {iss, iat}, reused for 40 minutes, never replaced sooner than 20 minutes after it was issued.
 * APNs applies the 20-minute limit per connection, so each HTTP/2 session has its own instance
 * (a connection opened late in a shared token's life would otherwise see a refresh too soon).
 */
export class ApnsProviderToken {
  private current?: Issued;
  private previous?: Issued;
  private signing?: Promise<string>;
  private stale = false;

  constructor(
    private readonly o: { keyId: string; teamId: string; key: Promise<CryptoKey> },
    private readonly clock: () => number,
  ) {}

  /** The current token if it needs no refresh (the hot path: no promise, no signing). */
  cached(): string | undefined {
    return this.fresh()?.jwt;
  }

  /** `bearer <jwt>` of the current token if it needs no refresh (see `cached`). */
  cachedAuthorization(): string | undefined {
    return this.fresh()?.authorization;
  }

  private fresh(): Issued | undefined {
    const c = this.current;
    if (!c) return undefined;
    const age = this.clock() - c.issuedAt;
    const due = age >= APNS_JWT_REFRESH_MS || (this.stale && age >= APNS_JWT_MIN_AGE_MS);
    return due ? undefined : c;
  }

  async get(): Promise<string> {
    const now = this.clock();
    const cached = this.cached();
    if (cached !== undefined) return cached;
    this.signing ??= this.sign(now).finally(() => {
      this.signing = undefined;
    });
    return this.signing;
  }

  /** APNs said ExpiredProviderToken: replace it as soon as the 20-minute rule allows. */
  markExpired(): void {
    this.stale = true;
  }

  /**
   * APNs said TooManyProviderTokenUpdates: it still considers the previous token current, so go
   * back to it while it is young enough.
   */
  revert(): void {
    const p = this.previous;
    if (p && this.clock() - p.issuedAt < APNS_JWT_MAX_AGE_MS - 5 * 60_000) {
      this.current = p;
      this.previous = undefined;
    }
  }

  private async sign(now: number): Promise<string> {
    const key = await this.o.key;
    const iat = Math.floor(now / 1000);
    const jwt = await new SignJWT({ iss: this.o.teamId, iat })
      .setProtectedHeader({ alg: "ES256", kid: this.o.keyId })
      .sign(key);
    this.previous = this.current;
    this.current = { jwt, authorization: `bearer ${jwt}`, issuedAt: iat * 1000 };
    this.stale = false;
    return jwt;
  }
}
