import { randomBytes } from "node:crypto";
import {
  ApnsCertificateAuthority,
  generateApnsKey,
  startApnsSimulator,
  type ApnsKey,
  type ApnsSimulator,
} from "@lichen/push-simulators";
import { afterEach, describe, expect, it } from "vitest";
import {
  createProvider,
  type ApnsAppConfig,
  type ProviderPush,
  type PushProvider,
} from "../src/providers/index.js";
import { randomUuid } from "../src/providers/apns.js";

const TOPIC = "im.lichen.test";
const MIN = 60_000;
const T0 = 1_800_000_000_000;

const token = (): string => randomBytes(32).toString("hex");
const push = (over: Partial<ProviderPush> = {}): ProviderPush => ({
  token: token(),
  kind: "alert",
  ttlSeconds: 3600,
  pushId: "p1",
  ...over,
});

/** A clock both sides share, moved by hand. */
function manualClock(start = T0): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function setup(
  o: {
    clock?: () => number;
    maxConcurrentStreams?: number;
    tls?: boolean;
    app?: Partial<ApnsAppConfig>;
    key?: ApnsKey;
  } = {},
): Promise<{ sim: ApnsSimulator; provider: PushProvider; key: ApnsKey; app: ApnsAppConfig }> {
  const key = o.key ?? generateApnsKey();
  const sim = await startApnsSimulator({
    keys: [{ keyId: key.keyId, teamId: key.teamId, publicKey: key.publicKeyPem }],
    topics: [TOPIC],
    tls: o.tls ?? false,
    ...(o.maxConcurrentStreams ? { maxConcurrentStreams: o.maxConcurrentStreams } : {}),
    ...(o.clock ? { clock: o.clock } : {}),
  });
  cleanup.push(() => sim.stop());
  const app: ApnsAppConfig = {
    type: "apns",
    name: "ios",
    topic: TOPIC,
    teamId: key.teamId,
    keyId: key.keyId,
    privateKeyPem: key.privateKeyPem,
    endpoint: sim.url,
    ...(sim.caPem ? { caPem: sim.caPem } : {}),
    requestTimeoutMs: 5000,
    ...o.app,
  };
  const provider = createProvider(app, o.clock ? { clock: o.clock } : {});
  cleanup.push(() => provider.close());
  return { sim, provider, key, app };
}

