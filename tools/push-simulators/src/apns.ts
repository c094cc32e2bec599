import { createPublicKey, randomUUID, type KeyObject } from "node:crypto";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { compactVerify, decodeProtectedHeader } from "jose";
import type { TLSSocket } from "node:tls";
import {
  apnsCertificateKind,
  certificateTopics,
  type ApnsCertificateAuthority,
} from "./certificates.js";
import { DeliveryLog } from "./delivery-log.js";
import { makeLoopbackCert } from "./tls.js";

export interface ApnsSimulatorKey {
  keyId: string;
  teamId: string;
  /** SPKI PEM (or a KeyObject) of the P-256 key the provider signs its JWTs with. */
  publicKey: string | KeyObject;
}

/**
 * One scripted response for a token: `"ok"`, `"<status>"` (Apple's usual reason for it) or
 * `"<status>-<Reason>"`, or a slow response (`then` defaults to "ok").
 */
export type ApnsScriptStep = string | { slowMs: number; then?: string };

export interface ApnsSimulatorOptions {
  /** 0 / omitted = a free port. Always bound to 127.0.0.1. */
  port?: number;
  /** TLS with a fresh self-signed certificate (exposed as `caPem`); h2c by default. */
  tls?: boolean;
  keys: ApnsSimulatorKey[];
  /**
   * Certificate-based provider authentication (TLS client certificates issued by `ca`, shaped like
   * Apple's: see ApnsCertificateAuthority), besides JWTs. Implies `tls`. A request without an
   * authorization header is authenticated by the connection's certificate: untrusted → 403
   * BadCertificate, issued for the other environment → 403 BadCertificateEnvironment, apns-topic
   * not among the topics of the certificate's multi-topic extension (without one: not its bundle id,
   * the subject UID) → 400 TopicDisallowed; a missing apns-topic means the bundle id.
   */
  certificates?: { ca: ApnsCertificateAuthority; environment?: "production" | "sandbox" };
  /** apns-topic values this simulator accepts (others get 400 TopicDisallowed). */
  topics: string[];
  /** SETTINGS_MAX_CONCURRENT_STREAMS announced to clients (default 1000, like Apple). */
  maxConcurrentStreams?: number;
  /** Epoch milliseconds; drives JWT age checks and 410 timestamps. */
  clock?: () => number;
  /** Called with every request's fate (the CLI prints these). */
  onResponse?: (r: ApnsResponseRecord) => void;
  /**
   * Called with every accepted (200) push as it is delivered: what a device would receive (the
   * device simulator, tools/device-sim, is driven by it).
   */
  onDelivery?: (d: ApnsDelivery) => void;
  /**
   * An answer for a request without a scripted step (e.g. a benchmark's dead tokens and random
   * provider errors); undefined = the normal answer.
   */
  scriptFor?: (token: string) => ApnsScriptStep | undefined;
  /**
   * Keep every delivery and response in memory (default true). Off for long runs: only the
   * counters (`requests`, ...) and `onResponse` remain.
   */
  keepRecords?: boolean;
}

export interface ApnsDelivery {
  token: string;
  /** Request headers (lower-case names, pseudo-headers removed). */
  headers: Record<string, string>;
  /** Parsed JSON payload. */
  payload: unknown;
  /** Raw payload size in bytes. */
  bytes: number;
  apnsId: string;
  at: number;
}

export interface ApnsResponseRecord {
  token: string;
  status: number;
  reason?: string;
  at: number;
}

