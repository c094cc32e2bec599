import { randomFillSync } from "node:crypto";
import http2 from "node:http2";
import { ApnsProviderToken, loadApnsKey } from "./apns-jwt.js";
import type { CryptoKey } from "jose";
import { parseRetryAfter } from "./http-client.js";
import type {
  ApnsAppConfig,
  ProviderLogger,
  ProviderPush,
  ProviderResult,
  PushProvider,
} from "./types.js";

const DEFAULT_ALERT = { title: "Lichen", body: "New message" };
const MAX_PAYLOAD = 4096;
const MAX_COLLAPSE_ID = 64;
/** encodeURIComponent returns such a string unchanged (hex APNs tokens): the call is skipped. */
const URI_SAFE = /^[A-Za-z0-9_.-]*$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INVALID_TOKEN_400 = new Set(["BadDeviceToken", "DeviceTokenNotForTopic"]);
const TRANSIENT_400 = new Set(["IdleTimeout"]);
const NOOP_LOGGER: ProviderLogger = { warn: () => undefined, info: () => undefined };

/** The APNs JSON payload: a generic alert for the Notification Service Extension, or a wake-up. */
export function apnsPayload(
  kind: ProviderPush["kind"],
  alert: { title: string; body: string } = DEFAULT_ALERT,
  additionalData?: Record<string, unknown>,
): string {
  const aps =
    kind === "alert"
      ? { alert: { title: alert.title, body: alert.body }, "mutable-content": 1, sound: "default" }
      : { "content-available": 1 };
  // The operator's fixed extra keys (apps.<name>.additionalData, fpush's) beside `aps`.
  return JSON.stringify(additionalData ? { ...additionalData, aps } : { aps });
}

/** Maps an APNs response (status + reason) to what the appserver should do about it. */
export function classifyApns(
  status: number,
  reason: string,
  retryAfterMs?: number,
): ProviderResult {
  const retry = retryAfterMs === undefined ? {} : { retryAfterMs };
  if (status === 410) return { outcome: "invalid-token", status, reason };
  if (status === 400 && INVALID_TOKEN_400.has(reason)) {
    return { outcome: "invalid-token", status, reason };
  }
  if (status === 400 && TRANSIENT_400.has(reason)) return { outcome: "transient", status, reason };
  if (status === 429 && reason === "TooManyRequests") {
    return { outcome: "rate-limited", status, reason, ...retry };
  }
  // Provider-token trouble the next attempt fixes (fresh or previous token); see ApnsProviderToken.
  if (status === 429 || (status === 403 && reason === "ExpiredProviderToken")) {
    return { outcome: "transient", status, reason, ...retry };
  }
  if (status >= 500) return { outcome: "transient", status, reason, ...retry };
  return { outcome: "misconfigured", status, reason };
}

interface Slot {
  index: number;
  session?: http2.ClientHttp2Session;
  connecting?: Promise<void>;
  /** Streams open on `session`. */
  active: number;
  /** The peer's SETTINGS_MAX_CONCURRENT_STREAMS. */
  limit: number;
}

/**
 * One attempt, from `sendWith` to its answer, with its stream's state: the stream's listeners are
 * functions shared by all streams that find the attempt on the stream (`kAttempt`), instead of
 * ~10 closures (and their contexts) per push.
 */
interface Waiting {
  provider: ApnsProvider;
  push: ProviderPush;
  resolve: (r: ProviderResult) => void;
  /** performance.now() by which the attempt is answered or given up. */
  deadline: number;
  settled: boolean;
  /** Neighbours in the provider's list of unsettled attempts (deadline order). */
  prev: Waiting | undefined;
  next: Waiting | undefined;
  /** The stream slot taken (undefined until started) and its session then. */
  slot: Slot | undefined;
  session: http2.ClientHttp2Session | undefined;
  /** The stream slot was given back. */
  released: boolean;
  /** The request on the wire (to reset at the deadline) until the attempt finished. */
  req: AttemptStream | undefined;
  /** The stream's outcome was reported (later events of the stream are ignored). */
  finished: boolean;
  status: number;
  responseHeaders: http2.IncomingHttpHeaders | undefined;
  /** The body as bytes, decoded only for an error's reason (no StringDecoder per stream). */
  answer: Buffer[] | undefined;
  answerBytes: number;
}

const kAttempt = Symbol("apnsAttempt");
type AttemptStream = http2.ClientHttp2Stream & { [kAttempt]: Waiting };

