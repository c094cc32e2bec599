import { handlePush } from "@lichen/engine";
import { DatabaseCorruptError } from "@lichen/store";
import { type CliContext, openAccount } from "../context.js";
import { CliError, describeError } from "../errors.js";

/**
 * Notification service extension: handle one push (resume from the DB, or log in + MAM), print
 * `{ outcome, notifications }` as one JSON document. The main app running is not an error: the
 * result is the silent "main-app-running" content.
 */
export async function nse(
  ctx: CliContext,
  opts: { deadlineMs: number; lingerMs: number },
): Promise<void> {
  const { settings, store, config } = openAccount(ctx, "nse");
  try {
    const result = await handlePush({
      store,
      session: config,
      deadlineMs: opts.deadlineMs,
      lingerMs: opts.lingerMs,
    }).catch((err: unknown) => {
      const damage = store.damage ?? (err instanceof DatabaseCorruptError ? err : null);
      if (damage) throw new CliError(`push not handled: ${damage.message}`);
      throw new CliError(
        `push not handled: cannot sync ${settings.jid} via ${settings.service}: ${describeError(err)}`,
      );
    });
    // Damage met during the sync (a stanza not stored, so not acknowledged): never report a result.
    if (store.damage) throw new CliError(`push not handled: ${store.damage.message}`);
    ctx.log({ event: "nse.result", outcome: result.outcome, count: result.notifications.length });
    ctx.out(JSON.stringify(result, null, 2));
  } finally {
    store.close();
  }
}
