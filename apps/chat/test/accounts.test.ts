// Several accounts in one database, end to end: the BUILT lichen-chat as separate processes, one
// account on Prosody and one on ejabberd at the same time. `account add/list`; one `nse` syncs
// both and prints one notification; `app` drives both (messages of each, /as to send from one).
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore, tables } from "@lichen/store";
import { startEjabberd, startProsody, type XmppTestServer } from "@lichen/test-servers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppProcess, requireBuiltCli, runCli, startPeer, until } from "./helpers.js";

const T = 120_000;
const ALICE = "alice@localhost"; // on Prosody, the first account (login)
const DAVE = "dave@localhost"; // on ejabberd, added with `account add`
const BOB = "bob@localhost"; // on both

describe("lichen-chat with two accounts (Prosody + ejabberd)", () => {
  let prosody: XmppTestServer;
  let ejabberd: XmppTestServer;
  let bobP: Awaited<ReturnType<typeof startPeer>>;
  let bobE: Awaited<ReturnType<typeof startPeer>>;
  let db = "";
  const cli = (...args: string[]) => runCli(db, args);
  const service = (s: XmppTestServer) => `xmpp://127.0.0.1:${s.c2sPort}`;

  beforeAll(async () => {
    requireBuiltCli();
    [prosody, ejabberd] = await Promise.all([startProsody(), startEjabberd()]);
    for (const u of ["alice", "bob"]) await prosody.registerUser(u, `${u}pw`);
    for (const u of ["dave", "bob"]) await ejabberd.registerUser(u, `${u}pw`);
    db = join(mkdtempSync(join(tmpdir(), "lichen-chat-accounts-")), "phone.db");
    bobP = await startPeer(prosody.c2sPort, "bob", "bobpw");
    bobE = await startPeer(ejabberd.c2sPort, "bob", "bobpw");
  }, T);
  afterAll(async () => {
    await bobP?.stop();
    await bobE?.stop();
    await Promise.all([prosody?.stop(), ejabberd?.stop()]);
  }, T);

  it(
    "account add/list; one nse syncs both accounts with one notification; app drives both",
    async () => {
      const login = await cli(
        "login",
        "--jid",
        ALICE,
        "--password",
        "alicepw",
        "--service",
        service(prosody),
      );
      expect(login.stderr).toBe("");
      expect(login.code).toBe(0);
      // Before any account is added, the settings file keeps its one-account form.
      expect(JSON.parse(readFileSync(`${db}.account.json`, "utf8"))).toMatchObject({
        v: 1,
        jid: ALICE,
      });

      // Bad input: a refused password adds nothing.
      const refused = await cli(
        "account",
        "add",
        "--jid",
        DAVE,
        "--password",
        "wrong",
        "--service",
        service(ejabberd),
      );
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/cannot connect as dave@localhost/);
      // Not even a stray account row (it would make the database look like dave's).
      const probe = openStore({ path: db, role: "nse" });
      try {
        const ids = probe.read((tx) =>
          tx.select({ id: tables.accounts.id }).from(tables.accounts).all(),
        );
        expect(ids.map((r) => r.id)).toEqual([ALICE]);
      } finally {
        probe.close();
      }
      const add = await cli(
        "account",
        "add",
        "--jid",
        DAVE,
        "--password",
        "davepw",
        "--service",
        service(ejabberd),
      );
      expect(add.stderr).toBe("");
      expect(add.code).toBe(0);
      expect(add.stdout).toMatch(/logged in as dave@localhost.*new stream/);
      const again = await cli("account", "add", "--jid", DAVE, "--password", "davepw");
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/already an account/);
      // login with a third JID points at `account add` instead of replacing the database's owner.
      const other = await cli("login", "--jid", "erin@localhost", "--password", "x");
      expect(other.code).toBe(1);
      expect(other.stderr).toMatch(/account add/);

      const list = await cli("account", "list", "--json");
      expect(list.code).toBe(0);
      expect(JSON.parse(list.stdout)).toEqual([
        expect.objectContaining({
          jid: ALICE,
          service: service(prosody),
          primary: true,
          resumable: true,
        }),
        expect.objectContaining({
          jid: DAVE,
          service: service(ejabberd),
          primary: false,
          resumable: true,
        }),
      ]);

      // While no process runs, Bob writes to both; one push syncs both accounts.
      await bobP.send(ALICE, "to-alice-while-away");
      await bobE.send(DAVE, "to-dave-while-away");
      await Promise.all([bobP.barrier(), bobE.barrier()]);
      const nse = await cli("nse", "--deadline-ms", "20000", "--linger-ms", "0");
      expect(nse.stderr).toBe("");
      expect(nse.code).toBe(0);
      const r = JSON.parse(nse.stdout) as {
        outcome: string;
        notifications: Record<string, unknown>[];
        summary: { messages: number; chats: { accountId: string; lastBody: string }[] };
        accounts: { accountId: string; outcome: string; stream: string; messages: number }[];
      };
      expect(r.outcome).toBe("synced");
      expect(r.accounts).toEqual([
        expect.objectContaining({
          accountId: ALICE,
          outcome: "synced",
          stream: "resumed",
          messages: 1,
        }),
        expect.objectContaining({
          accountId: DAVE,
          outcome: "synced",
          stream: "resumed",
          messages: 1,
        }),
      ]);
      expect(r.notifications).toEqual([
        expect.objectContaining({
          kind: "alert",
          title: BOB,
          count: 2,
          subtitle: "1 in 1 other chat",
        }),
      ]);
      expect(r.summary.chats.map((c) => [c.accountId, c.lastBody]).sort()).toEqual([
        [ALICE, "to-alice-while-away"],
        [DAVE, "to-dave-while-away"],
      ]);

      // The main app: both accounts online in one process, each account's messages printed.
      const app = new AppProcess(db, ["--json"]);
      try {
        await until(
          () =>
            (app.stderr.includes("online as alice@localhost") &&
              app.stderr.includes("online as dave@localhost")) ||
            !app.running ||
            undefined,
          "both accounts online",
        );
        expect(app.running, app.stderr).toBe(true);
        await bobE.send(DAVE, "live-to-dave");
        await bobP.send(ALICE, "live-to-alice");
        await until(
          () =>
            (app.messages().some((m) => m.body === "live-to-dave") &&
              app.messages().some((m) => m.body === "live-to-alice")) ||
            undefined,
          "both live messages printed",
        );
        const printed = app.messages() as unknown as { account: string; body: string }[];
        expect(printed.find((m) => m.body === "live-to-dave")!.account).toBe(DAVE);
        expect(printed.find((m) => m.body === "live-to-alice")!.account).toBe(ALICE);
        // Send from the second account.
        app.line(`/as ${DAVE}`);
        app.line(`/to ${BOB}`);
        app.line("hello-from-dave");
        await until(
          () => bobE.received.find((m) => m.body === "hello-from-dave"),
          "bob on ejabberd receives dave's message",
        );
        expect(bobP.received.some((m) => m.body === "hello-from-dave")).toBe(false);
        app.line("/quit");
        expect(await app.exited).toBe(0);
      } finally {
        app.kill();
      }
      // --account picks the account of send (and chats, tail, share).
      const viaOption = await cli("--account", DAVE, "send", BOB, "sent-with-account-option");
      expect(viaOption.stderr).toBe("");
      expect(viaOption.code).toBe(0);
      await until(
        () => bobE.received.find((m) => m.body === "sent-with-account-option"),
        "bob on ejabberd receives the message sent with --account",
      );
      const daveTail = JSON.parse((await cli("--account", DAVE, "tail", BOB, "--json")).stdout) as {
        body: string;
      }[];
      expect(daveTail.some((m) => m.body === "live-to-dave")).toBe(true);
      const unknown = await cli("--account", "nobody@localhost", "chats");
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toMatch(
        /no account nobody@localhost .*alice@localhost, dave@localhost/,
      );
      // Without --account, the single-account commands use the first account.
      const tail = await cli("tail", BOB, "--json");
      expect(tail.code).toBe(0);
      const rows = JSON.parse(tail.stdout) as { body: string }[];
      expect(rows.some((m) => m.body === "live-to-alice")).toBe(true);
      expect(rows.some((m) => m.body === "live-to-dave")).toBe(false);
    },
    T,
  );
});
