/**
 * Read-only views of a Lichen database, as plain objects (the CLI prints them as tables or JSON).
 */
import fs from "node:fs";
import {
  ACCOUNT_STATE_JSON_SQL,
  DatabaseCorruptError,
  NotALichenDatabaseError,
  StoreError,
  checkHeader,
  isCorruptionError,
  listChats,
  listRecentMessages,
  readDamageMarker,
  type DamageMarker,
  migrationStatus,
  openStore,
  validateAccountState,
  validateHandlerDescriptor,
  validateIpcMessage,
  validateNotificationContent,
  validateShareOutboxItem,
  type Store,
} from "@lichen/store";

export type Row = Record<string, unknown>;

/**
 * Open an existing DB for inspection (never migrates; schema drift is reported, not fatal). A
 * damaged file is opened too (no damage check at open): what is readable can be looked at, and a
 * read that meets the damage throws DatabaseCorruptError.
 */
export function openForInspection(dbPath: string): Store {
  if (!fs.existsSync(dbPath)) throw new StoreError(`no database at ${dbPath}`);
  if (checkHeader(dbPath) === "not-sqlite")
    throw new NotALichenDatabaseError(`${dbPath} is not a SQLite database`);
  const store = openStore({
    path: dbPath,
    role: "share",
    migrate: false,
    checkSchema: false,
    damageCheck: "none",
  });
  const hasMigrations = store.sqlite
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '__drizzle_migrations'")
    .get();
  if (!hasMigrations) {
    store.close();
    throw new NotALichenDatabaseError(
      `${dbPath} is not a Lichen database (no migrations table; run "migrate" to create one)`,
    );
  }
  return store;
}

function all(store: Store, sql: string, ...params: unknown[]): Row[] {
  return store.sqlite.prepare(sql).all(...params) as Row[];
}

function parseJson(text: unknown): unknown {
  try {
    return JSON.parse(String(text));
  } catch {
    return undefined;
  }
}

/**
 * The stored AccountState as one JSON text: the blob with the counter columns merged in (they win),
 * or the blob alone in a database from before migration 0011 (inspection never migrates).
 */
function stateSql(store: Store): string {
  const columns = store.sqlite.prepare("PRAGMA table_info(account_state)").all() as {
    name: string;
  }[];
  return columns.some((c) => c.name === "sm_inbound_h") ? ACCOUNT_STATE_JSON_SQL : "state";
}

export function accounts(store: Store): Row[] {
  const rows = all(
    store,
    `SELECT a.id, a.jid, a.enabled, ${stateSql(store)} AS state, s.version, s.invalidated_at, s.updated_at,
            (SELECT count(*) FROM outbound_queue q WHERE q.account_id = a.id) AS unacked
     FROM accounts a LEFT JOIN account_state s ON s.account_id = a.id ORDER BY a.id`,
  );
  return rows.map((r) => {
    const state = parseJson(r.state) as { sm?: Record<string, unknown> } | undefined;
    const sm = state?.sm;
    return {
      id: r.id,
      jid: r.jid,
      enabled: r.enabled === 1,
      streamId: sm?.streamId ?? null,
      inboundH: sm?.inboundH ?? null,
      outboundSent: sm?.outboundSent ?? null,
      outboundAcked: sm?.outboundAcked ?? null,
      unacked: r.unacked,
      stateVersion: r.version ?? null,
      stateOk:
        r.state === null ? null : state !== undefined && isValid(() => validateAccountState(state)),
      invalidatedAt: r.invalidated_at ?? null,
      updatedAt: r.updated_at ?? null,
    };
  });
}

export interface AccountStateView {
  accountId: string;
  version: number;
  invalidatedAt: number | null;
  updatedAt: number;
  state: unknown;
  raw: string;
  problem: string | null;
}

export function accountState(store: Store, accountId: string): AccountStateView | null {
  const row = store.sqlite
    .prepare(
      `SELECT ${stateSql(store)} AS state, version, invalidated_at, updated_at FROM account_state WHERE account_id = ?`,
    )
    .get(accountId) as
    | { state: string; version: number; invalidated_at: number | null; updated_at: number }
    | undefined;
  if (!row) return null;
  const parsed = parseJson(row.state);
  let problem: string | null = null;
  if (parsed === undefined) problem = "state is not valid JSON";
  else {
    try {
      validateAccountState(parsed);
    } catch (e) {
      problem = (e as Error).message;
    }
  }
  return {
    accountId,
    version: row.version,
    invalidatedAt: row.invalidated_at,
    updatedAt: row.updated_at,
    state: parsed ?? null,
    raw: row.state,
    problem,
  };
}

