import { existsSync } from "node:fs";
import { AppController, ensureAccount } from "@lichen/engine";
import { loadAccountState, tables, type Store } from "@lichen/store";
import { eq } from "drizzle-orm";
import { type CliContext, foregroundOrExplain, openStoreChecked } from "../context.js";
import { CliError } from "../errors.js";
import {
  type AccountSettings,
  normalizeService,
  parseBareJid,
  readAllAccountSettings,
  sessionConfig,
  settingsPath,
  writeAllAccountSettings,
} from "../settings.js";

export interface LoginOptions {
  jid: string;
  password: string;
  service?: string;
  resource?: string;
}

/**
 * Stores the account, connects once as the main app (a new stream, or a resume if this database
 * already has one) and suspends the stream so the next process (send, app, nse) can resume it.
 * The settings file is written only after the server accepted the login.
 */
export async function login(ctx: CliContext, opts: LoginOptions): Promise<void> {
  return connectAndStore(ctx, opts, "login");
}

/**
 * `login` (the database's first account, or logging in again as one it has) and `account add`
 * (one more account in the same database): check, connect once as the main app, store.
 */
function accountRowExists(store: Store, id: string): boolean {
  return store.read(
    (tx) =>
      tx
        .select({ id: tables.accounts.id })
        .from(tables.accounts)
        .where(eq(tables.accounts.id, id))
        .get() !== undefined,
  );
}

export async function connectAndStore(
  ctx: CliContext,
  opts: LoginOptions,
  mode: "login" | "add",
): Promise<void> {
  const { local, domain } = parseBareJid(opts.jid);
  const jid = `${local}@${domain}`;
  const service = normalizeService(opts.service ?? `xmpp://${domain}:5222`);
  if (opts.password === "") throw new CliError("--password must not be empty");
  if (opts.resource !== undefined && !/^\S+$/.test(opts.resource))
    throw new CliError(`--resource "${opts.resource}" must be non-empty without spaces`);
  let previous: AccountSettings[] = [];
  let corrupt = false;
  if (mode === "add") {
    if (!existsSync(ctx.db) || !existsSync(settingsPath(ctx.db)))
      throw new CliError(`no account in ${ctx.db} yet: run "lichen-chat login" first`);
    previous = readAllAccountSettings(ctx.db);
    if (previous.some((a) => a.jid === jid))
      throw new CliError(`${jid} is already an account of ${ctx.db} ("lichen-chat account list")`);
  } else if (existsSync(settingsPath(ctx.db))) {
    try {
      previous = readAllAccountSettings(ctx.db);
    } catch {
      // Corrupt settings: a new login replaces them (the error message tells users to do this).
      corrupt = true;
    }
    if (previous.length > 0 && !previous.some((a) => a.jid === jid))
      throw new CliError(
        `${ctx.db} belongs to ${previous[0]!.jid}; use another --db for ${jid}, or add it with "lichen-chat account add"`,
      );
  }
  const settings: AccountSettings = {
    v: 1,
    accountId: jid,
    jid,
    service,
    password: opts.password,
    ...(opts.resource ? { resource: opts.resource } : {}),
  };
  const store = openStoreChecked(ctx, "main");
  try {
    // The settings file may be gone or corrupt: the accounts table is the authority.
    const known = new Set(previous.map((a) => a.jid));
    const others = store
      .read((tx) => tx.select({ jid: tables.accounts.jid }).from(tables.accounts).all())
      .filter((a) => a.jid !== jid && !known.has(a.jid));
    // Corrupt settings lost the list: logging in again as an account the database has is fine
    // (the others can be added again with `account add`).
    if (others.length > 0 && !(corrupt && accountRowExists(store, jid)))
      throw new CliError(
        `${ctx.db} belongs to ${others[0]!.jid}; use another --db for ${jid}, or add it with "lichen-chat account add"`,
      );
    const existed = accountRowExists(store, jid);
    ensureAccount(store, { id: jid, jid, ...(opts.resource ? { resource: opts.resource } : {}) });
    const app = new AppController(store, sessionConfig(settings, ctx.log));
    try {
      let how: "resumed" | "new";
      try {
        how = await foregroundOrExplain(app, settings);
      } catch (err) {
        // An added account the server refused is not kept: a stray row would make the database
        // look like it belongs to that JID (rows of other tables go with it: ON DELETE CASCADE).
        if (mode === "add" && !existed) {
          await app.close();
          store.write((tx) => tx.delete(tables.accounts).where(eq(tables.accounts.id, jid)).run());
        }
        throw err;
      }
      // Logging in again replaces that account's entry; the others stay (in their order).
      const i = previous.findIndex((a) => a.jid === jid);
      writeAllAccountSettings(
        ctx.db,
        i === -1 ? [...previous, settings] : previous.map((a, j) => (j === i ? settings : a)),
      );
      await app.background();
      const state = store.read((tx) => loadAccountState(tx, jid));
      ctx.out(
        `logged in as ${state.sm.boundJid ?? jid} on ${service}: ${
          how === "new" ? "new stream" : "resumed the stored stream"
        }; stream suspended (resumable by the next lichen-chat process); settings in ${settingsPath(ctx.db)}`,
      );
    } finally {
      await app.close();
    }
  } finally {
    store.close();
  }
}
