import { describe, expect, it } from "vitest";
import { type BlacklistChange, DomainBlacklist, TokenBlacklist } from "../src/blacklist.js";
import { ManualClock } from "../src/clock.js";

const H = 3_600_000;
const D = 24 * H;

function tokens() {
  const clock = new ManualClock();
  const changes: BlacklistChange[] = [];
  const bl = new TokenBlacklist({
    clock,
    firstBlockMs: 24 * H,
    repeatBlockMs: 5 * D,
    hitExtensionMs: 10 * 60_000,
    memoryMs: 30 * D,
  });
  bl.onChange((c) => changes.push(c));
  return { clock, bl, changes };
}

describe("TokenBlacklist", () => {
  it("blocks for 24 h, then 5 days on a repeat", () => {
    const { clock, bl } = tokens();
    const t0 = clock.now();
    expect(bl.block("h1").until).toBe(t0 + 24 * H);
    expect(bl.isBlocked("h1")).toBe(true);
    clock.advance(24 * H);
    expect(bl.isBlocked("h1")).toBe(false);
    clock.advance(2 * D);
    const again = bl.block("h1");
    expect(again.strikes).toBe(2);
    expect(again.until).toBe(clock.now() + 5 * D);
  });

  it("an unblock leaves a tombstone: older entries and entries of unknown age are not merged back, newer blocks are; it expires", () => {
    const { clock, bl, changes } = tokens();
    const blockedAt = clock.now();
    const stale = bl.block("h");
    clock.advance(60_000);
    expect(bl.unblock("h")).toBe(true);
    expect(changes.at(-1)).toEqual({
      kind: "token-unblock",
      hash: "h",
      at: clock.now(),
      origin: "local",
    });
    // a node that missed the unblock sends its entry back: ignored
    expect(bl.merge("h", stale.until, stale.strikes, "remote", blockedAt)).toBe(false);
    expect(bl.merge("h", stale.until, stale.strikes, "remote")).toBe(false);
    expect(bl.isBlocked("h")).toBe(false);
    // a remote unblock older than a local block reported after it leaves the block
    clock.advance(1000);
    bl.block("h");
    expect(bl.unblock("h", "remote", blockedAt)).toBe(false);
    expect(bl.isBlocked("h")).toBe(true);
    // a block reported after the unblock, from another node: applied
    expect(bl.merge("k", clock.now() + D, 1, "remote", clock.now())).toBe(true);
    bl.unblock("k");
    expect(bl.merge("k", clock.now() + 2 * D, 1, "remote", clock.now() + 1)).toBe(true);
    // tombstones are kept as long as an older block could last, then forgotten
    expect(bl.tombstoneMs).toBe(5 * D + 10 * 60_000);
    clock.advance(bl.tombstoneMs + 1);
    bl.sweep();
    expect(bl.unblockedSince("h")).toBeUndefined();
  });

  it("a hit near the end of the block extends it; a hit early does not", () => {
    const { clock, bl, changes } = tokens();
    bl.block("h");
    changes.length = 0;
    expect(bl.hit("h")).toBe(true);
    expect(changes).toEqual([]); // far from the end
    clock.advance(24 * H - 4 * 60_000); // 4 min left (< 5 min = half the extension)
    expect(bl.hit("h")).toBe(true);
    expect(bl.get("h")!.until).toBe(clock.now() + 10 * 60_000);
    expect(changes).toHaveLength(1);
    clock.advance(9 * 60_000);
    expect(bl.isBlocked("h")).toBe(true);
    clock.advance(60_000);
    expect(bl.hit("h")).toBe(false);
    expect(bl.hit("unknown")).toBe(false);
  });

  it("merge is max-based and idempotent, so nodes converge in any order", () => {
    const a = tokens();
    const b = tokens();
    const updates = [
      ["x", 100, 1],
      ["x", 50, 2],
      ["y", 70, 1],
    ] as const;
    for (const [h, u, s] of updates) a.bl.merge(h, a.clock.now() + u, s);
    for (const [h, u, s] of [...updates].reverse()) b.bl.merge(h, b.clock.now() + u, s);
    expect([...a.bl.all()]).toEqual(expect.arrayContaining([...b.bl.all()]));
    expect(a.bl.get("x")).toEqual({ until: a.clock.now() + 100, strikes: 2 });
    expect(a.bl.merge("x", a.clock.now() + 100, 2)).toBe(false);
    expect(a.changes.every((c) => c.origin === "remote")).toBe(true);
  });

  it("sweep forgets only entries expired longer than the memory", () => {
    const { clock, bl } = tokens();
    bl.block("old");
    clock.advance(24 * H + 30 * D + 1);
    bl.block("new");
    expect(bl.sweep()).toEqual(["old"]);
    expect(bl.size).toBe(1);
  });
});

function domains(threshold = 3, active: Record<string, number> = {}) {
  const clock = new ManualClock();
  const changes: BlacklistChange[] = [];
  const dl = new DomainBlacklist({
    clock,
    windowMs: H,
    threshold,
    ratio: 0.02,
    blockFactor: 2,
    activeTokens: (d) => active[d] ?? 0,
    blockMs: 6 * H,
  });
  dl.onChange((c) => changes.push(c));
  return { clock, dl, changes };
}