export interface ApnsSimulator {
  /** Origin for the provider's `endpoint`, e.g. http://127.0.0.1:43121. */
  readonly url: string;
  readonly port: number;
  /** PEM of the self-signed certificate when `tls: true`. */
  readonly caPem?: string;
  /** Accepted (200) pushes in arrival order. */
  readonly deliveries: ApnsDelivery[];
  /**
   * Every request's fate in order: its status and reason, or status 0 / "StreamReset" when the
   * client reset the stream before the answer.
   */
  readonly responses: ApnsResponseRecord[];
  /** Requests (streams) received so far. */
  readonly requests: number;
  /** HTTP/2 connections accepted so far. */
  readonly connections: number;
  /** Connections currently open. */
  readonly openConnections: number;
  /** Highest number of concurrently open streams seen on a single connection. */
  readonly peakStreamsPerConnection: number;
  /** Provider tokens taken into use, summed over connections (first token + each refresh). */
  readonly providerTokensAccepted: number;
  /** Queue responses for `token`, consumed one per request, then back to "ok". */
  script(token: string, steps: ApnsScriptStep[]): void;
  deliveriesFor(token: string): ApnsDelivery[];
  /** Resolves once `n` pushes (for `token`, if given) were accepted; rejects on timeout. */
  waitForDeliveries(n: number, timeoutMs?: number, token?: string): Promise<ApnsDelivery[]>;
  /** Sends GOAWAY (reason Shutdown) on every open connection and closes them gracefully. */
  goaway(): void;
  stop(): Promise<void>;
}

const DEFAULT_REASON: Record<number, string> = {
  400: "BadDeviceToken",
  403: "Forbidden",
  410: "Unregistered",
  413: "PayloadTooLarge",
  429: "TooManyRequests",
  500: "InternalServerError",
  503: "ServiceUnavailable",
};
const PUSH_TYPES = new Set([
  "alert",
  "background",
  "location",
  "voip",
  "complication",
  "fileprovider",
  "mdm",
  "liveactivity",
  "pushtotalk",
]);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TOKEN_RE = /^[0-9a-f]{64}$/i;
const MAX_PAYLOAD = 4096;
const TOKEN_MAX_AGE_MS = 60 * 60_000;
const TOKEN_MIN_REFRESH_MS = 20 * 60_000;
/** Header names that must appear once (HTTP/2 lets a client repeat them). */
const SINGLE_HEADERS = new Set([
  "authorization",
  "apns-topic",
  "apns-push-type",
  "apns-priority",
  "apns-expiration",
  "apns-collapse-id",
  "apns-id",
]);

class Reject extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

interface KeyState {
  key: KeyObject;
  teamId: string;
}

/** The JWT a connection currently uses for a key, and when that connection first sent it. */
interface CurrentToken {
  jwt: string;
  since: number;
}

/**
 * An APNs provider API on 127.0.0.1 over real HTTP/2: Apple's paths, JWT rules, header checks,
 * reasons and statuses, plus per-token scripted failures and a record of deliveries.
 */
