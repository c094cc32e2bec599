// A damaged chat database, end to end with the BUILT lichen-chat and lichen-store against Prosody:
// the NSE notices the damage instead of claiming "synced", every later process refuses to write,
// and the file recovered by `lichen-store recover` is used by lichen-chat again, with every message
// that was on an intact page and the one the server kept while the NSE could not store it.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { openStore, tables } from "@lichen/store";
import { startProsody, type XmppTestServer } from "@lichen/test-servers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loginArgs, requireBuiltCli, runCli, startPeer } from "./helpers.js";

const T = 120_000;
const ALICE = "alice@localhost";
const BOB = "bob@localhost";
const SEEDED = 1200;
const storeCli = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../store-explorer/dist/cli.js",
);

const hash = (file: string) => {
  const h = createHash("sha256").update(fs.readFileSync(file));
  if (fs.existsSync(`${file}-wal`)) h.update(fs.readFileSync(`${file}-wal`));
  return h.digest("hex");
};

describe("lichen-chat on a damaged database (Prosody)", () => {
  let server: XmppTestServer;
  let bob: Awaited<ReturnType<typeof startPeer>>;
  let dir: string;
  let db: string;
  const cli = (...args: string[]) => runCli(db, args);

  beforeAll(async () => {
    requireBuiltCli();
    if (!fs.existsSync(storeCli)) throw new Error(`${storeCli} is missing: build first`);
    server = await startProsody();
    await server.registerUser("alice", "alicepw");
    await server.registerUser("bob", "bobpw");
    dir = fs.mkdtempSync(path.join(tmpdir(), "lichen-chat-damaged-"));
    db = path.join(dir, "alice.db");
    bob = await startPeer(server.c2sPort, "bob", "bobpw");
  }, T);
  afterAll(async () => {
    await bob?.stop();
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, T);

  it(
    "nse exits 1 naming the damage, send and tail refuse without writing, recover gives a usable file",
    async () => {
      const login = await cli(...loginArgs("alice", server.c2sPort));
      expect(login.code).toBe(0);
      // A chat history of several pages (ids 1..SEEDED), written as the app would have stored it.
      const seed = openStore({ path: db, role: "main" });
      seed.write((tx) => {
        for (let i = 1; i <= SEEDED; i++)
          tx.insert(tables.messages)
            .values({
              accountId: ALICE,
              chatJid: BOB,
              direction: "in",
              fromJid: `${BOB}/desk`,
              body: `old ${i} ${"z".repeat(i % 60)}`,
              sentAt: i,
              storedAt: i,
            })
            .run();
      });
      // The rightmost leaf of messages, where the next stored message goes, and the ids on it.
      const pageSize = seed.sqlite.pragma("page_size", { simple: true }) as number;
      const leaves = seed.sqlite
        .prepare(
          "SELECT pageno AS page, ncell AS cells FROM dbstat WHERE name = 'messages' AND pagetype = 'leaf' ORDER BY path",
        )
        .all() as { page: number; cells: number }[];
      const ids = seed.sqlite
        .prepare("SELECT id FROM messages ORDER BY id")
        .pluck()
        .all() as number[];
      seed.close();
      expect(fs.existsSync(`${db}-wal`) && fs.statSync(`${db}-wal`).size > 0).toBe(false);
      expect(leaves.length).toBeGreaterThan(3);
      const last = leaves.at(-1)!;
      const lostIds = ids.slice(ids.length - last.cells);
      const junk = Buffer.alloc(pageSize);
      for (let i = 0; i < pageSize; i++) junk[i] = (i * 151 + 89) % 251;
      const fd = fs.openSync(db, "r+");
      fs.writeSync(fd, junk, 0, pageSize, (last.page - 1) * pageSize);
      fs.closeSync(fd);

      // Bob writes while no process runs; the push's NSE cannot store it.
      const text = `while damaged ${Math.random().toString(36).slice(2, 8)}`;
      await bob.send(ALICE, text);
      await bob.barrier();
      const nse = await cli("--verbose", "nse", "--linger-ms", "0", "--deadline-ms", "20000");
      expect(nse.code).toBe(1);
      expect(nse.stdout).toBe(""); // no result at all, so no "synced"
      const lines = nse.stderr.trim().split("\n");
      expect(lines.at(-1)).toMatch(/push not handled: database .* is damaged/);
      expect(lines.at(-1)).toContain(`lichen-store recover ${db}`);
      // The resumed stream replays Bob's message; storing it meets the damaged leaf. The session
      // stops at once (store-unavailable, not acknowledged) instead of treating it as a handler
      // failure and replaying it until the deadline.
      const events = lines
        .filter((l) => l.startsWith("{"))
        .map((l) => (JSON.parse(l) as { event: string }).event);
      expect(events).toContain("store.damaged");
      expect(events).toContain("store-unavailable");
      expect(events).not.toContain("stanza-rolled-back");
      expect(fs.existsSync(`${db}-damaged`)).toBe(true);

      // Every later process refuses before writing anything.
      const before = hash(db);
      const send = await cli("send", BOB, "not into a damaged file");
      expect(send.code).toBe(1);
      expect(send.stderr).toMatch(/is damaged .*lichen-store recover/);
      const tail = await cli("tail", BOB);
      expect(tail.code).toBe(1);
      expect(tail.stderr).toMatch(/is damaged/);
      const app = await cli("app");
      expect(app.code).toBe(1);
      expect(app.stderr).toMatch(/is damaged/);
      expect(hash(db)).toBe(before);

      // Recovery into a new file, which then takes the damaged one's place (with its WAL gone).
      const recovered = path.join(dir, "recovered.db");
      const rec = spawnSync(process.execPath, [storeCli, "--json", "recover", db, recovered], {
        encoding: "utf8",
      });
      expect(rec.status).toBe(0);
      const report = JSON.parse(rec.stdout) as {
        ok: boolean;
        tables: { table: string; copied: number; lost: number | null }[];
      };
      expect(report.ok).toBe(true);
      expect(report.tables.find((t) => t.table === "messages")).toMatchObject({
        copied: ids.length - lostIds.length,
        lost: lostIds.length,
      });
      for (const f of [db, `${db}-wal`, `${db}-shm`])
        if (fs.existsSync(f)) fs.renameSync(f, `${f}.damaged`);
      fs.renameSync(recovered, db);

      // lichen-chat uses it: the NSE gets Bob's message (the server kept it: never acknowledged).
      const again = await cli("nse", "--linger-ms", "0", "--deadline-ms", "20000");
      expect(again.stderr).toBe("");
      expect(again.code).toBe(0);
      const result = JSON.parse(again.stdout) as {
        outcome: string;
        notifications: { body?: string }[];
        summary: { chats: { lastBody: string }[] };
      };
      expect(result.outcome).toBe("synced");
      // The push's one notification shows the newest message of its chat (Bob's).
      expect(result.summary.chats.map((c) => c.lastBody)).toContain(text);
      const all = await cli("tail", BOB, "-n", String(SEEDED + 10), "--json");
      expect(all.code).toBe(0);
      const rows = JSON.parse(all.stdout) as { id: number; body: string }[];
      const got = new Set(rows.map((r) => r.id));
      // Messages on intact pages survive, those on the damaged page are gone, and the new one is in.
      expect(ids.filter((id) => !lostIds.includes(id)).every((id) => got.has(id))).toBe(true);
      expect(
        lostIds.some((id) => got.has(id) && rows.find((r) => r.id === id)!.body.startsWith("old")),
      ).toBe(false);
      expect(rows.filter((r) => r.body === text)).toHaveLength(1);

      // 4 KB overwritten in the middle, where the NSE's header check cannot see it: the main app's
      // quick_check at open does, so send exits 1 without writing, and the NSE after it refuses too.
      const middle = (() => {
        const s = openStore({ path: db, role: "nse" });
        try {
          const pages = s.sqlite
            .prepare(
              "SELECT pageno FROM dbstat WHERE name = 'messages' AND pagetype = 'leaf' ORDER BY path",
            )
            .pluck()
            .all() as number[];
          return pages[pages.length >> 1]!;
        } finally {
          s.close();
        }
      })();
      const fd2 = fs.openSync(db, "r+");
      fs.writeSync(fd2, junk, 0, pageSize, (middle - 1) * pageSize);
      fs.closeSync(fd2);
      const damagedAgain = hash(db);
      const send2 = await cli("send", BOB, "not into a damaged file either");
      expect(send2.code).toBe(1);
      expect(send2.stderr).toMatch(/is damaged .*lichen-store recover/);
      expect(hash(db)).toBe(damagedAgain);
      const nse2 = await cli("nse", "--linger-ms", "0");
      expect(nse2.code).toBe(1);
      expect(nse2.stdout).toBe("");
      expect(hash(db)).toBe(damagedAgain);
    },
    T,
  );
});