// The stream's listeners, called with the stream as `this` (shared by all streams).
function onStreamResponse(this: AttemptStream, h: http2.IncomingHttpHeaders): void {
  const w = this[kAttempt];
  w.responseHeaders = h;
  w.status = Number(h[":status"] ?? 0);
}
function onStreamData(this: AttemptStream, c: Buffer): void {
  const w = this[kAttempt];
  if (w.answerBytes >= 8192) return;
  (w.answer ??= []).push(c);
  w.answerBytes += c.length;
}
function onStreamEnd(this: AttemptStream): void {
  const w = this[kAttempt];
  w.provider.ended(w);
}
function onStreamError(this: AttemptStream, e: Error & { code?: string }): void {
  const w = this[kAttempt];
  w.provider.finish(w, {
    outcome: "transient",
    status: 0,
    reason: `StreamError: ${e.code ?? e.message}`,
  });
}
function onStreamClose(this: AttemptStream): void {
  const w = this[kAttempt];
  const refused = this.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
  const reason = refused ? "GOAWAY" : `StreamClosed: ${this.rstCode}`;
  w.provider.finish(w, { outcome: "transient", status: 0, reason });
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
/** Random bytes for 256 UUIDs at a time, and the text of one UUID (dashes in place). */
const uuidPool = Buffer.alloc(16 * 256);
let uuidPoolAt = uuidPool.length;
const uuidText = Buffer.from("00000000-0000-4000-8000-000000000000", "latin1");
/** Where each random byte's two hex digits go in the UUID text. */
const UUID_DIGITS = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/**
 * A random (version 4) UUID, lower-case, as crypto.randomUUID makes them (122 random bits from
 * the CSPRNG, pooled): written into one buffer and read as one flat string, where randomUUID's
 * string is ~20 concatenations (~0.6 KB of garbage per push).
 */
export function randomUuid(): string {
  if (uuidPoolAt === uuidPool.length) {
    randomFillSync(uuidPool);
    uuidPoolAt = 0;
  }
  const at = uuidPoolAt;
  uuidPoolAt += 16;
  for (let i = 0; i < 16; i++) {
    let b = uuidPool[at + i]!;
    if (i === 6)
      b = (b & 0x0f) | 0x40; // version 4
    else if (i === 8) b = (b & 0x3f) | 0x80; // RFC 4122 variant
    const h = HEX[b]!;
    const o = UUID_DIGITS[i]!;
    uuidText[o] = h.charCodeAt(0);
    uuidText[o + 1] = h.charCodeAt(1);
  }
  return uuidText.toString("latin1", 0, 36);
}

/**
 * APNs over node:http2: a pool of sessions (default 2), each carrying as many concurrent streams
 * as the server's SETTINGS allow; requests beyond that wait in a FIFO queue. A session that gets
 * GOAWAY, errors or closes is dropped and a new one is opened for the next request.
 * One attempt per send; the caller owns retries.
 */
export class ApnsProvider implements PushProvider {
  readonly name: string;
  private readonly slots: Slot[];
  private readonly queue: Waiting[] = [];
  /**
   * Attempts not yet settled, in deadline order (every attempt gets the same timeout, so insertion
   * order is deadline order): one timer for all of them, armed for the oldest, instead of a timer
   * per push (a timer per push was measurable in the benchmark).
   */
  private oldest: Waiting | undefined;
  private newest: Waiting | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  /** Token authentication's signing key (undefined: certificate authentication). */
  private readonly key: Promise<CryptoKey> | undefined;
  private readonly tokens = new WeakMap<http2.ClientHttp2Session, ApnsProviderToken>();
  private readonly clock: () => number;
  private readonly logger: ProviderLogger;
  private readonly timeoutMs: number;
  private readonly alert: { title: string; body: string };
  /** The payload of each push kind: fixed for an app, built once. */
  private readonly payloads: Record<ProviderPush["kind"], string>;
  /** The payloads UTF-8 encoded once: a stream's write then encodes nothing per push. */
  private readonly payloadBytes: Record<ProviderPush["kind"], Buffer>;
  /** The last `apns-expiration` value and what it was made from. */
  private readonly lastExpiration = { second: NaN, ttlSeconds: NaN, value: "" };
  /** Which payloads exceed APNs' 4 KiB (checked once, refused at each send). */
  private readonly oversized: Record<ProviderPush["kind"], boolean>;
  private closed = false;

  constructor(
    private readonly app: ApnsAppConfig,
    opts: { clock?: () => number; logger?: ProviderLogger } = {},
  ) {
    this.name = app.name;
    this.clock = opts.clock ?? Date.now;
    this.logger = opts.logger ?? NOOP_LOGGER;
    this.timeoutMs = app.requestTimeoutMs ?? 10_000;
    this.alert = app.alert ?? DEFAULT_ALERT;
    this.payloads = {
      alert: apnsPayload("alert", this.alert, app.additionalData),
      background: apnsPayload("background", this.alert, app.additionalData),
    };
    this.payloadBytes = {
      alert: Buffer.from(this.payloads.alert),
      background: Buffer.from(this.payloads.background),
    };
    this.oversized = {
      alert: this.payloadBytes.alert.length > MAX_PAYLOAD,
      background: this.payloadBytes.background.length > MAX_PAYLOAD,
    };
    const n = Math.max(1, app.connections ?? 2);
    this.slots = Array.from({ length: n }, (_, index) => ({ index, active: 0, limit: 1 }));
    if ((app.privateKeyPem === undefined) === (app.certificate === undefined))
      throw new Error(`APNs app ${app.name}: give either a .p8 key or a certificate`);
    this.key = app.privateKeyPem !== undefined ? loadApnsKey(app.privateKeyPem) : undefined;
    // Surface a broken key at start-up instead of on the first push.
    this.key?.catch((e: unknown) => {
      this.logger.warn({ err: String(e) }, "APNs key cannot be loaded");
    });
  }

  send(push: ProviderPush): Promise<ProviderResult> {
    return new Promise<ProviderResult>((resolve) => this.sendWith(push, resolve));
  }

  sendWith(push: ProviderPush, done: (r: ProviderResult) => void): void {
    if (this.closed) return done({ outcome: "transient", status: 0, reason: "ProviderClosed" });
    // One deadline for the whole attempt, time spent queued for a free stream included.
    const w: Waiting = {
      provider: this,
      push,
      settled: false,
      resolve: done,
      deadline: performance.now() + this.timeoutMs,
      prev: undefined,
      next: undefined,
      slot: undefined,
      session: undefined,
      released: false,
      req: undefined,
      finished: false,
      status: 0,
      responseHeaders: undefined,
      answer: undefined,
      answerBytes: 0,
    };
    // appended to an intrusive list (no hash-set entry per push; unlinked in O(1) when settled)
    if (this.newest) {
      this.newest.next = w;
      w.prev = this.newest;
    } else this.oldest = w;
    this.newest = w;
    if (!this.deadlineTimer) this.armDeadline(this.timeoutMs);
    this.queue.push(w);
    this.dispatch();
  }

  private armDeadline(ms: number): void {
    this.deadlineTimer = setTimeout(() => this.expire(), Math.max(1, ms));
  }

  /** Gives up the attempts past their deadline; re-arms for the next one. */
  private expire(): void {
    this.deadlineTimer = undefined;
    const now = performance.now();
    for (let w = this.oldest; w; w = this.oldest) {
      if (w.deadline > now) {
        this.armDeadline(w.deadline - now);
        return;
      }
      this.cancel(w);
      this.settle(w, { outcome: "transient", status: 0, reason: "Timeout" });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.queue.splice(0)) {
      this.settle(w, { outcome: "transient", status: 0, reason: "ProviderClosed" });
    }
    await Promise.all(
      this.slots.map(async (slot) => {
        const s = slot.session;
        slot.session = undefined;
        if (!s || s.destroyed) return;
        await new Promise<void>((resolve) => {
          s.close(() => resolve());
          // Streams still open are abandoned after the request timeout.
          setTimeout(() => {
            s.destroy();
            resolve();
          }, this.timeoutMs).unref();
        });
      }),
    );
  }

  private settle(w: Waiting, r: ProviderResult): void {
    if (w.settled) return;
    w.settled = true;
    if (w.prev) w.prev.next = w.next;
    else this.oldest = w.next;
    if (w.next) w.next.prev = w.prev;
    else this.newest = w.prev;
    w.prev = w.next = undefined;
    if (!this.oldest && this.deadlineTimer) {
      clearTimeout(this.deadlineTimer);
      this.deadlineTimer = undefined;
    }
    if (this.queue.length > 0) {
      const i = this.queue.indexOf(w);
      if (i >= 0) this.queue.splice(i, 1);
    }
    w.resolve(r);
  }

  private dispatch(): void {
    while (this.queue.length > 0 && !this.closed) {
      let best: Slot | undefined;
      for (const s of this.slots) {
        if (!s.session || s.active >= s.limit) continue;
        if (!best || s.active < best.active) best = s;
      }
      if (!best) {
        for (const s of this.slots) if (!s.session && !s.connecting) this.connect(s);
        return;
      }
      const w = this.queue.shift();
      if (w && !w.settled) this.start(best, w);
    }
  }

  private connect(slot: Slot): void {
    let session: http2.ClientHttp2Session;
    try {
      const cert = this.app.certificate;
      session = http2.connect(this.app.endpoint, {
        ...(this.app.caPem ? { ca: this.app.caPem } : {}),
        // Certificate authentication: the .p12 is the TLS client certificate of every session.
        ...(cert
          ? {
              pfx: cert.pfx,
              ...(cert.passphrase !== undefined ? { passphrase: cert.passphrase } : {}),
            }
          : {}),
      });
    } catch (e) {
      for (const w of this.queue.splice(0)) {
        this.settle(w, {
          outcome: "misconfigured",
          status: 0,
          // a malformed endpoint, or a .p12 node's TLS cannot open (check-config reports both)
          reason: `${this.app.certificate ? "BadEndpointOrCertificate" : "BadEndpoint"}: ${String(e)}`,
        });
      }
      return;
    }
    slot.connecting = new Promise<void>((resolve) => {
      let ready = false;
      const drop = (why: string): void => {
        if (slot.session === session) slot.session = undefined;
        if (!ready) {
          ready = true;
          slot.connecting = undefined;
          resolve();
          this.failQueuedOnConnectError(why);
        }
        if (!session.destroyed) session.destroy();
        if (!this.closed && this.queue.length > 0) setImmediate(() => this.dispatch());
      };
      session.on("remoteSettings", (settings) => {
        slot.limit = Math.max(1, Math.min(settings.maxConcurrentStreams ?? 100, 10_000));
        if (!ready) {
          ready = true;
          slot.session = session;
          slot.active = 0;
          slot.connecting = undefined;
          this.logger.info({ slot: slot.index, maxStreams: slot.limit }, "APNs connected");
          resolve();
        }
        this.dispatch();
      });
      session.on("goaway", (code, _last, data) => {
        let reason = `code ${code}`;
        try {
          const parsed = JSON.parse(data?.toString() ?? "") as { reason?: string };
          if (parsed.reason) reason = parsed.reason;
        } catch {
          // Debug data is optional and free-form.
        }
        this.logger.warn({ slot: slot.index, reason }, "APNs GOAWAY");
        // Streams already accepted finish on the old session; new ones go to a new session.
        if (slot.session === session) slot.session = undefined;
        if (!this.closed && this.queue.length > 0) setImmediate(() => this.dispatch());
      });
      session.on("error", (e: Error) => {
        this.logger.warn({ slot: slot.index, err: e.message }, "APNs session error");
        drop(`ConnectError: ${(e as NodeJS.ErrnoException).code ?? e.message}`);
      });
      session.on("close", () => drop("ConnectionClosed"));
    });
  }

  /** Nothing can be sent while no session connects: fail the waiting requests fast. */
  private failQueuedOnConnectError(reason: string): void {
    if (this.slots.some((s) => s.session || s.connecting)) return;
    for (const w of this.queue.splice(0))
      this.settle(w, { outcome: "transient", status: 0, reason });
  }

  private start(slot: Slot, w: Waiting): void {
    const session = slot.session;
    if (!session) {
      this.queue.unshift(w);
      return;
    }
    slot.active++;
    w.slot = slot;
    w.session = session;
    try {
      this.request(session, w);
    } catch (e) {
      this.complete(w, { outcome: "transient", status: 0, reason: String(e) });
    }
  }

  /**
   * Called once the stream ends (or the attempt could not start): answers the push, frees the
   * stream slot. A method, not a second promise or a closure per attempt.
   */
  private complete(w: Waiting, r: ProviderResult): void {
    this.settle(w, r);
    if (w.released) return;
    w.released = true;
    if (w.slot!.session === w.session) w.slot!.active--;
    this.dispatch();
  }

  /** The stream's outcome, once (the first of end / error / close / deadline). */
  finish(w: Waiting, r: ProviderResult): void {
    if (w.finished) return;
    w.finished = true;
    w.req = undefined;
    this.complete(w, r);
  }

  /** At the deadline: resets the stream if the request is on the wire. */
  private cancel(w: Waiting): void {
    const req = w.req;
    if (!req || w.finished) return;
    if (!req.closed) req.close(http2.constants.NGHTTP2_CANCEL);
    this.finish(w, { outcome: "transient", status: 0, reason: "Timeout" });
  }

  /** The response ended: its classification. */
  ended(w: Waiting): void {
    const status = w.status;
    const responseHeaders = w.responseHeaders ?? {};
    if (status === 200) {
      const id = responseHeaders["apns-id"];
      // built in place (a spread of a conditional object was a second allocation per push)
      const delivered: ProviderResult & { outcome: "delivered" } = {
        outcome: "delivered",
        status,
      };
      if (typeof id === "string") delivered.providerId = id;
      this.finish(w, delivered);
      return;
    }
    let reason = `HTTP ${status}`;
    try {
      const data = w.answer ? Buffer.concat(w.answer).toString("utf8") : "";
      const parsed = JSON.parse(data) as { reason?: unknown };
      if (typeof parsed.reason === "string") reason = parsed.reason;
    } catch {
      // A proxy or a broken server: keep the status as the reason.
    }
    const token = this.tokenOf(w.session!);
    if (status === 403 && reason === "ExpiredProviderToken") token?.markExpired();
    if (status === 429 && reason === "TooManyProviderTokenUpdates") token?.revert();
    this.finish(w, classifyApns(status, reason, parseRetryAfter(responseHeaders["retry-after"])));
  }

  /** The session's provider token (undefined with certificate authentication). */
  private tokenOf(session: http2.ClientHttp2Session): ApnsProviderToken | undefined {
    if (!this.key) return undefined;
    let t = this.tokens.get(session);
    if (!t) {
      const { keyId = "", teamId = "" } = this.app;
      t = new ApnsProviderToken({ keyId, teamId, key: this.key }, this.clock);
      this.tokens.set(session, t);
    }
    return t;
  }

  private request(session: http2.ClientHttp2Session, w: Waiting): void {
    const token = this.tokenOf(session);
    if (!token) return this.post(session, w, undefined);
    // the signed token is reused for 40 minutes: no promise on the hot path
    const authorization = token.cachedAuthorization();
    if (authorization !== undefined) return this.post(session, w, authorization);
    token.get().then(
      (fresh) => {
        try {
          this.post(session, w, `bearer ${fresh}`);
        } catch (e) {
          this.complete(w, { outcome: "transient", status: 0, reason: String(e) });
        }
      },
      (e: unknown) =>
        this.complete(w, {
          outcome: "misconfigured",
          status: 0,
          reason: `InvalidSigningKey: ${String(e)}`,
        }),
    );
  }

  /** The `apns-expiration` value for a ttl, kept while the second and the ttl stay the same. */
  private expiration(ttlSeconds: number): string {
    const nowS = Math.floor(this.clock() / 1000);
    const e = this.lastExpiration;
    if (e.second === nowS && e.ttlSeconds === ttlSeconds) return e.value;
    e.second = nowS;
    e.ttlSeconds = ttlSeconds;
    e.value = String(ttlSeconds > 0 ? nowS + Math.floor(ttlSeconds) : 0);
    return e.value;
  }

  private post(
    session: http2.ClientHttp2Session,
    w: Waiting,
    authorization: string | undefined,
  ): void {
    const p = w.push;
    if (w.settled) return this.complete(w, { outcome: "transient", status: 0, reason: "Timeout" });
    const payload = this.payloadBytes[p.kind];
    if (this.oversized[p.kind]) {
      return this.complete(w, { outcome: "misconfigured", status: 0, reason: "PayloadTooLarge" });
    }
    const headers: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      // hex (APNs) needs no escaping: encodeURIComponent only for the rare other token
      ":path": `/3/device/${URI_SAFE.test(p.token) ? p.token : encodeURIComponent(p.token)}`,
      "apns-topic": this.app.topic,
      "apns-push-type": p.kind,
      "apns-priority": p.kind === "alert" ? "10" : "5",
      "apns-expiration": this.expiration(p.ttlSeconds),
      "apns-id":
        p.pushId !== undefined && UUID_RE.test(p.pushId) ? p.pushId.toLowerCase() : randomUuid(),
      "content-type": "application/json",
    };
    if (authorization !== undefined) headers.authorization = authorization;
    if (p.collapseId !== undefined) {
      if (Buffer.byteLength(p.collapseId) <= MAX_COLLAPSE_ID)
        headers["apns-collapse-id"] = p.collapseId;
      else this.logger.warn({}, "apns-collapse-id longer than 64 bytes left out");
    }
    if (session.closed || session.destroyed) {
      return this.complete(w, { outcome: "transient", status: 0, reason: "ConnectionClosed" });
    }
    const req = session.request(headers) as AttemptStream;
    req[kAttempt] = w;
    w.req = req;
    req.on("response", onStreamResponse);
    req.on("data", onStreamData);
    req.on("end", onStreamEnd);
    req.on("error", onStreamError);
    req.on("close", onStreamClose);
    req.end(payload);
  }
}
