import type { Logger } from "pino";
import type { DomainBlacklist, TokenBlacklist } from "./blacklist.js";
import type { Clock } from "./clock.js";
import type { DeliveryMemory } from "./deliveries.js";
import type { AppServerMetrics } from "./metrics.js";
import { RateLimiter } from "./rate-limiter.js";
import type { PushRequest, StanzaErrorSpec } from "./request.js";
import type { TokenHasher } from "./token.js";

/** What the appserver sends for one push: no message content, only routing and urgency. */
export interface PushJob {
  token: string;
  app: string;
  domain: string;
  /** The server marked it as a message worth an alert (summary had a body). */
  important: boolean;
  /** Rounds of later retries so far, after transient failures. */
  retries?: number;
  /** Epoch ms after which a push that failed transiently is given up. */
  expiresAt?: number;
}

export type SendOutcome =
  | { kind: "delivered" }
  | { kind: "invalid-token"; reason: string }
  | { kind: "rate-limited"; reason: string; retryAfterMs?: number }
  | { kind: "transient"; reason: string; retryAfterMs?: number }
  | { kind: "misconfigured"; reason: string };

/** One configured app (APNs topic or FCM project) able to deliver a push. */
export interface AppSender {
  send(job: PushJob): Promise<SendOutcome>;
  /**
   * `send` with a callback, called exactly once (possibly before it returns). Optional: the
   * pipeline's hot path when present (no promise per push), `send` otherwise.
   */
  sendWith?(job: PushJob, done: (outcome: SendOutcome) => void): void;
  /** The provider's tokens are case-insensitive (APNs hex): hashed in lower case. */
  readonly caseInsensitiveTokens?: boolean;
  /** How long the provider keeps an undelivered push (the app's ttl): later retries end there. */
  readonly ttlMs?: number;
  /**
   * The sender answers every attempt within this (its own request timeout): the pipeline then sets
   * no timer of its own per push (a second timer per push was measurable in the benchmark).
   */
  readonly attemptTimeoutMs?: number;
  close?(): Promise<void>;
}

export type PushReply = { type: "result" } | { type: "error"; error: StanzaErrorSpec };

export interface RetryPolicy {
  attempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
  circuitThreshold: number;
  circuitPauseMs: number;
  /**
   * A push that still failed transiently after `attempts` is kept and retried later: first after
   * laterInitialDelayMs, doubling up to laterMaxDelayMs, for at most keepForMs (and never past the
   * app's ttl). 0 keepForMs: not kept.
   */
  laterInitialDelayMs?: number;
  laterMaxDelayMs?: number;
  keepForMs?: number;
}

/** An app's own rate-limit and token-blacklist timings (unset: the service-wide values). */
export interface AppPolicy {
  windowMs?: number;
  hardLimitMs?: number;
  firstBlockMs?: number;
  repeatBlockMs?: number;
  hitExtensionMs?: number;
}

export interface PushServiceOptions {
  clock: Clock;
  hasher: TokenHasher;
  tokens: TokenBlacklist;
  domains: DomainBlacklist;
  apps: Map<string, AppSender>;
  defaultApp: string;
  rateLimitWindowMs: number;
  hardLimitMs: number;
  retry: RetryPolicy;
  logger: Logger;
  metrics?: AppServerMetrics;
  /** Pushes in flight to providers beyond which requests get wait/resource-constraint. */
  maxInFlight?: number;
  /** Upper bound for one provider attempt before it counts as transient. */
  sendTimeoutMs?: number;
  /** Tokens with a recent successful delivery (healthy; active tokens per domain). */
  deliveries: DeliveryMemory;
  /** A delivery worth persisting (first for a token, or first after an hour). */
  onDelivery?: (hash: string, domain: string, at: number) => void;
  /** Unknown tokens of a restricted domain tried per minute (token bucket; default 10). */
  newTokensPerMinute?: number;
  /** Per-app timings, by app name. */
  appPolicies?: Map<string, AppPolicy>;
}

const RESULT: PushReply = { type: "result" };

