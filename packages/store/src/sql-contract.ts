/**
 * The SQL contract for a native (Swift) process sharing this database: the statements it needs for
 * the process lock, IPC rows, account state and the outbound queue, built with Drizzle from the
 * tables in ./schema.ts and rendered with `.toSQL()`. tools/codegen turns them into Swift constants
 * (apps/swift-nse/Sources/LichenSchema/LichenSQL.swift); test/sql-contract.test.ts runs each one
 * against a migrated database next to this store's own Ipc, ProcessLock and account-state code, so
 * the two cannot drift apart unnoticed.
 *
 * Every bound value is a named placeholder: no literal is ever a parameter, so the Swift side binds
 * exactly `params`, in order (a name may repeat).
 */
import { and, asc, eq, gt, lte, ne, or, sql, type SQL } from "drizzle-orm";
import { drizzle } from "drizzle-orm/better-sqlite3";
import { numeric, SQLiteSyncDialect, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { MIGRATIONS_TABLE, bundledMigrations } from "./migrations.js";
import { ipcMessages, outboundQueue, processLocks } from "./schema.js";
import { ACCOUNT_STATE_JSON_SQL } from "./account-state.js";

/** One statement: the shape tools/codegen's `SqlStatementSpec` expects. */
export interface SqlContractStatement {
  name: string;
  doc: string;
  sql: string;
  params: string[];
  returns?: string[];
}

const p = (name: string) => sql.placeholder(name);

// Drizzle's migrator table, declared here only to query it (the migrator owns it).
const migrations = sqliteTable(MIGRATIONS_TABLE, {
  hash: text("hash").notNull(),
  createdAt: numeric("created_at"),
});

function spec(
  name: string,
  doc: string,
  query: { toSQL(): { sql: string; params: unknown[] } },
  returns?: string[],
): SqlContractStatement {
  const { sql: text, params } = query.toSQL();
  const names = params.map((x) => {
    // Insert values arrive wrapped in a Param whose value is the Placeholder.
    const v = x as { name?: unknown; value?: { name?: unknown } } | null;
    const n = v?.name ?? v?.value?.name;
    if (typeof n !== "string")
      throw new Error(
        `sql contract ${name}: parameter ${String((x as { constructor?: { name?: string } } | null)?.constructor?.name ?? x)} is a literal, not a placeholder`,
      );
    return n;
  });
  return { name, doc, sql: text, params: names, ...(returns ? { returns } : {}) };
}

// The JSON paths of the AccountState fields kept in columns (account-state.ts), and how the
// contract's whole-state writes fill those columns from the encoded state (`:state`).
const COLUMN_PATHS: [column: string, path: string][] = [
  ["sm_inbound_h", "$.sm.inboundH"],
  ["sm_outbound_sent", "$.sm.outboundSent"],
  ["sm_outbound_acked", "$.sm.outboundAcked"],
  ["mam_synced_at", "$.mam.syncedAt"],
  ["mam_last_stanza_id", "$.mam.lastStanzaId"],
  ["mam_last_timestamp", "$.mam.lastTimestamp"],
];
const BLOB_REMOVE_PATHS = sql.raw(COLUMN_PATHS.map(([, path]) => `'${path}'`).join(", "));
const valuesFromState = () =>
  sql.join(
    COLUMN_PATHS.map(([, path]) => sql`json_extract(${p("state")}, ${sql.raw(`'${path}'`)})`),
    sql.raw(", "),
  );
const columnsFromState = () =>
  sql.join(
    COLUMN_PATHS.map(
      ([column, path]) =>
        sql`${sql.raw(column)} = json_extract(${p("state")}, ${sql.raw(`'${path}'`)})`,
    ),
    sql.raw(", "),
  );

function raw(name: string, doc: string, statement: SQL, returns?: string[]): SqlContractStatement {
  const dialect = new SQLiteSyncDialect();
  return spec(name, doc, { toSQL: () => dialect.sqlToQuery(statement) }, returns);
}

/** Every statement of the contract, in the order the README's protocol uses them. */
export function sqlContract(): SqlContractStatement[] {
  const db = drizzle.mock();
  return [
    // One statement each: sqlite3_prepare compiles only the first statement of a string.
    raw(
      "pragmaJournalModeWAL",
      'Per connection, before anything else (as the TS store does). WAL is persistent once set; returns the mode, which must be "wal". Also set a busy timeout (sqlite3_busy_timeout, 5000 ms like the TS store).',
      sql`PRAGMA journal_mode = WAL`,
      ["journal_mode"],
    ),
    raw(
      "pragmaSynchronousNormal",
      "Per connection: durable in WAL mode, without an fsync per commit.",
      sql`PRAGMA synchronous = NORMAL`,
    ),
    raw(
      "pragmaForeignKeysOn",
      "Per connection: enforce the schema's foreign keys (off by default in SQLite).",
      sql`PRAGMA foreign_keys = ON`,
    ),
    raw(
      "pragmaTrustedSchemaOff",
      "Per connection: do not run SQL functions from the schema with elevated trust.",
      sql`PRAGMA trusted_schema = OFF`,
    ),
    spec(
      "appliedMigrations",
      "Migrations applied to the database, oldest first. Only the main app migrates: a native NSE compares the hashes with the migrations it was built against and stops if the database is behind or ahead.",
      db
        .select({ hash: migrations.hash, createdAt: migrations.createdAt })
        .from(migrations)
        .orderBy(asc(migrations.createdAt)),
      ["hash", "created_at"],
    ),
    raw(
      "beginImmediate",
      "Start every write transaction with this (never a deferred BEGIN followed by a write: SQLite then fails with SQLITE_BUSY without waiting).",
      sql`BEGIN IMMEDIATE`,
    ),
    raw(
      "beginDeferred",
      "Start a read-only transaction (one consistent snapshot).",
      sql`BEGIN DEFERRED`,
    ),
    raw("commit", "Commit the transaction.", sql`COMMIT`),
    raw("rollback", "Roll the transaction back (after any error inside it).", sql`ROLLBACK`),
    raw(
      "dataVersion",
      "Changes whenever another connection commits: poll it (e.g. every 100 ms) as the fallback wake-up for IPC.",
      sql`PRAGMA data_version`,
      ["data_version"],
    ),

    spec(
      "lockAcquire",
      "Take the process lock (lease) when this holder already holds it or the lease has expired. One row back: acquired, with the lock generation (it increases whenever a different holder takes the lock: reload anything cached from the database when it differs from the last one you held). No row: someone else holds it; read it with lockRead. `leaseExpiresAt` = now + lease (2000 ms); `now` = current epoch ms. Inside beginImmediate.",
      db
        .insert(processLocks)
        .values({
          key: p("key"),
          holder: p("holder"),
          leaseExpiresAt: p("leaseExpiresAt"),
          generation: sql`1`,
          acquiredAt: p("now"),
        } as never)
        .onConflictDoUpdate({
          target: processLocks.key,
          set: {
            holder: sql`excluded.holder`,
            leaseExpiresAt: sql`excluded.lease_expires_at`,
            generation: sql`CASE WHEN ${processLocks.holder} = excluded.holder THEN ${processLocks.generation} ELSE ${processLocks.generation} + 1 END`,
            acquiredAt: sql`CASE WHEN ${processLocks.holder} = excluded.holder THEN ${processLocks.acquiredAt} ELSE excluded.acquired_at END`,
          },
          setWhere: sql`${processLocks.holder} = excluded.holder OR ${processLocks.leaseExpiresAt} <= ${p("now")}`,
        })
        .returning({ generation: processLocks.generation }),
      ["generation"],
    ),
    spec(
      "lockRead",
      "The lock row: who holds it, until when, at which generation. Also the fence check: at the start of every write transaction made on behalf of the lock, the row must still name you at your generation, else roll back (another process took over).",
      db
        .select({
          holder: processLocks.holder,
          leaseExpiresAt: processLocks.leaseExpiresAt,
          generation: processLocks.generation,
        })
        .from(processLocks)
        .where(eq(processLocks.key, p("key"))),
      ["holder", "lease_expires_at", "generation"],
    ),
    spec(
      "lockRenew",
      "Extend the lease (every lease/5, i.e. 400 ms). 0 rows changed: the lock was lost, stop driving the session at once.",
      db
        .update(processLocks)
        .set({ leaseExpiresAt: p("leaseExpiresAt") } as never)
        .where(
          and(
            eq(processLocks.key, p("key")),
            eq(processLocks.holder, p("holder")),
            eq(processLocks.generation, p("generation")),
          ),
        ),
    ),
    spec(
      "lockRelease",
      "Give the lock up now: the lease ends immediately, so any holder may take it.",
      db
        .update(processLocks)
        .set({ leaseExpiresAt: sql`0` })
        .where(
          and(
            eq(processLocks.key, p("key")),
            eq(processLocks.holder, p("holder")),
            eq(processLocks.generation, p("generation")),
          ),
        ),
    ),

    spec(
      "ipcDeleteExpired",
      "Delete expired IPC rows; run first in every transaction that sends or receives. `now` = epoch ms.",
      db.delete(ipcMessages).where(lte(ipcMessages.expiresAt, p("now"))),
    ),
    spec(
      "ipcInsert",
      "Send an IPC message (and answer one: `responseTo` = the request's id, `destination` = its source). `name` is the message type, `data` its `data` object as JSON (validated with the IPCMessage type before), `responseTo` NULL unless answering, `expiresAt` = createdAt + 2000. Inside beginImmediate after ipcDeleteExpired; after COMMIT, wake the destination.",
      db.insert(ipcMessages).values({
        id: p("id"),
        name: p("name"),
        source: p("source"),
        destination: p("destination"),
        data: p("data"),
        responseTo: p("responseTo"),
        createdAt: p("createdAt"),
        expiresAt: p("expiresAt"),
        deliveredTo: sql`','`,
      } as never),
    ),
    spec(
      "ipcPoll",
      'Messages waiting for this role, oldest first: direct ones, and broadcasts ("*") from other roles this role has not consumed yet. `role` = your role ("nse"), `roleMark` = "," + role + ",". Rebuild each row as an IPCMessage (v 1, type = name, data = parsed JSON, responseTo only when not NULL). Inside beginImmediate after ipcDeleteExpired, followed by ipcConsume or ipcMarkDelivered for each row.',
      db
        .select({
          seq: ipcMessages.seq,
          id: ipcMessages.id,
          name: ipcMessages.name,
          source: ipcMessages.source,
          destination: ipcMessages.destination,
          data: ipcMessages.data,
          responseTo: ipcMessages.responseTo,
          createdAt: ipcMessages.createdAt,
          expiresAt: ipcMessages.expiresAt,
        })
        .from(ipcMessages)
        .where(
          or(
            eq(ipcMessages.destination, p("role")),
            and(
              eq(ipcMessages.destination, sql`'*'`),
              ne(ipcMessages.source, p("role")),
              sql`instr(${ipcMessages.deliveredTo}, ${p("roleMark")}) = 0`,
            ),
          ),
        )
        .orderBy(asc(ipcMessages.seq)),
      [
        "seq",
        "id",
        "name",
        "source",
        "destination",
        "data",
        "response_to",
        "created_at",
        "expires_at",
      ],
    ),
    spec(
      "ipcConsume",
      "Consume a direct message (destination = your role) in the transaction that read it, so exactly one process gets it.",
      db.delete(ipcMessages).where(eq(ipcMessages.seq, p("seq"))),
    ),
    spec(
      "ipcMarkDelivered",
      'Consume a broadcast for your role only: append "<role>," (e.g. "nse,") to delivered_to; the row stays for other roles until it expires.',
      db
        .update(ipcMessages)
        .set({ deliveredTo: sql`${ipcMessages.deliveredTo} || ${p("roleComma")}` })
        .where(eq(ipcMessages.seq, p("seq"))),
    ),

    // The row is split (account-state.ts): the fields a stanza changes are columns, the rest a
    // JSON blob. These statements do the split in SQL, so a Swift NSE still decodes and encodes
    // one AccountState, and has one cheap UPDATE for a stanza that changed only those fields.
    raw(
      "accountStateLoad",
      "An account's persisted state: `state` is AccountState JSON (decode with AccountState; the counter columns are merged into the blob here, and they win over any copy in it), `version` its stateVersion. No row: a new account.",
      sql`SELECT ${sql.raw(ACCOUNT_STATE_JSON_SQL)} AS state, version FROM account_state WHERE account_id = ${p("accountId")}`,
      ["state", "version"],
    ),
    raw(
      "accountStateUpdate",
      "Store an account's whole state (encoded AccountState; `version` = its stateVersion, `updatedAt` = now): the counters and MAM marks go to their columns, the rest to the blob. 0 rows changed: no row yet, use accountStateInsert. Only while holding the lock, after the fence check, inside beginImmediate.",
      sql`UPDATE account_state SET state = json_remove(${p("state")}, ${BLOB_REMOVE_PATHS}), version = ${p("version")}, ${columnsFromState()}, updated_at = ${p("updatedAt")} WHERE account_id = ${p("accountId")}`,
    ),
    raw(
      "accountStateUpdateCounters",
      "The per-stanza write: only sm.inboundH, sm.outboundSent, sm.outboundAcked, mam.syncedAt, mam.lastStanzaId, mam.lastTimestamp changed (from the AccountState just loaded, in this transaction): store them without rewriting the blob. Anything else changed: accountStateUpdate. NULL for a null or absent syncedAt. Same rules as accountStateUpdate.",
      sql`UPDATE account_state SET sm_inbound_h = ${p("inboundH")}, sm_outbound_sent = ${p("outboundSent")}, sm_outbound_acked = ${p("outboundAcked")}, mam_synced_at = ${p("syncedAt")}, mam_last_stanza_id = ${p("lastStanzaId")}, mam_last_timestamp = ${p("lastTimestamp")}, updated_at = ${p("updatedAt")} WHERE account_id = ${p("accountId")}`,
    ),
    raw(
      "accountStateInsert",
      "First state of an account (after accountStateUpdate changed nothing).",
      sql`INSERT INTO account_state (account_id, state, version, invalidated_at, sm_inbound_h, sm_outbound_sent, sm_outbound_acked, mam_synced_at, mam_last_stanza_id, mam_last_timestamp, updated_at) VALUES (${p("accountId")}, json_remove(${p("state")}, ${BLOB_REMOVE_PATHS}), ${p("version")}, NULL, ${valuesFromState()}, ${p("updatedAt")})`,
    ),

    spec(
      "outboundMaxSeq",
      "Highest queued outbound sequence number of an account (NULL: empty queue). With no resumable stream (sm.streamId null), the next seq is max(sm.outboundSent + 1, this + 1); otherwise sm.outboundSent + 1.",
      db
        .select({ maxSeq: sql<number | null>`max(${outboundQueue.seq})`.as("max_seq") })
        .from(outboundQueue)
        .where(eq(outboundQueue.accountId, p("accountId"))),
      ["max_seq"],
    ),
    spec(
      "outboundAppend",
      "Queue an outbound stanza in the transaction that produced it (store sm.outboundSent = seq in the account state in the same transaction); write it to the socket only after COMMIT. `streamKey` = sm.unackedQueue, `important` = 1 for a <message> with a <body>, else 0.",
      db.insert(outboundQueue).values({
        accountId: p("accountId"),
        streamKey: p("streamKey"),
        seq: p("seq"),
        stanza: p("stanza"),
        important: p("important"),
        createdAt: p("createdAt"),
      } as never),
    ),
    spec(
      "outboundPending",
      "Queued stanzas after `afterSeq` (0: all), in order: what to write after COMMIT, or to resend after a stream resumption.",
      db
        .select({ seq: outboundQueue.seq, stanza: outboundQueue.stanza })
        .from(outboundQueue)
        .where(
          and(eq(outboundQueue.accountId, p("accountId")), gt(outboundQueue.seq, p("afterSeq"))),
        )
        .orderBy(asc(outboundQueue.seq)),
      ["seq", "stanza"],
    ),
    spec(
      "outboundAck",
      "The server acknowledged everything up to `h` (<a h/>): delete those rows, and store sm.outboundAcked = max(sm.outboundAcked, h) in the same transaction.",
      db
        .delete(outboundQueue)
        .where(and(eq(outboundQueue.accountId, p("accountId")), lte(outboundQueue.seq, p("h")))),
    ),
  ];
}

/** A named constant of the contract (string or list of strings). */
export interface SqlContractConstant {
  name: string;
  doc: string;
  value: string | string[];
}

/** Values a native process must agree on besides the SQL. */
export function sqlContractConstants(): SqlContractConstant[] {
  return [
    {
      name: "migrationHashes",
      doc: "Hashes of the migrations this contract was generated with, in order: appliedMigrations must return exactly these (behind or ahead: do not write).",
      value: bundledMigrations().map((m) => m.hash),
    },
    {
      name: "wakeDirectorySuffix",
      doc: "The wake directory is the database path plus this suffix (the TS Ipc default).",
      value: ".ipc",
    },
    {
      name: "wakeFileExtension",
      doc: "After committing an IPC row, write the epoch ms into <wake directory>/<role><this> for each destination role; TS processes watch these files.",
      value: ".wake",
    },
  ];
}
