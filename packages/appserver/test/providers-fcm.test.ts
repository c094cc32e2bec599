import { randomBytes } from "node:crypto";
import {
  generateFcmServiceAccount,
  startFcmSimulator,
  type FcmServiceAccount,
  type FcmSimulator,
} from "@lichen/push-simulators";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createProvider,
  type FcmAppConfig,
  type ProviderPush,
  type PushProvider,
} from "../src/providers/index.js";

const MIN = 60_000;
const T0 = 1_800_000_000_000;
const token = (): string => `fcm:${randomBytes(40).toString("base64url")}`;
const push = (over: Partial<ProviderPush> = {}): ProviderPush => ({
  token: token(),
  kind: "alert",
  ttlSeconds: 3600,
  pushId: "p1",
  ...over,
});

let account: FcmServiceAccount;
beforeAll(() => {
  account = generateFcmServiceAccount({ projectId: "lichen-test" });
});

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function setup(
  o: { clock?: () => number; app?: Partial<FcmAppConfig> } = {},
): Promise<{ sim: FcmSimulator; provider: PushProvider; app: FcmAppConfig }> {
  const sim = await startFcmSimulator({
    projectId: account.projectId,
    clientEmail: account.clientEmail,
    serviceAccountPublicKey: account.publicKeyPem,
    ...(o.clock ? { clock: o.clock } : {}),
  });
  cleanup.push(() => sim.stop());
  const app: FcmAppConfig = {
    type: "fcm",
    name: "android",
    projectId: account.projectId,
    clientEmail: account.clientEmail,
    privateKeyPem: account.privateKeyPem,
    tokenUri: sim.tokenUri,
    endpoint: sim.url,
    requestTimeoutMs: 5000,
    ...o.app,
  };
  const provider = createProvider(app, o.clock ? { clock: o.clock } : {});
  cleanup.push(() => provider.close());
  return { sim, provider, app };
}