export async function startApnsSimulator(o: ApnsSimulatorOptions): Promise<ApnsSimulator> {
  const clock = o.clock ?? Date.now;
  const keys = new Map<string, KeyState>();
  for (const k of o.keys) {
    const key = typeof k.publicKey === "string" ? createPublicKey(k.publicKey) : k.publicKey;
    keys.set(k.keyId, { key, teamId: k.teamId });
  }
  const topics = new Set(o.topics);
  const scripts = new Map<string, ApnsScriptStep[]>();
  const log = new DeliveryLog<ApnsDelivery>();
  const responses: ApnsResponseRecord[] = [];
  const keep = o.keepRecords ?? true;
  const record = (r: ApnsResponseRecord): void => {
    if (keep) responses.push(r);
    o.onResponse?.(r);
  };
  const answered = new WeakSet<http2.ServerHttp2Stream>();
  /** Signatures already checked: JWT → key id and iat (seconds). */
  const verified = new Map<string, { keyId: string; iat: number }>();
  const sessions = new Set<http2.Http2Session>();
  let requests = 0;
  let connections = 0;
  let peakStreams = 0;
  let tokensAccepted = 0;

  const settings: http2.Settings = { maxConcurrentStreams: o.maxConcurrentStreams ?? 1000 };
  const cert = o.tls || o.certificates ? makeLoopbackCert() : undefined;
  const server = cert
    ? http2.createSecureServer({
        key: cert.keyPem,
        cert: cert.certPem,
        settings,
        // Verified per request (an untrusted certificate gets Apple's 403 BadCertificate answer).
        ...(o.certificates
          ? { requestCert: true, rejectUnauthorized: false, ca: o.certificates.ca.certPem }
          : {}),
      })
    : http2.createServer({ settings });

  const open = new Map<http2.Http2Session, number>();
  const lastStreamId = new Map<http2.Http2Session, number>();
  server.on("session", (session) => {
    connections++;
    sessions.add(session);
    open.set(session, 0);
    session.on("close", () => {
      sessions.delete(session);
      open.delete(session);
      lastStreamId.delete(session);
    });
    session.on("error", () => undefined);
  });

  /**
   * Apple's 20-minute refresh limit applies per connection (see PyAPNs2 #76/#80, pushy's
   * per-connection token): separate connections and processes may each bring their own token.
   */
  const currentTokens = new WeakMap<http2.Http2Session, Map<string, CurrentToken>>();

  async function checkAuth(
    session: http2.Http2Session | undefined,
    authorization: string | undefined,
  ): Promise<void> {
    if (!authorization) throw new Reject(403, "MissingProviderToken");
    const m = /^bearer\s+(\S+)$/i.exec(authorization);
    if (!m?.[1]) throw new Reject(403, "InvalidProviderToken");
    const jwt = m[1];
    let known = verified.get(jwt);
    if (!known) {
      let keyId: string | undefined;
      try {
        const header = decodeProtectedHeader(jwt);
        if (header.alg !== "ES256") throw new Error("alg");
        keyId = header.kid;
      } catch {
        throw new Reject(403, "InvalidProviderToken");
      }
      const state = keyId === undefined ? undefined : keys.get(keyId);
      if (!state || keyId === undefined) throw new Reject(403, "InvalidProviderToken");
      let claims: { iss?: unknown; iat?: unknown };
      try {
        const { payload } = await compactVerify(jwt, state.key, { algorithms: ["ES256"] });
        claims = JSON.parse(new TextDecoder().decode(payload)) as typeof claims;
      } catch {
        throw new Reject(403, "InvalidProviderToken");
      }
      if (claims.iss !== state.teamId || typeof claims.iat !== "number") {
        throw new Reject(403, "InvalidProviderToken");
      }
      known = { keyId, iat: claims.iat };
      verified.set(jwt, known);
    }
    const now = clock();
    if (now - known.iat * 1000 > TOKEN_MAX_AGE_MS) throw new Reject(403, "ExpiredProviderToken");
    const state = keys.get(known.keyId);
    if (!state) throw new Reject(403, "InvalidProviderToken");
    if (!session) return;
    let perKey = currentTokens.get(session);
    if (!perKey) {
      perKey = new Map();
      currentTokens.set(session, perKey);
    }
    const current = perKey.get(known.keyId);
    if (current?.jwt === jwt) return;
    if (current && now - current.since < TOKEN_MIN_REFRESH_MS) {
      throw new Reject(429, "TooManyProviderTokenUpdates");
    }
    perKey.set(known.keyId, { jwt, since: now });
    tokensAccepted++;
  }

  /**
   * Certificate authentication of a request without a provider token: the topics the
   * connection's client certificate may push to.
   */
  function checkCertificate(session: http2.Http2Session | undefined): string[] {
    const socket = session?.socket as TLSSocket | undefined;
    const peer =
      o.certificates && socket?.getPeerCertificate ? socket.getPeerCertificate() : undefined;
    if (!peer || !peer.subject) throw new Reject(403, "MissingProviderToken");
    if (!socket!.authorized) throw new Reject(403, "BadCertificate");
    const cn = String(peer.subject.CN ?? "");
    const uid = peer.subject.UID;
    const kind = apnsCertificateKind(cn);
    if (!kind || typeof uid !== "string" || uid === "") throw new Reject(403, "BadCertificate");
    const env = o.certificates!.environment ?? "production";
    if (
      (kind === "development" && env === "production") ||
      (kind === "production" && env === "sandbox")
    )
      throw new Reject(403, "BadCertificateEnvironment");
    // Apple's multi-topic extension lists them; a certificate without one has only its bundle id.
    return (peer.raw ? certificateTopics(peer.raw) : undefined) ?? [uid];
  }

  function checkHeaders(
    h: http2.IncomingHttpHeaders,
    rawHeaders: string[],
    certTopics?: string[],
  ): void {
    const seen = new Set<string>();
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = (rawHeaders[i] ?? "").toLowerCase();
      if (!SINGLE_HEADERS.has(name)) continue;
      if (seen.has(name)) throw new Reject(400, "DuplicateHeaders");
      seen.add(name);
    }
    // With a certificate, a missing apns-topic means the certificate's bundle id.
    const topic = h["apns-topic"] ?? certTopics?.[0];
    if (typeof topic !== "string" || topic === "") throw new Reject(400, "MissingTopic");
    if (!/^[A-Za-z0-9.\-_]+$/.test(topic)) throw new Reject(400, "BadTopic");
    if (!topics.has(topic)) throw new Reject(400, "TopicDisallowed");
    if (certTopics && !certTopics.includes(topic)) throw new Reject(400, "TopicDisallowed");
    const pushType = h["apns-push-type"];
    if (typeof pushType !== "string" || !PUSH_TYPES.has(pushType)) {
      throw new Reject(400, "InvalidPushType");
    }
    const priority = h["apns-priority"];
    if (priority !== undefined) {
      if (priority !== "10" && priority !== "5" && priority !== "1") {
        throw new Reject(400, "BadPriority");
      }
      if (pushType === "background" && priority === "10") throw new Reject(400, "BadPriority");
    }
    const expiration = h["apns-expiration"];
    if (expiration !== undefined && !/^\d{1,12}$/.test(String(expiration))) {
      throw new Reject(400, "BadExpirationDate");
    }
    const collapseId = h["apns-collapse-id"];
    if (typeof collapseId === "string" && Buffer.byteLength(collapseId) > 64) {
      throw new Reject(400, "BadCollapseId");
    }
    const apnsId = h["apns-id"];
    if (apnsId !== undefined && !UUID_RE.test(String(apnsId))) {
      throw new Reject(400, "BadMessageId");
    }
  }

  function nextStep(token: string): ApnsScriptStep {
    const steps = scripts.get(token);
    const step = steps?.shift();
    if (steps && steps.length === 0) scripts.delete(token);
    return step ?? o.scriptFor?.(token) ?? "ok";
  }

  function parseStep(step: string): { status: number; reason?: string } {
    if (step === "ok") return { status: 200 };
    const m = /^(\d{3})(?:-(\w+))?$/.exec(step);
    if (!m) throw new Error(`bad APNs script step "${step}"`);
    const status = Number(m[1]);
    return { status, reason: m[2] ?? DEFAULT_REASON[status] ?? "InternalServerError" };
  }

  const onStream = (
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    _flags: number,
    rawHeaders: string[],
  ): void => {
    requests++;
    const session = stream.session;
    if (session) {
      lastStreamId.set(session, Math.max(lastStreamId.get(session) ?? 0, stream.id ?? 0));
      const n = (open.get(session) ?? 0) + 1;
      open.set(session, n);
      if (n > peakStreams) peakStreams = n;
      stream.on("close", () => {
        const left = open.get(session);
        if (left !== undefined) open.set(session, left - 1);
      });
    }
    stream.on("error", () => undefined);
    // A client that resets the stream before the answer (its timeout) is recorded too.
    stream.on("close", () => {
      if (!answered.has(stream)) {
        const path = String(headers[":path"] ?? "");
        const token = decodeURIComponent(/^\/3\/device\/([^/?]*)$/.exec(path)?.[1] ?? "");
        record({ token, status: 0, reason: "StreamReset", at: clock() });
      }
    });
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= MAX_PAYLOAD + 1) chunks.push(c);
    });
    stream.on("end", () => {
      handle(stream, headers, rawHeaders, Buffer.concat(chunks), size).catch(() => {
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      });
    });
  };
  server.on("stream", onStream);

  function respond(
    stream: http2.ServerHttp2Stream,
    token: string,
    apnsId: string,
    status: number,
    reason?: string,
  ): void {
    if (stream.destroyed || stream.closed) return;
    answered.add(stream);
    record({ token, status, ...(reason === undefined ? {} : { reason }), at: clock() });
    const body =
      reason === undefined
        ? undefined
        : JSON.stringify(status === 410 ? { reason, timestamp: clock() } : { reason });
    stream.respond({
      ":status": status,
      "apns-id": apnsId,
      ...(body ? { "content-type": "application/json; charset=utf-8" } : {}),
    });
    stream.end(body);
  }

  async function handle(
    stream: http2.ServerHttp2Stream,
    h: http2.IncomingHttpHeaders,
    rawHeaders: string[],
    body: Buffer,
    size: number,
  ): Promise<void> {
    const path = String(h[":path"] ?? "");
    const m = /^\/3\/device\/([^/?]*)$/.exec(path);
    const token = m ? decodeURIComponent(m[1] ?? "") : "";
    const givenId = h["apns-id"];
    const apnsId =
      typeof givenId === "string" && UUID_RE.test(givenId) ? givenId.toLowerCase() : randomUUID();
    try {
      if (!m) throw new Reject(404, "BadPath");
      if (h[":method"] !== "POST") throw new Reject(405, "MethodNotAllowed");
      const auth = typeof h.authorization === "string" ? h.authorization : undefined;
      let certTopics: string[] | undefined;
      if (auth === undefined && o.certificates) certTopics = checkCertificate(stream.session);
      else await checkAuth(stream.session, auth);
      checkHeaders(h, rawHeaders, certTopics);
      if (token === "") throw new Reject(400, "MissingDeviceToken");
      if (!TOKEN_RE.test(token)) throw new Reject(400, "BadDeviceToken");
      if (size === 0) throw new Reject(400, "PayloadEmpty");
      if (size > MAX_PAYLOAD) throw new Reject(413, "PayloadTooLarge");
      let payload: unknown;
      try {
        payload = JSON.parse(body.toString("utf8"));
      } catch {
        // Apple documents no reason for malformed JSON; PayloadEmpty is what it answers in practice.
        throw new Reject(400, "PayloadEmpty");
      }
      const step = nextStep(token);
      let outcome: string;
      if (typeof step === "object") {
        await new Promise((r) => setTimeout(r, step.slowMs));
        outcome = step.then ?? "ok";
      } else {
        outcome = step;
      }
      const { status, reason } = parseStep(outcome);
      if (status === 200 && !stream.destroyed && !stream.closed) {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(h)) {
          if (!k.startsWith(":") && v !== undefined) headers[k] = String(v);
        }
        const delivery = { token, headers, payload, bytes: size, apnsId, at: clock() };
        if (keep) log.add(delivery);
        o.onDelivery?.(delivery);
      }
      respond(stream, token, apnsId, status, reason);
    } catch (e) {
      if (!(e instanceof Reject)) throw e;
      respond(stream, token, apnsId, e.status, e.reason);
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `${cert ? "https" : "http"}://127.0.0.1:${port}`;

  return {
    url,
    port,
    ...(cert ? { caPem: cert.certPem } : {}),
    deliveries: log.all,
    responses,
    get requests() {
      return requests;
    },
    get connections() {
      return connections;
    },
    get openConnections() {
      return sessions.size;
    },
    get peakStreamsPerConnection() {
      return peakStreams;
    },
    get providerTokensAccepted() {
      return tokensAccepted;
    },
    script(token, steps) {
      for (const s of steps) if (typeof s === "string") parseStep(s);
      scripts.set(token, [...(scripts.get(token) ?? []), ...steps]);
    },
    deliveriesFor: (token) => log.forToken(token),
    waitForDeliveries: (n, timeoutMs = 10_000, token) => log.wait(n, timeoutMs, token),
    goaway() {
      for (const s of sessions) {
        if (s.closed || s.destroyed) continue;
        s.goaway(
          http2.constants.NGHTTP2_NO_ERROR,
          lastStreamId.get(s) ?? 0,
          Buffer.from(JSON.stringify({ reason: "Shutdown" })),
        );
        s.close();
      }
    },
    async stop() {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sessions) s.destroy();
      await closed;
    },
  };
}
