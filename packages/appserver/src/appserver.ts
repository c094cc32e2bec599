import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { isAbsolute, join } from "node:path";
import Database from "better-sqlite3";
import { pino, type Logger } from "pino";
import { DomainBlacklist, TokenBlacklist } from "./blacklist.js";
import { DeliveryMemory } from "./deliveries.js";
import { SystemClock, type Clock } from "./clock.js";
import { ComponentLink } from "./component-link.js";
import { ConfigError, parseDuration, type AppConfig, type AppServerConfig } from "./config.js";
import { checkCredentials } from "./credentials.js";
import { AppServerStore } from "./db/store.js";
import { httpPort, startHttp } from "./http.js";
import { AppServerMetrics } from "./metrics.js";
import { readApnsCertificate } from "./providers/apns-certificate.js";
import {
  PushService,
  type AppPolicy,
  type AppSender,
  type PushJob,
  type PushReply,
} from "./push-service.js";
import { NS_DISCO_INFO, parseStanza } from "./request.js";
import { createProviderSender } from "./senders.js";
import { RedisBlacklistSync } from "./sync.js";
import { TokenHasher } from "./token.js";
import type { XmlElement } from "./xml.js";
import { escapeXml } from "./xml.js";

export interface AppServerOptions {
  config: AppServerConfig;
  /** Builds the sender of one configured app; default: the APNs / FCM providers. */
  createSender?: (name: string, app: AppConfig) => AppSender | Promise<AppSender>;
  logger?: Logger;
  clock?: Clock;
  /** Pushes already queued at shutdown older than this are not restored (default 1 h). */
  maxQueuedAgeMs?: number;
}

const SECRET_FILE = "hash-secret";
const LOCK_FILE = "lock.sqlite";

/**
 * An exclusive lock on the data folder, taken before anything in it is read: a second instance
 * (same config, a typo in the port...) must not restore and later overwrite the first one's state.
 * SQLite's EXCLUSIVE locking mode holds an OS file lock for the connection's life; the OS drops it
 * when the process dies, so there is no stale lock file to clean up after a crash.
 */
export class DataDirLock {
  private constructor(private readonly db: Database.Database) {}

  static acquire(dataDir: string): DataDirLock {
    const file = join(dataDir, LOCK_FILE);
    const db = new Database(file, { timeout: 0 });
    try {
      db.pragma("locking_mode = EXCLUSIVE");
      db.exec("CREATE TABLE IF NOT EXISTS holder (pid INTEGER)");
      db.exec("BEGIN EXCLUSIVE");
      db.prepare("DELETE FROM holder").run();
      db.prepare("INSERT INTO holder VALUES (?)").run(process.pid);
      db.exec("COMMIT"); // in EXCLUSIVE locking mode the lock stays after the commit
    } catch (e) {
      db.close();
      if ((e as { code?: string }).code === "SQLITE_BUSY")
        throw new Error(
          `data folder ${dataDir} is in use by another lichen-push instance (lock ${file}); ` +
            "each instance needs its own dataDir",
        );
      throw e;
    }
    return new DataDirLock(db);
  }

  release(): void {
    if (this.db.open) this.db.close();
  }
}
/** Bearer token of the /admin/ endpoints (the CLI's operator commands read it from here). */
export const ADMIN_TOKEN_FILE = "admin-token";
/** Where the running daemon's HTTP server actually listens (port 0 in the config included). */
export const ADMIN_URL_FILE = "admin-url";

function adminToken(dataDir: string): string {
  const f = join(dataDir, ADMIN_TOKEN_FILE);
  if (existsSync(f)) return readFileSync(f, "utf8").trim();
  const s = randomBytes(24).toString("hex");
  writeFileSync(f, `${s}\n`, { mode: 0o600 });
  chmodSync(f, 0o600);
  return s;
}

function hashSecret(cfg: AppServerConfig, dataDir: string): string {
  if (cfg.tokens.hashSecret) return cfg.tokens.hashSecret;
  const f = join(dataDir, SECRET_FILE);
  if (existsSync(f)) return readFileSync(f, "utf8").trim();
  const s = randomBytes(32).toString("hex");
  writeFileSync(f, `${s}\n`, { mode: 0o600 });
  chmodSync(f, 0o600);
  return s;
}