describe("DomainBlacklist", () => {
  it("restricts a domain at N distinct bad tokens in the window, blocks it at blockFactor × N", () => {
    const { clock, dl, changes } = domains(3);
    expect(dl.recordBadToken("evil.example", "t1")).toBe(false);
    expect(dl.recordBadToken("evil.example", "t1")).toBe(false); // same token twice counts once
    expect(dl.recordBadToken("evil.example", "t2")).toBe(false);
    expect(dl.state("evil.example")).toBe("ok");
    expect(dl.recordBadToken("evil.example", "t3")).toBe(true);
    expect(dl.state("evil.example")).toBe("restricted");
    expect(dl.isBlocked("evil.example")).toBe(false);
    expect(dl.state("good.example")).toBe("ok");
    expect(dl.recordBadToken("evil.example", "t4")).toBe(false);
    expect(dl.recordBadToken("evil.example", "t5")).toBe(false);
    expect(dl.recordBadToken("evil.example", "t6")).toBe(true);
    expect(dl.state("evil.example")).toBe("blocked");
    expect(changes.filter((c) => c.kind === "domain")).toEqual([
      { kind: "domain", domain: "evil.example", until: clock.now() + 6 * H, origin: "local" },
    ]);
    clock.advance(H); // events aged out: the restriction ends by itself; the block lasts 6 h
    expect(dl.isRestricted("evil.example")).toBe(false);
    expect(dl.state("evil.example")).toBe("blocked");
    clock.advance(5 * H);
    expect(dl.state("evil.example")).toBe("ok");
  });

  it("the threshold scales with the domain's active tokens (ratio), with the floor for small ones", () => {
    const { dl } = domains(3, { "big.example": 1000, "small.example": 10 });
    expect(dl.threshold("small.example")).toBe(3);
    expect(dl.threshold("big.example")).toBe(20); // 2 % of 1000
    for (let i = 0; i < 19; i++) dl.recordBadToken("big.example", `b${i}`);
    for (let i = 0; i < 3; i++) dl.recordBadToken("small.example", `s${i}`);
    expect(dl.state("big.example")).toBe("ok"); // 19 of 1000: ordinary churn
    expect(dl.state("small.example")).toBe("restricted");
    expect(dl.recordBadToken("big.example", "b19")).toBe(true);
    expect(dl.status("big.example")).toEqual({
      domain: "big.example",
      state: "restricted",
      badTokens: 20,
      activeTokens: 1000,
      threshold: 20,
    });
  });

  it("an unblock replayed later (a resync's tombstone) drops only what predates it", () => {
    const { clock, dl } = domains(2);
    const unblockAt = clock.now();
    clock.advance(1000);
    for (const t of ["t1", "t2", "t3", "t4"]) dl.recordBadToken("d", t); // after the unblock
    dl.block("e", clock.now() + H);
    expect([dl.state("d"), dl.state("e")]).toEqual(["blocked", "blocked"]);
    expect(dl.unblock("d", "remote", unblockAt)).toBe(false);
    expect(dl.unblock("e", "remote", unblockAt)).toBe(false);
    expect([dl.state("d"), dl.countInWindow("d"), dl.state("e")]).toEqual([
      "blocked",
      4,
      "blocked",
    ]);
    expect(dl.unblockedSince("d")).toBe(unblockAt);
    // a replay of a newer unblock drops them
    expect(dl.unblock("d", "remote", clock.now())).toBe(true);
    expect([dl.state("d"), dl.countInWindow("d")]).toEqual(["ok", 0]);
  });

  it("an operator unblock lifts block and restriction; older events and blocks are not re-applied", () => {
    const { clock, dl, changes } = domains(2);
    const t0 = clock.now();
    for (const t of ["t1", "t2", "t3", "t4"]) dl.recordBadToken("d", t);
    expect(dl.state("d")).toBe("blocked");
    const until = dl.blockedUntil("d")!;
    clock.advance(1000);
    expect(dl.unblock("d")).toBe(true);
    expect(dl.state("d")).toBe("ok");
    expect(changes.at(-1)).toEqual({
      kind: "domain-unblock",
      domain: "d",
      at: clock.now(),
      origin: "local",
    });
    // another node or the Redis resync brings the old state back: ignored
    expect(dl.merge("d", until)).toBe(false);
    expect(dl.recordBadToken("d", "t1", t0, "remote")).toBe(false);
    expect(dl.state("d")).toBe("ok");
    // new evidence counts again
    clock.advance(1);
    dl.recordBadToken("d", "n1");
    dl.recordBadToken("d", "n2");
    expect(dl.state("d")).toBe("restricted");
    // and an operator block is a block
    dl.block("e", clock.now() + H);
    expect(dl.state("e")).toBe("blocked");
    expect(dl.statuses().map((s) => [s.domain, s.state])).toEqual([
      ["d", "restricted"],
      ["e", "blocked"],
    ]);
  });

  it("the window slides: old events stop counting", () => {
    const { clock, dl } = domains(3);
    dl.recordBadToken("d", "t1");
    clock.advance(40 * 60_000);
    dl.recordBadToken("d", "t2");
    clock.advance(25 * 60_000); // t1 now 65 min old
    expect(dl.recordBadToken("d", "t3")).toBe(false);
    expect(dl.countInWindow("d")).toBe(2);
    expect(dl.recordBadToken("d", "t4")).toBe(true);
    expect(dl.state("d")).toBe("restricted");
  });

  it("remote events count and a remote block merges by max", () => {
    const { clock, dl } = domains(2);
    dl.recordBadToken("d", "t1", clock.now(), "remote");
    expect(dl.recordBadToken("d", "t2")).toBe(true);
    expect(dl.merge("e", clock.now() + 10)).toBe(true);
    expect(dl.merge("e", clock.now() + 5)).toBe(false);
    expect(dl.blockedUntil("e")).toBe(clock.now() + 10);
  });
});
