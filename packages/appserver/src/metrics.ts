import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/**
 * Prometheus metrics of one appserver. Labels carry only outcomes and configured app names:
 * never tokens, never domains (a domain with few users would identify them).
 */
export class AppServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<"outcome">;
  readonly replies: Counter<"type">;
  readonly providerSends: Counter<"app" | "result">;
  readonly providerLatency: Histogram<"app">;
  readonly rateLimitedTokens: Gauge;
  readonly queuedPushes: Gauge;
  readonly blacklistedTokens: Gauge;
  readonly blacklistedDomains: Gauge;
  readonly restrictedDomains: Gauge;
  readonly healthyTokens: Gauge;
  readonly componentConnected: Gauge;
  readonly componentDisconnects: Counter;
  readonly redisConnected: Gauge;
  readonly certificateExpiry: Gauge;
  readonly syncEvents: Counter<"direction">;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry });
    this.requests = countedLocally(
      (collect) =>
        new Counter({
          name: "lichen_push_requests_total",
          help: "Push requests by outcome (sent, queued, dropped, invalid_token, token_blacklisted, ...)",
          labelNames: ["outcome"],
          registers,
          collect,
        }),
      ["outcome"],
    );
    this.replies = countedLocally(
      (collect) =>
        new Counter({
          name: "lichen_push_iq_replies_total",
          help: "IQ replies sent to XMPP servers by type (result, wait, cancel, modify)",
          labelNames: ["type"],
          registers,
          collect,
        }),
      ["type"],
    );
    this.providerSends = countedLocally(
      (collect) =>
        new Counter({
          name: "lichen_push_provider_sends_total",
          help: "Provider send attempts by app and result",
          labelNames: ["app", "result"],
          registers,
          collect,
        }),
      ["app", "result"],
    );
    this.providerLatency = new Histogram({
      name: "lichen_push_provider_latency_seconds",
      help: "Provider send latency",
      labelNames: ["app"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.rateLimitedTokens = new Gauge({
      name: "lichen_push_ratelimit_tokens",
      help: "Tokens tracked by the rate limiter",
      registers,
    });
    this.queuedPushes = new Gauge({
      name: "lichen_push_queued_pushes",
      help: "Pushes queued by the rate limiter",
      registers,
    });
    this.blacklistedTokens = new Gauge({
      name: "lichen_push_blacklisted_tokens",
      help: "Tokens currently blacklisted",
      registers,
    });
    this.blacklistedDomains = new Gauge({
      name: "lichen_push_blacklisted_domains",
      help: "Domains currently blocked (no provider traffic; their requests get wait errors)",
      registers,
    });
    this.restrictedDomains = new Gauge({
      name: "lichen_push_restricted_domains",
      help: "Domains whose unknown tokens are rate-limited (too many invalid tokens), not blocked",
      registers,
    });
    this.healthyTokens = new Gauge({
      name: "lichen_push_healthy_tokens",
      help: "Tokens with a recent successful delivery (this node)",
      registers,
    });
    this.componentConnected = new Gauge({
      name: "lichen_push_component_connected",
      help: "1 when the XMPP component link is online",
      registers,
    });
    this.componentDisconnects = new Counter({
      name: "lichen_push_component_disconnects_total",
      help: "Component link losses (each followed by reconnects with back-off)",
      registers,
    });
    this.redisConnected = new Gauge({
      name: "lichen_push_redis_connected",
      help: "1 when the Redis sync link is up (absent without Redis)",
      registers,
    });
    this.certificateExpiry = new Gauge({
      name: "lichen_push_certificate_expiry_timestamp_seconds",
      help: "When an APNs app's push certificate (.p12) expires (epoch seconds; apps with one only)",
      labelNames: ["app"],
      registers,
    });
    this.syncEvents = new Counter({
      name: "lichen_push_sync_events_total",
      help: "Blacklist sync events by direction (published, received, resynced)",
      labelNames: ["direction"],
      registers,
    });
  }
}

/**
 * A counter incremented several times per push: `inc(labels)` adds to a plain Map keyed by the
 * label values, folded into prom-client when it collects (every scrape, every `get()`), instead of
 * prom-client hashing and validating the labels object on each call (a few µs per push in the
 * benchmark). Reads through the registry or `get()` see every increment.
 */
function countedLocally<T extends string>(
  make: (collect: () => void) => Counter<T>,
  labelNames: T[],
): Counter<T> {
  type Labels = Partial<Record<T, string | number>>;
  const pending = new Map<string, { labels: Labels; n: number }>();
  let last: { labels: Labels; n: number } | undefined;
  let lastA: string | number | undefined;
  let lastB: string | number | undefined;
  const collect = () => {
    for (const e of pending.values()) add(e.labels, e.n);
    pending.clear();
    last = undefined;
  };
  const counter = make(collect);
  const add = counter.inc.bind(counter) as (labels?: Labels | number, value?: number) => void;
  const [first, second] = labelNames as [T, T | undefined];
  counter.inc = function (labels?: Labels | number, value?: number): void {
    if (typeof labels !== "object" || (value !== undefined && !(value >= 0))) {
      // no labels, or a value prom-client refuses: its own path (and its errors)
      add(labels, value);
      return;
    }
    const a = labels[first];
    const b = second === undefined ? undefined : labels[second];
    // most pushes repeat the previous call's labels: no key string, no Map lookup then
    if (last !== undefined && a === lastA && b === lastB) {
      last.n += value ?? 1;
      return;
    }
    const key = second === undefined ? String(a) : `${a}\u0000${b}`;
    let e = pending.get(key);
    if (e) e.n += value ?? 1;
    else pending.set(key, (e = { labels, n: value ?? 1 }));
    last = e;
    lastA = a;
    lastB = b;
  } as Counter<T>["inc"];
  return counter;
}
