// TLS session resumption across processes: the session a server issued is kept in the database
// (per account and endpoint), so the next process — typically the NSE — offers it and the
// handshake skips the certificate. A session is a secret for that TLS session: stored like the
// SM state, never logged.
import { tables, type Store, type StoreTx } from "@lichen/store";
import { and, eq } from "drizzle-orm";
import type { TlsSessionCache } from "./connection.js";

export function storedTlsSessions(
  store: Store,
  accountId: string,
  /** The session's fenced write: a process that lost the lock does not write. */
  write: (fn: (tx: StoreTx) => void) => void,
  log: (event: Record<string, unknown>) => void,
): TlsSessionCache {
  const row = (endpoint: string) =>
    and(eq(tables.tlsSessions.accountId, accountId), eq(tables.tlsSessions.endpoint, endpoint));
  // A failed save or drop only costs a full handshake next time: logged (without the session).
  const attempt = (what: string, fn: (tx: StoreTx) => void) => {
    try {
      write(fn);
    } catch (err) {
      log({ event: `tls-session-${what}-failed`, error: (err as Error).message });
    }
  };
  return {
    load: (endpoint) =>
      store.read(
        (tx) =>
          tx
            .select({ session: tables.tlsSessions.session })
            .from(tables.tlsSessions)
            .where(row(endpoint))
            .get()?.session ?? null,
      ),
    save: (endpoint, session) =>
      attempt("save", (tx) =>
        tx
          .insert(tables.tlsSessions)
          .values({ accountId, endpoint, session, updatedAt: tx.now })
          .onConflictDoUpdate({
            target: [tables.tlsSessions.accountId, tables.tlsSessions.endpoint],
            set: { session, updatedAt: tx.now },
          })
          .run(),
      ),
    drop: (endpoint) =>
      attempt("drop", (tx) => tx.delete(tables.tlsSessions).where(row(endpoint)).run()),
  };
}
