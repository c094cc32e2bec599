import { handlePush, type Element } from "@lichen/engine";
import { DatabaseCorruptError } from "@lichen/store";
import { type CliContext, openAccounts } from "../context.js";
import { CliError, describeError } from "../errors.js";

/**
 * Notification service extension: handle one push — every account of the database synced at
 * once under one deadline (resume from the DB, or log in + MAM) — and print `{ outcome,
 * notifications, summary, accounts, ... }` (NseResult) as one JSON document: `notifications`
 * holds the push's ONE content (the newest message with "+N more" and count, or silent),
 * `accounts` each account's outcome (a refused password is "failed" for that account only). The main app running is not an error: the
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
  opts: { deadlineMs: number; lingerMs: number; syncWarningDelayMs?: number },
): Promise<void> {
  // With --verbose, timing marks (the engine benchmark's NSE cold start reads them): code loaded,
  // the first message committed, and the result with this process's peak RSS.
  // cpuMs: this process's CPU time so far (user + system, from its start): the engine benchmark
  // reports it next to the wall-clock marks, which a loaded machine stretches.
  const cpuMs = () => {
    const u = process.cpuUsage();
    return Math.round((u.user + u.system) / 100) / 10;
  };
  ctx.log({ event: "nse.start", cpuMs: cpuMs() });
  const { accounts, store, configs } = openAccounts(ctx, "nse");
  let messageCommitted = false;
  try {
    const result = await handlePush({
      store,
      accounts: ctx.verbose
        ? configs.map((config) => ({
            ...config,
            afterCommit: (stanza: Element) => {
              if (messageCommitted || !stanza.is("message")) return;
              messageCommitted = true;
              ctx.log({ event: "nse.message-committed", cpuMs: cpuMs() });
            },
          }))
        : configs,
      deadlineMs: opts.deadlineMs,
      lingerMs: opts.lingerMs,
      ...(opts.syncWarningDelayMs !== undefined
        ? { syncWarningDelayMs: opts.syncWarningDelayMs }
        : {}),
      // With --verbose: when the run has synced (and lingers) and when a push is handed to it.
      afterSync: () => ctx.log({ event: "nse.synced" }),
      onFurtherPush: (p) => ctx.log({ event: "nse.push-arrived", pushId: p.pushId, via: p.via }),
    }).catch((err: unknown) => {
      const damage = store.damage ?? (err instanceof DatabaseCorruptError ? err : null);
      if (damage) throw new CliError(`push not handled: ${damage.message}`);
      throw new CliError(
        `push not handled: cannot sync ${accounts
          .map((a) => `${a.jid} via ${a.service}`)
          .join(", ")}: ${describeError(err)}`,
      );
    });
    // Damage met during the sync (a stanza not stored, so not acknowledged): never report a result.
    if (store.damage) throw new CliError(`push not handled: ${store.damage.message}`);
    ctx.log({
      event: "nse.result",
      outcome: result.outcome,
      messages: result.summary.messages,
      accounts: result.accounts.map((a) => `${a.accountId}:${a.outcome}`),
      peakRssKiB: process.resourceUsage().maxRSS,
      cpuMs: cpuMs(),
    });
    ctx.out(JSON.stringify(result, null, 2));
  } finally {
    store.close();
  }
}
