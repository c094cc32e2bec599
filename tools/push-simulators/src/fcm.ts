import { createPublicKey, randomBytes, type KeyObject } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { compactVerify } from "jose";
import { DeliveryLog } from "./delivery-log.js";

export const FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

export type FcmErrorCode =
  | "UNREGISTERED"
  | "SENDER_ID_MISMATCH"
  | "QUOTA_EXCEEDED"
  | "UNAVAILABLE"
  | "INTERNAL"
  | "INVALID_ARGUMENT"
  | "THIRD_PARTY_AUTH_ERROR";

/** One scripted response for a token: "ok", an FCM error code, or a slow answer. */
export type FcmScriptStep =
  | "ok"
  | FcmErrorCode
  | { error: FcmErrorCode; retryAfterS?: number }
  | { slowMs: number; then?: "ok" | FcmErrorCode };

export interface FcmSimulatorOptions {
  projectId: string;
  clientEmail: string;
  /** SPKI PEM (or KeyObject) of the service account's RSA key. */
  serviceAccountPublicKey: string | KeyObject;
  port?: number;
  /** Epoch milliseconds; drives assertion checks and access-token expiry. */
  clock?: () => number;
  /** `expires_in` of issued access tokens (default 3600). */
  accessTokenLifetimeS?: number;
  /** Retry-After seconds sent with QUOTA_EXCEEDED (default 30). */
  quotaRetryAfterS?: number;
  /** Called with every messages:send outcome (the CLI prints these). */
  onResponse?: (r: FcmResponseRecord) => void;
}

export interface FcmDelivery {
  token: string;
  /** The `message` object as received. */
  message: Record<string, unknown>;
  /** Message name returned to the sender. */
  name: string;
  bytes: number;
  at: number;
}

/** A messages:send outcome; status 0 / "ClientGone" when the sender left before a slow answer. */
export interface FcmResponseRecord {
  token: string;
  status: number;
  errorCode?: string;
  at: number;
}

export interface FcmSimulator {
  /** Origin for the provider's `endpoint`. */
  readonly url: string;
  /** OAuth2 token endpoint (`url` + "/token"): the service account's `token_uri`. */
  readonly tokenUri: string;
  readonly port: number;
  readonly deliveries: FcmDelivery[];
  readonly responses: FcmResponseRecord[];
  /** messages:send requests received. */
  readonly requests: number;
  /** Successful assertion → access-token exchanges. */
  readonly tokenExchanges: number;
  script(token: string, steps: FcmScriptStep[]): void;
  deliveriesFor(token: string): FcmDelivery[];
  waitForDeliveries(n: number, timeoutMs?: number, token?: string): Promise<FcmDelivery[]>;
  /** Invalidates every issued access token (as if revoked): the next send gets 401. */
  revokeAccessTokens(): void;
  stop(): Promise<void>;
}

const STATUS_OF: Record<FcmErrorCode, [number, string, string]> = {
  UNREGISTERED: [404, "NOT_FOUND", "Requested entity was not found."],
  SENDER_ID_MISMATCH: [403, "PERMISSION_DENIED", "SenderId mismatch"],
  QUOTA_EXCEEDED: [429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages."],
  UNAVAILABLE: [503, "UNAVAILABLE", "The service is currently unavailable."],
  INTERNAL: [500, "INTERNAL", "Internal error encountered."],
  INVALID_ARGUMENT: [
    400,
    "INVALID_ARGUMENT",
    "The registration token is not a valid FCM registration token",
  ],
  THIRD_PARTY_AUTH_ERROR: [401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"],
};
const TOKEN_RE = /^[A-Za-z0-9_:-]{20,4096}$/;
const TTL_RE = /^\d{1,10}(\.\d{1,9})?s$/;
const MAX_MESSAGE = 4096;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(`HTTP ${status}`);
  }
}

/** Google's error JSON; `errorCode` adds the FcmError detail. */
function googleError(
  code: number,
  status: string,
  message: string,
  errorCode?: string,
): HttpError["body"] {
  return {
    error: {
      code,
      message,
      status,
      ...(errorCode ? { details: [{ "@type": FCM_ERROR_TYPE, errorCode }] } : {}),
    },
  };
}

function fcmError(errorCode: FcmErrorCode, message?: string): HttpError {
  const [code, status, text] = STATUS_OF[errorCode];
  return new HttpError(code, googleError(code, status, message ?? text, errorCode));
}

function invalidArgument(message: string): HttpError {
  return fcmError("INVALID_ARGUMENT", message);
}

