import { handlePush } from "@lichen/engine";
import { DatabaseCorruptError } from "@lichen/store";
import { type CliContext, openAccount } from "../context.js";
import { CliError, describeError } from "../errors.js";

/**
 * Notification service extension: handle one push (resume from the DB, or log in + MAM), print
 * `{ outcome, notifications }` as one JSON document. The main app running is not an error: the
 * result is the silent "main-app-running" content.
 *
 * Linger: after syncing, the process stays connected for --linger-ms. A second `lichen-chat nse`
 * started meanwhile (the OS's next push) hands its push over through IPC push-arrived: the first
 * syncs it over its connection and answers with that push's notifications; the second prints
 * `{ outcome: "handed-over", notifications, holder }` (those notifications, holder = the first
 * NSE) and exits. The first prints its own push's result with `further: [{ pushId, via: "ipc",
 * outcome, notifications }]` — each notification is printed by the process of its push.
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
      // With --verbose: when the run has synced (and lingers) and when a push is handed to it.
      afterSync: () => ctx.log({ event: "nse.synced" }),
      onFurtherPush: (p) => ctx.log({ event: "nse.push-arrived", pushId: p.pushId, via: p.via }),
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
