import { createInterface } from "node:readline";
import { startNse, type NsePushResult, type NseResult } from "@lichen/engine";
import { DatabaseCorruptError } from "@lichen/store";
import { type CliContext, openAccount } from "../context.js";
import { CliError, describeError } from "../errors.js";

/**
 * `nse --stdin`: the NSE as iOS runs it, one process that may get further pushes while it lives
 * (didReceive called again). Each stdin line is a further push's id; each push's result is one
 * JSON line on stdout, `{ pushId, outcome, notifications, ... }`, printed as soon as that push's
 * notification is final — its messages stored, before the run lingers (iOS calls contentHandler
 * then; the process lives on) — or, when the push did not sync (deadline, yield, main app
 * running), when the run ends. A push the run can no longer take (it is ending) is printed with
 * outcome "not-accepted": the OS starts a new NSE. Messages stored while lingering with no push of
 * their own are printed at the end as `{ local: true, notifications }` (the NSE posts them itself).
 */
export async function nseExtension(
  ctx: CliContext,
  opts: { deadlineMs: number; lingerMs: number; syncWarningDelayMs?: number; pushId: string },
): Promise<void> {
  const { settings, store, config } = openAccount(ctx, "nse");
  const printed: Promise<void>[] = [];
  const print = (line: Record<string, unknown>) => ctx.out(JSON.stringify(line));
  /** The first push's line is out (printed when its notification was final). */
  const answered = new Set<string>();
  const rl = createInterface({ input: process.stdin, terminal: false });
  try {
    const run = startNse({
      store,
      session: config,
      deadlineMs: opts.deadlineMs,
      lingerMs: opts.lingerMs,
      ...(opts.syncWarningDelayMs !== undefined
        ? { syncWarningDelayMs: opts.syncWarningDelayMs }
        : {}),
      afterSync: () => ctx.log({ event: "nse.synced" }),
      onFurtherPush: (p) => ctx.log({ event: "nse.push-arrived", pushId: p.pushId, via: p.via }),
      onNotificationReady: (ready) => {
        answered.add(opts.pushId);
        print({ ...ready, pushId: opts.pushId });
      },
    });
    rl.on("line", (line) => {
      const pushId = line.trim();
      if (pushId === "") return;
      printed.push(
        run
          .push(pushId)
          .then((r: NsePushResult | null) =>
            print(r ? { ...r } : { pushId, outcome: "not-accepted", notifications: [] }),
          ),
      );
    });
    const result: NseResult = await run.result.catch((err: unknown) => {
      const damage = store.damage ?? (err instanceof DatabaseCorruptError ? err : null);
      if (damage) throw new CliError(`push not handled: ${damage.message}`);
      throw new CliError(
        `push not handled: cannot sync ${settings.jid} via ${settings.service}: ${describeError(err)}`,
      );
    });
    if (store.damage) throw new CliError(`push not handled: ${store.damage.message}`);
    const { further: _further, late, ...first } = result;
    if (!answered.has(opts.pushId)) print({ pushId: opts.pushId, ...first });
    await Promise.all(printed);
    if (late) print({ local: true, notifications: [late] });
    ctx.log({ event: "nse.result", outcome: result.outcome, count: result.notifications.length });
  } finally {
    rl.close();
    store.close();
  }
}
