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

function domains(threshold = 3) {
  const clock = new ManualClock();
  const changes: BlacklistChange[] = [];
  const dl = new DomainBlacklist({ clock, windowMs: H, threshold, blockMs: 6 * H });
  dl.onChange((c) => changes.push(c));
  return { clock, dl, changes };
}

describe("DomainBlacklist", () => {
  it("blocks a domain after N distinct bad tokens inside the window", () => {
    const { clock, dl, changes } = domains(3);
    expect(dl.recordBadToken("evil.example", "t1")).toBe(false);
    expect(dl.recordBadToken("evil.example", "t1")).toBe(false); // same token twice counts once
    expect(dl.recordBadToken("evil.example", "t2")).toBe(false);
    expect(dl.isBlocked("evil.example")).toBe(false);
    expect(dl.recordBadToken("evil.example", "t3")).toBe(true);
    expect(dl.isBlocked("evil.example")).toBe(true);
    expect(dl.isBlocked("good.example")).toBe(false);
    expect(changes.filter((c) => c.kind === "domain")).toEqual([
      { kind: "domain", domain: "evil.example", until: clock.now() + 6 * H, origin: "local" },
    ]);
    clock.advance(6 * H);
    expect(dl.isBlocked("evil.example")).toBe(false);
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
