import { join } from "node:path";
import { handlePush, startMamCatchup, type Element } from "@lichen/engine";
import { openStore } from "@lichen/store";
import { startEjabberd, startProsody } from "@lichen/test-servers";
import { describe, expect, it } from "vitest";
import { omemo } from "../src/index.js";
import { online, openDevice, spawnFixture, until, useServer, type Device } from "./helpers.js";

const T = 180_000;
const fixture = join(import.meta.dirname, "fixtures", "omemo-proc.mjs");

const count = (d: Device, sql: string, ...args: unknown[]) =>
  (d.store.sqlite.prepare(sql).get(...args) as { n: number }).n;

describe.each([
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("OMEMO durability on %s", (_name, start) => {
  const env = useServer(start, ["alice", "bob", "carol", "dave", "erin", "fay", "gus"]);
  const open = env.devices;
  const device = (user: string, resource: string, db?: string) => {
    const d = openDevice(env.server, user, resource, db ? { db } : {});
    open.push(d);
    return d;
  };

  it(
    "MAM catch-up: encrypted messages sent while offline are decrypted once each, in order",
    async () => {
      const alice = await online(device("alice", "mam"));
      let bob = await online(device("bob", "mam"));
      await alice.omemo.send("bob@localhost", "before going offline");
      await until(() => bob.messages("alice@localhost").length === 1, "bob has the first");
      const db = bob.db;
      await bob.close(); // a clean logout: the next login is a new stream with a MAM catch-up
      open.splice(open.indexOf(bob), 1);
      for (const n of [1, 2, 3]) await alice.omemo.send("bob@localhost", `while offline ${n}`);
      bob = device("bob", "mam", db);
      await bob.session.connect();
      await until(() => bob.messages("alice@localhost").length === 4, "bob caught up");
      expect(bob.messages("alice@localhost").map((m) => [m.body, m.encrypted])).toEqual([
        ["before going offline", 1],
        ["while offline 1", 1],
        ["while offline 2", 1],
        ["while offline 3", 1],
      ]);
      // One row each, and nothing failed. Most come from the archive (its ids are stored), but
      // Prosody may hand one over as an offline message before the MAM page that holds it: a
      // race seen in CI (2 of 3 with an archive id); the copy from the other path is a duplicate.
      expect(
        count(bob, "SELECT count(*) AS n FROM messages WHERE body LIKE 'while offline%'"),
      ).toBe(3);
      expect(
        count(
          bob,
          "SELECT count(*) AS n FROM messages WHERE archive_id IS NOT NULL AND body LIKE 'while offline%'",
        ),
      ).toBeGreaterThanOrEqual(1);
      expect(count(bob, "SELECT count(*) AS n FROM quarantine")).toBe(0);
    },
    T,
  );

  it(
    "a process killed after decrypting, before its transaction: the replay is decrypted exactly once",
    async () => {
      let carol = await online(device("carol", "phone"));
      const bob = await online(device("bob", "kill"));
      await bob.omemo.send("carol@localhost", "first, establishes the session");
      await until(() => carol.messages("bob@localhost").length === 1, "carol has the first");
      const db = carol.db;
      await carol.session.suspend(); // the stream stays resumable for the next process
      carol.store.close();
      open.splice(open.indexOf(carol), 1);
      const sessionRow = () => {
        const s = openStore({ path: db, role: "main" });
        try {
          return s.sqlite
            .prepare("SELECT record FROM omemo_sessions WHERE jid = 'bob@localhost'")
            .get();
        } finally {
          s.close();
        }
      };
      const before = sessionRow();

      const child = spawnFixture(fixture, {
        db,
        port: env.server.c2sPort,
        user: "carol",
        resource: "phone",
      });
      try {
        await child.waitFor("online", "child online");
        await bob.omemo.send("carol@localhost", "kill-me while decrypting");
        await child.waitFor("decrypted", "child decrypted");
      } finally {
        await child.kill();
      }
      // Nothing of the decryption was written: the ratchet is where it was.
      expect(sessionRow()).toEqual(before);

      carol = device("carol", "phone", db);
      await carol.session.connect(); // resumes: the server replays the unacknowledged message
      await until(
        () => carol.messages("bob@localhost").some((m) => m.body === "kill-me while decrypting"),
        "decrypted after the replay",
      );
      await bob.omemo.send("carol@localhost", "and the ratchet goes on");
      await until(() => carol.messages("bob@localhost").length === 3, "carol has all three");
      expect(carol.messages("bob@localhost").map((m) => m.body)).toEqual([
        "first, establishes the session",
        "kill-me while decrypting",
        "and the ratchet goes on",
      ]);
      expect(count(carol, "SELECT count(*) AS n FROM quarantine")).toBe(0);
    },
    T,
  );

  it(
    "the NSE decrypts a message that arrived while the app was frozen, and leaves the bundle to the app",
    async () => {
      let alice = await online(device("alice", "nse"));
      const bob = await online(device("bob", "nse"));
      const db = alice.db;
      await alice.session.suspend(); // frozen by the OS: TCP dropped, stream kept
      // Bob's first message to this device uses one of its prekeys.
      await bob.omemo.send("alice@localhost", "secret while frozen");
      const nseStore = openStore({ path: db, role: "nse" });
      try {
        const nseOmemo = omemo({ role: "nse" });
        const r = await handlePush({
          store: nseStore,
          session: { ...alice.config, plugins: [nseOmemo] },
          lingerMs: 100,
          deadlineMs: 60_000,
        });
        expect(r.outcome).toBe("synced");
        expect(r.notifications).toEqual([
          expect.objectContaining({
            kind: "alert",
            title: "bob@localhost",
            body: "secret while frozen",
          }),
        ]);
      } finally {
        nseStore.close();
      }
      expect(alice.messages("bob@localhost")).toEqual([
        { body: "secret while frozen", encrypted: 1, direction: "in" },
      ]);
      // The NSE only flagged the used prekey; the main app refills when it comes back.
      const unused = () =>
        count(alice, "SELECT count(*) AS n FROM omemo_prekeys WHERE consumed_at IS NULL");
      expect(unused()).toBe(99);
      const state = () =>
        JSON.parse(
          (
            alice.store.sqlite
              .prepare("SELECT state FROM account_state WHERE account_id = 'alice'")
              .get() as { state: string }
          ).state,
        ) as { omemo: { preKeysNeedRefill: boolean } };
      expect(state().omemo.preKeysNeedRefill).toBe(true);
      await alice.close();
      open.splice(open.indexOf(alice), 1);
      alice = await online(device("alice", "nse", db));
      expect(unused()).toBe(100);
      expect(state().omemo.preKeysNeedRefill).toBe(false);
      // The used prekey is gone and its replacement has a new id (ids are never reused).
      expect(count(alice, "SELECT max(key_id) AS n FROM omemo_prekeys")).toBe(101);
      expect(count(alice, "SELECT count(*) AS n FROM omemo_prekeys")).toBe(100);
    },
    T,
  );

  it(
    "a message the NSE cannot decrypt: failure stored, repair queued for the app, whose next run repairs so the sender can write to us again",
    async () => {
      let dave = await online(device("dave", "phone"));
      const erin = await online(device("erin", "phone"));
      await erin.omemo.send("dave@localhost", "first, establishes the session");
      await until(() => dave.messages("erin@localhost").length === 1, "dave has the first");
      // His answer completes the session: erin's next messages are WhisperMessages, not prekey.
      await dave.omemo.send("erin@localhost", "answer");
      await until(() => erin.messages("dave@localhost").length === 2, "erin has the answer");
      const db = dave.db;
      await dave.session.suspend(); // frozen by the OS: TCP dropped, stream kept
      // Dave's session with erin is lost (say, a restored backup): erin's next message is a
      // WhisperMessage on a session he no longer has.
      dave.store.sqlite.prepare("DELETE FROM omemo_sessions WHERE jid = 'erin@localhost'").run();
      await erin.omemo.send("dave@localhost", "unreadable");
      const nseStore = openStore({ path: db, role: "nse" });
      try {
        const r = await handlePush({
          store: nseStore,
          session: { ...dave.config, plugins: [omemo({ role: "nse" })] },
          lingerMs: 100,
          deadlineMs: 60_000,
        });
        expect(r.outcome).toBe("synced");
      } finally {
        nseStore.close();
      }
      // Stored as a failure with its stanza; the repair is queued, not done: the NSE fetched no
      // bundle and built no session.
      expect(dave.messages("erin@localhost").map((m) => m.body)).toEqual([
        "first, establishes the session",
        "answer",
        expect.stringMatching(/^could not decrypt \(OMEMO signal\)/),
      ]);
      expect(
        count(dave, "SELECT count(*) AS n FROM quarantine WHERE table_name = 'omemo_message'"),
      ).toBe(1);
      expect(
        dave.store.sqlite.prepare("SELECT key, handler FROM omemo_pending_work").all(),
      ).toEqual([
        {
          key: `repair erin@localhost ${erin.omemo.deviceId!}`,
          handler: JSON.stringify({
            v: 1,
            name: "omemo.repairSession",
            bound: { jid: "erin@localhost", deviceId: erin.omemo.deviceId! },
          }),
        },
      ]);
      expect(count(dave, "SELECT count(*) AS n FROM omemo_sessions")).toBe(0);
      const erinSession = () =>
        erin.store.sqlite
          .prepare("SELECT record FROM omemo_sessions WHERE jid = 'dave@localhost'")
          .get();
      const erinBefore = erinSession();

      // The main app's next run: a new session and a key transport to erin's device.
      await dave.close();
      open.splice(open.indexOf(dave), 1);
      dave = await online(device("dave", "phone", db));
      await until(
        () => count(dave, "SELECT count(*) AS n FROM omemo_pending_work") === 0,
        "the app repairs",
      );
      expect(count(dave, "SELECT count(*) AS n FROM omemo_sessions")).toBe(1);
      await until(
        () => JSON.stringify(erinSession()) !== JSON.stringify(erinBefore),
        "erin takes the new session from the key transport",
      );
      await erin.omemo.send("dave@localhost", "readable again");
      await until(
        () => dave.messages("erin@localhost").some((m) => m.body === "readable again"),
        "dave decrypts erin's next message",
      );
      await dave.omemo.send("erin@localhost", "and back");
      await until(
        () => erin.messages("dave@localhost").some((m) => m.body === "and back"),
        "erin decrypts dave's",
      );
      expect(count(erin, "SELECT count(*) AS n FROM quarantine")).toBe(0);
      expect(
        count(dave, "SELECT count(*) AS n FROM quarantine WHERE table_name = 'omemo_message'"),
      ).toBe(1);
    },
    T,
  );

  it(
    "a message delivered and again in a MAM page never reaches decryption twice (its prekey is spent)",
    async () => {
      const fay = await online(device("fay", "phone"));
      const gus = await online(device("gus", "phone"));
      // Decryptions gus's plugin attempts (a prepare that returns work for an <encrypted/>).
      let decryptions = 0;
      const prepare = gus.omemo.prepare.bind(gus.omemo);
      gus.omemo.prepare = async (stanza, session) => {
        const r = await prepare(stanza, session);
        if (r && stanza.toString().includes('eu.siacs.conversations.axolotl"><header'))
          decryptions++;
        return r;
      };
      const fromArchive: Element[] = [];
      gus.session.on("stanza", (el) => {
        if (el.getChild("result", "urn:xmpp:mam:2") && el.toString().includes("<encrypted"))
          fromArchive.push(el);
      });
      await fay.omemo.send("gus@localhost", "prekey message, delivered twice");
      await until(() => gus.messages("fay@localhost").length === 1, "gus has it live");
      expect(decryptions).toBe(1);
      // The second copy, as Prosody sends it after an offline delivery: the whole archive again.
      // (Prosody 0.12's offline copy carries the same <stanza-id by="gus@localhost"> as the live
      // one, seen on the wire: both are matched to the MAM result's id, origin-id or not.)
      let complete = false;
      gus.session.once("mam-complete", () => (complete = true));
      gus.session.write((ctx) => {
        Object.assign(ctx.state.mam, {
          lastStanzaId: null,
          lastTimestamp: null,
          completedAt: null,
          syncedAt: null,
        });
        startMamCatchup(ctx);
      });
      await until(() => complete, "the MAM page is handled");
      expect(fromArchive).toHaveLength(1);
      expect(decryptions).toBe(1);
      expect(gus.messages("fay@localhost")).toEqual([
        { body: "prekey message, delivered twice", encrypted: 1, direction: "in" },
      ]);
      expect(count(gus, "SELECT count(*) AS n FROM quarantine")).toBe(0);
    },
    T,
  );
});
