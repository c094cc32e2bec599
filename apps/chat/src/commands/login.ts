import { existsSync } from "node:fs";
import { AppController, ensureAccount } from "@lichen/engine";
import { loadAccountState, tables } from "@lichen/store";
import { type CliContext, foregroundOrExplain, openStoreChecked } from "../context.js";
import { CliError } from "../errors.js";
import {
  type AccountSettings,
  normalizeService,
  parseBareJid,
  readAccountSettings,
  sessionConfig,
  settingsPath,
  writeAccountSettings,
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
  const { local, domain } = parseBareJid(opts.jid);
  const jid = `${local}@${domain}`;
  const service = normalizeService(opts.service ?? `xmpp://${domain}:5222`);
  if (opts.password === "") throw new CliError("--password must not be empty");
  if (opts.resource !== undefined && !/^\S+$/.test(opts.resource))
    throw new CliError(`--resource "${opts.resource}" must be non-empty without spaces`);
  if (existsSync(settingsPath(ctx.db))) {
    let previous: AccountSettings | null = null;
    try {
      previous = readAccountSettings(ctx.db);
    } catch {
      // Corrupt settings: a new login replaces them (the error message tells users to do this).
    }
    if (previous && previous.jid !== jid)
      throw new CliError(
        `${ctx.db} belongs to ${previous.jid}; use another --db for ${jid} (one account per database)`,
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
    const others = store
      .read((tx) => tx.select({ jid: tables.accounts.jid }).from(tables.accounts).all())
      .filter((a) => a.jid !== jid);
    if (others.length > 0)
      throw new CliError(
        `${ctx.db} belongs to ${others[0]!.jid}; use another --db for ${jid} (one account per database)`,
      );
    ensureAccount(store, { id: jid, jid, ...(opts.resource ? { resource: opts.resource } : {}) });
    const app = new AppController(store, sessionConfig(settings, ctx.log));
    try {
      const how = await foregroundOrExplain(app, settings);
      writeAccountSettings(ctx.db, settings);
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
