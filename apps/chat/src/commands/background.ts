import { runBackgroundTask } from "@lichen/engine";
import { type CliContext, openAccount } from "../context.js";
import { CliError, describeError } from "../errors.js";

/**
 * The main app woken in the background with a budget (silent push: ~30 s; BGProcessingTask: up to
 * 5 min): resume or log in, sync, send what is unsent, suspend before the deadline. Prints
 * `{ outcome, stream, unsent }` as JSON.
 */
export async function background(ctx: CliContext, opts: { deadlineMs: number }): Promise<void> {
  const { settings, store, config } = openAccount(ctx, "main");
  try {
    const r = await runBackgroundTask({
      store,
      session: config,
      deadlineMs: opts.deadlineMs,
    }).catch((err: unknown) => {
      throw new CliError(
        `background run failed for ${settings.jid}: ${store.damage?.message ?? describeError(err)}`,
      );
    });
    ctx.log({ event: "background.result", ...r });
    ctx.out(JSON.stringify(r));
  } finally {
    store.close();
  }
}
