import { importPKCS8, SignJWT, type CryptoKey } from "jose";
import { HttpClient, parseRetryAfter } from "./http-client.js";
import type {
  FcmAppConfig,
  ProviderLogger,
  ProviderPush,
  ProviderResult,
  PushProvider,
} from "./types.js";

export const FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
/** Access tokens are replaced this long before Google says they expire. */
const REFRESH_MARGIN_MS = 5 * 60_000;
const NOOP_LOGGER: ProviderLogger = { warn: () => undefined, info: () => undefined };

interface GoogleError {
  error?: {
    code?: number;
    message?: string;
    status?: string;
    details?: { "@type"?: string; errorCode?: string }[];
  };
}

/** The FCM v1 message: data only, nothing but the push kind, so no content leaves the server. */
export function fcmMessage(
  p: ProviderPush,
  additionalData?: Record<string, string>,
): { message: Record<string, unknown> } {
  return {
    message: {
      token: p.token,
      // the operator's fixed extra keys (apps.<name>.additionalData) first: `kind` is ours
      data: { ...additionalData, kind: p.kind },
      android: {
        priority: p.kind === "alert" ? "high" : "normal",
        ttl: `${Math.max(0, Math.floor(p.ttlSeconds))}s`,
        ...(p.collapseId === undefined ? {} : { collapse_key: p.collapseId }),
      },
    },
  };
}

/** Maps an FCM v1 response to what the appserver should do, by errorCode first, then status. */
export function classifyFcm(status: number, body: string, retryAfterMs?: number): ProviderResult {
  let e: GoogleError["error"];
  try {
    e = (JSON.parse(body) as GoogleError).error;
  } catch {
    e = undefined;
  }
  const errorCode = e?.details?.find((d) => d["@type"] === FCM_ERROR_TYPE)?.errorCode;
  const reason = errorCode ?? e?.status ?? `HTTP ${status}`;
  const retry = retryAfterMs === undefined ? {} : { retryAfterMs };
  switch (errorCode) {
    case "UNREGISTERED":
    case "SENDER_ID_MISMATCH":
      return { outcome: "invalid-token", status, reason };
    case "INVALID_ARGUMENT":
      // The payload is fixed, so this is normally the token; but never blacklist on our own bug.
      return /registration token/i.test(e?.message ?? "")
        ? { outcome: "invalid-token", status, reason }
        : { outcome: "misconfigured", status, reason: `${reason}: ${e?.message ?? ""}` };
    case "QUOTA_EXCEEDED":
      return { outcome: "rate-limited", status, reason, ...retry };
    case "UNAVAILABLE":
    case "INTERNAL":
      return { outcome: "transient", status, reason, ...retry };
    case "THIRD_PARTY_AUTH_ERROR":
      return { outcome: "misconfigured", status, reason };
  }
  if (status === 429) return { outcome: "rate-limited", status, reason, ...retry };
  if (status >= 500 || status === 0) return { outcome: "transient", status, reason, ...retry };
  // A rejected access token: the cache is dropped and the next attempt exchanges a new one.
  if (status === 401) return { outcome: "transient", status, reason };
  return { outcome: "misconfigured", status, reason };
}

/**
 * FCM HTTP v1: a service-account JWT (RS256) exchanged for an OAuth2 access token, cached until
 * 5 minutes before expiry (one exchange in flight at a time), then messages:send over keep-alive.
 */
export class FcmProvider implements PushProvider {
  readonly name: string;
  private readonly clock: () => number;
  private readonly logger: ProviderLogger;
  private readonly timeoutMs: number;
  private readonly api: HttpClient;
  private readonly auth: HttpClient;
  private key?: Promise<CryptoKey>;
  private access?: { token: string; refreshAt: number };
  private exchanging?: Promise<string>;
  private readonly sendUrl: string;
  private closed = false;

  constructor(
    private readonly app: FcmAppConfig,
    opts: { clock?: () => number; logger?: ProviderLogger } = {},
  ) {
    this.name = app.name;
    this.clock = opts.clock ?? Date.now;
    this.logger = opts.logger ?? NOOP_LOGGER;
    this.timeoutMs = app.requestTimeoutMs ?? 10_000;
    const ca = app.caPem ? { caPem: app.caPem } : {};
    this.api = new HttpClient(app.endpoint, ca);
    this.auth = new HttpClient(app.tokenUri, ca);
    this.sendUrl = `${app.endpoint.replace(/\/$/, "")}/v1/projects/${encodeURIComponent(app.projectId)}/messages:send`;
    this.loadKey().catch((e: unknown) => {
      this.logger.warn({ err: String(e) }, "FCM service-account key cannot be loaded");
    });
  }