describe("FCM provider against the simulator", { timeout: 60_000 }, () => {
  it("sends a data-only message, high priority for alerts and normal for background", async () => {
    const { sim, provider } = await setup();
    const a = push({ ttlSeconds: 600, collapseId: "c1" });
    const b = push({ kind: "background" });
    const ra = await provider.send(a);
    expect(ra).toMatchObject({ outcome: "delivered", status: 200 });
    expect(await provider.send(b)).toMatchObject({ outcome: "delivered" });
    const [da] = await sim.waitForDeliveries(1, 5000, a.token);
    const [db] = await sim.waitForDeliveries(1, 5000, b.token);
    expect(ra.outcome === "delivered" && ra.providerId).toBe(da?.name);
    expect(da?.message).toEqual({
      token: a.token,
      data: { kind: "alert" },
      android: { priority: "high", ttl: "600s", collapse_key: "c1" },
    });
    expect(db?.message).toEqual({
      token: b.token,
      data: { kind: "background" },
      android: { priority: "normal", ttl: "3600s" },
    });
    expect(da?.message).not.toHaveProperty("notification");
  });

  it("exchanges the service-account assertion once for many sends, refreshes 5 min before expiry", async () => {
    let now = T0;
    const clock = (): number => now;
    const { sim, provider } = await setup({ clock });
    const results = await Promise.all(Array.from({ length: 50 }, () => provider.send(push())));
    expect(results.every((r) => r.outcome === "delivered")).toBe(true);
    expect(sim.tokenExchanges).toBe(1);
    now += 54 * MIN;
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    expect(sim.tokenExchanges).toBe(1);
    now += 2 * MIN; // 56 min: inside the 5-minute margin
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    expect(sim.tokenExchanges).toBe(2);
    expect(sim.deliveries).toHaveLength(52);
  });

  it("a revoked access token gives one transient 401, then a new exchange delivers", async () => {
    const { sim, provider } = await setup();
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    sim.revokeAccessTokens();
    expect(await provider.send(push())).toEqual({
      outcome: "transient",
      status: 401,
      reason: "UNAUTHENTICATED",
    });
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    expect(sim.tokenExchanges).toBe(2);
  });

  it("classifies every scripted error code and honours Retry-After", async () => {
    const { sim, provider } = await setup();
    const t = token();
    sim.script(t, [
      "UNREGISTERED",
      "SENDER_ID_MISMATCH",
      "QUOTA_EXCEEDED",
      { error: "UNAVAILABLE", retryAfterS: 7 },
      "INTERNAL",
      "THIRD_PARTY_AUTH_ERROR",
      "INVALID_ARGUMENT",
      "ok",
    ]);
    const out = [];
    for (let i = 0; i < 8; i++) out.push(await provider.send(push({ token: t })));
    expect(out).toEqual([
      { outcome: "invalid-token", status: 404, reason: "UNREGISTERED" },
      { outcome: "invalid-token", status: 403, reason: "SENDER_ID_MISMATCH" },
      { outcome: "rate-limited", status: 429, reason: "QUOTA_EXCEEDED", retryAfterMs: 30_000 },
      { outcome: "transient", status: 503, reason: "UNAVAILABLE", retryAfterMs: 7000 },
      { outcome: "transient", status: 500, reason: "INTERNAL" },
      { outcome: "misconfigured", status: 401, reason: "THIRD_PARTY_AUTH_ERROR" },
      { outcome: "invalid-token", status: 400, reason: "INVALID_ARGUMENT" },
      expect.objectContaining({ outcome: "delivered", status: 200 }),
    ]);
    expect(sim.deliveriesFor(t)).toHaveLength(1);
  });

  it("a malformed token is invalid-token (simulator validates it)", async () => {
    const { provider } = await setup();
    expect(await provider.send(push({ token: "short" }))).toEqual({
      outcome: "invalid-token",
      status: 400,
      reason: "INVALID_ARGUMENT",
    });
  });

  it("wrong project, wrong key, wrong client email and wrong audience are misconfigured", async () => {
    const { sim, app } = await setup();
    const send = async (over: Partial<FcmAppConfig>): Promise<unknown> => {
      const p = createProvider({ ...app, ...over });
      try {
        return await p.send(push());
      } finally {
        await p.close();
      }
    };
    expect(await send({ projectId: "someone-else" })).toEqual({
      outcome: "misconfigured",
      status: 403,
      reason: "PERMISSION_DENIED",
    });
    const other = generateFcmServiceAccount();
    expect(await send({ privateKeyPem: other.privateKeyPem })).toEqual({
      outcome: "misconfigured",
      status: 400,
      reason: "TokenExchange: invalid_grant",
    });
    expect(await send({ clientEmail: other.clientEmail })).toMatchObject({
      outcome: "misconfigured",
      reason: "TokenExchange: invalid_grant",
    });
    expect(await send({ tokenUri: `${sim.url}/token?x=1` })).toMatchObject({
      outcome: "misconfigured",
      reason: "TokenExchange: invalid_grant",
    });
    expect(await send({ privateKeyPem: "not a key" })).toMatchObject({ outcome: "misconfigured" });
    expect(sim.deliveries).toHaveLength(0);
  });

  it("times out a slow send as transient; an unreachable endpoint is transient", async () => {
    const { sim, provider } = await setup({ app: { requestTimeoutMs: 1500 } });
    const t = token();
    sim.script(t, [{ slowMs: 10_000 }]);
    expect(await provider.send(push({ token: t }))).toEqual({
      outcome: "transient",
      status: 0,
      reason: "Timeout",
    });
    expect(await provider.send(push({ token: t }))).toMatchObject({ outcome: "delivered" });
    const deadline = Date.now() + 10_000;
    const gone = () => sim.responses.find((r) => r.token === t && r.errorCode === "ClientGone");
    while (!gone() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(gone()).toBeDefined();
    expect(sim.deliveriesFor(t)).toHaveLength(1);
    await sim.stop();
    const r = await provider.send(push());
    expect(r.outcome).toBe("transient");
    expect("reason" in r && r.reason).toMatch(/ECONNREFUSED|ECONNRESET|socket hang up/);
  });

  it("refuses sends after close() as transient ProviderClosed", async () => {
    const { sim, provider } = await setup();
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    await provider.close();
    expect(await provider.send(push())).toEqual({
      outcome: "transient",
      status: 0,
      reason: "ProviderClosed",
    });
    expect(sim.deliveries).toHaveLength(1);
  });
});
