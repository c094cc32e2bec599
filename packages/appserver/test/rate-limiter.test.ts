import { describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { RateLimiter } from "../src/rate-limiter.js";

function setup(windowMs = 20_000) {
  const clock = new ManualClock();
  const fired: { key: string; item: number; at: number }[] = [];
  const rl = new RateLimiter<number>({
    clock,
    windowMs,
    onDue: (key, item) => fired.push({ key, item, at: clock.now() }),
  });
  return { clock, rl, fired };
}

describe("RateLimiter", () => {
  it("burst of 10: 1 now, 1 queued for 20 s after the first, 8 dropped", () => {
    const { clock, rl, fired } = setup();
    const t0 = clock.now();
    const decisions = Array.from({ length: 10 }, (_, i) => rl.check("tok", i));
    expect(decisions[0]).toBe("send");
    expect(decisions[1]).toBe("queued");
    expect(decisions.slice(2).every((d) => d === "dropped")).toBe(true);
    clock.advance(19_999);
    expect(fired).toEqual([]);
    clock.advance(1);
    expect(fired).toEqual([{ key: "tok", item: 1, at: t0 + 20_000 }]);
    clock.advance(60_000);
    expect(fired).toHaveLength(1);
  });

  it("queued push goes out 20 s after the last send, and resets the window", () => {
    const { clock, rl, fired } = setup();
    expect(rl.check("a", 1)).toBe("send");
    clock.advance(15_000);
    expect(rl.check("a", 2)).toBe("queued"); // due at +20 s, i.e. 5 s from now
    clock.advance(5_000);
    expect(fired.map((f) => f.item)).toEqual([2]);
    // the queued send counts as "last": another request 10 s later is queued, not sent
    clock.advance(10_000);
    expect(rl.check("a", 3)).toBe("queued");
    clock.advance(10_000);
    expect(fired.map((f) => f.item)).toEqual([2, 3]);
    clock.advance(20_000);
    expect(rl.check("a", 4)).toBe("send");
  });

  it("tokens are independent", () => {
    const { rl } = setup();
    expect(rl.check("a", 1)).toBe("send");
    expect(rl.check("b", 1)).toBe("send");
    expect(rl.check("a", 2)).toBe("queued");
    expect(rl.check("b", 2)).toBe("queued");
  });

  it("window is configurable", () => {
    const { clock, rl, fired } = setup(5_000);
    rl.check("a", 1);
    rl.check("a", 2);
    clock.advance(5_000);
    expect(fired).toHaveLength(1);
    clock.advance(5_000);
    expect(rl.check("a", 3)).toBe("send");
  });

  it("hard limit holds every push back for the given time and moves the queued one", () => {
    const { clock, rl, fired } = setup();
    expect(rl.check("a", 1)).toBe("send");
    expect(rl.check("a", 2)).toBe("queued");
    rl.hardLimit("a", 600_000);
    clock.advance(20_000);
    expect(fired).toEqual([]);
    expect(rl.check("a", 3)).toBe("dropped");
    clock.advance(580_000);
    expect(fired.map((f) => f.item)).toEqual([2]);
    clock.advance(20_000);
    expect(rl.check("a", 4)).toBe("send");
  });

  it("drain and restore keep queued pushes", () => {
    const { clock, rl, fired } = setup();
    rl.check("a", 1);
    rl.check("a", 2);
    const drained = rl.drainQueued();
    expect(drained).toEqual([{ key: "a", due: clock.now() + 20_000, item: 2 }]);
    expect(clock.pendingTimers).toBe(0);
    const { clock: c2, rl: rl2, fired: f2 } = setup();
    rl2.restoreQueued("a", c2.now() + 3_000, 2);
    expect(rl2.check("a", 5)).toBe("dropped");
    c2.advance(3_000);
    expect(f2.map((f) => f.item)).toEqual([2]);
    expect(fired).toEqual([]);
  });

  it("sweep forgets idle tokens in bounded steps", () => {
    const { clock, rl } = setup();
    for (let i = 0; i < 100; i++) rl.check(`t${i}`, i);
    rl.check("t0", 0); // queued: must survive the sweep
    clock.advance(40_001);
    let removed = 0;
    for (let i = 0; i < 20; i++) removed += rl.sweep(10);
    expect(removed).toBe(99);
    expect(rl.size).toBe(1);
  });

  it("many tokens with queued pushes fire in due order from one timer", () => {
    const { clock, rl, fired } = setup();
    for (let i = 0; i < 50; i++) {
      rl.check(`k${i}`, i);
      clock.advance(100);
    }
    for (let i = 49; i >= 0; i--) expect(rl.check(`k${i}`, 1000 + i)).toBe("queued");
    expect(clock.pendingTimers).toBe(1);
    clock.advance(30_000);
    expect(fired.map((f) => f.key)).toEqual(Array.from({ length: 50 }, (_, i) => `k${i}`));
    expect(fired.every((f, i) => f.at === fired[0]!.at + i * 100)).toBe(true);
  });
});