  private loadKey(): Promise<CryptoKey> {
    this.key ??= importPKCS8(this.app.privateKeyPem, "RS256");
    return this.key;
  }

  async send(push: ProviderPush): Promise<ProviderResult> {
    if (this.closed) return { outcome: "transient", status: 0, reason: "ProviderClosed" };
    let accessToken: string;
    try {
      accessToken = await this.accessToken();
    } catch (e) {
      return e instanceof AuthError
        ? e.result
        : { outcome: "transient", status: 0, reason: `TokenExchange: ${String(e)}` };
    }
    let res;
    try {
      res = await this.api.request(this.sendUrl, {
        method: "POST",
        headers: { authorization: `Bearer ${accessToken}`, "content-type": "application/json" },
        body: JSON.stringify(fcmMessage(push, this.app.additionalData)),
        timeoutMs: this.timeoutMs,
      });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      return {
        outcome: "transient",
        status: 0,
        reason: err.message === "Timeout" ? "Timeout" : `NetworkError: ${err.code ?? err.message}`,
      };
    }
    if (res.status === 200) {
      let name: string | undefined;
      try {
        name = (JSON.parse(res.body) as { name?: string }).name;
      } catch {
        name = undefined;
      }
      return { outcome: "delivered", status: 200, ...(name ? { providerId: name } : {}) };
    }
    if (res.status === 401 && this.access?.token === accessToken) this.access = undefined;
    return classifyFcm(
      res.status,
      res.body,
      parseRetryAfter(res.headers["retry-after"], this.clock()),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    this.api.close();
    this.auth.close();
  }

  private accessToken(): Promise<string> {
    const a = this.access;
    if (a && this.clock() < a.refreshAt) return Promise.resolve(a.token);
    this.exchanging ??= this.exchange().finally(() => {
      this.exchanging = undefined;
    });
    return this.exchanging;
  }

  private async exchange(): Promise<string> {
    let key: CryptoKey;
    try {
      key = await this.loadKey();
    } catch (e) {
      throw new AuthError({
        outcome: "misconfigured",
        status: 0,
        reason: `InvalidServiceAccountKey: ${String(e)}`,
      });
    }
    const now = this.clock();
    const iat = Math.floor(now / 1000);
    const assertion = await new SignJWT({ scope: FCM_SCOPE })
      .setProtectedHeader({ alg: "RS256", typ: "JWT" })
      .setIssuer(this.app.clientEmail)
      .setAudience(this.app.tokenUri)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 3600)
      .sign(key);
    const res = await this.auth.request(this.app.tokenUri, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: JWT_BEARER, assertion }).toString(),
      timeoutMs: this.timeoutMs,
    });
    let parsed: {
      access_token?: unknown;
      expires_in?: unknown;
      error?: unknown;
      error_description?: unknown;
    } = {};
    try {
      parsed = JSON.parse(res.body) as typeof parsed;
    } catch {
      // handled below
    }
    if (res.status !== 200 || typeof parsed.access_token !== "string") {
      const reason = `TokenExchange: ${typeof parsed.error === "string" ? parsed.error : `HTTP ${res.status}`}`;
      this.logger.warn(
        { status: res.status, reason, description: parsed.error_description },
        "FCM token exchange failed",
      );
      throw new AuthError(
        res.status >= 500 || res.status === 429
          ? { outcome: "transient", status: res.status, reason }
          : { outcome: "misconfigured", status: res.status, reason },
      );
    }
    const lifetimeMs = (typeof parsed.expires_in === "number" ? parsed.expires_in : 3600) * 1000;
    // Short-lived tokens (tests) are refreshed at half their life instead of 5 minutes early.
    const margin = Math.min(REFRESH_MARGIN_MS, lifetimeMs / 2);
    this.access = { token: parsed.access_token, refreshAt: now + lifetimeMs - margin };
    return parsed.access_token;
  }
}

class AuthError extends Error {
  constructor(readonly result: ProviderResult) {
    super("reason" in result ? result.reason : "auth");
  }
}
