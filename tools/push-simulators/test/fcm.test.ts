import { randomBytes } from "node:crypto";
import { importPKCS8, SignJWT } from "jose";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  FCM_SCOPE,
  generateFcmServiceAccount,
  startFcmSimulator,
  type FcmServiceAccount,
  type FcmSimulator,
} from "../src/index.js";

const T0 = 1_800_000_000_000;
const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const fcmToken = (): string => `d:${randomBytes(40).toString("base64url")}`;

let sa: FcmServiceAccount;
beforeAll(() => {
  sa = generateFcmServiceAccount({ projectId: "proj-1" });
});

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function start(): Promise<{ sim: FcmSimulator; now: { t: number } }> {
  const now = { t: T0 };
  const sim = await startFcmSimulator({
    projectId: sa.projectId,
    clientEmail: sa.clientEmail,
    serviceAccountPublicKey: sa.publicKeyPem,
    clock: () => now.t,
  });
  cleanup.push(() => sim.stop());
  return { sim, now };
}

async function assertion(
  sim: FcmSimulator,
  o: { iss?: string; aud?: string; scope?: string; iat?: number; exp?: number; key?: string } = {},
): Promise<string> {
  const iat = o.iat ?? T0 / 1000;
  return new SignJWT({ scope: o.scope ?? FCM_SCOPE })
    .setProtectedHeader({ alg: "RS256", typ: "JWT" })
    .setIssuer(o.iss ?? sa.clientEmail)
    .setAudience(o.aud ?? sim.tokenUri)
    .setIssuedAt(iat)
    .setExpirationTime(o.exp ?? iat + 3600)
    .sign(await importPKCS8(o.key ?? sa.privateKeyPem, "RS256"));
}

async function exchange(sim: FcmSimulator, jwt: string, grant = JWT_BEARER) {
  const res = await fetch(sim.tokenUri, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: grant, assertion: jwt }).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function send(
  sim: FcmSimulator,
  accessToken: string | undefined,
  body: unknown,
  project = sa.projectId,
) {
  const res = await fetch(`${sim.url}/v1/projects/${project}/messages:send`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(accessToken ? { authorization: `Bearer ${accessToken}` } : {}),
    },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return {
    status: res.status,
    retryAfter: res.headers.get("retry-after"),
    body: (await res.json()) as {
      name?: string;
      error?: { code: number; status: string; message: string; details?: unknown[] };
    },
  };
}

async function accessToken(sim: FcmSimulator): Promise<string> {
  const r = await exchange(sim, await assertion(sim));
  expect(r.status).toBe(200);
  return r.body.access_token as string;
}

