import { AppController, type DurableSession } from "@lichen/engine";
import { loadAccountState, type Store } from "@lichen/store";
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
    const session = app.session!;
    const originId = session.sendMessage(`${local}@${domain}`, text);
    const seq = store.read((tx) => loadAccountState(tx, settings.accountId).sm.outboundSent);
    await waitAcked(session, store, settings.accountId, seq, opts.timeoutMs);
    ctx.out(originId);
  } finally {
    await app.close();
    store.close();
  }
}

/** Resolves once the server acknowledged outbound stanza `seq` (XEP-0198 <a h='…'/>). */
function waitAcked(
  session: DurableSession,
  store: Store,
  accountId: string,
  seq: number,
  timeoutMs: number,
): Promise<void> {
  const acked = () => store.read((tx) => loadAccountState(tx, accountId).sm.outboundAcked) >= seq;
  if (acked()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      session.off("acked", onAck);
      session.off("offline", onOffline);
      if (err) reject(err);
      else resolve();
    };
    const onAck = (h: number) => {
      if (h >= seq) done();
    };
    const onOffline = () =>
      done(
        new CliError(
          "connection lost before the server acknowledged the message; it stays queued and is resent on the next connect",
        ),
      );
    const timer = setTimeout(
      () =>
        done(
          new CliError(
            `no acknowledgement from the server within ${timeoutMs} ms; the message stays queued and is resent on the next connect`,
          ),
        ),
      timeoutMs,
    );
    session.on("acked", onAck);
    session.on("offline", onOffline);
  });
}
