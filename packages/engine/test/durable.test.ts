import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEjabberd, startProsody, type XmppTestServer } from "@lichen/test-servers";
import { LichenProcess, startPeer, until } from "./helpers.js";

const T = 180_000;

function bodies(db: string): string[] {
  const d = new Database(db, { readonly: true });
  try {
    return (
      d.prepare("SELECT body FROM messages WHERE account_id = 'alice' ORDER BY id").all() as {
        body: string;
      }[]
    ).map((r) => r.body);
  } finally {
    d.close();
  }
}
function countOf(xs: string[], x: string): number {
  return xs.filter((y) => y === x).length;
}

describe.each([
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("durable session on %s", (_kind, start) => {
  let server: XmppTestServer;
  let dir: string;
  const procs: LichenProcess[] = [];
  const spawnProc = (o: Record<string, unknown>) => {
    const p = new LichenProcess({ service: `xmpp://127.0.0.1:${server.c2sPort}`, ...o });
    procs.push(p);
    return p;
  };

  beforeAll(async () => {
    server = await start();
    await server.registerUser("alice", "alicepw");
    await server.registerUser("bob", "bobpw");
    dir = mkdtempSync(join(tmpdir(), "lichen-engine-"));
  }, T);
  afterAll(async () => {
    for (const p of procs) p.kill();
    await server?.stop();
  }, T);

  it(
    "SIGKILL before commit and after commit: a NEW process resumes, nothing lost, nothing duplicated",
    async () => {
      const db = join(dir, "kill.db");
      const bob = await startPeer(server.c2sPort, "bob", "bobpw");
      try {
        // Process A: logs in, stores m1, is killed inside the transaction of K1.
        const a = spawnProc({ db, killBeforeCommit: "K1" });
        expect((await a.waitFor((e) => e.event === "online", "A online")).how).toBe("new");
        await bob.send("alice@localhost", "m1");
        await a.waitFor((e) => e.event === "stored" && e.body === "m1", "A stored m1");
        await bob.send("alice@localhost", "K1");
        expect((await a.exited).signal).toBe("SIGKILL");
        expect(countOf(bodies(db), "K1")).toBe(0); // rolled back with the process

        // Process B resumes from the DB alone; the server replays K1 (never acked).
        const b = spawnProc({ db, killAfterCommit: "K2", replyTo: "K2" });
        expect((await b.waitFor((e) => e.event === "online", "B online")).how).toBe("resumed");
        await b.waitFor((e) => e.event === "stored" && e.body === "K1", "B stored replayed K1");

        // B commits K2 and its reply, then dies before the reply reaches the socket.
        await bob.send("alice@localhost", "K2");
        expect((await b.exited).signal).toBe("SIGKILL");
        expect(countOf(bodies(db), "K2")).toBe(1);
        expect(bob.received.filter((m) => m.body === "reply-K2")).toHaveLength(0);

        // Process C resumes and sends the queued reply; K2 (committed, h persisted) is not replayed.
        const c = spawnProc({ db });
        expect((await c.waitFor((e) => e.event === "online", "C online")).how).toBe("resumed");
        await until(() => bob.received.some((m) => m.body === "reply-K2"), "bob gets reply-K2");
        await bob.send("alice@localhost", "m3");
        await c.waitFor((e) => e.event === "stored" && e.body === "m3", "C stored m3");

        // Per stanza the engine writes only the account state's counter columns (one UPDATE),
        // never its JSON blob: a trigger counts the blob writes of every connection.
        const d = new Database(db);
        d.exec(`CREATE TABLE test_blob_writes (n INTEGER);
          CREATE TRIGGER test_count_blob_writes AFTER UPDATE OF state ON account_state
          BEGIN INSERT INTO test_blob_writes VALUES (1); END;`);
        const inboundH = () =>
          d
            .prepare("SELECT sm_inbound_h FROM account_state WHERE account_id = 'alice'")
            .pluck()
            .get() as number;
        const hBefore = inboundH();
        for (const body of ["m4", "m5", "m6"]) await bob.send("alice@localhost", body);
        await c.waitFor((e) => e.event === "stored" && e.body === "m6", "C stored m6");
        await until(() => inboundH() >= hBefore + 3, "h counted m4..m6");
        expect(d.prepare("SELECT count(*) FROM test_blob_writes").pluck().get()).toBe(0);
        d.close();

        const all = bodies(db);
        for (const body of ["m1", "K1", "K2", "m3", "m4", "m5", "m6"])
          expect(countOf(all, body), body).toBe(1);
        expect(bob.received.filter((m) => m.body === "reply-K2")).toHaveLength(1);
        c.command("suspend");
        await c.exited;
      } finally {
        await bob.stop();
      }
    },
    T,
  );

  it(
    "a handler failure rolls back, nothing after it is counted, and the server replays it after resume",
    async () => {
      const db = join(dir, "fail.db");
      const bob = await startPeer(server.c2sPort, "bob", "bobpw");
      try {
        const a = spawnProc({ db, failOnce: "F1" });
        await a.waitFor((e) => e.event === "online", "A online");
        await bob.send("alice@localhost", "F1");
        await bob.send("alice@localhost", "after-F1");
        await a.waitFor((e) => e.event === "stanza-failed", "injected failure");
        // The session dropped TCP and resumed by itself; the server replayed F1, then after-F1.
        await a.waitFor((e) => e.event === "stored" && e.body === "F1", "A stored replayed F1");
        await a.waitFor((e) => e.event === "stored" && e.body === "after-F1", "A stored after-F1");
        const stored = a.events.filter((e) => e.event === "stored").map((e) => e.body);
        expect(stored.indexOf("F1")).toBeLessThan(stored.indexOf("after-F1")); // order kept
        expect(a.events.filter((e) => e.event === "online").map((e) => e.how)).toEqual([
          "new",
          "resumed",
        ]);
        a.command("suspend");
        await a.waitFor((e) => e.event === "suspended", "A suspended");

        // A new process resumes: nothing is replayed twice.
        const b = spawnProc({ db });
        expect((await b.waitFor((e) => e.event === "online", "B online")).how).toBe("resumed");
        await bob.send("alice@localhost", "m-after");
        await b.waitFor((e) => e.event === "stored" && e.body === "m-after", "B stored m-after");
        const all = bodies(db);
        for (const body of ["F1", "after-F1", "m-after"]) expect(countOf(all, body), body).toBe(1);
        b.command("suspend");
        await b.exited;
      } finally {
        await bob.stop();
      }
    },
    T,
  );

  it(
    "an IQ sent by process A is answered while process B holds the session: B runs the stored handler",
    async () => {
      const db = join(dir, "iq.db");
      const bob = await startPeer(server.c2sPort, "bob", "bobpw");
      try {
        const a = spawnProc({ db });
        await a.waitFor((e) => e.event === "online", "A online");
        a.command("iq bob@localhost/desk probe-1");
        const iq = await until(() => bob.iqs[0], "bob receives the IQ");
        a.command("suspend");
        await a.waitFor((e) => e.event === "suspended", "A suspended");

        const b = spawnProc({ db });
        await b.waitFor((e) => e.event === "online", "B online");
        iq.answer();
        const handled = await b.waitFor((e) => e.event === "handler", "handler ran in B");
        expect(handled).toMatchObject({ label: "probe-1", type: "result" });
        expect(handled.pid).toBe(b.child.pid);
        const d = new Database(db, { readonly: true });
        const rows = d
          .prepare("SELECT message FROM sync_errors WHERE code = 'iq-answered'")
          .all() as { message: string }[];
        const pending = d.prepare("SELECT count(*) AS n FROM iq_handlers").get() as { n: number };
        d.close();
        expect(rows.map((r) => r.message)).toEqual([`probe-1:result:${b.child.pid}`]);
        expect(pending.n).toBe(0);
        b.command("suspend");
        await b.exited;
      } finally {
        await bob.stop();
      }
    },
    T,
  );

  it(
    "resume failure: full login, then MAM fills the gap exactly",
    async () => {
      const db = join(dir, "mam.db");
      const bob = await startPeer(server.c2sPort, "bob", "bobpw");
      try {
        const a = spawnProc({ db });
        await a.waitFor((e) => e.event === "online", "A online");
        await bob.send("alice@localhost", "before-gap");
        await a.waitFor(
          (e) => e.event === "stored" && e.body === "before-gap",
          "A stored before-gap",
        );
        a.command("suspend");
        await a.waitFor((e) => e.event === "suspended", "A suspended");
        // Messages while alice is away, then her stored stream id is lost: resume must fail.
        for (let i = 1; i <= 5; i++) await bob.send("alice@localhost", `gap-${i}`);
        const d = new Database(db);
        const row = d.prepare("SELECT state FROM account_state WHERE account_id='alice'").get() as {
          state: string;
        };
        const st = JSON.parse(row.state);
        st.sm.streamId = "no-such-stream";
        d.prepare("UPDATE account_state SET state = ? WHERE account_id='alice'").run(
          JSON.stringify(st),
        );
        d.close();

        const b = spawnProc({ db });
        expect((await b.waitFor((e) => e.event === "online", "B online")).how).toBe("new");
        await b.waitFor((e) => e.event === "resume-failed", "resume failed");
        await b.waitFor((e) => e.event === "mam-complete", "MAM catch-up complete");
        await until(() => {
          const all = bodies(db);
          return [1, 2, 3, 4, 5].every((i) => countOf(all, `gap-${i}`) === 1);
        }, "all gap messages stored once");
        const all = bodies(db);
        expect(countOf(all, "before-gap")).toBe(1);
        for (let i = 1; i <= 5; i++) expect(countOf(all, `gap-${i}`)).toBe(1);
        b.command("suspend");
        await b.exited;
      } finally {
        await bob.stop();
      }
    },
    T,
  );
});