/**
 * FCM HTTP v1 on 127.0.0.1: the OAuth2 service-account token exchange and messages:send with
 * Google's validation, statuses and error JSON, plus per-token scripts and a delivery record.
 */
export async function startFcmSimulator(o: FcmSimulatorOptions): Promise<FcmSimulator> {
  const clock = o.clock ?? Date.now;
  const publicKey =
    typeof o.serviceAccountPublicKey === "string"
      ? createPublicKey(o.serviceAccountPublicKey)
      : o.serviceAccountPublicKey;
  const lifetimeS = o.accessTokenLifetimeS ?? 3600;
  const accessTokens = new Map<string, number>(); // token → expiry (ms)
  const scripts = new Map<string, FcmScriptStep[]>();
  const log = new DeliveryLog<FcmDelivery>();
  const responses: FcmResponseRecord[] = [];
  const record = (r: FcmResponseRecord): void => {
    responses.push(r);
    o.onResponse?.(r);
  };
  let requests = 0;
  let exchanges = 0;
  let messageCounter = 0;
  let tokenUri = "";

  async function exchange(body: string): Promise<unknown> {
    const form = new URLSearchParams(body);
    if (form.get("grant_type") !== JWT_BEARER) {
      throw new HttpError(400, {
        error: "unsupported_grant_type",
        error_description: "Invalid grant_type.",
      });
    }
    const bad = (d: string): HttpError =>
      new HttpError(400, { error: "invalid_grant", error_description: d });
    const assertion = form.get("assertion");
    if (!assertion) throw bad("Missing assertion.");
    let claims: Record<string, unknown>;
    try {
      const { payload } = await compactVerify(assertion, publicKey, { algorithms: ["RS256"] });
      claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    } catch {
      throw bad("Invalid JWT Signature.");
    }
    const nowS = Math.floor(clock() / 1000);
    if (claims.iss !== o.clientEmail) throw bad("Invalid issuer.");
    if (claims.aud !== tokenUri) throw bad("Invalid JWT: Token must be for this audience.");
    const scope = typeof claims.scope === "string" ? claims.scope.split(" ") : [];
    if (!scope.includes(FCM_SCOPE)) {
      throw new HttpError(400, { error: "invalid_scope", error_description: "Invalid scope." });
    }
    const { iat, exp } = claims;
    if (typeof iat !== "number" || typeof exp !== "number") throw bad("Missing iat or exp.");
    if ((exp as number) - (iat as number) > 3600) {
      throw bad("Invalid JWT: Token must be a short-lived token (60 minutes).");
    }
    if ((exp as number) < nowS || (iat as number) > nowS + 300) {
      throw bad("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.");
    }
    const accessToken = `ya29.sim-${randomBytes(24).toString("base64url")}`;
    accessTokens.set(accessToken, clock() + lifetimeS * 1000);
    exchanges++;
    return { access_token: accessToken, expires_in: lifetimeS, token_type: "Bearer" };
  }

  function nextStep(token: string): FcmScriptStep {
    const steps = scripts.get(token);
    const step = steps?.shift();
    if (steps && steps.length === 0) scripts.delete(token);
    return step ?? "ok";
  }

  async function send(
    project: string,
    authorization: string | undefined,
    body: string,
    clientGone: Promise<void>,
  ): Promise<unknown> {
    requests++;
    const bearer = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1];
    const expiry = bearer === undefined ? undefined : accessTokens.get(bearer);
    if (expiry === undefined || expiry <= clock()) {
      throw new HttpError(
        401,
        googleError(
          401,
          "UNAUTHENTICATED",
          "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ),
      );
    }
    if (project !== o.projectId) {
      throw new HttpError(
        403,
        googleError(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied"),
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      throw new HttpError(
        400,
        googleError(400, "INVALID_ARGUMENT", "Invalid JSON payload received."),
      );
    }
    const message = (parsed as { message?: unknown } | null)?.message;
    if (typeof message !== "object" || message === null || Array.isArray(message)) {
      throw invalidArgument("Request contains an invalid argument: message is required.");
    }
    const m = message as Record<string, unknown>;
    const targets = ["token", "topic", "condition"].filter((k) => m[k] !== undefined);
    if (targets.length !== 1) {
      throw invalidArgument("Exactly one of token, topic or condition must be specified.");
    }
    const token = m.token;
    if (typeof token !== "string") throw invalidArgument("Only token targets are simulated.");
    if (m.data !== undefined) {
      const data = m.data;
      if (typeof data !== "object" || data === null || Array.isArray(data)) {
        throw invalidArgument("Invalid value at 'message.data'.");
      }
      for (const [k, v] of Object.entries(data)) {
        if (typeof v !== "string") {
          throw invalidArgument(`Invalid value at 'message.data[${k}].value' (TYPE_STRING).`);
        }
      }
    }
    if (m.android !== undefined) {
      const a = m.android as Record<string, unknown>;
      if (a.priority !== undefined && !/^(high|normal)$/i.test(String(a.priority))) {
        throw invalidArgument(`Invalid value at 'message.android.priority'.`);
      }
      if (a.ttl !== undefined && !TTL_RE.test(String(a.ttl))) {
        throw invalidArgument(
          "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration).",
        );
      }
    }
    const bytes = Buffer.byteLength(body);
    if (bytes > MAX_MESSAGE) throw invalidArgument("Message is too big.");
    if (!TOKEN_RE.test(token)) throw fcmError("INVALID_ARGUMENT");

    const step = nextStep(token);
    let outcome: FcmScriptStep = step;
    if (typeof step === "object" && "slowMs" in step) {
      let timer: NodeJS.Timeout | undefined;
      const gone = await Promise.race([
        new Promise<false>((r) => (timer = setTimeout(() => r(false), step.slowMs))),
        clientGone.then(() => true),
      ]);
      clearTimeout(timer);
      // The sender gave up (its timeout): nothing is delivered.
      if (gone) throw Object.assign(new HttpError(499, {}), { token, gone: true });
      outcome = step.then ?? "ok";
    }
    if (outcome !== "ok") {
      const code =
        typeof outcome === "string" ? outcome : (outcome as { error: FcmErrorCode }).error;
      const e = fcmError(code);
      if (code === "QUOTA_EXCEEDED" || code === "UNAVAILABLE") {
        const s =
          typeof outcome === "object" &&
          "retryAfterS" in outcome &&
          outcome.retryAfterS !== undefined
            ? outcome.retryAfterS
            : code === "QUOTA_EXCEEDED"
              ? (o.quotaRetryAfterS ?? 30)
              : undefined;
        if (s !== undefined) e.headers["retry-after"] = String(s);
      }
      throw Object.assign(e, { token });
    }
    const name = `projects/${project}/messages/0:${clock()}${String(++messageCounter).padStart(6, "0")}%sim`;
    log.add({ token, message: m, name, bytes, at: clock() });
    record({ token, status: 200, at: clock() });
    return { name };
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= 1_000_000) chunks.push(c);
    });
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const path = (req.url ?? "").split("?")[0] ?? "";
      const sendMatch = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(path);
      let work: Promise<unknown>;
      if (req.method === "POST" && path === "/token") work = exchange(body);
      else if (req.method === "POST" && sendMatch) {
        const gone = new Promise<void>((r) => res.once("close", () => r()));
        work = send(decodeURIComponent(sendMatch[1] ?? ""), req.headers.authorization, body, gone);
      } else {
        work = Promise.reject(
          new HttpError(404, googleError(404, "NOT_FOUND", `Method not found: ${path}`)),
        );
      }
      work.then(
        (out) => {
          res.writeHead(200, { "content-type": "application/json; charset=UTF-8" });
          res.end(JSON.stringify(out));
        },
        (e: unknown) => {
          const he =
            e instanceof HttpError
              ? e
              : new HttpError(500, googleError(500, "INTERNAL", `simulator bug: ${String(e)}`));
          if ((e as { gone?: boolean }).gone) {
            const token = (e as { token?: string }).token ?? "";
            record({ token, status: 0, errorCode: "ClientGone", at: clock() });
            return;
          }
          if (sendMatch) {
            const token = (e as { token?: string }).token ?? "";
            const code = (he.body as { error?: { details?: { errorCode?: string }[] } }).error
              ?.details?.[0]?.errorCode;
            record({
              token,
              status: he.status,
              ...(code ? { errorCode: code } : {}),
              at: clock(),
            });
          }
          res.writeHead(he.status, {
            "content-type": "application/json; charset=UTF-8",
            ...he.headers,
          });
          res.end(JSON.stringify(he.body));
        },
      );
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  tokenUri = `${url}/token`;

  return {
    url,
    tokenUri,
    port,
    deliveries: log.all,
    responses,
    get requests() {
      return requests;
    },
    get tokenExchanges() {
      return exchanges;
    },
    script(token, steps) {
      scripts.set(token, [...(scripts.get(token) ?? []), ...steps]);
    },
    deliveriesFor: (token) => log.forToken(token),
    waitForDeliveries: (n, timeoutMs = 10_000, token) => log.wait(n, timeoutMs, token),
    revokeAccessTokens() {
      accessTokens.clear();
    },
    async stop() {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
    },
  };
}