/**
 * The push appserver: component link + push pipeline + persistence + optional Redis sync + HTTP
 * endpoints. `AppServer.start(options)` returns a running instance; `stop()` shuts down gracefully
 * (in-flight pushes answered, queued pushes persisted).
 */
export class AppServer {
  readonly metrics: AppServerMetrics;
  readonly tokens: TokenBlacklist;
  readonly domains: DomainBlacklist;
  readonly deliveries: DeliveryMemory;
  readonly service: PushService;
  readonly store: AppServerStore;
  readonly hasher: TokenHasher;
  readonly sync: RedisBlacklistSync | undefined;
  readonly link: ComponentLink;
  readonly logger: Logger;
  private http: Server | undefined;
  private lock: DataDirLock | undefined;
  private maintenance: NodeJS.Timeout | undefined;
  /** Push IQs not answered yet (a counter, not a set of promises: no allocation per push). */
  private inFlight = 0;
  private onIdle: (() => void) | undefined;
  private closing = false;
  private lastSweep = 0;
  private readonly senders: Map<string, AppSender>;

  private constructor(
    private readonly cfg: AppServerConfig,
    senders: Map<string, AppSender>,
    private readonly clock: Clock,
    logger: Logger,
    dataDir: string,
  ) {
    this.logger = logger;
    this.senders = senders;
    this.metrics = new AppServerMetrics({ defaultMetrics: true });
    this.hasher = new TokenHasher(hashSecret(cfg, dataDir));
    const sqlite = isAbsolute(cfg.storage.sqlite)
      ? cfg.storage.sqlite
      : join(dataDir, cfg.storage.sqlite);
    this.store = new AppServerStore(sqlite);
    const bt = cfg.blacklist.token;
    this.tokens = new TokenBlacklist({
      clock,
      firstBlockMs: bt.firstBlock,
      repeatBlockMs: bt.repeatBlock,
      hitExtensionMs: bt.hitExtension,
      memoryMs: bt.memory,
    });
    const bd = cfg.blacklist.domain;
    this.deliveries = new DeliveryMemory({ clock, healthyMs: bd.healthyFor });
    const deliveries = this.deliveries;
    this.domains = new DomainBlacklist({
      clock,
      windowMs: bd.window,
      threshold: bd.threshold,
      ratio: bd.ratio,
      blockFactor: bd.blockFactor,
      activeTokens: (d) => deliveries.activeTokens(d),
      blockMs: bd.block,
    });
    this.service = new PushService({
      clock,
      hasher: this.hasher,
      tokens: this.tokens,
      domains: this.domains,
      apps: senders,
      defaultApp: cfg.defaultApp ?? Object.keys(cfg.apps)[0]!,
      rateLimitWindowMs: cfg.rateLimit.window,
      hardLimitMs: cfg.rateLimit.hardLimit,
      retry: {
        attempts: cfg.retry.attempts,
        initialDelayMs: cfg.retry.initialDelay,
        maxDelayMs: cfg.retry.maxDelay,
        circuitThreshold: cfg.retry.circuitThreshold,
        circuitPauseMs: cfg.retry.circuitPause,
        laterInitialDelayMs: cfg.retry.laterInitialDelay,
        laterMaxDelayMs: cfg.retry.laterMaxDelay,
        keepForMs: cfg.retry.keepFor,
      },
      logger,
      metrics: this.metrics,
      deliveries,
      onDelivery: (hash, domain, at) => this.store.recordDelivery(hash, domain, at),
      newTokensPerMinute: bd.newTokensPerMinute,
      appPolicies: appPolicies(cfg),
    });
    this.sync = cfg.redis
      ? new RedisBlacklistSync({
          url: cfg.redis.url,
          keyPrefix: cfg.redis.keyPrefix,
          nodeId: cfg.redis.nodeId,
          tokens: this.tokens,
          domains: this.domains,
          clock,
          logger: logger.child({ part: "sync" }),
          metrics: this.metrics,
        })
      : undefined;
    this.link = new ComponentLink({
      service: cfg.component.service,
      domain: cfg.component.domain,
      secret: cfg.component.secret,
      initialDelayMs: cfg.component.reconnectInitialDelay,
      maxDelayMs: cfg.component.reconnectMaxDelay,
      logger: logger.child({ part: "component" }),
      onStanza: (el) => this.onStanza(el),
      onStatus: (online) => {
        this.metrics.componentConnected.set(online ? 1 : 0);
        if (!online) this.metrics.componentDisconnects.inc();
      },
    });
  }