export function queue(store: Store, accountId?: string): Row[] {
  return all(
    store,
    `SELECT account_id AS account, stream_key AS stream, seq, important, created_at AS createdAt, stanza
     FROM outbound_queue ${accountId ? "WHERE account_id = ?" : ""} ORDER BY account_id, seq`,
    ...(accountId ? [accountId] : []),
  ).map((r) => ({ ...r, important: r.important === 1 }));
}

export function handlers(store: Store): Row[] {
  const iq = all(
    store,
    `SELECT 'iq' AS kind, account_id AS account, iq_id AS id, handler, peer, stream_key AS stream,
            remaining_ticks AS ticks, invalidated_at AS invalidatedAt, created_at AS createdAt
     FROM iq_handlers ORDER BY created_at`,
  );
  const timers = all(
    store,
    `SELECT 'timer' AS kind, account_id AS account, id, handler, NULL AS peer, NULL AS stream,
            remaining_ticks AS ticks, NULL AS invalidatedAt, created_at AS createdAt
     FROM idle_timers ORDER BY created_at`,
  );
  return [...iq, ...timers].map((r) => {
    const h = parseJson(r.handler) as { name?: string; invalidation?: string } | undefined;
    return { ...r, handler: h?.name ?? "(invalid)", invalidation: h?.invalidation ?? null };
  });
}

export function locks(store: Store, now: number): Row[] {
  return all(
    store,
    "SELECT key, holder, lease_expires_at, generation, acquired_at FROM process_locks ORDER BY key",
  ).map((r) => ({
    key: r.key,
    holder: r.holder,
    status: (r.lease_expires_at as number) > now ? "held" : "free (lease expired)",
    leaseExpiresAt: r.lease_expires_at,
    generation: r.generation,
    acquiredAt: r.acquired_at,
  }));
}

export function ipc(store: Store): Row[] {
  return all(
    store,
    `SELECT seq, id, name AS type, source, destination, response_to AS responseTo, created_at AS createdAt,
            expires_at AS expiresAt, delivered_to AS deliveredTo, data
     FROM ipc_messages ORDER BY seq`,
  );
}

/**
 * The newest stored messages, oldest first, in time order: the SDK's read API (listRecentMessages),
 * so the explorer shows what an app built on Lichen would.
 */
export function messages(
  store: Store,
  opts: { tail: number; accountId?: string; chat?: string },
): Row[] {
  return listRecentMessages(store, {
    limit: opts.tail,
    ...(opts.accountId ? { accountId: opts.accountId } : {}),
    ...(opts.chat ? { chatJid: opts.chat } : {}),
  }).map((m) => ({
    id: m.id,
    account: m.accountId,
    chat: m.chatJid,
    direction: m.direction,
    from: m.fromJid,
    body: m.body,
    state: m.deliveryState,
    sentAt: m.sentAt,
    stanzaId: m.stanzaId,
    originId: m.originId,
    archiveId: m.archiveId,
  }));
}

/** The ids of the accounts to show: one, or every account in the database. */
function accountIds(store: Store, accountId?: string): string[] {
  if (accountId) return [accountId];
  return all(store, "SELECT id FROM accounts ORDER BY id").map((r) => String(r.id));
}

/** Chats with unread counts and last activity (the read API's listChats), per account. */
export function chatList(store: Store, opts: { accountId?: string } = {}): Row[] {
  return accountIds(store, opts.accountId).flatMap((account) =>
    listChats(store, account).map((c) => ({
      account,
      chat: c.jid,
      kind: c.kind,
      name: c.name,
      unread: c.unreadCount,
      muted: c.muted,
      lastActivityAt: c.lastActivityAt,
      lastMessage: c.lastMessage?.body ?? null,
    })),
  );
}

/**
 * The stored roster with subscription states (the engine's listRoster), per account. The engine
 * (and its XMPP modules) is loaded only for this command.
 */
export async function rosterList(store: Store, opts: { accountId?: string } = {}): Promise<Row[]> {
  const { listRoster } = await import("@lichen/engine");
  return accountIds(store, opts.accountId).flatMap((account) =>
    listRoster(store, account).map((r) => ({
      account,
      jid: r.jid,
      name: r.name,
      subscription: r.subscription,
      ask: r.ask,
      groups: r.groups,
      approved: r.approved,
    })),
  );
}

