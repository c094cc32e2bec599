// Several accounts in one database: `account add` connects once as the main app and stores the
// account next to the first one; `account list` shows them. app and nse drive all of them.
import { loadAccountState } from "@lichen/store";
import { type CliContext, openDatabase } from "../context.js";
import { readAllAccountSettings } from "../settings.js";
import { connectAndStore, type LoginOptions } from "./login.js";

export async function accountAdd(ctx: CliContext, opts: LoginOptions): Promise<void> {
  await connectAndStore(ctx, opts, "add");
}

export function accountList(ctx: CliContext, opts: { json?: boolean }): void {
  const accounts = readAllAccountSettings(ctx.db);
  const store = openDatabase(ctx, "nse"); // read-only use, never the main app's lock
  try {
    const rows = accounts.map((a, i) => {
      const state = store.read((tx) => loadAccountState(tx, a.accountId));
      return {
        jid: a.jid,
        service: a.service,
        ...(a.resource ? { resource: a.resource } : {}),
        primary: i === 0,
        boundJid: state.sm.boundJid,
        resumable: state.sm.streamId !== null && state.sm.streamId !== undefined,
      };
    });
    if (opts.json) return ctx.out(JSON.stringify(rows, null, 2));
    for (const r of rows)
      ctx.out(
        `${r.jid}${r.primary ? " (first)" : ""}  ${r.service}  ${
          r.resumable ? `stream resumable as ${r.boundJid ?? r.jid}` : "no stream"
        }`,
      );
  } finally {
    store.close();
  }
}
