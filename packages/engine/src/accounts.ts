import { tables, type Store } from "@lichen/store";

/** Creates the account row if missing (idempotent). */
export function ensureAccount(
  store: Store,
  account: { id: string; jid: string; resource?: string },
): void {
  store.write((tx) => {
    tx.insert(tables.accounts)
      .values({
        id: account.id,
        jid: account.jid,
        resource: account.resource ?? null,
        createdAt: tx.now,
      })
      .onConflictDoNothing()
      .run();
  });
}
