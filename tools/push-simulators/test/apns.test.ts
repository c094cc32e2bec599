import { randomBytes, randomUUID, X509Certificate } from "node:crypto";
import http2 from "node:http2";
import { importPKCS8, SignJWT } from "jose";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  ApnsCertificateAuthority,
  certificateTopics,
  generateApnsKey,
  startApnsSimulator,
  type ApnsKey,
  type ApnsSimulator,
  type ApnsSimulatorOptions,
} from "../src/index.js";

const TOPIC = "im.lichen.test";
const MIN = 60_000;
const T0 = 1_800_000_000_000;
const hexToken = (): string => randomBytes(32).toString("hex");

let key: ApnsKey;
/** One provider token for all "good" requests: a new one per request would break the 20-min rule. */
let goodJwt: string;
beforeAll(async () => {
  key = generateApnsKey();
  goodJwt = await jwt();
});

async function jwt(o: { key?: ApnsKey; kid?: string; iss?: string; iatMs?: number } = {}) {
  const k = o.key ?? key;
  return new SignJWT({ iss: o.iss ?? k.teamId, iat: Math.floor((o.iatMs ?? T0) / 1000) })
    .setProtectedHeader({ alg: "ES256", kid: o.kid ?? k.keyId })
    .sign(await importPKCS8(k.privateKeyPem, "ES256"));
}

interface Raw {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
}

/** A curl-like raw HTTP/2 request. */
function raw(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: string,
): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "POST", ...headers });
    let data = "";
    let h: http2.IncomingHttpHeaders = {};
    req.setEncoding("utf8");
    req.on("response", (r) => (h = r));
    req.on("data", (c: string) => (data += c));
    req.on("end", () => resolve({ status: Number(h[":status"]), headers: h, body: data }));
    req.on("error", reject);
    if (!req.writableEnded) req.end(body);
  });
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function start(
  o: Partial<ApnsSimulatorOptions> = {},
): Promise<{ sim: ApnsSimulator; session: http2.ClientHttp2Session; now: { t: number } }> {
  const now = { t: T0 };
  const sim = await startApnsSimulator({
    keys: [{ keyId: key.keyId, teamId: key.teamId, publicKey: key.publicKeyPem }],
    topics: [TOPIC],
    clock: () => now.t,
    ...o,
  });
  cleanup.push(() => sim.stop());
  const session = http2.connect(sim.url, sim.caPem ? { ca: sim.caPem } : {});
  session.on("error", () => undefined);
  cleanup.push(() => void session.destroy());
  return { sim, session, now };
}

async function good(extra: http2.OutgoingHttpHeaders = {}, token = hexToken()) {
  return {
    ":path": `/3/device/${token}`,
    authorization: `bearer ${goodJwt}`,
    "apns-topic": TOPIC,
    "apns-push-type": "alert",
    "apns-priority": "10",
    "apns-expiration": String(T0 / 1000 + 60),
    ...extra,
  };
}
const PAYLOAD = JSON.stringify({ aps: { alert: { title: "t", body: "b" } } });