  static async start(o: AppServerOptions): Promise<AppServer> {
    const cfg = o.config;
    const clock = o.clock ?? new SystemClock();
    const logger = o.logger ?? pino({ level: cfg.log.level, base: { svc: "lichen-push" } });
    const dataDir = cfg.dataDir;
    mkdirSync(dataDir, { recursive: true });
    const lock = DataDirLock.acquire(dataDir);
    try {
      return await AppServer.startLocked(o, cfg, clock, logger, dataDir, lock);
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  private static async startLocked(
    o: AppServerOptions,
    cfg: AppServerConfig,
    clock: Clock,
    logger: Logger,
    dataDir: string,
    lock: DataDirLock,
  ): Promise<AppServer> {
    if (!o.createSender) {
      const issues = await checkCredentials(cfg.apps);
      if (issues.length > 0) throw new ConfigError(issues);
    }
    const senders = new Map<string, AppSender>();
    const create =
      o.createSender ??
      ((name: string, app: AppConfig) =>
        createProviderSender(name, app, {
          logger: logger.child({ part: "provider", app: name }),
          clock: () => clock.now(),
        }));
    for (const [name, app] of Object.entries(cfg.apps)) senders.set(name, await create(name, app));
    const s = new AppServer(cfg, senders, clock, logger, dataDir);
    // A certificate expires while the daemon runs (check-config only sees it at start): exported
    // for the LichenPushCertificateExpiring alert.
    for (const [name, app] of Object.entries(cfg.apps)) {
      if (app.type !== "apns" || app.certificateFile === undefined) continue;
      try {
        const info = readApnsCertificate(
          readFileSync(app.certificateFile),
          app.certificatePassphrase,
        );
        s.metrics.certificateExpiry.set({ app: name }, Math.floor(info.validTo.getTime() / 1000));
      } catch (e) {
        logger.warn({ app: name, err: (e as Error).message }, "cannot read the APNs certificate");
      }
    }
    s.lock = lock;
    // The port before the state: an instance that cannot serve must not restore (and consume) it.
    try {
      s.http = await startHttp(cfg.http.host, cfg.http.port, {
        metrics: async () => {
          s.updateGauges();
          return {
            contentType: s.metrics.registry.contentType,
            body: await s.metrics.registry.metrics(),
          };
        },
        health: () => s.health(),
        admin: { token: adminToken(dataDir), handle: (m, p, q) => s.admin(m, p, q) },
      });
    } catch (e) {
      s.store.close();
      for (const snd of senders.values()) await snd.close?.().catch(() => undefined);
      throw e;
    }
    const host =
      cfg.http.host === "0.0.0.0" || cfg.http.host === "::" ? "127.0.0.1" : cfg.http.host;
    writeFileSync(
      join(dataDir, ADMIN_URL_FILE),
      `http://${host.includes(":") ? `[${host}]` : host}:${s.httpPort}/admin/\n`,
    );
    s.restore(o.maxQueuedAgeMs ?? 3_600_000);
    s.tokens.onChange((c) => s.store.record(c));
    s.domains.onChange((c) => s.store.record(c));
    if (s.sync) {
      s.tokens.onChange(s.sync.onChange);
      s.domains.onChange(s.sync.onChange);
      s.sync.start();
    }
    s.maintenance = setInterval(() => s.maintain(), 1000);
    s.maintenance.unref();
    s.link.start();
    logger.info(
      { http: `${cfg.http.host}:${s.httpPort}`, apps: [...senders.keys()], redis: !!s.sync },
      "lichen-push started",
    );
    return s;
  }

  get httpPort(): number {
    return this.http ? httpPort(this.http) : 0;
  }

  /** Loads persisted blacklists, counters and queued pushes into memory. */
  private restore(maxQueuedAgeMs: number): void {
    const st = this.store.load();
    for (const r of st.rejected)
      this.logger.warn({ table: r.table, reason: r.reason }, "skipped corrupt row");
    for (const d of st.deliveries) this.deliveries.restore(d.hash, d.domain, d.at);
    // Tombstones before the blocks they outweigh (a block reported after its unblock stays).
    for (const u of st.tokenUnblocks) this.tokens.unblock(u.hash, "remote", u.at);
    for (const u of st.domainUnblocks) this.domains.unblock(u.domain, "remote", u.at);
    for (const t of st.tokens) this.tokens.merge(t.hash, t.until, t.strikes, "remote", t.since);
    for (const d of st.domains) this.domains.merge(d.domain, d.until, "remote");
    for (const e of st.events) this.domains.recordBadToken(e.domain, e.hash, e.at, "remote");
    const now = this.clock.now();
    let restored = 0;
    for (const q of st.queued) {
      if (q.due < now - maxQueuedAgeMs || !this.senders.has(q.app)) continue;
      if (q.expiresAt !== undefined && q.expiresAt < now) continue;
      let token: string;
      try {
        token = this.hasher.unseal(q.sealedToken);
      } catch {
        this.logger.warn(
          { token: q.tokenHash },
          "queued push not restorable (sealed with another secret)",
        );
        continue;
      }
      const job: PushJob = {
        token,
        app: q.app,
        domain: q.domain,
        important: q.important,
        ...(q.retries !== undefined ? { retries: q.retries } : {}),
        ...(q.expiresAt !== undefined ? { expiresAt: q.expiresAt } : {}),
      };
      this.service.limiter.restoreQueued(q.tokenHash, Math.max(q.due, now), job);
      restored++;
    }
    this.store.clearQueued();
    this.logger.info(
      {
        tokens: st.tokens.length,
        domains: st.domains.length,
        queued: restored,
        rejected: st.rejected.length,
      },
      "state restored",
    );
  }

  private onStanza(el: XmlElement): void {
    const parsed = parseStanza(el, this.cfg.tokens);
    const link = this.link;
    switch (parsed.kind) {
      case "ignore":
        return;
      case "error":
        this.metrics.requests.inc({ outcome: "bad_request" });
        this.metrics.replies.inc({ type: parsed.error.type });
        this.logger.debug(
          { condition: parsed.error.condition, text: parsed.error.text },
          "rejected request",
        );
        link.replyError(parsed, parsed.error);
        return;
      case "ping":
        link.replyResult(parsed);
        return;
      case "disco-info":
        link.write(
          `<iq type='result' id='${escapeXml(parsed.id)}' to='${escapeXml(parsed.from)}' from='${escapeXml(parsed.to)}'>` +
            `<query xmlns='${NS_DISCO_INFO}'><identity category='pubsub' type='push' name='Lichen push appserver'/>` +
            `<feature var='urn:xmpp:push:0'/><feature var='${NS_DISCO_INFO}'/><feature var='urn:xmpp:ping'/></query></iq>`,
        );
        return;
      case "push": {
        const req = parsed.request;
        const addr = { id: req.id, from: el.attrs.from ?? "", to: el.attrs.to ?? "" };
        if (this.closing) {
          this.metrics.replies.inc({ type: "wait" });
          link.replyError(addr, {
            type: "wait",
            condition: "resource-constraint",
            text: "appserver shutting down, retry later",
          });
          return;
        }
        this.inFlight++;
        this.service.handleWith(req, (reply) => this.answer(addr, reply));
      }
    }
  }

  /** Sends a push's IQ reply (called once per push; never throws: it ends provider callbacks). */
  private answer(addr: { id: string; from: string; to: string }, reply: PushReply): void {
    try {
      if (reply.type === "result") {
        this.metrics.replies.inc({ type: "result" });
        this.link.replyResult(addr);
      } else {
        this.metrics.replies.inc({ type: reply.error.type });
        this.link.replyError(addr, reply.error);
      }
    } catch (e) {
      this.logger.error({ err: e }, "cannot send a push reply");
    } finally {
      if (--this.inFlight === 0) this.onIdle?.();
    }
  }

  private maintain(): void {
    this.service.limiter.sweep(20_000);
    const now = this.clock.now();
    if (now - this.lastSweep >= 60_000) {
      this.lastSweep = now;
      this.tokens.sweep();
      this.domains.sweep();
      this.deliveries.sweep();
      this.service.sweepBuckets();
      const bt = this.cfg.blacklist.token;
      const bd = this.cfg.blacklist.domain;
      this.store.prune(
        now - bt.memory,
        now,
        now - bd.window,
        now - bd.healthyFor,
        now - this.tokens.tombstoneMs,
        now - Math.max(bd.block, bd.window),
      );
    }
  }

  private updateGauges(): void {
    this.metrics.rateLimitedTokens.set(this.service.limiter.size);
    this.metrics.queuedPushes.set(this.service.limiter.queuedCount);
    this.metrics.blacklistedTokens.set(this.tokens.activeCount());
    this.metrics.blacklistedDomains.set(this.domains.activeCount());
    this.metrics.restrictedDomains.set(this.domains.restrictedCount());
    this.metrics.healthyTokens.set(this.deliveries.size);
  }

  health(): { ok: boolean; details: Record<string, unknown> } {
    const db = this.store.ping();
    const component = this.link.online;
    const apps = this.service.health();
    // A misconfigured app needs the operator; transient failures (failing, paused) are reported
    // but do not fail the check (the appserver keeps and retries those pushes).
    const appsOk = Object.values(apps).every((a) => a.state !== "misconfigured");
    return {
      ok: db && component && appsOk && !this.closing,
      details: {
        apps,
        component: component ? "online" : "offline",
        database: db ? "ok" : "failing",
        redis: this.sync ? (this.sync.connected ? "connected" : "disconnected") : "not configured",
        inFlight: this.service.inFlightCount,
        queued: this.service.limiter.queuedCount,
      },
    };
  }

  /**
   * Operator API (lichen-push domains / block-domain / unblock-domain):
   * GET domains, GET domains/<d>, POST domains/<d>/block?for=6h, POST domains/<d>/unblock.
   */
  admin(method: string, path: string[], q: URLSearchParams): { status: number; body: unknown } {
    const [what, domain, action] = path;
    if (what === "tokens") return this.adminToken(method, domain, action);
    if (what === "queued") {
      if (method !== "GET") return { status: 405, body: { error: "GET only" } };
      const queued = [...this.service.limiter.queuedEntries()]
        .sort((a, b) => a.due - b.due)
        .map((q) => ({
          token: q.key, // the hash: never the raw token
          app: q.item.app,
          domain: q.item.domain,
          due: q.due,
          ...(q.item.retries ? { retries: q.item.retries } : {}),
          ...(q.item.expiresAt ? { expiresAt: q.item.expiresAt } : {}),
        }));
      return { status: 200, body: { queued } };
    }
    if (what !== "domains") return { status: 404, body: { error: "unknown admin resource" } };
    if (domain === undefined || domain === "") {
      if (method !== "GET") return { status: 405, body: { error: "GET only" } };
      return { status: 200, body: { domains: this.domains.statuses() } };
    }
    if (domain.length > 253) return { status: 400, body: { error: "domain too long" } };
    if (action === undefined) {
      if (method !== "GET") return { status: 405, body: { error: "GET only" } };
      return { status: 200, body: this.domains.status(domain) };
    }
    if (method !== "POST") return { status: 405, body: { error: "POST only" } };
    if (action === "unblock") {
      const had = this.domains.unblock(domain);
      this.logger.warn({ domain, had }, "domain unblocked by the operator");
      return { status: 200, body: this.domains.status(domain) };
    }
    if (action === "block") {
      const ms = parseDuration(q.get("for") ?? "") ?? this.cfg.blacklist.domain.block;
      this.domains.block(domain, this.clock.now() + ms);
      this.logger.warn({ domain, forMs: ms }, "domain blocked by the operator");
      return { status: 200, body: this.domains.status(domain) };
    }
    return { status: 404, body: { error: `unknown action ${action}` } };
  }

  /**
   * GET tokens (the blacklisted ones, latest block first), GET tokens/<hash>,
   * POST tokens/<hash>/unblock: by hash only (the CLI hashes raw tokens).
   */
  private adminToken(
    method: string,
    hash: string | undefined,
    action: string | undefined,
  ): { status: number; body: unknown } {
    if (hash === undefined || hash === "") {
      if (method !== "GET") return { status: 405, body: { error: "GET only" } };
      const now = this.clock.now();
      const tokens = [...this.tokens.all()]
        .filter(([, b]) => b.until > now)
        .sort(([, a], [, b]) => b.until - a.until)
        .slice(0, 1000)
        .map(([h, b]) => ({
          token: h,
          blockedUntil: b.until,
          strikes: b.strikes,
          ...(b.since !== undefined ? { since: b.since } : {}),
        }));
      return { status: 200, body: { blocked: this.tokens.activeCount(), tokens } };
    }
    if (!/^[0-9a-f]{32}$/.test(hash))
      return { status: 400, body: { error: "expected a token hash (32 hex chars)" } };
    if (action === "unblock") {
      if (method !== "POST") return { status: 405, body: { error: "POST only" } };
      const had = this.tokens.unblock(hash);
      this.logger.warn({ token: hash, had }, "token unblocked by the operator");
    } else if (action !== undefined) {
      return { status: 404, body: { error: `unknown action ${action}` } };
    } else if (method !== "GET") return { status: 405, body: { error: "GET only" } };
    const now = this.clock.now();
    const b = this.tokens.get(hash);
    const lim = this.service.limiter.state(hash);
    const d = this.deliveries.lastDelivery(hash);
    return {
      status: 200,
      body: {
        token: hash,
        blocked: this.tokens.isBlocked(hash),
        ...(b ? { blockedUntil: b.until, strikes: b.strikes } : {}),
        ...(d ? { lastDelivery: d.at, domain: d.domain } : {}),
        ...(lim.nextAllowed !== undefined && lim.nextAllowed > now
          ? { nextSendAllowed: lim.nextAllowed }
          : {}),
        ...(lim.queuedDue !== undefined ? { queuedDue: lim.queuedDue } : {}),
      },
    };
  }

  /** Graceful shutdown: stop taking pushes, answer in-flight ones, persist the queue, close all. */
  async stop(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.maintenance) clearInterval(this.maintenance);
    if (this.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.onIdle = resolve;
        timer = setTimeout(resolve, 10_000);
      });
      clearTimeout(timer);
      this.onIdle = undefined;
    }
    const queued = await this.service.close();
    this.store.saveQueued(
      queued.map((q) => ({
        tokenHash: q.key,
        sealedToken: this.hasher.seal(q.item.token),
        app: q.item.app,
        domain: q.item.domain,
        important: q.item.important,
        due: q.due,
        retries: q.item.retries ?? 0,
        ...(q.item.expiresAt !== undefined ? { expiresAt: q.item.expiresAt } : {}),
      })),
    );
    await this.link.stop();
    await this.sync?.stop();
    const closed = new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
    this.http?.closeAllConnections();
    await closed;
    for (const s of this.senders.values()) await s.close?.().catch(() => undefined);
    this.store.close();
    this.lock?.release();
    this.logger.info({ persistedQueued: queued.length }, "lichen-push stopped");
  }
}

/** Each app's own rate-limit and token-blacklist timings (apps.<name>.rateLimit / .blacklist). */
function appPolicies(cfg: AppServerConfig): Map<string, AppPolicy> {
  const out = new Map<string, AppPolicy>();
  for (const [name, app] of Object.entries(cfg.apps)) {
    const p: AppPolicy = {
      ...(app.rateLimit?.window !== undefined ? { windowMs: app.rateLimit.window } : {}),
      ...(app.rateLimit?.hardLimit !== undefined ? { hardLimitMs: app.rateLimit.hardLimit } : {}),
      ...(app.blacklist?.firstBlock !== undefined
        ? { firstBlockMs: app.blacklist.firstBlock }
        : {}),
      ...(app.blacklist?.repeatBlock !== undefined
        ? { repeatBlockMs: app.blacklist.repeatBlock }
        : {}),
      ...(app.blacklist?.hitExtension !== undefined
        ? { hitExtensionMs: app.blacklist.hitExtension }
        : {}),
    };
    if (Object.keys(p).length > 0) out.set(name, p);
  }
  return out;
}