export function quarantined(store: Store): Row[] {
  return all(
    store,
    'SELECT id, table_name AS "table", row_key AS row, error, at, raw FROM quarantine ORDER BY id',
  );
}

export function outbox(store: Store): Row[] {
  return all(
    store,
    "SELECT id, account_id, item, state, error, created_at FROM share_outbox ORDER BY created_at",
  ).map((r) => {
    const item = parseJson(r.item) as { to?: string; content?: { kind?: string } } | undefined;
    return {
      id: r.id,
      account: r.account_id,
      to: item?.to ?? "(invalid)",
      kind: item?.content?.kind ?? "(invalid)",
      state: r.state,
      error: r.error,
      createdAt: r.created_at,
    };
  });
}

export interface IntegrityProblem {
  table: string;
  row: string;
  problem: string;
  /** The damaged table or index (SQLite findings), when it can be named. */
  object?: string | null;
  /** The damaged page (SQLite findings), when SQLite names one. */
  page?: number | null;
}

export interface IntegrityReport {
  ok: boolean;
  /** PRAGMA integrity_check's lines ("ok" when sound). */
  sqlite: string[];
  /** Damage found by SQLite, by table, index and page (null when none). */
  damage: { tables: string[]; indexes: string[]; pages: number[] } | null;
  /** Left by a process that met damage earlier ("<db>-damaged"), null when there is none. */
  marker: { detectedAt: number; pid: number; detail: string } | null;
  foreignKeys: number;
  migrations: { applied: number; bundled: number; pending: number; unknown: string | null };
  checkedJson: number;
  /** Rows set aside earlier (not a problem of the DB itself, but worth a look). */
  quarantined: number;
  problems: IntegrityProblem[];
}

/**
 * The report for a file whose header is so damaged that SQLite cannot open it at all (the
 * store's open threw DatabaseCorruptError): nothing else can be checked.
 */
export function unopenableReport(
  dbPath: string,
  err: DatabaseCorruptError,
  marker: DamageMarker | null,
): IntegrityReport {
  const header = checkHeader(dbPath);
  const detail = header !== null && header !== "not-sqlite" ? header : err.detail;
  return {
    ok: false,
    sqlite: [detail],
    // The header and the schema b-tree after it are on page 1.
    damage: { tables: [...err.tables], indexes: [], pages: [1] },
    marker: marker && { detectedAt: marker.detectedAt, pid: marker.pid, detail: marker.detail },
    foreignKeys: 0,
    migrations: { applied: 0, bundled: 0, pending: 0, unknown: null },
    checkedJson: 0,
    quarantined: 0,
    problems: [{ table: "(sqlite)", row: "", problem: detail, object: null, page: 1 }],
  };
}