/** A push's reply and the outcome it is counted under. */
interface Delivered {
  reply: PushReply;
  metric: string;
}
const SENT: Delivered = { reply: RESULT, metric: "sent" };
const NOT_SENT: SendOutcome = { kind: "transient", reason: "not sent" };
const sendFailed = (e: unknown): SendOutcome => ({
  kind: "transient",
  reason: `send failed: ${(e as Error).message}`,
});
const err = (type: StanzaErrorSpec["type"], condition: string, text: string): PushReply => ({
  type: "error",
  error: { type, condition, text },
});
const TOKEN_BLOCKED = err(
  "cancel",
  "item-not-found",
  "push token is blacklisted: the push provider reported it invalid",
);
// A domain's block or restriction says nothing about this token: `wait`, so that neither server
// drops the registration (ejabberd deletes it on any other error type).
const DOMAIN_BLOCKED = err(
  "wait",
  "policy-violation",
  "server domain is blocked: too many invalid push tokens, retry later",
);
const DOMAIN_RESTRICTED = err(
  "wait",
  "resource-constraint",
  "server domain sends too many invalid push tokens: new tokens are rate-limited, retry later",
);
const TOKEN_INVALID = err(
  "cancel",
  "item-not-found",
  "the push provider reports this token invalid",
);
const PROVIDER_DOWN = err(
  "wait",
  "internal-server-error",
  "push provider unavailable, retry later",
);
const PROVIDER_LIMIT = err(
  "wait",
  "resource-constraint",
  "push provider rate-limits this token, retry later",
);
const MISCONFIGURED = err(
  "wait",
  "internal-server-error",
  "push app misconfigured on the appserver, retry later",
);
const OVERLOADED = err("wait", "resource-constraint", "appserver overloaded, retry later");
const PAUSED = err(
  "wait",
  "resource-constraint",
  "push provider failing: sends paused, retry later",
);
const INTERNAL = err("wait", "internal-server-error", "appserver internal error, retry later");

/** What /healthz says about one app's provider. */
export interface AppHealth {
  /**
   * ok: last answer a delivery or a token verdict; unknown: no push yet; failing: the last attempt
   * failed transiently; paused: circuit open; misconfigured: the provider refused our credentials
   * or request (operator action needed).
   */
  state: "ok" | "unknown" | "failing" | "paused" | "misconfigured";
  lastSuccessAt?: number;
  lastError?: { kind: string; reason: string; at: number };
}

interface Bucket {
  tokens: number;
  at: number;
}

interface Circuit {
  failures: number;
  openUntil: number;
}

/**
 * The path of one push request: domain blacklist → token blacklist → per-token rate limiter →
 * provider send (bounded retries, circuit per app) → classification → blacklist updates → reply.
 * Everything before the provider call is synchronous, reading local memory only.
 */