describe("APNs simulator contract (raw HTTP/2 requests)", { timeout: 60_000 }, () => {
  it("accepts a valid push, echoes apns-id and records it", async () => {
    const { sim, session } = await start();
    const t = hexToken();
    const id = randomUUID();
    const r = await raw(
      session,
      await good({ "apns-id": id, "apns-collapse-id": "c" }, t),
      PAYLOAD,
    );
    expect(r.status).toBe(200);
    expect(r.headers["apns-id"]).toBe(id);
    const [d] = await sim.waitForDeliveries(1, 1000, t);
    expect(d).toMatchObject({ token: t, apnsId: id, payload: JSON.parse(PAYLOAD), at: T0 });
    expect(d?.headers["apns-collapse-id"]).toBe("c");
    expect(sim.requests).toBe(1);
    // Without apns-id the simulator assigns one.
    const r2 = await raw(session, await good(), PAYLOAD);
    expect(r2.headers["apns-id"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("announces its SETTINGS_MAX_CONCURRENT_STREAMS", async () => {
    const { session } = await start({ maxConcurrentStreams: 7 });
    const settings = await new Promise<http2.Settings>((r) => session.once("remoteSettings", r));
    expect(settings.maxConcurrentStreams).toBe(7);
  });

  it("answers bad paths, methods and every header/payload error with Apple's status and reason", async () => {
    const { sim, session } = await start();
    const cases: [string, Promise<Raw>, number, string][] = [];
    const add = async (
      name: string,
      h: http2.OutgoingHttpHeaders,
      status: number,
      reason: string,
      body = PAYLOAD,
    ) => cases.push([name, raw(session, h, body), status, reason]);
    await add("bad path", await good({ ":path": "/3/other/x" }), 404, "BadPath");
    await add("method", await good({ ":method": "GET" }), 405, "MethodNotAllowed", undefined);
    await add(
      "no jwt",
      { ...(await good()), authorization: undefined },
      403,
      "MissingProviderToken",
    );
    await add(
      "garbage jwt",
      await good({ authorization: "bearer abc.def.ghi" }),
      403,
      "InvalidProviderToken",
    );
    await add(
      "unknown kid",
      await good({ authorization: `bearer ${await jwt({ kid: "NOPE123456" })}` }),
      403,
      "InvalidProviderToken",
    );
    await add(
      "wrong team",
      await good({ authorization: `bearer ${await jwt({ iss: "OTHERTEAM1" })}` }),
      403,
      "InvalidProviderToken",
    );
    const forged = generateApnsKey({ keyId: key.keyId, teamId: key.teamId });
    await add(
      "bad signature",
      await good({ authorization: `bearer ${await jwt({ key: forged })}` }),
      403,
      "InvalidProviderToken",
    );
    await add(
      "old jwt",
      await good({ authorization: `bearer ${await jwt({ iatMs: T0 - 61 * MIN })}` }),
      403,
      "ExpiredProviderToken",
    );
    await add("no topic", { ...(await good()), "apns-topic": undefined }, 400, "MissingTopic");
    await add("bad topic", await good({ "apns-topic": "bad topic!" }), 400, "BadTopic");
    await add(
      "other topic",
      await good({ "apns-topic": "com.example.app" }),
      400,
      "TopicDisallowed",
    );
    await add("push type", await good({ "apns-push-type": "shout" }), 400, "InvalidPushType");
    await add(
      "no push type",
      { ...(await good()), "apns-push-type": undefined },
      400,
      "InvalidPushType",
    );
    await add("priority", await good({ "apns-priority": "7" }), 400, "BadPriority");
    await add("background 10", await good({ "apns-push-type": "background" }), 400, "BadPriority");
    await add(
      "expiration",
      await good({ "apns-expiration": "tomorrow" }),
      400,
      "BadExpirationDate",
    );
    await add(
      "collapse id",
      await good({ "apns-collapse-id": "x".repeat(65) }),
      400,
      "BadCollapseId",
    );
    await add("apns-id", await good({ "apns-id": "not-a-uuid" }), 400, "BadMessageId");
    await add("short token", await good({ ":path": "/3/device/abcd" }), 400, "BadDeviceToken");
    await add(
      "non-hex token",
      await good({ ":path": `/3/device/${"z".repeat(64)}` }),
      400,
      "BadDeviceToken",
    );
    await add("no token", await good({ ":path": "/3/device/" }), 400, "MissingDeviceToken");
    await add("empty", await good(), 400, "PayloadEmpty", "");
    await add(
      "too large",
      await good(),
      413,
      "PayloadTooLarge",
      JSON.stringify({ aps: {}, x: "y".repeat(4100) }),
    );
    for (const [name, p, status, reason] of cases) {
      const r = await p;
      expect({ name, status: r.status, body: JSON.parse(r.body) as unknown }).toEqual({
        name,
        status,
        body: { reason },
      });
    }
    expect(sim.deliveries).toHaveLength(0);
    expect(sim.responses.filter((r) => r.status !== 200)).toHaveLength(cases.length);
  });

  it("accepts exactly 4096 bytes and rejects duplicated headers", async () => {
    const { sim, session } = await start();
    const base = JSON.stringify({ aps: {}, x: "" });
    const exact = JSON.stringify({ aps: {}, x: "y".repeat(4096 - base.length) });
    expect(Buffer.byteLength(exact)).toBe(4096);
    expect((await raw(session, await good(), exact)).status).toBe(200);
    // An array value makes node:http2 send the header field twice.
    const dup = await raw(session, await good({ "apns-topic": [TOPIC, TOPIC] }), PAYLOAD);
    expect(dup.status).toBe(400);
    expect(JSON.parse(dup.body)).toEqual({ reason: "DuplicateHeaders" });
    expect(sim.deliveries).toHaveLength(1);
  });

  it("enforces the 20-minute token refresh rule per connection and the 60-minute age", async () => {
    const { session, now, sim } = await start();
    const first = await jwt({ iatMs: T0 });
    const send = async (j: string) => {
      const r = await raw(session, await good({ authorization: `bearer ${j}` }), PAYLOAD);
      return r.status === 200
        ? "ok"
        : `${r.status} ${(JSON.parse(r.body) as { reason: string }).reason}`;
    };
    expect(await send(first)).toBe("ok");
    now.t = T0 + 10 * MIN;
    const early = await jwt({ iatMs: now.t });
    expect(await send(early)).toBe("429 TooManyProviderTokenUpdates");
    expect(await send(first)).toBe("ok");
    now.t = T0 + 21 * MIN;
    const second = await jwt({ iatMs: now.t });
    expect(await send(second)).toBe("ok");
    now.t = T0 + 25 * MIN;
    // The limit is per connection: another connection may bring its own fresh token at once.
    const fresh = await jwt({ iatMs: now.t });
    expect(await send(fresh)).toBe("429 TooManyProviderTokenUpdates");
    const other = http2.connect(sim.url);
    cleanup.push(() => void other.destroy());
    const r = await raw(other, await good({ authorization: `bearer ${fresh}` }), PAYLOAD);
    expect(r.status).toBe(200);
    expect(sim.providerTokensAccepted).toBe(3);
    now.t = T0 + 21 * MIN + 60 * MIN + 1000;
    expect(await send(second)).toBe("403 ExpiredProviderToken");
  });

  it("plays per-token scripts in order, then answers ok; 410 carries a timestamp", async () => {
    const { sim, session, now } = await start();
    const t = hexToken();
    sim.script(t, ["410", "400-DeviceTokenNotForTopic", "429", "500", "503", "403-Forbidden"]);
    const got: [number, unknown][] = [];
    for (let i = 0; i < 7; i++) {
      now.t = T0 + i;
      const r = await raw(session, await good({}, t), PAYLOAD);
      got.push([r.status, r.body ? JSON.parse(r.body) : null]);
    }
    expect(got).toEqual([
      [410, { reason: "Unregistered", timestamp: T0 }],
      [400, { reason: "DeviceTokenNotForTopic" }],
      [429, { reason: "TooManyRequests" }],
      [500, { reason: "InternalServerError" }],
      [503, { reason: "ServiceUnavailable" }],
      [403, { reason: "Forbidden" }],
      [200, null],
    ]);
    expect(sim.deliveriesFor(t)).toHaveLength(1);
    expect(() => sim.script(t, ["maybe"])).toThrow(/bad APNs script step/);
  });

  it("scriptFor answers tokens without a script (a benchmark's dead tokens); keepRecords false keeps only counters", async () => {
    const { sim, session } = await start({
      scriptFor: (token) => (token.startsWith("dead") ? "410" : undefined),
      keepRecords: false,
    });
    const dead = `dead${hexToken().slice(4)}`;
    const scripted = hexToken();
    sim.script(scripted, ["503"]); // an explicit script still comes first
    expect((await raw(session, await good({}, dead), PAYLOAD)).status).toBe(410);
    expect((await raw(session, await good({}, scripted), PAYLOAD)).status).toBe(503);
    expect((await raw(session, await good({}, scripted), PAYLOAD)).status).toBe(200);
    expect((await raw(session, await good(), PAYLOAD)).status).toBe(200);
    expect(sim.requests).toBe(4);
    expect(sim.deliveries).toHaveLength(0);
    expect(sim.responses).toHaveLength(0);
  });

  it("a slow step delays the answer; waitForDeliveries waits for it and rejects on timeout", async () => {
    const { sim, session } = await start();
    const t = hexToken();
    sim.script(t, [{ slowMs: 300, then: "ok" }]);
    const pending = raw(session, await good({}, t), PAYLOAD);
    await expect(sim.waitForDeliveries(1, 50, t)).rejects.toThrow(/waited 50 ms for 1 deliveries/);
    const ds = await sim.waitForDeliveries(1, 5000, t);
    expect(ds[0]?.token).toBe(t);
    expect((await pending).status).toBe(200);
  });

  it("goaway() sends GOAWAY with a Shutdown reason and closes the connection", async () => {
    const { sim, session } = await start();
    expect((await raw(session, await good(), PAYLOAD)).status).toBe(200);
    const goaway = new Promise<[number, string]>((r) =>
      session.once("goaway", (code, _last, data) => r([code, data?.toString() ?? ""])),
    );
    const closed = new Promise<void>((r) => session.once("close", r));
    sim.goaway();
    expect(await goaway).toEqual([0, JSON.stringify({ reason: "Shutdown" })]);
    await closed;
    expect(sim.openConnections).toBe(0);
  });

  it("serves TLS with a self-signed certificate for 127.0.0.1", async () => {
    const { sim, session } = await start({ tls: true });
    expect(sim.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(sim.caPem).toMatch(/BEGIN CERTIFICATE/);
    expect((await raw(session, await good(), PAYLOAD)).status).toBe(200);
    const untrusted = http2.connect(sim.url);
    const err = await new Promise<Error>((r) => untrusted.once("error", r));
    untrusted.destroy();
    expect(err.message).toMatch(/self[- ]signed/i);
  });

  it("certificate authentication: the client certificate's bundle id is the topic; untrusted, wrong environment and foreign topics get Apple's answers", async () => {
    const ca = new ApnsCertificateAuthority();
    const { sim } = await start({
      certificates: { ca, environment: "production" },
      topics: [TOPIC, `${TOPIC}.voip`, "im.other.app"],
    });
    const connect = (c?: { p12: Buffer; passphrase: string }) => {
      const s = http2.connect(sim.url, {
        ca: sim.caPem!,
        ...(c ? { pfx: c.p12, passphrase: c.passphrase } : {}),
      });
      s.on("error", () => undefined);
      cleanup.push(() => void s.destroy());
      return s;
    };
    const { authorization: _jwt, ...noJwt } = await good();
    const { "apns-topic": _t, ...noTopic } = noJwt;
    const universal = connect(ca.issue({ topic: TOPIC, passphrase: "pw" }));
    expect((await raw(universal, noJwt, PAYLOAD)).status).toBe(200);
    // a missing apns-topic means the certificate's bundle id; its .voip topic is allowed too
    expect((await raw(universal, noTopic, PAYLOAD)).status).toBe(200);
    expect(
      (
        await raw(
          universal,
          { ...noJwt, "apns-topic": `${TOPIC}.voip`, "apns-push-type": "voip" },
          PAYLOAD,
        )
      ).status,
    ).toBe(200);
    const foreign = await raw(universal, { ...noJwt, "apns-topic": "im.other.app" }, PAYLOAD);
    expect([foreign.status, JSON.parse(foreign.body)]).toEqual([
      400,
      { reason: "TopicDisallowed" },
    ]);
    const dev = connect(ca.issue({ topic: TOPIC, kind: "development" }));
    const wrongEnv = await raw(dev, noJwt, PAYLOAD);
    expect([wrongEnv.status, JSON.parse(wrongEnv.body)]).toEqual([
      403,
      { reason: "BadCertificateEnvironment" },
    ]);
    const stranger = connect(new ApnsCertificateAuthority().issue({ topic: TOPIC }));
    const untrusted = await raw(stranger, noJwt, PAYLOAD);
    expect([untrusted.status, JSON.parse(untrusted.body)]).toEqual([
      403,
      { reason: "BadCertificate" },
    ]);
    const none = await raw(connect(), noJwt, PAYLOAD);
    expect([none.status, JSON.parse(none.body)]).toEqual([403, { reason: "MissingProviderToken" }]);
    // JWT authentication still works on the same simulator
    expect((await raw(connect(), await good(), PAYLOAD)).status).toBe(200);
    expect(sim.deliveries).toHaveLength(4);
  });

  it("certificate authentication enforces the multi-topic extension: only the topics it lists; without one only the bundle id", async () => {
    const ca = new ApnsCertificateAuthority();
    const { sim } = await start({
      certificates: { ca, environment: "production" },
      topics: [TOPIC, `${TOPIC}.voip`, `${TOPIC}.complication`],
    });
    const connect = (c: { p12: Buffer; passphrase: string }) => {
      const s = http2.connect(sim.url, { ca: sim.caPem!, pfx: c.p12, passphrase: c.passphrase });
      s.on("error", () => undefined);
      cleanup.push(() => void s.destroy());
      return s;
    };
    const { authorization: _jwt, ...noJwt } = await good();
    const status = async (s: http2.ClientHttp2Session, topic: string) => {
      const r = await raw(s, { ...noJwt, "apns-topic": topic }, PAYLOAD);
      return r.status === 200 ? 200 : `${r.status} ${JSON.parse(r.body).reason}`;
    };
    const issued = ca.issue({ topic: TOPIC, topics: [TOPIC, `${TOPIC}.complication`] });
    expect(certificateTopics(Buffer.from(new X509Certificate(issued.certPem).raw))).toEqual([
      TOPIC,
      `${TOPIC}.complication`,
    ]);
    const listed = connect(issued);
    expect(await status(listed, `${TOPIC}.complication`)).toBe(200);
    expect(await status(listed, `${TOPIC}.voip`)).toBe("400 TopicDisallowed");
    const plain = connect(ca.issue({ topic: TOPIC, kind: "production" }));
    expect(await status(plain, TOPIC)).toBe(200);
    expect(await status(plain, `${TOPIC}.voip`)).toBe("400 TopicDisallowed");
    expect(sim.deliveries).toHaveLength(2);
  });
});