/** PRAGMA integrity_check + foreign keys + migrations + schema validation of every JSON column. */
export function integrity(
  store: Store,
  /** Left before this check (read before opening): the check itself leaves one on damage. */
  marker: DamageMarker | null = readDamageMarker(store.path),
): IntegrityReport {
  const problems: IntegrityProblem[] = [];
  const header = checkHeader(store.path);
  if (header !== null && header !== "not-sqlite")
    problems.push({ table: "(sqlite)", row: "", problem: header, object: null, page: 1 });
  const sqliteCheck = store.checkIntegrity();
  const sqliteResult = sqliteCheck.ok ? ["ok"] : sqliteCheck.findings.map((f) => f.message);
  for (const f of sqliteCheck.findings)
    problems.push({
      table: f.table ?? "(sqlite)",
      row: "",
      problem: f.message,
      object: f.object,
      page: f.page,
    });
  // What follows reads rows: a read that meets damage is one more problem, not the end of the report.
  const guarded = <T>(what: string, fallback: T, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      if (!isCorruptionError(e)) throw e;
      const detail = e instanceof DatabaseCorruptError ? e.detail : (e as Error).message;
      problems.push({ table: what, row: "", problem: `unreadable: ${detail}` });
      return fallback;
    }
  };
  const fk = guarded(
    "(foreign keys)",
    [],
    () =>
      store.sqlite.pragma("foreign_key_check") as {
        table: string;
        rowid: number;
        parent: string;
      }[],
  );
  for (const v of fk)
    problems.push({
      table: v.table,
      row: String(v.rowid),
      problem: `foreign key to ${v.parent} is dangling`,
    });
  const m = guarded("__drizzle_migrations", null, () => migrationStatus(store.sqlite)) ?? {
    applied: 0,
    bundled: 0,
    pending: [],
  };
  if (m.pending.length)
    problems.push({
      table: "__drizzle_migrations",
      row: "",
      problem: `${m.pending.length} migration(s) not applied (run "migrate")`,
    });
  if (m.unknown)
    problems.push({
      table: "__drizzle_migrations",
      row: m.unknown.slice(0, 12),
      problem: "migration unknown to this build",
    });

  let checked = 0;
  const check = (table: string, key: string, raw: unknown, validate: (v: unknown) => unknown) => {
    checked++;
    let value: unknown;
    try {
      value = JSON.parse(String(raw));
    } catch (e) {
      problems.push({ table, row: key, problem: `not JSON: ${(e as Error).message}` });
      return;
    }
    try {
      validate(value);
    } catch (e) {
      problems.push({ table, row: key, problem: (e as Error).message });
    }
  };
  const rows = (sql: string) =>
    guarded(
      /FROM (\w+)/.exec(sql)?.[1] ?? "?",
      [] as Row[],
      () => store.sqlite.prepare(sql).all() as Row[],
    );
  const has = (table: string) =>
    store.sqlite
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
      .get(table) !== undefined;
  if (has("account_state")) {
    for (const r of rows(`SELECT account_id, ${stateSql(store)} AS state FROM account_state`)) {
      check("account_state", String(r.account_id), r.state, validateAccountState);
    }
  }
  if (has("iq_handlers")) {
    for (const r of rows("SELECT account_id, iq_id, handler FROM iq_handlers")) {
      check(
        "iq_handlers",
        `${String(r.account_id)}/${String(r.iq_id)}`,
        r.handler,
        validateHandlerDescriptor,
      );
    }
  }
  if (has("idle_timers")) {
    for (const r of rows("SELECT id, handler FROM idle_timers"))
      check("idle_timers", String(r.id), r.handler, validateHandlerDescriptor);
  }
  if (has("share_outbox")) {
    for (const r of rows("SELECT id, item FROM share_outbox"))
      check("share_outbox", String(r.id), r.item, validateShareOutboxItem);
  }
  if (has("pending_notifications")) {
    for (const r of rows("SELECT id, content FROM pending_notifications")) {
      check("pending_notifications", String(r.id), r.content, validateNotificationContent);
    }
  }
  if (has("ipc_messages")) {
    for (const r of rows("SELECT * FROM ipc_messages")) {
      checked++;
      const data = parseJson(r.data);
      if (data === undefined) {
        problems.push({ table: "ipc_messages", row: String(r.id), problem: "data is not JSON" });
        continue;
      }
      try {
        validateIpcMessage({
          v: 1,
          id: r.id,
          source: r.source,
          destination: r.destination,
          ...(r.response_to !== null ? { responseTo: r.response_to } : {}),
          createdAt: r.created_at,
          expiresAt: r.expires_at,
          type: r.name,
          data,
        });
      } catch (e) {
        problems.push({ table: "ipc_messages", row: String(r.id), problem: (e as Error).message });
      }
    }
  }
  if (marker)
    problems.push({
      table: "(marker)",
      row: "",
      problem: `${store.path}-damaged: ${marker.detail} (pid ${marker.pid}, ${new Date(marker.detectedAt).toISOString()})`,
    });
  return {
    ok: problems.length === 0,
    sqlite: sqliteResult,
    damage: sqliteCheck.ok
      ? null
      : { tables: sqliteCheck.tables, indexes: sqliteCheck.indexes, pages: sqliteCheck.pages },
    marker: marker && { detectedAt: marker.detectedAt, pid: marker.pid, detail: marker.detail },
    foreignKeys: fk.length,
    migrations: {
      applied: m.applied,
      bundled: m.bundled,
      pending: m.pending.length,
      unknown: m.unknown ?? null,
    },
    checkedJson: checked,
    quarantined: has("quarantine")
      ? guarded(
          "quarantine",
          0,
          () => store.sqlite.prepare("SELECT count(*) FROM quarantine").pluck().get() as number,
        )
      : 0,
    problems,
  };
}

/** Every table (including quarantine and migrations) with all rows. */
export function exportAll(store: Store): Record<string, Row[]> {
  const tables = store.sqlite
    .prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .pluck()
    .all() as string[];
  const out: Record<string, Row[]> = {};
  for (const t of tables) out[t] = all(store, `SELECT * FROM "${t.replaceAll('"', '""')}"`);
  return out;
}

function isValid(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch {
    return false;
  }
}
