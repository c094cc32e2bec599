// The interactive main app: holds the session while in the foreground, gives it up (resumable)
// on /bg, prints messages as they are stored and sends what the share extension queued.
import { createInterface } from "node:readline";
import { AppController, MessageQueuedError, MultiAccountApp, terminateApp } from "@lichen/engine";
import { listChats, listRooms, loadAccountState, type Store } from "@lichen/store";
import { type CliContext, foregroundOrExplain, openAccounts, selectAccount } from "../context.js";
import { CliError, describeError } from "../errors.js";
import { formatMessage, type MessageLine } from "../format.js";
import { CatchupProgress, TransferProgressLines } from "../progress.js";
import { parseBareJid, type AccountSettings } from "../settings.js";
import { messagesAfter } from "./history.js";

const HELP = [
  "/to <jid>  choose the chat (or joined room) that your lines are sent to",
  "/as <jid>  choose the account they are sent from (with several accounts; default: the first)",
  "/bg        background: finish work, suspend the stream (resumable), release the session",
  "/fg        foreground: take the session back (resume or log in)",
  "/quit      background and exit (also Ctrl-D)",
  "other lines are sent to the chosen chat",
].join("\n");

/** Prints every message stored after the last one it printed (the DB is the source of truth). */
class NewMessagePrinter {
  private lastId = 0;

  constructor(
    private readonly store: Store,
    private readonly accountId: string,
    private readonly print: (m: MessageLine) => void,
  ) {}

  skipExisting(): void {
    const rows = messagesAfter(this.store, this.accountId, this.lastId);
    this.lastId = rows.at(-1)?.id ?? this.lastId;
  }

  printNew(): void {
    for (const m of messagesAfter(this.store, this.accountId, this.lastId)) {
      this.lastId = m.id;
      this.print(m);
    }
  }
}

