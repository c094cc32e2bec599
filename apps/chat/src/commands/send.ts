import { AppController, MessageQueuedError } from "@lichen/engine";
import { type CliContext, foregroundOrExplain, openAccount } from "../context.js";
import { CliError } from "../errors.js";
import { parseBareJid } from "../settings.js";

/**
 * Sends one message as the main app: foreground (resume or log in), queue the message, wait for
 * the server's XEP-0198 ack of it, background (stream stays resumable). Prints the origin-id.
 */
export async function send(
  ctx: CliContext,
  to: string,
  words: string[],
  opts: { timeoutMs: number },
): Promise<void> {
  const { local, domain } = parseBareJid(to);
  const text = words.join(" ");
  if (text.trim() === "") throw new CliError("nothing to send: the message text is empty");
  const { settings, store, config } = openAccount(ctx, "main");
  const app = new AppController(store, config);
  try {
    await foregroundOrExplain(app, settings);
    const sent = app.session!.send(`${local}@${domain}`, text);
    // A damaged database refuses the writes that would record the ack: say that, not "queued".
    await ackedWithin(sent.acked, opts.timeoutMs).catch((err: unknown) => {
      throw store.damage ? new CliError(store.damage.message) : err;
    });
    if (store.damage) throw new CliError(store.damage.message);
    ctx.out(sent.originId);
  } finally {
    // On a damaged database closing cannot save state (writes are refused): the error above says so.
    await app.close().catch((err: unknown) => {
      if (!store.damage) throw err;
    });
    store.close();
  }
}

/** The server's XEP-0198 ack of the message, within `timeoutMs`; otherwise a CLI error. */
async function ackedWithin(acked: Promise<void>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      acked,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new CliError(
                `no acknowledgement from the server within ${timeoutMs} ms; the message stays queued and is resent on the next connect`,
              ),
            ),
          timeoutMs,
        );
      }),
    ]);
  } catch (err) {
    if (err instanceof MessageQueuedError) throw new CliError(err.message);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
