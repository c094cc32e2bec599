// Accounts in one database, and the main app driving all of them. The process lock is one per
// process, not per account (see SESSION_LOCK_KEY in modes.ts): the main app takes it once and
// every account's session is fenced by it; an NSE syncs every account for one push (handlePush
// with `accounts`).
import { randomUUID } from "node:crypto";
import { acquireAsMain, Ipc, ProcessLock, tables, type Store } from "@lichen/store";
import { AppController, SESSION_LOCK_KEY, type ReconnectPolicy } from "./modes.js";
import type { SessionOptions } from "./session.js";

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

/** An account row: its id, bare JID and resource. */
export interface AccountRow {
  id: string;
  jid: string;
  resource: string | null;
}

/** Every account of the database, in the order they were added. */
export function listAccounts(store: Store): AccountRow[] {
  return store.read((tx) =>
    tx
      .select({
        id: tables.accounts.id,
        jid: tables.accounts.jid,
        resource: tables.accounts.resource,
      })
      .from(tables.accounts)
      .orderBy(tables.accounts.createdAt, tables.accounts.id)
      .all(),
  );
}

type SessionConfig = Omit<SessionOptions, "store">;

/** How one account's foreground went: online (resumed or new), or its error. */
export type AccountForeground =
  { accountId: string; online: "resumed" | "new" } | { accountId: string; error: unknown };

/**
 * The main app with several accounts: one AppController per account, all sharing this process's
 * lock and IPC. foreground() takes the lock once (asking an NSE to yield) and brings every
 * account online concurrently; an account whose server is away or refuses the password does not
 * stop the others (its controller keeps retrying transient failures, as with one account).
 */
export class MultiAccountApp {
  readonly lock: ProcessLock;
  readonly ipc: Ipc;
  /** The controllers, by account id, in the order given. */
  readonly controllers: ReadonlyMap<string, AppController>;

  constructor(
    store: Store,
    accounts: readonly SessionConfig[],
    opts: {
      leaseMs?: number;
      reconnect?: ReconnectPolicy | false;
      backgroundDrainMs?: number;
    } = {},
  ) {
    if (accounts.length === 0) throw new TypeError("MultiAccountApp needs at least one account");
    const ids = new Set(accounts.map((a) => a.accountId));
    if (ids.size !== accounts.length) throw new TypeError("MultiAccountApp: duplicate accountId");
    this.lock = new ProcessLock(store, {
      key: SESSION_LOCK_KEY,
      holder: `main:${process.pid}-${randomUUID().slice(0, 8)}`,
      leaseMs: opts.leaseMs ?? 2000,
    });
    this.ipc = new Ipc(store, { role: "main" });
    const shared = { lock: this.lock, ipc: this.ipc };
    this.controllers = new Map(
      accounts.map((config) => [
        config.accountId,
        new AppController(store, config, { ...opts, shared }),
      ]),
    );
    this.ipc.start();
  }

  controller(accountId: string): AppController {
    const c = this.controllers.get(accountId);
    if (!c) throw new RangeError(`no account ${JSON.stringify(accountId)} in this app`);
    return c;
  }

  /** Every account online (or its error), concurrently, under the one lock. */
  async foreground(): Promise<AccountForeground[]> {
    // Take the lock once (one disconnect-all to an NSE), so the controllers find it held.
    try {
      await acquireAsMain(this.lock, this.ipc, { reason: "main-app-foreground" });
    } catch (error) {
      return [...this.controllers.keys()].map((accountId) => ({ accountId, error }));
    }
    return Promise.all(
      [...this.controllers].map(async ([accountId, c]): Promise<AccountForeground> => {
        try {
          return { accountId, online: await c.foreground() };
        } catch (error) {
          return { accountId, error };
        }
      }),
    );
  }

  /** Every account suspended (resumable), then the lock released. `drainMs` as AppController's. */
  async background(opts: { drainMs?: number } = {}): Promise<void> {
    await Promise.all([...this.controllers.values()].map((c) => c.background(opts)));
    this.lock.release();
  }

  async close(): Promise<void> {
    await Promise.all([...this.controllers.values()].map((c) => c.close()));
    this.lock.release();
    this.ipc.close();
  }
}
