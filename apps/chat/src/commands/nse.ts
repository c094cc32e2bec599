import { handlePush } from "@lichen/engine";
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
      throw new CliError(
        `push not handled: cannot sync ${settings.jid} via ${settings.service}: ${describeError(err)}`,
      );
    });
    ctx.log({ event: "nse.result", outcome: result.outcome, count: result.notifications.length });
    ctx.out(JSON.stringify(result, null, 2));
  } finally {
    store.close();
  }
}
