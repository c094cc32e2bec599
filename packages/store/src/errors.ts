/** Base class of every error this package throws on purpose. */
export class StoreError extends Error {
  override readonly name: string = "StoreError";
}

/** The database has fewer migrations applied than this build bundles (nse/share never migrate). */
export class SchemaBehindError extends StoreError {
  override readonly name = "SchemaBehindError";
  constructor(
    readonly applied: number,
    readonly bundled: number,
    path: string,
  ) {
    super(
      `database ${path} is behind this build: ${applied} of ${bundled} migrations applied; ` +
        `only the main app migrates — open it with role "main" (or run "lichen-store migrate") first`,
    );
  }
}

/** The database has migrations this build does not know (an older build opened a newer DB). */
export class SchemaAheadError extends StoreError {
  override readonly name = "SchemaAheadError";
  constructor(
    readonly unknownHash: string,
    path: string,
  ) {
    super(
      `database ${path} has a migration this build does not know (hash ${unknownHash.slice(0, 12)}); refusing to use it`,
    );
  }
}

/** The file exists but is not a Lichen database. */
export class NotALichenDatabaseError extends StoreError {
  override readonly name = "NotALichenDatabaseError";
}

/** A write/read function misused the transaction API (async callback, write inside read, ...). */
export class TransactionUsageError extends StoreError {
  override readonly name = "TransactionUsageError";
}

/** The database lock stayed taken by another process for longer than maxWaitMs (not SQLITE_BUSY). */
export class StoreLockTimeoutError extends StoreError {
  override readonly name = "StoreLockTimeoutError";
}

/**
 * A write was made under a lock generation that is no longer current: another process took the
 * session lock (this one was frozen past its lease, or yielded). Nothing was written. The writer
 * must stop handling and sending for that session until it holds the lock again.
 */
export class FencedOutError extends StoreError {
  override readonly name = "FencedOutError";
  constructor(
    readonly fence: { key: string; holder: string; generation: number },
    readonly current: { holder: string; generation: number } | null,
  ) {
    super(
      `lock "${fence.key}" generation ${fence.generation} of ${fence.holder} is no longer current` +
        (current ? ` (now ${current.holder}, generation ${current.generation})` : " (no lock row)"),
    );
  }
}

/** An IPC request got no response before its timeout. */
export class IpcTimeoutError extends StoreError {
  override readonly name = "IpcTimeoutError";
}

/** The lock could not be acquired before the timeout. */
export class LockTimeoutError extends StoreError {
  override readonly name = "LockTimeoutError";
  constructor(
    message: string,
    /** Who held the lock when we gave up (e.g. "nse:4711-ab12cd34"), when known. */
    readonly holder: string | null = null,
  ) {
    super(message);
  }
}

/** SQLITE_BUSY and friends: the only errors write()/read() retry. */
export function isBusyError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code === "SQLITE_LOCKED");
}

/**
 * The database file is damaged: SQLite reported SQLITE_CORRUPT or SQLITE_NOTADB on a statement,
 * the header check at open failed, or another process found the damage before (the "<db>-damaged"
 * marker). A store that has seen it refuses every further write with this error: writing into a
 * damaged b-tree can spread the damage. `lichen-store recover <db> <new>` copies out what is
 * readable into a fresh database.
 */
export class DatabaseCorruptError extends StoreError {
  override readonly name = "DatabaseCorruptError";
  /** The SQLite code that revealed it ("SQLITE_CORRUPT", "SQLITE_NOTADB", ...) or "header"/"marker". */
  readonly code: string;
  constructor(
    readonly path: string,
    readonly detail: string,
    opts: {
      code: string;
      /** Tables and indexes known to be affected (empty when not known yet: run integrity). */
      tables?: readonly string[];
      /** Damaged page numbers, where known. */
      pages?: readonly number[];
      cause?: unknown;
    },
  ) {
    super(
      `database ${path} is damaged (${detail}); nothing more is written to it. ` +
        `Copy what is readable into a fresh database: lichen-store recover ${path} <new-file>`,
      opts.cause === undefined ? undefined : { cause: opts.cause },
    );
    this.code = opts.code;
    this.tables = opts.tables ?? [];
    this.pages = opts.pages ?? [];
  }
  readonly tables: readonly string[];
  readonly pages: readonly number[];
}