describe("FCM simulator contract (raw HTTP requests)", { timeout: 60_000 }, () => {
  it("exchanges a valid assertion for a 1-hour access token and counts exchanges", async () => {
    const { sim } = await start();
    const r = await exchange(sim, await assertion(sim));
    expect(r).toMatchObject({ status: 200, body: { expires_in: 3600, token_type: "Bearer" } });
    expect(r.body.access_token).toMatch(/^ya29\./);
    expect(sim.tokenExchanges).toBe(1);
  });

  it("rejects bad assertions with OAuth2 errors", async () => {
    const { sim } = await start();
    const other = generateFcmServiceAccount();
    const cases: [string, Promise<{ status: number; body: Record<string, unknown> }>, string][] = [
      [
        "grant",
        exchange(sim, await assertion(sim), "client_credentials"),
        "unsupported_grant_type",
      ],
      [
        "signature",
        exchange(sim, await assertion(sim, { key: other.privateKeyPem })),
        "invalid_grant",
      ],
      ["garbage", exchange(sim, "a.b.c"), "invalid_grant"],
      ["iss", exchange(sim, await assertion(sim, { iss: other.clientEmail })), "invalid_grant"],
      [
        "aud",
        exchange(sim, await assertion(sim, { aud: "https://example.com/token" })),
        "invalid_grant",
      ],
      [
        "scope",
        exchange(
          sim,
          await assertion(sim, { scope: "https://www.googleapis.com/auth/cloud-platform" }),
        ),
        "invalid_scope",
      ],
      ["too long", exchange(sim, await assertion(sim, { exp: T0 / 1000 + 7200 })), "invalid_grant"],
      ["expired", exchange(sim, await assertion(sim, { iat: T0 / 1000 - 7200 })), "invalid_grant"],
    ];
    for (const [name, p, error] of cases) {
      const r = await p;
      expect({ name, status: r.status, error: r.body.error }).toEqual({ name, status: 400, error });
    }
    expect(sim.tokenExchanges).toBe(0);
  });

  it("accepts a valid message and records it; access tokens expire after expires_in", async () => {
    const { sim, now } = await start();
    const at = await accessToken(sim);
    const t = fcmToken();
    const message = {
      token: t,
      data: { kind: "alert" },
      android: { priority: "high", ttl: "60s" },
    };
    const r = await send(sim, at, { message });
    expect(r.status).toBe(200);
    expect(r.body.name).toMatch(/^projects\/proj-1\/messages\/0:/);
    const [d] = await sim.waitForDeliveries(1, 1000, t);
    expect(d).toMatchObject({ token: t, message, name: r.body.name });
    now.t = T0 + 3600_000;
    expect((await send(sim, at, { message })).status).toBe(401);
  });

  it("answers auth, project and validation errors in Google's error shape", async () => {
    const { sim } = await start();
    const at = await accessToken(sim);
    const t = fcmToken();
    const noAuth = await send(sim, undefined, { message: { token: t } });
    expect(noAuth.status).toBe(401);
    expect(noAuth.body.error).toMatchObject({ code: 401, status: "UNAUTHENTICATED" });
    expect((await send(sim, "ya29.forged", { message: { token: t } })).status).toBe(401);
    const project = await send(sim, at, { message: { token: t } }, "other-project");
    expect(project.body.error).toMatchObject({ code: 403, status: "PERMISSION_DENIED" });
    const invalid = async (body: unknown): Promise<void> => {
      const r = await send(sim, at, body);
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ code: 400, status: "INVALID_ARGUMENT" });
    };
    await invalid("{not json");
    await invalid({});
    await invalid({ message: { token: t, topic: "news" } });
    await invalid({ message: { token: t, data: { n: 1 } } });
    await invalid({ message: { token: t, android: { priority: "urgent" } } });
    await invalid({ message: { token: t, android: { ttl: "60" } } });
    await invalid({ message: { token: t, data: { x: "y".repeat(5000) } } });
    const badToken = await send(sim, at, { message: { token: "short" } });
    expect(badToken.body.error?.details).toEqual([
      {
        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        errorCode: "INVALID_ARGUMENT",
      },
    ]);
    expect(badToken.body.error?.message).toMatch(/registration token/);
    const notFound = await fetch(`${sim.url}/v1/other`, { method: "POST" });
    expect(notFound.status).toBe(404);
    expect(sim.deliveries).toHaveLength(0);
  });

  it("plays per-token scripts with FCM error codes, statuses and Retry-After", async () => {
    const { sim } = await start();
    const at = await accessToken(sim);
    const t = fcmToken();
    sim.script(t, [
      "UNREGISTERED",
      "SENDER_ID_MISMATCH",
      "QUOTA_EXCEEDED",
      { error: "UNAVAILABLE", retryAfterS: 5 },
      "INTERNAL",
      "THIRD_PARTY_AUTH_ERROR",
    ]);
    const got = [];
    for (let i = 0; i < 7; i++) {
      const r = await send(sim, at, { message: { token: t } });
      const detail = (r.body.error?.details?.[0] as { errorCode?: string } | undefined)?.errorCode;
      got.push([r.status, r.body.error?.status ?? "OK", detail ?? null, r.retryAfter]);
    }
    expect(got).toEqual([
      [404, "NOT_FOUND", "UNREGISTERED", null],
      [403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", null],
      [429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "30"],
      [503, "UNAVAILABLE", "UNAVAILABLE", "5"],
      [500, "INTERNAL", "INTERNAL", null],
      [401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", null],
      [200, "OK", null, null],
    ]);
    expect(sim.deliveriesFor(t)).toHaveLength(1);
    expect(sim.responses.map((r) => r.status)).toEqual([404, 403, 429, 503, 500, 401, 200]);
  });
});