export async function app(ctx: CliContext, opts: { to?: string; json?: boolean }): Promise<void> {
  let chat = opts.to === undefined ? null : bare(opts.to);
  const chosen = selectAccount(ctx); // --account: the one lines are sent from at first
  const { accounts, store, configs } = openAccounts(ctx, "main");
  // Every account, one process lock (MultiAccountApp); one account prints as it always did.
  const several = accounts.length > 1;
  const multi = new MultiAccountApp(store, configs);
  /** The account lines are sent from (/as). */
  let settings: AccountSettings = accounts.find((a) => a.jid === chosen.jid) ?? accounts[0]!;
  let controller: AppController = multi.controller(settings.accountId);
  const printers = accounts.map(
    (a) =>
      new NewMessagePrinter(store, a.accountId, (m) =>
        ctx.out(
          opts.json
            ? JSON.stringify({
                event: "message",
                ...(several ? { account: a.jid } : {}),
                direction: m.direction,
                chat: m.chatJid,
                from: m.fromJid,
                body: m.body,
                id: m.originId ?? m.stanzaId,
                state: m.deliveryState,
                at: m.sentAt,
              })
            : `${several ? `[${a.jid}] ` : ""}${formatMessage(m)}`,
        ),
      ),
  );
  const printer = {
    skipExisting: () => printers.forEach((p) => p.skipExisting()),
    printNew: () => printers.forEach((p) => p.printNew()),
  };
  const progress = new CatchupProgress((line) => ctx.status(line));
  const gapOpen = () =>
    accounts.some((a) => store.read((tx) => loadAccountState(tx, a.accountId).mam.gapOpen));
  let mode: "fg" | "bg" = "bg";
  let closing = false;
  // Set when the database turns out damaged: the app stops (writes are refused) and exits 1.
  let damaged: Error | null = null;
  const stopIfDamaged = (): boolean => {
    if (!store.damage || damaged) return damaged !== null;
    damaged = store.damage;
    ctx.status(`error: ${store.damage.message}`);
    enqueue(quit);
    return true;
  };

  // Commands run one after another (a /fg never overlaps a /bg).
  let chain: Promise<void> = Promise.resolve();
  const enqueue = (fn: () => Promise<void> | void) => {
    chain = chain.then(fn).catch((err: unknown) => ctx.status(`error: ${describeError(err)}`));
  };

  // Each controller's one session: listeners attach once, when it is created.
  const forEachController = (fn: (c: AppController, a: AccountSettings) => void) =>
    accounts.forEach((a) => fn(multi.controller(a.accountId), a));
  forEachController((c) =>
    c.on("session", (session) => {
      session.on("message-stored", () => {
        try {
          progress.gap(gapOpen());
          progress.messageStored();
          printer.printNew();
        } catch (err) {
          if (!stopIfDamaged()) throw err;
        }
      });
      session.on("message-sent", () => printer.printNew());
      // Shared files the outbox uploads: progress lines, and why one failed for good.
      const uploads = new Map<string, TransferProgressLines>();
      c.media?.on("progress", (p) => {
        let lines = uploads.get(p.id);
        if (!lines)
          uploads.set(
            p.id,
            (lines = new TransferProgressLines((l) => ctx.status(l), `upload ${p.id.slice(0, 8)}`)),
          );
        lines.update(p.done, p.total);
      });
      session.on("attachment-changed", (a) => {
        if (a.state === "failed")
          ctx.status(
            `upload ${a.id.slice(0, 8)} failed: ${a.error?.message ?? "unknown error"} (kept in the outbox)`,
          );
      });
    }),
  );

  /** Every account online (or offline, queued); one account failing for good is reported. */
  const foreground = async () => {
    const results = await Promise.all(
      accounts.map((a) =>
        foregroundOrExplain(multi.controller(a.accountId), a, { allowOffline: true }).then(
          (how) => ({ a, how, error: null }),
          (error: unknown) => ({ a, how: null, error }),
        ),
      ),
    );
    // One account: its error is the command's error, as always. Several: only when all fail.
    const failed = results.filter((r) => r.error !== null);
    if (failed.length === results.length) throw failed[0]!.error;
    mode = "fg";
    for (const r of results) {
      if (r.error !== null) {
        ctx.status(`${r.a.jid}: ${describeError(r.error)}`);
        continue;
      }
      announce(r.a, r.how!);
    }
    poll();
  };

  const announce = (a: AccountSettings, how: "resumed" | "new" | "offline") => {
    const { accountId } = a;
    const settings = a;
    if (how === "offline") {
      // Offline first: the stored chats are there, lines are queued, and the controller keeps
      // trying to get online by itself.
      ctx.status(
        `offline (${settings.service} unreachable): showing stored chats; what you send is queued; reconnecting by itself`,
      );
      for (const c of listChats(store, accountId))
        ctx.status(`  ${c.jid}${c.unreadCount > 0 ? ` (${c.unreadCount} unread)` : ""}`);
      return;
    }
    const bound = store.read((tx) => loadAccountState(tx, accountId).sm.boundJid);
    ctx.status(`online as ${bound ?? settings.jid} (${how === "new" ? "new stream" : "resumed"})`);
  };

  const background = async () => {
    mode = "bg";
    await multi.background();
    ctx.status("background: stream suspended (resumable), session released");
  };

  // The controller reconnects (with back-off) while in the foreground; say what it does.
  const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  forEachController((controller, a) => {
    const who = several ? `${a.jid}: ` : "";
    controller.on("reconnecting", (e: { attempt: number; delayMs: number }) => {
      if (closing || mode !== "fg") return;
      ctx.status(
        who +
          (e.attempt === 1
            ? `connection lost; reconnecting in ${seconds(e.delayMs)}`
            : `reconnecting (attempt ${e.attempt}) in ${seconds(e.delayMs)}`),
      );
    });
    controller.on(
      "reconnect-failed",
      (e: { attempt: number; error: unknown; permanent: boolean }) => {
        if (closing) return;
        ctx.status(
          who +
            (e.permanent
              ? `reconnect failed for good: ${describeError(e.error)} (fix it, then /bg and /fg)`
              : `reconnect attempt ${e.attempt} failed: ${describeError(e.error)}`),
        );
      },
    );
    controller.on("session-lost", (e: { holder: string | null }) => {
      if (closing) return;
      ctx.status(
        `${who}the session was taken over by ${e.holder ?? "another process"} while this app was stopped; taking it back`,
      );
    });
    controller.on("reconnected", (how: "resumed" | "new") => {
      ctx.status(`${who}online again (${how === "new" ? "new stream" : "resumed"})`);
    });
  });

  const poll = () => {
    if (stopIfDamaged()) return;
    try {
      progress.gap(mode === "fg" && gapOpen());
      progress.tick();
      printer.printNew();
    } catch (err) {
      // A read that met the damage marked the store damaged: stop on the next line.
      if (!stopIfDamaged()) throw err;
    }
  };

  const handleLine = async (line: string) => {
    const text = line.trim();
    if (text === "") return;
    const [cmd, ...rest] = text.split(/\s+/);
    switch (cmd) {
      case "/help":
        return ctx.status(HELP);
      case "/to":
        if (rest.length !== 1) return ctx.status("usage: /to <jid>");
        chat = bare(rest[0]!);
        return ctx.status(describeChat(store, settings.accountId, chat));
      case "/as": {
        const jid = rest.length === 1 ? bare(rest[0]!) : null;
        const found = accounts.find((a) => a.jid === jid);
        if (!found)
          return ctx.status(`usage: /as <jid>, one of ${accounts.map((a) => a.jid).join(", ")}`);
        settings = found;
        controller = multi.controller(found.accountId);
        return ctx.status(`sending as ${found.jid}`);
      }
      case "/bg":
        if (mode === "bg") return ctx.status("already in the background");
        return background();
      case "/fg":
        if (mode === "fg") return ctx.status("already in the foreground");
        return foreground();
      case "/quit":
        return quit();
    }
    if (text.startsWith("/")) return ctx.status(`unknown command ${cmd} (try /help)`);
    if (!chat) return ctx.status("no chat chosen: /to <jid> first");
    if (mode === "bg" || !controller.session)
      return ctx.status("in the background: /fg first (or queue it with lichen-chat share)");
    const sent = controller.session.send(chat, line);
    printer.printNew();
    sent.acked.catch((err: unknown) => {
      if (err instanceof MessageQueuedError && !closing)
        ctx.status(
          `queued (${err.reason === "offline" ? "offline" : "connection lost"}): sent when online`,
        );
    });
  };

  let finished!: () => void;
  const done = new Promise<void>((resolve) => (finished = resolve));
  const quit = async () => {
    if (closing) return;
    closing = true;
    clearInterval(timer);
    rl.close();
    try {
      await multi.close();
    } catch (err) {
      // Closing saves state, which a damaged database refuses: that is reported below.
      if (!damaged) throw err;
    } finally {
      store.close();
      finished();
    }
  };

  printer.skipExisting();
  const timer = setInterval(() => {
    if (!closing) poll();
  }, 250);
  // Listen at once: lines piped in before we are online are queued behind the first foreground.
  const rl = createInterface({ input: process.stdin, terminal: false });
  const started = foreground();
  chain = started.then(
    () =>
      ctx.status(
        chat
          ? `chatting with ${chat}; /help for commands`
          : "/to <jid> to choose a chat; /help for commands",
      ),
    () => {},
  );
  rl.on("line", (line) => enqueue(() => (closing ? undefined : handleLine(line))));
  rl.on("close", () => enqueue(quit));
  const onSignal = () => enqueue(quit);
  process.once("SIGINT", onSignal);
  // SIGTERM is the swipe-away: iOS kills the app a second or two later, so a bounded shutdown
  // (terminateApp) that records a background-task request when work is still unsent.
  process.once("SIGTERM", () => {
    if (closing) return;
    closing = true;
    clearInterval(timer);
    rl.close();
    void terminateApp(
      multi,
      store,
      accounts.map((a) => a.accountId),
      { withinMs: 1000 },
    )
      .then((r) => ctx.log({ event: "app.terminated", ...r }))
      .catch(() => {})
      .finally(() => {
        store.close();
        finished();
      });
  });
  try {
    await started;
  } catch (err) {
    closing = true;
    clearInterval(timer);
    rl.close();
    await multi.close();
    store.close();
    throw err;
  }
  await done;
  if (damaged) throw new CliError((damaged as Error).message);
}

function bare(jid: string): string {
  const { local, domain } = parseBareJid(jid);
  return `${local}@${domain}`;
}

/** `/to`'s answer: a room says whether we are in it (a line to a room we left would be a 1:1). */
function describeChat(store: Store, accountId: string, jid: string): string {
  const room = listRooms(store, accountId).find((r) => r.jid === jid);
  if (!room) return `chatting with ${jid}`;
  return room.nick
    ? `in room ${jid} as ${room.nick}`
    : `not in room ${jid} (${room.status ?? "left"}): lichen-chat join ${jid} first`;
}
