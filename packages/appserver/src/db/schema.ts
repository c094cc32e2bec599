import { integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

/** Blacklisted device tokens, by keyed hash only (never the raw token). */
export const tokenBlacklist = sqliteTable("token_blacklist", {
  hash: text("hash").primaryKey(),
  until: integer("until").notNull(),
  strikes: integer("strikes").notNull(),
  updatedAt: integer("updated_at").notNull(),
  /** When the provider last called the token invalid (null: unknown, rows from before 0003). */
  since: integer("since"),
});

/**
 * Operators' token unblocks (tombstones), kept as long as a block from before them can last: the
 * SQLite file is the source of truth, so a restarted node (with or without Redis) still outweighs a
 * stale block that a node which missed the unblock pushes back through Redis.
 */
export const tokenUnblocks = sqliteTable("token_unblocks", {
  hash: text("hash").primaryKey(),
  at: integer("at").notNull(),
});

/** Operators' domain unblocks (tombstones), like tokenUnblocks. */
export const domainUnblocks = sqliteTable("domain_unblocks", {
  domain: text("domain").primaryKey(),
  at: integer("at").notNull(),
});

/** Blacklisted server domains. */
export const domainBlacklist = sqliteTable("domain_blacklist", {
  domain: text("domain").primaryKey(),
  until: integer("until").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/** Invalid-token events per domain inside the sliding window (the domain counters). */
export const domainEvents = sqliteTable(
  "domain_events",
  {
    domain: text("domain").notNull(),
    tokenHash: text("token_hash").notNull(),
    at: integer("at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.domain, t.tokenHash] })],
);

/**
 * Pushes held back by the rate limiter, persisted at shutdown. The token is sealed (AES-GCM with a
 * key derived from the node secret) for the seconds it waits here; the row is deleted on restore.
 */
export const queuedPushes = sqliteTable("queued_pushes", {
  tokenHash: text("token_hash").primaryKey(),
  sealedToken: text("sealed_token").notNull(),
  app: text("app").notNull(),
  domain: text("domain").notNull(),
  important: integer("important", { mode: "boolean" }).notNull(),
  due: integer("due").notNull(),
  /** Later-retry rounds after transient provider failures (0: a rate-limited push). */
  retries: integer("retries").notNull().default(0),
  /** When a push kept after transient failures is given up (null: not such a push). */
  expiresAt: integer("expires_at"),
});

/**
 * Last successful delivery per token (by keyed hash), written at most hourly per token: a restarted
 * node still knows which tokens of a restricted domain are healthy and how big each domain is.
 */
export const tokenDeliveries = sqliteTable("token_deliveries", {
  hash: text("hash").primaryKey(),
  domain: text("domain").notNull(),
  at: integer("at").notNull(),
});
