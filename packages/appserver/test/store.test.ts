import Database from "better-sqlite3";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AppServerStore } from "../src/db/store.js";

const H1 = "0123456789abcdef0123456789abcdef";
const H2 = "fedcba9876543210fedcba9876543210";

describe("AppServerStore", () => {
  it("persists max-merged changes and survives reopening", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "lichen-store-")), "s.sqlite");
    const s = new AppServerStore(file);
    s.record({ kind: "token", hash: H1, until: 2000, strikes: 1, origin: "local" });
    s.record({ kind: "token", hash: H1, until: 1500, strikes: 2, origin: "remote" });
    s.record({ kind: "domain", domain: "evil.example", until: 9000, origin: "local" });
    s.record({ kind: "domain-event", domain: "evil.example", hash: H2, at: 42, origin: "local" });
    await new Promise((r) => setImmediate(r));
    s.saveQueued([
      {
        tokenHash: H2,
        sealedToken: "c2VhbGVk",
        app: "monal",
        domain: "d.example",
        important: true,
        due: 77,
      },
    ]);
    s.close();
    const s2 = new AppServerStore(file);
    const st = s2.load();
    expect(st.tokens).toEqual([{ hash: H1, until: 2000, strikes: 2 }]);
    expect(st.domains).toEqual([{ domain: "evil.example", until: 9000 }]);
    expect(st.events).toEqual([{ domain: "evil.example", hash: H2, at: 42 }]);
    expect(st.queued).toEqual([
      {
        tokenHash: H2,
        sealedToken: "c2VhbGVk",
        app: "monal",
        domain: "d.example",
        important: true,
        due: 77,
      },
    ]);
    expect(st.rejected).toEqual([]);
    s2.prune(3000, 0, 0);
    expect(s2.load().tokens).toEqual([]);
    s2.close();
  });

  it("keeps unblock tombstones; an unblock deletes only blocks from before it", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "lichen-store-")), "s.sqlite");
    const s = new AppServerStore(file);
    s.record({ kind: "token", hash: H1, until: 9000, strikes: 1, since: 100, origin: "local" });
    s.record({ kind: "token", hash: H2, until: 9000, strikes: 1, since: 500, origin: "local" });
    s.record({ kind: "token-unblock", hash: H1, at: 300, origin: "local" });
    s.record({ kind: "token-unblock", hash: H2, at: 300, origin: "local" });
    s.record({ kind: "token-unblock", hash: H2, at: 200, origin: "remote" }); // older: max wins
    s.record({ kind: "domain-unblock", domain: "d.example", at: 400, origin: "local" });
    await new Promise((r) => setImmediate(r));
    s.close();
    const s2 = new AppServerStore(file);
    const st = s2.load();
    expect(st.tokens).toEqual([{ hash: H2, until: 9000, strikes: 1, since: 500 }]);
    expect(st.tokenUnblocks).toEqual([
      { hash: H1, at: 300 },
      { hash: H2, at: 300 },
    ]);
    expect(st.domainUnblocks).toEqual([{ domain: "d.example", at: 400 }]);
    // a domain tombstone replayed later (older than the block's write) leaves the block
    s2.record({ kind: "domain", domain: "e.example", until: 9000, origin: "local" });
    s2.record({ kind: "domain-unblock", domain: "e.example", at: 1, origin: "remote" });
    await new Promise((r) => setImmediate(r));
    expect(s2.load().domains).toEqual([{ domain: "e.example", until: 9000 }]);
    s2.record({ kind: "domain-unblock", domain: "e.example", at: Date.now() + 1, origin: "local" });
    await new Promise((r) => setImmediate(r));
    expect(s2.load().domains).toEqual([]);
    s2.prune(0, 0, 0, 0, 301, 399);
    expect(s2.load().tokenUnblocks).toEqual([]);
    expect(s2.load().domainUnblocks).toEqual([
      { domain: "d.example", at: 400 },
      { domain: "e.example", at: expect.any(Number) },
    ]);
    s2.close();
  });

  it("reports corrupt rows and still loads the good ones", () => {
    const file = join(mkdtempSync(join(tmpdir(), "lichen-store-")), "s.sqlite");
    new AppServerStore(file).close();
    const raw = new Database(file);
    const tok = raw.prepare(
      "INSERT INTO token_blacklist (hash, until, strikes, updated_at, since) VALUES (?, ?, ?, ?, ?)",
    );
    tok.run(H1, 5000, 1, 0, null);
    tok.run("not-a-hash", 5000, 1, 0, null);
    tok.run(H2, "tomorrow", 1, 0, null);
    raw.prepare("INSERT INTO token_unblocks VALUES (?, ?)").run(H1, "yesterday");
    raw
      .prepare(
        "INSERT INTO queued_pushes (token_hash, sealed_token, app, domain, important, due) VALUES (?, ?, ?, ?, ?, ?)",
      )
      .run(H2, "x", "a", "d", 7, 1);
    raw.close();
    const s = new AppServerStore(file);
    const st = s.load();
    expect(st.tokens).toEqual([{ hash: H1, until: 5000, strikes: 1 }]);
    expect(st.rejected).toEqual([
      { table: "token_blacklist", reason: "malformed row" },
      { table: "token_blacklist", reason: "malformed row" },
      { table: "token_unblocks", reason: "malformed row" },
      { table: "queued_pushes", reason: "malformed row" },
    ]);
    s.close();
  });

  it("writes a batch of deliveries: every row kept, the latest time per token", () => {
    // 150 deliveries in one batch, with one token delivered twice early on (from two domains) and
    // once more at the end with an older time
    const file = join(mkdtempSync(join(tmpdir(), "lichen-store-")), "s.sqlite");
    const s = new AppServerStore(file);
    const hash = (i: number) => i.toString(16).padStart(32, "0");
    for (let i = 0; i < 148; i++) {
      s.recordDelivery(hash(i), `d${i % 3}.example`, 1000 + i);
      // hash(5) again, from another domain: the later delivery wins
      if (i === 20) s.recordDelivery(hash(5), "moved.example", 2000);
    }
    s.recordDelivery(hash(7), "old.example", 10); // an older time does not win
    s.close();
    const s2 = new AppServerStore(file);
    const got = new Map(s2.load().deliveries.map((d) => [d.hash, d]));
    s2.close();
    expect(got.size).toBe(148);
    for (let i = 0; i < 148; i++) {
      if (i === 5 || i === 7) continue;
      expect(got.get(hash(i))).toEqual({
        hash: hash(i),
        domain: `d${i % 3}.example`,
        at: 1000 + i,
      });
    }
    expect(got.get(hash(5))).toEqual({ hash: hash(5), domain: "moved.example", at: 2000 });
    expect(got.get(hash(7))).toMatchObject({ hash: hash(7), at: 1007 });
  });
});