export class PushService {
  readonly limiter: RateLimiter<PushJob>;
  private readonly circuits = new Map<string, Circuit>();
  /** New-token budget of each restricted domain. */
  private readonly buckets = new Map<string, Bucket>();
  private readonly appHealth = new Map<string, AppHealth>();
  private inFlight = 0;
  private readonly pendingSends = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly o: PushServiceOptions) {
    const policies = o.appPolicies;
    const windows = [...(policies?.values() ?? [])].map((p) => p.windowMs ?? 0);
    this.limiter = new RateLimiter<PushJob>({
      clock: o.clock,
      windowMs: o.rateLimitWindowMs,
      // an entry is kept for the longest window of any app
      idleMs: Math.max(o.rateLimitWindowMs, ...windows),
      onDue: (key, job) => this.sendQueued(key, job),
      ...(policies && policies.size > 0
        ? { windowOf: (job: PushJob) => policies.get(job.app)?.windowMs }
        : {}),
    });
  }

  /** Handles one validated request; never rejects (an internal fault becomes a wait error). */
  handle(req: PushRequest): Promise<PushReply> {
    return new Promise((resolve) => this.handleWith(req, resolve));
  }

  /**
   * `handle` with a callback, called exactly once (possibly before it returns; `done` must not
   * throw). The appserver's path: callbacks from the provider's stream to the IQ reply, no promise
   * per push (each was an allocation and a microtask on the hot path).
   */
  handleWith(req: PushRequest, done: (reply: PushReply) => void): void {
    let r: PushReply | undefined;
    try {
      r = this.process(req, done);
    } catch (e) {
      r = this.internalError(e);
    }
    if (r !== undefined) done(r);
  }

  private internalError(e: unknown): PushReply {
    this.o.logger.error({ err: e }, "internal error while handling a push");
    this.o.metrics?.requests.inc({ outcome: "internal_error" });
    return INTERNAL;
  }

  /** The reply, or undefined when the push went to the provider (`done` answers it then). */
  private process(req: PushRequest, done: (reply: PushReply) => void): PushReply | undefined {
    const m = this.o.metrics;
    // The app decides how its tokens are compared (APNs: case-insensitive), so it comes first.
    const appName = req.app ?? this.o.defaultApp;
    const app = this.o.apps.get(appName);
    if (!app) {
      // An app renamed or removed in this appserver's config proves nothing about the token: wait,
      // so that the registration survives until the config is fixed.
      m?.requests.inc({ outcome: "unknown_app" });
      return err("wait", "item-not-found", `unknown push module ${appName} on this appserver`);
    }
    const hash = this.o.hasher.hash(req.token, app.caseInsensitiveTokens === true);
    // A token the provider called dead is refused with cancel even from a blocked domain: that is
    // the one case where dropping the registration is right.
    const policy = this.o.appPolicies?.get(appName);
    if (this.o.tokens.hit(hash, policy?.hitExtensionMs)) {
      m?.requests.inc({ outcome: "token_blacklisted" });
      return TOKEN_BLOCKED;
    }
    const domains = this.o.domains;
    if (domains.isBlocked(req.domain)) {
      m?.requests.inc({ outcome: "domain_blacklisted" });
      return DOMAIN_BLOCKED;
    }
    if (this.restrictedRefuses(hash, req.domain)) {
      m?.requests.inc({ outcome: "domain_restricted" });
      return DOMAIN_RESTRICTED;
    }
    const job: PushJob = {
      token: req.token,
      app: appName,
      domain: req.domain,
      important: req.important,
    };
    const circuit = this.circuits.get(appName);
    if (circuit && circuit.openUntil > this.o.clock.now()) {
      m?.requests.inc({ outcome: "provider_paused" });
      // Not lost: kept for when the provider is tried again.
      this.keepForLater(hash, job, app, circuit.openUntil - this.o.clock.now());
      return PAUSED;
    }
    if (this.inFlight >= (this.o.maxInFlight ?? 20_000)) {
      m?.requests.inc({ outcome: "overloaded" });
      return OVERLOADED;
    }
    const decision = this.limiter.check(hash, job);
    if (decision !== "send") {
      m?.requests.inc({ outcome: decision });
      return RESULT;
    }
    this.deliver(hash, job, app, "", this.onInternalError, done);
    return undefined;
  }

  private readonly onInternalError = (e: unknown): PushReply => this.internalError(e);

  /**
   * A restricted domain serves its healthy tokens (a recent delivery); an unknown token needs the
   * domain's new-token budget (taken here when granted). True: refuse the push.
   */
  private restrictedRefuses(hash: string, domain: string): boolean {
    return (
      this.o.domains.isRestricted(domain) &&
      !this.o.deliveries.isHealthy(hash, domain) &&
      !this.takeNewToken(domain)
    );
  }

  /** Token bucket of a restricted domain's unknown tokens (burst = one minute's budget). */
  private takeNewToken(domain: string): boolean {
    const rate = this.o.newTokensPerMinute ?? 10;
    const burst = Math.max(1, rate); // a fractional rate (one per several minutes) still admits one
    const now = this.o.clock.now();
    const b = this.buckets.get(domain) ?? { tokens: burst, at: now };
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) * rate) / 60_000);
    b.at = now;
    this.buckets.set(domain, b);
    if (b.tokens < 1) return false;
    b.tokens--;
    return true;
  }

  /** Forgets the budgets of domains no longer restricted (maintenance). */
  sweepBuckets(): void {
    for (const d of this.buckets.keys())
      if (!this.o.domains.isRestricted(d)) this.buckets.delete(d);
  }

  /**
   * Sends with bounded retries, applies the outcome to blacklists / limiter, counts it (under
   * `countPrefix` + its metric) and answers `done` with the reply; a fault anywhere answers with
   * `onError`'s reply. Never throws. The first attempt is a callback (most pushes are delivered by
   * it); only a transient failure enters the (promise-based) retry loop.
   */
  private deliver(
    hash: string,
    job: PushJob,
    app: AppSender,
    countPrefix: "" | "queued_",
    onError: (e: unknown) => PushReply,
    done: (reply: PushReply) => void,
  ): void {
    this.inFlight++;
    if (this.o.retry.attempts < 1)
      return this.conclude(hash, job, app, NOT_SENT, countPrefix, onError, done);
    this.attemptWith(
      job,
      app,
      (outcome) => {
        if (outcome.kind !== "transient")
          return this.conclude(hash, job, app, outcome, countPrefix, onError, done);
        this.retry(hash, job, app, outcome)
          .then((d) => this.counted(d, countPrefix))
          .catch(onError)
          .then(done);
      },
      (e) => {
        this.inFlight--;
        done(onError(e));
      },
    );
  }

  /** Applies a final outcome of the first attempt and answers; releases the in-flight slot. */
  private conclude(
    hash: string,
    job: PushJob,
    app: AppSender,
    outcome: SendOutcome,
    countPrefix: "" | "queued_",
    onError: (e: unknown) => PushReply,
    done: (reply: PushReply) => void,
  ): void {
    let reply: PushReply;
    try {
      reply = this.counted(this.apply(hash, job, app, outcome), countPrefix);
    } catch (e) {
      reply = onError(e);
    } finally {
      this.inFlight--;
    }
    done(reply);
  }

  private counted(d: Delivered, countPrefix: "" | "queued_"): PushReply {
    this.o.metrics?.requests.inc({
      outcome: countPrefix === "" ? d.metric : `${countPrefix}${d.metric}`,
    });
    return d.reply;
  }

  /** After a transient first attempt: the remaining attempts with back-off (owns the in-flight slot). */
  private async retry(
    hash: string,
    job: PushJob,
    app: AppSender,
    first: SendOutcome,
  ): Promise<Delivered> {
    try {
      const { attempts, initialDelayMs, maxDelayMs } = this.o.retry;
      let outcome = first;
      for (let attempt = 1; ; attempt++) {
        // `outcome` is the transient result of attempt number `attempt`
        this.noteTransient(job.app);
        if (attempt >= attempts || this.closed || this.circuitOpen(job.app)) break;
        const backoff = Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1));
        const retryAfterMs = outcome.kind === "transient" ? outcome.retryAfterMs : undefined;
        await this.sleep(Math.max(backoff, retryAfterMs ?? 0));
        outcome = await this.attempt(job, app);
        if (outcome.kind !== "transient") break;
      }
      return this.apply(hash, job, app, outcome);
    } finally {
      this.inFlight--;
    }
  }

  /** Applies a final send outcome: blacklists, limiter, healthy tokens, logs; the reply. */
  private apply(hash: string, job: PushJob, app: AppSender, outcome: SendOutcome): Delivered {
    const log = this.o.logger;
    switch (outcome.kind) {
      case "delivered": {
        if (this.circuits.size > 0) this.circuits.delete(job.app);
        const at = this.o.deliveries.delivered(hash, job.domain);
        if (at !== undefined) this.o.onDelivery?.(hash, job.domain, at);
        // Info, not debug: an operator (and `npm start`'s user) sees each push go out. The
        // token only as its hash, as in every other line.
        // (the fields object only when the line is written: one allocation less per push)
        if (log.isLevelEnabled("info"))
          log.info(
            { token: hash, app: job.app, domain: job.domain, alert: job.important },
            "push delivered",
          );
        return SENT;
      }
      case "invalid-token": {
        const b = this.o.tokens.block(hash, job.domain, this.o.appPolicies?.get(job.app));
        this.o.deliveries.forget(hash);
        const changed = this.o.domains.recordBadToken(job.domain, hash);
        log.info(
          { token: hash, app: job.app, reason: outcome.reason, strikes: b.strikes },
          "token blacklisted",
        );
        if (changed) {
          const st = this.o.domains.status(job.domain);
          log.warn(
            {
              domain: job.domain,
              state: st.state,
              badTokens: st.badTokens,
              activeTokens: st.activeTokens,
              threshold: st.threshold,
            },
            st.state === "blocked"
              ? "domain blocked: too many invalid tokens (no provider traffic; requests get wait)"
              : "domain restricted: too many invalid tokens (unknown tokens rate-limited)",
          );
        }
        return { reply: TOKEN_INVALID, metric: "invalid_token" };
      }
      case "rate-limited":
        this.limiter.hardLimit(
          hash,
          Math.max(
            this.o.appPolicies?.get(job.app)?.hardLimitMs ?? this.o.hardLimitMs,
            outcome.retryAfterMs ?? 0,
          ),
        );
        log.info(
          { token: hash, app: job.app, reason: outcome.reason },
          "provider rate-limits token",
        );
        return { reply: PROVIDER_LIMIT, metric: "provider_rate_limited" };
      case "misconfigured":
        log.error({ app: job.app, reason: outcome.reason }, "push app misconfigured");
        return { reply: MISCONFIGURED, metric: "misconfigured" };
      case "transient": {
        const kept = this.keepForLater(hash, job, app);
        log.warn(
          { app: job.app, reason: outcome.reason, kept, retries: job.retries ?? 0 },
          kept
            ? "push provider failed; push kept for a later retry"
            : "push provider failed; push given up (expired or not kept)",
        );
        return { reply: PROVIDER_DOWN, metric: "transient_error" };
      }
    }
  }

  private attempt(job: PushJob, app: AppSender): Promise<SendOutcome> {
    const start = performance.now();
    let sent: Promise<SendOutcome>;
    try {
      const ms = this.o.sendTimeoutMs ?? 30_000;
      sent =
        app.attemptTimeoutMs !== undefined && app.attemptTimeoutMs <= ms
          ? app.send(job)
          : this.withTimeout(app.send(job), ms);
    } catch (e) {
      sent = Promise.resolve(sendFailed(e));
    }
    // one continuation per attempt, not an async function awaiting another (fewer promises)
    return sent.then(
      (outcome) => this.attempted(job, outcome, start),
      (e: unknown) => this.attempted(job, sendFailed(e), start),
    );
  }

  /**
   * One attempt through the sender's callback when it has one and times its attempts out itself
   * (else through `attempt`). `done` gets the outcome once; `fault` a throw of the bookkeeping.
   */
  private attemptWith(
    job: PushJob,
    app: AppSender,
    done: (outcome: SendOutcome) => void,
    fault: (e: unknown) => void,
  ): void {
    const ms = this.o.sendTimeoutMs ?? 30_000;
    if (!app.sendWith || app.attemptTimeoutMs === undefined || app.attemptTimeoutMs > ms) {
      this.attempt(job, app).then(done, fault);
      return;
    }
    const start = performance.now();
    let answered = false;
    const answer = (outcome: SendOutcome): void => {
      if (answered) return; // a sender that answered and then threw
      answered = true;
      let o: SendOutcome;
      try {
        o = this.attempted(job, outcome, start);
      } catch (e) {
        return fault(e);
      }
      done(o);
    };
    try {
      app.sendWith(job, answer);
    } catch (e) {
      answer(sendFailed(e));
    }
  }

  private attempted(job: PushJob, outcome: SendOutcome, start: number): SendOutcome {
    // Reasons end up in logs: a provider error text might quote the request path with the token.
    if (outcome.kind !== "delivered" && outcome.reason.includes(job.token)) {
      outcome = { ...outcome, reason: outcome.reason.split(job.token).join("<token>") };
    }
    this.noteHealth(job.app, outcome);
    this.o.metrics?.providerSends.inc({ app: job.app, result: outcome.kind });
    this.o.metrics?.providerLatency.observe({ app: job.app }, (performance.now() - start) / 1000);
    return outcome;
  }

  private withTimeout(p: Promise<SendOutcome>, ms: number): Promise<SendOutcome> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => resolve({ kind: "transient", reason: `no provider answer within ${ms} ms` }),
        ms,
      );
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(t);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  /**
   * A queued push falls due. What was learned while it waited counts: a token the provider called
   * invalid meanwhile (a second invalid answer would escalate its block), a domain blocked meanwhile,
   * a domain restricted meanwhile (a token without a recent delivery then needs the domain's
   * new-token budget, as a new request would), or a paused provider — the push is dropped without
   * provider traffic (and without extending the token's block: this is not a new request), or kept
   * for the end of the pause.
   */
  private sendQueued(hash: string, job: PushJob): void {
    const app = this.o.apps.get(job.app);
    if (!app || this.closed) return;
    const circuit = this.circuits.get(job.app);
    if (circuit && circuit.openUntil > this.o.clock.now() && !this.o.tokens.isBlocked(hash)) {
      this.o.metrics?.requests.inc({ outcome: "queued_provider_paused" });
      this.keepForLater(hash, job, app, circuit.openUntil - this.o.clock.now());
      return;
    }
    const skip = this.o.domains.isBlocked(job.domain)
      ? "domain_blacklisted"
      : this.o.tokens.isBlocked(hash)
        ? "token_blacklisted"
        : this.restrictedRefuses(hash, job.domain)
          ? "domain_restricted"
          : undefined;
    if (skip) {
      this.o.metrics?.requests.inc({ outcome: `queued_${skip}` });
      this.o.logger.debug({ token: hash, app: job.app, reason: skip }, "queued push dropped");
      return;
    }
    const p = new Promise<PushReply>((resolve) =>
      this.deliver(
        hash,
        job,
        app,
        "queued_",
        (e) => {
          this.o.logger.error({ err: e }, "queued push failed");
          return INTERNAL;
        },
        resolve,
      ),
    ).finally(() => this.pendingSends.delete(p));
    this.pendingSends.add(p);
  }

  /**
   * Keeps a push the provider could not take for a later retry, in the rate limiter's queue (one
   * per token: a push already queued for the token delivers as well; persisted sealed at shutdown
   * like any queued push). Back-off doubles per round; gives up at the push's expiry.
   */
  private keepForLater(hash: string, job: PushJob, app: AppSender, pausedForMs?: number): boolean {
    const r = this.o.retry;
    const keepFor = r.keepForMs ?? 3_600_000;
    if (this.closed || keepFor <= 0) return false;
    const now = this.o.clock.now();
    const expiresAt = job.expiresAt ?? now + Math.min(keepFor, app.ttlMs ?? keepFor);
    const n = job.retries ?? 0;
    // A push held back by the open circuit was not tried: it goes when the pause ends, no back-off.
    const delay =
      pausedForMs ??
      Math.min(r.laterMaxDelayMs ?? 600_000, (r.laterInitialDelayMs ?? 30_000) * 2 ** n);
    const due = now + delay;
    if (due > expiresAt) {
      this.o.metrics?.requests.inc({ outcome: "retry_expired" });
      return false;
    }
    this.limiter.restoreQueued(hash, due, {
      ...job,
      retries: pausedForMs === undefined ? n + 1 : n,
      expiresAt,
    });
    return true;
  }

  private noteHealth(app: string, outcome: SendOutcome): void {
    let h = this.appHealth.get(app);
    if (!h) this.appHealth.set(app, (h = { state: "unknown" }));
    const now = this.o.clock.now();
    if (
      outcome.kind === "delivered" ||
      outcome.kind === "invalid-token" ||
      outcome.kind === "rate-limited"
    ) {
      // The provider accepted our credentials and request: the app works.
      h.state = "ok";
      if (outcome.kind === "delivered") h.lastSuccessAt = now;
      else h.lastError = { kind: outcome.kind, reason: outcome.reason, at: now };
    } else {
      h.state = outcome.kind === "misconfigured" ? "misconfigured" : "failing";
      h.lastError = { kind: outcome.kind, reason: outcome.reason, at: now };
    }
  }

  /** Provider state of every configured app, for /healthz. */
  health(): Record<string, AppHealth> {
    const out: Record<string, AppHealth> = {};
    for (const name of this.o.apps.keys()) {
      const h = { ...(this.appHealth.get(name) ?? { state: "unknown" as const }) };
      if (this.circuitOpen(name)) h.state = "paused";
      out[name] = h;
    }
    return out;
  }

  private noteTransient(app: string): void {
    const c = this.circuits.get(app) ?? { failures: 0, openUntil: 0 };
    c.failures++;
    if (c.failures >= this.o.retry.circuitThreshold) {
      c.openUntil = this.o.clock.now() + this.o.retry.circuitPauseMs;
      c.failures = 0;
      this.o.logger.warn(
        { app, pauseMs: this.o.retry.circuitPauseMs },
        "push provider failing: pausing sends",
      );
    }
    this.circuits.set(app, c);
  }

  private circuitOpen(app: string): boolean {
    const c = this.circuits.get(app);
    return c !== undefined && c.openUntil > this.o.clock.now();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.o.clock.setTimer(ms, resolve));
  }

  /** Pushes currently in flight to a provider. */
  get inFlightCount(): number {
    return this.inFlight;
  }

  /** Stops queued sends from starting and waits for running ones; returns what was still queued. */
  async close(): Promise<{ key: string; due: number; item: PushJob }[]> {
    this.closed = true;
    const queued = this.limiter.drainQueued();
    this.limiter.close();
    await Promise.allSettled([...this.pendingSends]);
    return queued;
  }
}