describe("randomUuid (the apns-id the provider makes)", () => {
  it("makes random version-4 UUIDs in crypto.randomUUID's form, each one new", () => {
    const n = 20_000; // several refills of the 256-UUID pool
    const seen = new Set<string>();
    const digits = Array.from({ length: 36 }, () => new Set<string>());
    for (let i = 0; i < n; i++) {
      const u = randomUuid();
      expect(u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      seen.add(u);
      for (let k = 0; k < 36; k++) digits[k]!.add(u[k]!);
    }
    expect(seen.size).toBe(n);
    // every random hex digit takes all 16 values (the variant digit its 4), the fixed ones one
    for (let k = 0; k < 36; k++) {
      const expected = [8, 13, 18, 23].includes(k) ? 1 : k === 14 ? 1 : k === 19 ? 4 : 16;
      expect(digits[k]!.size, `digit ${k}`).toBe(expected);
    }
  });
});

describe("APNs provider against the simulator", { timeout: 60_000 }, () => {
  it("sends an alert with the right headers and a content-free payload", async () => {
    const clock = manualClock();
    const { sim, provider } = await setup({ clock: clock.now });
    const p = push({ collapseId: "c-1", ttlSeconds: 600 });
    const r = await provider.send(p);
    expect(r).toMatchObject({ outcome: "delivered", status: 200 });
    const [d] = await sim.waitForDeliveries(1, 5000, p.token);
    expect(d?.headers).toMatchObject({
      "apns-topic": TOPIC,
      "apns-push-type": "alert",
      "apns-priority": "10",
      "apns-expiration": String(T0 / 1000 + 600),
      "apns-collapse-id": "c-1",
    });
    expect(d?.headers["apns-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.outcome === "delivered" && r.providerId).toBe(d?.apnsId);
    expect(d?.payload).toEqual({
      aps: {
        alert: { title: "Lichen", body: "New message" },
        "mutable-content": 1,
        sound: "default",
      },
    });
    expect(d?.bytes).toBeLessThanOrEqual(4096);
  });

  it("sends a background push with priority 5 and content-available only, over TLS", async () => {
    const { sim, provider } = await setup({ tls: true });
    const p = push({ kind: "background" });
    expect(await provider.send(p)).toMatchObject({ outcome: "delivered" });
    const [d] = await sim.waitForDeliveries(1, 5000, p.token);
    expect(d?.headers["apns-push-type"]).toBe("background");
    expect(d?.headers["apns-priority"]).toBe("5");
    expect(d?.headers["apns-collapse-id"]).toBeUndefined();
    expect(d?.payload).toEqual({ aps: { "content-available": 1 } });
  });

  it("uses the configured alert text and leaves out a collapse id over 64 bytes", async () => {
    const { sim, provider } = await setup({ app: { alert: { title: "Chat", body: "New" } } });
    const p = push({ collapseId: "x".repeat(65) });
    expect(await provider.send(p)).toMatchObject({ outcome: "delivered" });
    const [d] = await sim.waitForDeliveries(1, 5000, p.token);
    expect(d?.headers["apns-collapse-id"]).toBeUndefined();
    expect((d?.payload as { aps: { alert: unknown } }).aps.alert).toEqual({
      title: "Chat",
      body: "New",
    });
  });

  it("classifies every scripted outcome", async () => {
    const { sim, provider } = await setup();
    const t = token();
    sim.script(t, [
      "410",
      "410-ExpiredToken",
      "400-BadDeviceToken",
      "400-DeviceTokenNotForTopic",
      "429",
      "500",
      "503",
      "ok",
    ]);
    const results = [];
    for (let i = 0; i < 9; i++) results.push(await provider.send(push({ token: t })));
    expect(results.map((r) => [r.outcome, r.status, "reason" in r ? r.reason : ""])).toEqual([
      ["invalid-token", 410, "Unregistered"],
      ["invalid-token", 410, "ExpiredToken"],
      ["invalid-token", 400, "BadDeviceToken"],
      ["invalid-token", 400, "DeviceTokenNotForTopic"],
      ["rate-limited", 429, "TooManyRequests"],
      ["transient", 500, "InternalServerError"],
      ["transient", 503, "ServiceUnavailable"],
      ["delivered", 200, ""],
      ["delivered", 200, ""],
    ]);
    expect(sim.deliveriesFor(t)).toHaveLength(2);
  });

  it("reports a malformed token as invalid (simulator's BadDeviceToken)", async () => {
    const { provider } = await setup();
    expect(await provider.send(push({ token: "not-a-token/../x" }))).toEqual({
      outcome: "invalid-token",
      status: 400,
      reason: "BadDeviceToken",
    });
  });

  it("reports a wrong topic, an unknown key and a wrong team as misconfigured", async () => {
    const { sim, key } = await setup();
    const send = async (app: Partial<ApnsAppConfig>): Promise<unknown> => {
      const provider = createProvider({
        type: "apns",
        name: "bad",
        topic: TOPIC,
        teamId: key.teamId,
        keyId: key.keyId,
        privateKeyPem: key.privateKeyPem,
        endpoint: sim.url,
        ...app,
      });
      try {
        return await provider.send(push());
      } finally {
        await provider.close();
      }
    };
    expect(await send({ topic: "com.example.other" })).toMatchObject({
      outcome: "misconfigured",
      status: 400,
      reason: "TopicDisallowed",
    });
    expect(await send({ keyId: "UNKNOWNKEY" })).toMatchObject({
      outcome: "misconfigured",
      status: 403,
      reason: "InvalidProviderToken",
    });
    expect(await send({ teamId: "OTHERTEAM1" })).toMatchObject({
      outcome: "misconfigured",
      reason: "InvalidProviderToken",
    });
    const other = generateApnsKey({ keyId: key.keyId, teamId: key.teamId });
    expect(await send({ privateKeyPem: other.privateKeyPem })).toMatchObject({
      outcome: "misconfigured",
      reason: "InvalidProviderToken",
    });
    expect(await send({ privateKeyPem: "garbage" })).toMatchObject({ outcome: "misconfigured" });
  });

  it("times out a slow response as transient and still serves the next push", async () => {
    const { sim, provider } = await setup({ app: { requestTimeoutMs: 1500 } });
    const t = token();
    sim.script(t, [{ slowMs: 10_000 }]);
    expect(await provider.send(push({ token: t }))).toEqual({
      outcome: "transient",
      status: 0,
      reason: "Timeout",
    });
    expect(await provider.send(push({ token: t }))).toMatchObject({ outcome: "delivered" });
    // The provider reset the slow stream: the simulator sees the reset and delivers nothing for it.
    const deadline = Date.now() + 10_000;
    const reset = () => sim.responses.find((r) => r.token === t && r.reason === "StreamReset");
    while (!reset() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(reset()).toBeDefined();
    expect(sim.deliveriesFor(t)).toHaveLength(1);
  });

  it("reuses the provider JWT, refreshes it after 40 min, and the simulator's rules agree", async () => {
    const clock = manualClock();
    const { sim, provider } = await setup({ clock: clock.now, app: { connections: 1 } });
    const jwts = async (n: number): Promise<Set<string | undefined>> => {
      const before = sim.deliveries.length;
      for (let i = 0; i < n; i++)
        expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
      return new Set(sim.deliveries.slice(before).map((d) => d.headers.authorization));
    };
    const first = await jwts(3);
    expect(first.size).toBe(1);
    clock.advance(39 * MIN);
    expect(await jwts(2)).toEqual(first);
    clock.advance(2 * MIN); // 41 min: refreshed
    const second = await jwts(2);
    expect(second.size).toBe(1);
    expect(second).not.toEqual(first);
    expect(sim.providerTokensAccepted).toBe(2);
    clock.advance(41 * MIN);
    const third = await jwts(1);
    expect(third).not.toEqual(second);
    expect(sim.providerTokensAccepted).toBe(3);
  });

  it("a connection opened late in a token's life keeps its own JWT for 40 min", async () => {
    const clock = manualClock();
    const { sim, provider } = await setup({ clock: clock.now, app: { connections: 1 } });
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    clock.advance(30 * MIN);
    sim.goaway();
    const deadline = Date.now() + 10_000;
    while (sim.openConnections > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" }); // new connection
    clock.advance(11 * MIN); // the first token would be 41 min old now; this connection's is 11
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    clock.advance(30 * MIN);
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    const auth = sim.deliveries.map((d) => d.headers.authorization);
    expect(new Set(auth).size).toBe(3);
    expect(auth[1]).toBe(auth[2]);
    expect(sim.responses.filter((r) => r.status !== 200)).toEqual([]);
  });

  it("a second provider (own connections) with the same key may sign its own JWT at once", async () => {
    const clock = manualClock();
    const { sim, provider, app } = await setup({ clock: clock.now, app: { connections: 1 } });
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    clock.advance(5 * MIN);
    const twin = createProvider(app, { clock: clock.now });
    cleanup.push(() => twin.close());
    expect(await twin.send(push())).toMatchObject({ outcome: "delivered" });
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    const jwts = new Set(sim.deliveries.map((d) => d.headers.authorization));
    expect(jwts.size).toBe(2);
    expect(sim.providerTokensAccepted).toBe(2);
  });

  it("after ExpiredProviderToken the next attempt carries a fresh JWT", async () => {
    const clock = manualClock();
    let simAhead = 0;
    const key = generateApnsKey();
    const simClock = (): number => clock.now() + simAhead;
    const { sim } = await setup({ clock: simClock, key });
    const provider = createProvider(
      {
        type: "apns",
        name: "ios",
        topic: TOPIC,
        teamId: key.teamId,
        keyId: key.keyId,
        privateKeyPem: key.privateKeyPem,
        endpoint: sim.url,
        connections: 1,
      },
      { clock: clock.now },
    );
    cleanup.push(() => provider.close());
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    // 25 min later by the provider's clock but 70 min by Apple's (a clock jump on our side).
    clock.advance(25 * MIN);
    simAhead = 45 * MIN;
    expect(await provider.send(push())).toEqual({
      outcome: "transient",
      status: 403,
      reason: "ExpiredProviderToken",
    });
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    expect(sim.providerTokensAccepted).toBe(2);
  });

  it("delivers 1000 concurrent pushes over 2 sessions within maxConcurrentStreams 100", async () => {
    const { sim, provider } = await setup({ maxConcurrentStreams: 100 });
    const pushes = Array.from({ length: 1000 }, (_, i) => push({ pushId: `p${i}` }));
    const results = await Promise.all(pushes.map((p) => provider.send(p)));
    const outcomes = new Map<string, number>();
    for (const r of results) outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1);
    expect(Object.fromEntries(outcomes)).toEqual({ delivered: 1000 });
    expect(new Set(sim.deliveries.map((d) => d.token))).toEqual(
      new Set(pushes.map((p) => p.token)),
    );
    expect(sim.connections).toBe(2);
    expect(sim.peakStreamsPerConnection).toBeLessThanOrEqual(100);
    expect(sim.peakStreamsPerConnection).toBeGreaterThan(1);
  });

  it("reconnects after GOAWAY and keeps delivering", async () => {
    const { sim, provider } = await setup({ app: { connections: 1 } });
    expect(await provider.send(push())).toMatchObject({ outcome: "delivered" });
    expect(sim.connections).toBe(1);
    sim.goaway();
    // Wait for the provider to see the GOAWAY: the server closes the connection right after.
    const deadline = Date.now() + 5000;
    while (sim.openConnections > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    const results = await Promise.all(Array.from({ length: 20 }, () => provider.send(push())));
    expect(results.every((r) => r.outcome === "delivered")).toBe(true);
    expect(sim.connections).toBe(2);
    expect(sim.deliveries).toHaveLength(21);
  });

  it("reports a refused connection as transient without waiting for the timeout", async () => {
    const { sim, provider } = await setup({ app: { requestTimeoutMs: 30_000 } });
    await sim.stop();
    const started = Date.now();
    const r = await provider.send(push());
    expect(r.outcome).toBe("transient");
    expect("reason" in r && r.reason).toMatch(/ECONNREFUSED|ConnectionClosed/);
    expect(Date.now() - started).toBeLessThan(15_000);
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

  it("certificate authentication: the .p12 is every session's client certificate, requests carry no JWT; a foreign topic (or one the multi-topic extension does not list) or an untrusted certificate is misconfigured", async () => {
    const ca = new ApnsCertificateAuthority();
    const sim = await startApnsSimulator({
      keys: [],
      topics: [TOPIC, "im.other.app", `${TOPIC}.complication`],
      certificates: { ca },
    });
    cleanup.push(() => sim.stop());
    const cert = ca.issue({ topic: TOPIC, passphrase: "pw" });
    const make = (over: Partial<ApnsAppConfig> = {}) => {
      const p = createProvider({
        type: "apns",
        name: "ios",
        topic: TOPIC,
        certificate: { pfx: cert.p12, passphrase: "pw" },
        endpoint: sim.url,
        caPem: sim.caPem!,
        connections: 2,
        requestTimeoutMs: 5000,
        ...over,
      });
      cleanup.push(() => p.close());
      return p;
    };
    const provider = make();
    const tokens = [token(), token(), token()];
    const results = await Promise.all(tokens.map((t) => provider.send(push({ token: t }))));
    expect(results.map((r) => r.outcome)).toEqual(["delivered", "delivered", "delivered"]);
    const [d] = sim.deliveriesFor(tokens[0]!);
    expect(d?.headers.authorization).toBeUndefined();
    expect(d?.headers["apns-topic"]).toBe(TOPIC);
    expect(await make({ topic: "im.other.app" }).send(push())).toMatchObject({
      outcome: "misconfigured",
      status: 400,
      reason: "TopicDisallowed",
    });
    // the multi-topic extension decides: a topic it lists is delivered, one it does not is refused
    const listing = (topics: string[]) => ({ pfx: ca.issue({ topic: TOPIC, topics }).p12 });
    const complication = `${TOPIC}.complication`;
    expect(
      await make({ topic: complication, certificate: listing([TOPIC, complication]) }).send(push()),
    ).toMatchObject({ outcome: "delivered" });
    expect(
      await make({ topic: complication, certificate: listing([TOPIC]) }).send(push()),
    ).toMatchObject({ outcome: "misconfigured", status: 400, reason: "TopicDisallowed" });
    // a .p12 the TLS stack cannot open (wrong passphrase): misconfigured, no connection attempt
    expect(
      await make({ certificate: { pfx: cert.p12, passphrase: "wrong" } }).send(push()),
    ).toMatchObject({
      outcome: "misconfigured",
      reason: expect.stringMatching(/^BadEndpointOrCertificate: .*mac verify failure/),
    });
    const stranger = new ApnsCertificateAuthority().issue({ topic: TOPIC });
    expect(await make({ certificate: { pfx: stranger.p12 } }).send(push())).toMatchObject({
      outcome: "misconfigured",
      status: 403,
      reason: "BadCertificate",
    });
  });
});
