// End-to-end: the BUILT lichen-chat, run as real processes against real Prosody and ejabberd, one
// database per server.
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listShareOutbox, loadAccountState, openStore, saveAccountState } from "@lichen/store";
import {
  freePort,
  startEjabberd,
  startFlakyLink,
  startProsody,
  type XmppTestServer,
} from "@lichen/test-servers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppProcess, CliProcess, requireBuiltCli, runCli, startPeer, until } from "./helpers.js";

const T = 60_000;
const ALICE = "alice@localhost";
const BOB = "bob@localhost";
/** `lichen-chat login` as alice through `port` (password alicepw unless given). */
const loginArgs = (port: number, o: { password?: string; resource?: string } = {}) => [
  "login",
  "--jid",
  ALICE,
  "--password",
  o.password ?? "alicepw",
  "--service",
  `xmpp://127.0.0.1:${port}`,
  ...(o.resource ? ["--resource", o.resource] : []),
];
const tag = () => Math.random().toString(36).slice(2, 8);

describe.each([
  ["Prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("lichen-chat against %s", (_name, startServer) => {
  let server: XmppTestServer;
  let bob: Awaited<ReturnType<typeof startPeer>>;
  let dir: string;
  let db: string;
  const cli = (...args: string[]) => runCli(db, args);
  const readState = () => {
    const store = openStore({ path: db, role: "nse" });
    try {
      return store.read((tx) => loadAccountState(tx, ALICE));
    } finally {
      store.close();
    }
  };

  beforeAll(async () => {
    requireBuiltCli();
    server = await startServer();
    await server.registerUser("alice", "alicepw");
    await server.registerUser("bob", "bobpw");
    dir = mkdtempSync(join(tmpdir(), "lichen-chat-"));
    db = join(dir, "alice.db");
    bob = await startPeer(server.c2sPort, "bob", "bobpw");
  }, T);
  afterAll(async () => {
    await bob?.stop();
    await server?.stop();
  }, T);

  it(
    "login stores the account and its settings, connects once (new stream) and leaves it resumable",
    async () => {
      const r = await cli(...loginArgs(server.c2sPort, { resource: "phone" }));
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/logged in as alice@localhost\/phone .*new stream.*suspended/);
      const settingsFile = `${db}.account.json`;
      expect(statSync(settingsFile).mode & 0o777).toBe(0o600);
      expect(JSON.parse(readFileSync(settingsFile, "utf8"))).toMatchObject({
        jid: ALICE,
        service: `xmpp://127.0.0.1:${server.c2sPort}`,
        resource: "phone",
      });
      const state = readState();
      expect(state.sm.streamId).toBeTruthy(); // suspended, not closed
      expect(state.sm.boundJid).toBe("alice@localhost/phone");
    },
    T,
  );

  it(
    "send resumes, waits for the server's ack and prints the origin-id; the peer gets each message once",
    async () => {
      const before = readState().sm.streamId;
      const first = await cli("send", BOB, "hello", "bob", tag());
      expect(first.code).toBe(0);
      const originId = first.stdout.trim();
      expect(originId).toMatch(/^[0-9a-f-]{36}$/);
      await until(() => bob.received.find((m) => m.id === originId), "bob receives the message");
      const second = await cli("send", BOB, `second ${tag()}`);
      expect(second.code).toBe(0);
      const secondId = second.stdout.trim();
      await until(() => bob.received.find((m) => m.id === secondId), "bob receives the 2nd");
      expect(bob.received.filter((m) => m.id === originId)).toHaveLength(1);
      expect(bob.received.find((m) => m.id === originId)!.from).toBe("alice@localhost/phone");
      const state = readState();
      expect(state.sm.streamId).toBe(before); // resumed, not a new login
      expect(state.sm.outboundAcked).toBe(state.sm.outboundSent); // nothing left unacked
    },
    T,
  );

  it(
    "nse: a message sent while no process runs yields an alert JSON; tail and chats show it from the DB",
    async () => {
      const text = `while-away ${tag()}`;
      await bob.send(ALICE, text);
      await bob.barrier();
      const r = await cli("nse", "--linger-ms", "100", "--deadline-ms", "20000");
      expect(r.code).toBe(0);
      const result = JSON.parse(r.stdout) as {
        outcome: string;
        notifications: Record<string, unknown>[];
      };
      expect(result.outcome).toBe("synced");
      expect(result.notifications).toEqual([
        expect.objectContaining({
          kind: "alert",
          title: BOB,
          body: text,
          threadId: BOB,
          accountId: ALICE,
        }),
      ]);

      const tail = await cli("tail", BOB, "-n", "5");
      expect(tail.code).toBe(0);
      const lastLine = tail.stdout.trim().split("\n").at(-1)!;
      expect(lastLine).toMatch(new RegExp(`bob@localhost/desk: ${text}$`));
      const json = JSON.parse((await cli("tail", BOB, "--json")).stdout) as {
        direction: string;
        body: string;
      }[];
      expect(json.filter((m) => m.body === text)).toEqual([
        expect.objectContaining({ direction: "in" }),
      ]);
      const chats = JSON.parse((await cli("chats", "--json")).stdout) as {
        jid: string;
        unread: number;
      }[];
      expect(chats).toEqual([expect.objectContaining({ jid: BOB, unread: 1 })]);

      // Nothing new: a silent notification.
      const quiet = await cli("nse", "--linger-ms", "0");
      expect(JSON.parse(quiet.stdout)).toEqual({
        outcome: "synced",
        notifications: [{ kind: "silent", reason: "no-new-messages" }],
        summary: { messages: 0, chats: [], moreChats: 0 },
        accounts: [
          {
            accountId: ALICE,
            outcome: "synced",
            stream: "resumed",
            mamCatchup: false,
            messages: 0,
          },
        ],
        stream: "resumed",
        mamCatchup: false,
      });
    },
    T,
  );

  it(
    "nse linger: a second nse started while the first lingers hands its push over (handed-over); the first syncs it on its one connection and reports both",
    async () => {
      // Its own database and resource, through a link that counts TCP connections.
      const link = await startFlakyLink({ port: server.c2sPort });
      const lingerDb = join(dir, "linger.db");
      const to = `${ALICE}/linger`;
      try {
        expect((await runCli(lingerDb, loginArgs(link.port, { resource: "linger" }))).code).toBe(0);
        const first = `linger-1 ${tag()}`;
        const second = `linger-2 ${tag()}`;
        await bob.send(to, first);
        await bob.barrier();
        const before = link.accepted;
        // The linger is long so the second process (node start-up on a loaded machine) lands in it.
        const nse1 = new CliProcess(lingerDb, [
          "--verbose",
          "nse",
          "--linger-ms",
          "10000",
          "--deadline-ms",
          "40000",
        ]);
        try {
          await until(
            () => nse1.stderr.includes('"event":"nse.synced"') || undefined,
            "nse 1 synced",
          );
          const nse2 = new CliProcess(lingerDb, [
            "nse",
            "--linger-ms",
            "100",
            "--deadline-ms",
            "40000",
          ]);
          try {
            await until(
              () => nse1.stderr.includes('"event":"nse.push-arrived"') || undefined,
              "nse 2 handed its push to nse 1",
            );
            // Sent after the hand-over: the second push's message.
            await bob.send(to, second);
            expect((await nse2.wait(45_000)).code).toBe(0);
            expect((await nse1.wait(45_000)).code).toBe(0);
          } finally {
            nse2.kill();
          }
          const r2 = JSON.parse(nse2.stdout) as Record<string, unknown>;
          const r1 = JSON.parse(nse1.stdout) as Record<string, unknown>;
          const alert = (body: string) =>
            expect.objectContaining({ kind: "alert", title: BOB, body, accountId: ALICE });
          expect(r2).toEqual({
            outcome: "handed-over",
            notifications: [alert(second)],
            // The lingering NSE made the notification; this process synced no account.
            summary: { messages: 1, chats: [], moreChats: 0 },
            accounts: [],
            holder: expect.stringMatching(new RegExp(`^nse:${nse1.pid}-`)) as unknown,
            stream: null,
            mamCatchup: false,
          });
          expect(r1).toMatchObject({
            outcome: "synced",
            notifications: [alert(first)],
            stream: "resumed",
            further: [{ via: "ipc", outcome: "synced", notifications: [alert(second)] }],
          });
          // Both pushes over one TCP connection (the first NSE's resume); the second never connected.
          expect(link.accepted - before).toBe(1);
          expect(nse1.stderr.match(/"event":"nse.synced"/g)).toHaveLength(2);
        } finally {
          nse1.kill();
        }
        const tail = await runCli(lingerDb, ["tail", BOB, "--json"]);
        const json = JSON.parse(tail.stdout) as { body: string }[];
        expect(json.filter((m) => m.body === first)).toHaveLength(1);
        expect(json.filter((m) => m.body === second)).toHaveLength(1);
      } finally {
        await link.close();
      }
    },
    2 * T,
  );

  it(
    "share queues without connecting; the app sends it on foreground, prints live messages, sends typed lines and later shares at once; nse yields to it",
    async () => {
      const sharedText = `shared ${tag()}`;
      const shared = await cli("share", BOB, "--text", sharedText);
      expect(shared.code).toBe(0);
      const item = JSON.parse(shared.stdout) as { id: string; to: string; content: unknown };
      expect(item).toMatchObject({ to: BOB, content: { kind: "text", text: sharedText } });
      // Queued only: nothing went out (the share process never connects).
      const store = openStore({ path: db, role: "nse" });
      try {
        expect(store.read((tx) => listShareOutbox(tx, ["pending"])).map((e) => e.item.id)).toEqual([
          item.id,
        ]);
      } finally {
        store.close();
      }
      await bob.barrier();
      expect(bob.received.find((m) => m.id === item.id)).toBeUndefined();

      const app = new AppProcess(db, ["--json", "--to", BOB]);
      try {
        await until(() => app.stderr.includes("online as"), `app online; ${app.stderr}`);
        await until(() => bob.received.find((m) => m.id === item.id), "shared item sent");

        // The main app holds the session: the NSE gives up at once, silently.
        const nse = await cli("nse", "--linger-ms", "0");
        expect(nse.code).toBe(0);
        expect(JSON.parse(nse.stdout)).toEqual({
          outcome: "main-running",
          notifications: [{ kind: "silent", reason: "main-app-running" }],
          summary: { messages: 0, chats: [], moreChats: 0 },
          accounts: [],
          stream: null,
          mamCatchup: false,
          holder: expect.stringMatching(new RegExp(`^main:${app.child.pid}-`)),
        });

        const live = `live ${tag()}`;
        await bob.send(ALICE, live);
        await until(
          () => app.messages().find((m) => m.body === live && m.direction === "in"),
          "app prints the live message",
        );

        const typed = `typed ${tag()}`;
        app.line(typed);
        const got = await until(() => bob.received.find((m) => m.body === typed), "typed line");
        expect(got.from).toBe("alice@localhost/phone");

        const later = await cli("share", BOB, "--url", "https://example.org/x", "--title", "X");
        expect(later.code).toBe(0);
        const laterId = (JSON.parse(later.stdout) as { id: string }).id;
        await until(() => bob.received.find((m) => m.id === laterId), "share while running");
        expect(bob.received.find((m) => m.id === laterId)!.body).toBe("X\nhttps://example.org/x");

        app.line("/quit");
        expect(await app.exited).toBe(0);
      } finally {
        app.kill();
      }
      expect(bob.received.filter((m) => m.id === item.id)).toHaveLength(1);
      expect(
        bob.received.filter((m) => m.id === item.id || m.body?.startsWith("typed")),
      ).toHaveLength(2);
    },
    T,
  );

  it(
    "app rides out a network drop: says it is reconnecting, resumes when the link is back, prints what came meanwhile",
    async () => {
      // Its own database and resource, connected through a link the test can cut.
      const link = await startFlakyLink({ port: server.c2sPort });
      const tabletDb = join(dir, "tablet.db");
      try {
        const login = await runCli(tabletDb, loginArgs(link.port, { resource: "tablet" }));
        expect(login.code).toBe(0);
        const app = new AppProcess(tabletDb, ["--json", "--to", BOB]);
        try {
          await until(() => app.stderr.includes("online as"), `app online; ${app.stderr}`);
          link.cut();
          await until(
            () => /reconnect attempt 1 failed/.test(app.stderr) || undefined,
            `a failed attempt; ${app.stderr}`,
          );
          expect(app.stderr).toMatch(/connection lost; reconnecting in \d+\.\d s/);
          const meanwhile = `meanwhile ${tag()}`;
          await bob.send(`${ALICE}/tablet`, meanwhile);
          link.restore();
          await until(
            () => app.stderr.includes("online again (resumed)") || undefined,
            `back online; ${app.stderr}`,
          );
          await until(
            () => app.messages().find((m) => m.body === meanwhile && m.direction === "in"),
            "the message sent while it was offline",
          );
          const typed = `after drop ${tag()}`;
          app.line(typed);
          await until(() => bob.received.find((m) => m.body === typed), "typed line after drop");
          app.line("/quit");
          expect(await app.exited).toBe(0);
          expect(app.messages().filter((m) => m.body === meanwhile)).toHaveLength(1);
        } finally {
          app.kill();
        }
      } finally {
        await link.close();
      }
    },
    T,
  );

  it(
    "offline first: send queues and says so; app starts without a network, lists stored chats, queues lines and sends them once the link is back",
    async () => {
      const link = await startFlakyLink({ port: server.c2sPort });
      const phoneDb = join(dir, "offline.db");
      try {
        const login = await runCli(phoneDb, loginArgs(link.port, { resource: "offline" }));
        expect(login.code).toBe(0);
        link.cut(); // no network from here on

        const queued = `queued offline ${tag()}`;
        const send = await runCli(phoneDb, ["send", BOB, queued]);
        expect(send.stderr).toMatch(/offline .*unreachable.*queued/);
        expect(send.code).toBe(0);
        const originId = send.stdout.trim();
        const pending = () => {
          const store = openStore({ path: phoneDb, role: "nse" });
          try {
            return store.sqlite
              .prepare("SELECT delivery_state AS s FROM messages WHERE origin_id = ?")
              .get(originId) as { s: string } | undefined;
          } finally {
            store.close();
          }
        };
        expect(pending()?.s).toBe("pending");

        const app = new AppProcess(phoneDb, ["--json", "--to", BOB]);
        try {
          await until(
            () => /offline .*showing stored chats/.test(app.stderr) || undefined,
            `app offline; ${app.stderr}`,
          );
          // The stored chat is listed (the lines may arrive in a later chunk of stderr).
          await until(
            () => app.stderr.includes(`  ${BOB}`) || undefined,
            `chat listed; ${app.stderr}`,
          );
          const typed = `typed offline ${tag()}`;
          app.line(typed);
          await until(
            () => /queued \(offline\)/.test(app.stderr) || undefined,
            `queued; ${app.stderr}`,
          );
          link.restore();
          await until(
            () => app.stderr.includes("online again") || undefined,
            `online; ${app.stderr}`,
          );
          for (const body of [queued, typed])
            await until(() => bob.received.find((m) => m.body === body), `bob gets "${body}"`);
          await until(() => pending()?.s === "sent" || undefined, "the queued message marked sent");
          app.line("/quit");
          expect(await app.exited).toBe(0);
          expect(bob.received.filter((m) => m.body === queued)).toHaveLength(1);
          expect(bob.received.filter((m) => m.body === typed)).toHaveLength(1);
        } finally {
          app.kill();
        }
      } finally {
        await link.close();
      }
    },
    T,
  );

  it(
    "app shows progress while a MAM catch-up fills a gap (stream not resumable)",
    async () => {
      const n = 120;
      const prefix = `gap-${tag()}-`;
      for (let i = 0; i < n; i++) await bob.send(ALICE, `${prefix}${i}`);
      await bob.barrier();
      // The stored stream is gone (as after the server's resumption timeout): forget it.
      const store = openStore({ path: db, role: "main" });
      try {
        store.write((tx) => {
          const st = loadAccountState(tx, ALICE);
          st.sm.streamId = null;
          saveAccountState(tx, ALICE, st);
        });
      } finally {
        store.close();
      }
      const app = new AppProcess(db, ["--json"]);
      try {
        await until(() => /caught up: \d+ messages/.test(app.stderr), "catch-up done", 45_000);
        expect(app.stderr).toMatch(/online as alice@localhost\/phone \(new stream\)/);
        expect(app.stderr).toMatch(/catching up… \d+ messages?/);
        const total = Number(/caught up: (\d+) messages/.exec(app.stderr)![1]);
        expect(total).toBeGreaterThanOrEqual(n);
        const bodies = app.messages().map((m) => m.body);
        for (let i = 0; i < n; i++) expect(bodies).toContain(`${prefix}${i}`);
        app.line("/quit");
        expect(await app.exited).toBe(0);
      } finally {
        app.kill();
      }
    },
    T,
  );

  describe("bad usage and bad config: non-zero exit and one clear line", () => {
    const oneLine = (s: string) => {
      expect(s.trim().split("\n")).toHaveLength(1);
      return s.trim();
    };

    it("unknown command and missing --jid are usage errors (exit 2)", async () => {
      const unknown = await cli("frobnicate");
      expect(unknown.code).toBe(2);
      expect(oneLine(unknown.stderr)).toMatch(/unknown command 'frobnicate'/);
      const noJid = await cli("login", "--password", "x");
      expect(noJid.code).toBe(2);
      expect(oneLine(noJid.stderr)).toMatch(/required option '--jid <jid>'/);
      const twoKinds = await cli("share", BOB, "--text", "a", "--geo", "1,2");
      expect(twoKinds.code).toBe(2);
      expect(oneLine(twoKinds.stderr)).toMatch(/exactly one of --text, --url, --geo, --file/);
      const help = await cli("share", "--help");
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/--geo <lat,lon>/);
    });

    it(
      "corrupt account settings: clear error naming the file, nothing else touched",
      async () => {
        const other = join(dir, "corrupt.db");
        writeFileSync(other, "");
        writeFileSync(`${other}.account.json`, '{"v":1, "jid": ');
        const r = await runCli(other, ["send", BOB, "hi"]);
        expect(r.code).toBe(1);
        expect(oneLine(r.stderr)).toMatch(
          /account settings .*corrupt\.db\.account\.json are corrupt .*lichen-chat login/,
        );
        writeFileSync(
          `${other}.account.json`,
          JSON.stringify({
            v: 1,
            accountId: ALICE,
            jid: ALICE,
            service: "http://x",
            password: "p",
          }),
        );
        const bad = await runCli(other, ["nse"]);
        expect(bad.code).toBe(1);
        expect(oneLine(bad.stderr)).toMatch(
          /invalid: service "http:\/\/x" must start with xmpp:\/\//,
        );
        expect(readFileSync(other, "utf8")).toBe(""); // the database was not touched
      },
      T,
    );

    it(
      "unreachable server: login fails with the address and saves no settings; send queues and says the server is unreachable",
      async () => {
        const port = await freePort();
        const other = join(dir, "unreachable.db");
        const r = await runCli(other, loginArgs(port));
        expect(r.code).toBe(1);
        expect(oneLine(r.stderr)).toMatch(
          new RegExp(
            `cannot connect as alice@localhost to xmpp://127.0.0.1:${port}: .*ECONNREFUSED`,
          ),
        );
        expect(() => statSync(`${other}.account.json`)).toThrow();

        // A configured account whose server went away (settings restored afterwards).
        const file = `${db}.account.json`;
        const saved = readFileSync(file, "utf8");
        let s: Awaited<ReturnType<typeof runCli>>;
        try {
          writeFileSync(
            file,
            JSON.stringify({ ...JSON.parse(saved), service: `xmpp://127.0.0.1:${port}` }),
          );
          s = await runCli(db, ["send", BOB, `queued while unreachable ${tag()}`]);
        } finally {
          writeFileSync(file, saved);
        }
        // Offline first: stored and queued (sent on the next connection), and said so.
        expect(s.code).toBe(0);
        expect(oneLine(s.stderr)).toMatch(
          new RegExp(`offline \\(xmpp://127.0.0.1:${port} unreachable\\): queued`),
        );
      },
      T,
    );

    it(
      "wrong password: the server's SASL condition is shown",
      async () => {
        const r = await runCli(
          join(dir, "wrongpw.db"),
          loginArgs(server.c2sPort, { password: "nope" }),
        );
        expect(r.code).toBe(1);
        expect(oneLine(r.stderr)).toMatch(/cannot connect as alice@localhost .*not-authorized/);
      },
      T,
    );
  });
});
