// Several accounts in one database: one on Prosody and one on ejabberd at the same time. The main
// app drives both under one process lock; one push makes the NSE sync every account concurrently
// under one deadline and return ONE notification for all; an account whose password is refused
// or whose server is unreachable is reported on its own and does not stop the others.
import { mkdtempSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore, tables, type Store } from "@lichen/store";
import {
  freePort,
  startEjabberd,
  startProsody,
  startTestPeer,
  type XmppTestServer,
} from "@lichen/test-servers";
import { until } from "@lichen/test-kit";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ensureAccount,
  handlePush,
  listAccounts,
  MultiAccountApp,
  type SessionOptions,
} from "../src/index.js";

type Config = Omit<SessionOptions, "store">;
const T = 180_000;

describe("several accounts (Prosody + ejabberd)", () => {
  let prosody: XmppTestServer;
  let ejabberd: XmppTestServer;
  let store: Store; // the main app's
  let nseStore: Store; // the NSE's own handle, as another process has
  let dir = "";
  // One account per bare JID (the accounts table's jid is unique): alice on Prosody, dave on
  // ejabberd, erin (wrong password) and frank (no server) as the bad ones.
  const config = (server: XmppTestServer, user: string, password = `${user}pw`): Config => ({
    accountId: `${user}@localhost`,
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: "localhost",
    username: user,
    password,
    resource: "phone",
  });
  let onProsody: Config;
  let onEjabberd: Config;

  beforeAll(async () => {
    [prosody, ejabberd] = await Promise.all([startProsody(), startEjabberd()]);
    for (const s of [prosody, ejabberd])
      for (const u of ["alice", "bob", "dave", "erin"]) await s.registerUser(u, `${u}pw`);
    dir = mkdtempSync(join(tmpdir(), "lichen-accounts-"));
    store = openStore({ path: join(dir, "lichen.db"), role: "main" });
    nseStore = openStore({ path: join(dir, "lichen.db"), role: "nse" });
    onProsody = config(prosody, "alice");
    onEjabberd = config(ejabberd, "dave");
    for (const user of ["alice", "dave", "erin", "frank", "gina"])
      ensureAccount(store, {
        id: `${user}@localhost`,
        jid: `${user}@localhost`,
        resource: "phone",
      });
  }, T);
  afterAll(async () => {
    nseStore?.close();
    store?.close();
    await Promise.all([prosody?.stop(), ejabberd?.stop()]);
  }, T);

  const stored = (accountId: string, body: string) =>
    (
      nseStore.sqlite
        .prepare("SELECT count(*) AS n FROM messages WHERE account_id = ? AND body = ?")
        .get(accountId, body) as { n: number }
    ).n;

  it(
    "the main app drives both accounts under one lock; one push syncs both and shows one notification",
    async () => {
      expect(listAccounts(store).map((a) => a.id)).toEqual(
        expect.arrayContaining([onProsody.accountId, onEjabberd.accountId]),
      );
      const app = new MultiAccountApp(store, [onProsody, onEjabberd]);
      const bobP = await startTestPeer(prosody.c2sPort, "bob", "bobpw");
      const bobE = await startTestPeer(ejabberd.c2sPort, "bob", "bobpw");
      try {
        const fg = await app.foreground();
        expect(fg).toEqual([
          { accountId: onProsody.accountId, online: "new" },
          { accountId: onEjabberd.accountId, online: "new" },
        ]);
        // One lock for the process: both sessions are fenced by the same holder.
        expect(app.controller(onProsody.accountId).lock).toBe(app.lock);
        expect(app.controller(onEjabberd.accountId).lock).toBe(app.lock);
        await app.background(); // frozen: both streams kept for resumption

        await bobP.send("alice@localhost", "from-prosody-1");
        await bobP.send("alice@localhost", "from-prosody-2");
        await bobE.send("dave@localhost", "from-ejabberd");
        await Promise.all([bobP.barrier(), bobE.barrier()]);

        const r = await handlePush({
          store: nseStore,
          accounts: [onProsody, onEjabberd],
          lingerMs: 100,
          deadlineMs: 20_000,
        });
        expect(r.outcome).toBe("synced");
        expect(r.accounts).toEqual([
          expect.objectContaining({
            accountId: onProsody.accountId,
            outcome: "synced",
            stream: "resumed",
            messages: 2,
          }),
          expect.objectContaining({
            accountId: onEjabberd.accountId,
            outcome: "synced",
            stream: "resumed",
            messages: 1,
          }),
        ]);
        // ONE notification for the push: the newest message, the others summarized.
        expect(r.notifications).toHaveLength(1);
        const [n] = r.notifications;
        expect(n).toMatchObject({ kind: "alert", title: "bob@localhost", count: 3 });
        expect(r.summary.messages).toBe(3);
        expect(r.summary.chats).toHaveLength(2);
        expect(r.summary.chats.map((c) => [c.accountId, c.count]).sort()).toEqual([
          [onProsody.accountId, 2], // alice@localhost
          [onEjabberd.accountId, 1], // dave@localhost
        ]);
        expect(stored(onProsody.accountId, "from-prosody-1")).toBe(1);
        expect(stored(onProsody.accountId, "from-prosody-2")).toBe(1);
        expect(stored(onEjabberd.accountId, "from-ejabberd")).toBe(1);
        // Nothing crossed accounts.
        expect(stored(onEjabberd.accountId, "from-prosody-1")).toBe(0);

        // The main app takes both back and resumes both streams.
        expect(await app.foreground()).toEqual([
          { accountId: onProsody.accountId, online: "resumed" },
          { accountId: onEjabberd.accountId, online: "resumed" },
        ]);
        await app.background();
      } finally {
        await app.close();
        await bobP.stop();
        await bobE.stop();
      }
    },
    T,
  );

  it(
    "a refused password and an unreachable server are reported per account; the others sync within the deadline",
    async () => {
      const wrongPassword = config(prosody, "erin", "not-the-password");
      const unreachable: Config = {
        ...config(ejabberd, "frank"),
        service: `xmpp://127.0.0.1:${await freePort()}`, // nothing listens there
      };
      // A server that accepts TCP and never says a word (a black hole): gina's connect hangs
      // until the deadline, and must not hold up the others.
      const silent = createServer((socket) => socket.on("error", () => {}));
      await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
      const blackHole: Config = {
        ...config(ejabberd, "gina"),
        service: `xmpp://127.0.0.1:${(silent.address() as AddressInfo).port}`,
      };
      const bobP = await startTestPeer(prosody.c2sPort, "bob", "bobpw");
      const bobE = await startTestPeer(ejabberd.c2sPort, "bob", "bobpw");
      try {
        await bobP.send("alice@localhost", "despite-bad-accounts-p");
        await bobE.send("dave@localhost", "despite-bad-accounts-e");
        await Promise.all([bobP.barrier(), bobE.barrier()]);
        const deadlineMs = 8000;
        const r = await handlePush({
          store: nseStore,
          accounts: [blackHole, wrongPassword, onProsody, unreachable, onEjabberd],
          lingerMs: 100,
          deadlineMs,
          syncWarningDelayMs: 60_000,
        });
        const by = Object.fromEntries(r.accounts.map((a) => [a.accountId, a]));
        expect(by[onProsody.accountId]).toMatchObject({ outcome: "synced", messages: 1 });
        expect(by[onEjabberd.accountId]).toMatchObject({ outcome: "synced", messages: 1 });
        expect(by["erin@localhost"]).toMatchObject({ outcome: "failed", stream: null });
        expect(by["erin@localhost"]!.error).toMatch(/not-authorized|auth|password|credentials/i);
        expect(by["frank@localhost"]).toMatchObject({ outcome: "deadline", stream: null });
        expect(by["frank@localhost"]!.error).toMatch(/ECONNREFUSED|unreachable|connect/i);
        expect(by["gina@localhost"]).toMatchObject({ outcome: "deadline", stream: null });
        // The run could not finish every account: deadline, but the push still shows what came.
        expect(r.outcome).toBe("deadline");
        expect(r.notifications).toEqual([
          expect.objectContaining({ kind: "alert", count: 2, title: "bob@localhost" }),
        ]);
        expect(stored(onProsody.accountId, "despite-bad-accounts-p")).toBe(1);
        expect(stored(onEjabberd.accountId, "despite-bad-accounts-e")).toBe(1);
        // The delayed "could not synchronize" warning is for the unreachable account only.
        const warnings = nseStore.read((tx) =>
          tx
            .select({ accountId: tables.pendingNotifications.accountId })
            .from(tables.pendingNotifications)
            .where(eq(tables.pendingNotifications.id, "sync-warning:frank@localhost"))
            .all(),
        );
        expect(warnings).toEqual([{ accountId: "frank@localhost" }]);
        const otherWarnings = nseStore.sqlite
          .prepare(
            "SELECT count(*) AS n FROM pending_notifications WHERE id LIKE 'sync-warning:%' AND id NOT IN ('sync-warning:frank@localhost', 'sync-warning:gina@localhost')",
          )
          .get() as { n: number };
        expect(otherWarnings.n).toBe(0);

        // The main app too: the good accounts go online, the bad ones report their error.
        const app = new MultiAccountApp(store, [onProsody, wrongPassword, onEjabberd], {
          reconnect: false,
        });
        try {
          const fg = await app.foreground();
          expect(fg[0]).toEqual({ accountId: onProsody.accountId, online: "resumed" });
          expect(fg[1]).toMatchObject({ accountId: "erin@localhost", error: expect.any(Error) });
          expect(fg[2]).toEqual({ accountId: onEjabberd.accountId, online: "resumed" });
        } finally {
          await app.close();
        }
      } finally {
        silent.close();
        await bobP.stop();
        await bobE.stop();
      }
    },
    T,
  );

  it(
    "the main app has priority over an NSE syncing both accounts: it yields both, the app resumes both",
    async () => {
      // afterSync never ends: the NSE stays connected on both accounts until the app comes.
      const nse = handlePush({
        store: nseStore,
        accounts: [onProsody, onEjabberd],
        afterSync: () => new Promise<void>(() => {}),
        deadlineMs: 60_000,
        lingerMs: 100,
      });
      const app = new MultiAccountApp(store, [onProsody, onEjabberd]);
      try {
        await until(() => app.lock.heldByOther(), "the NSE holds the lock");
        expect(await app.foreground()).toEqual([
          { accountId: onProsody.accountId, online: "resumed" },
          { accountId: onEjabberd.accountId, online: "resumed" },
        ]);
        const r = await nse;
        expect(r.outcome).toBe("yielded");
        expect(r.accounts.map((a) => a.outcome)).toEqual(["yielded", "yielded"]);
      } finally {
        await app.close();
      }
    },
    T,
  );

  it("a push with no account, or one account twice, is a clear error before any I/O", async () => {
    await expect(handlePush({ store: nseStore })).rejects.toThrow(/needs `session` or `accounts`/);
    await expect(
      handlePush({ store: nseStore, session: onProsody, accounts: [onEjabberd, onProsody] }),
    ).rejects.toThrow(/account alice@localhost is given twice/);
  });
});
