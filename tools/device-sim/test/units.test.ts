// The simulator's parts that need no server: the rules' scaling, the NSE output adapter, and
// hostile deliveries (no NSE is started for a push that is not for this device or malformed).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "@lichen/store";
import { describe, expect, it } from "vitest";
import {
  DeviceSimulator,
  displayedContents,
  IOS_RULES,
  parseNsePushLine,
  scaledRules,
} from "../src/index.js";

describe("device-sim units", () => {
  it("scaledRules multiplies every duration and refuses a scale that is not > 0", () => {
    const r = scaledRules(0.1, { nseLingerMs: 7 });
    expect(r.nseKillMs).toBe(IOS_RULES.nseKillMs / 10);
    expect(r.backgroundTaskBudgetMs).toBe(30_000);
    expect(r.swipeGraceMs).toEqual([100, 200]);
    expect(r.nseLingerMs).toBe(7);
    for (const bad of [0, -1, Number.NaN]) expect(() => scaledRules(bad)).toThrow(RangeError);
  });

  it("the adapter shows an NSE's alerts, nothing for a silenced push, and ignores lines that are not results", () => {
    const line = parseNsePushLine(
      JSON.stringify({
        pushId: "p1",
        outcome: "synced",
        notifications: [
          { kind: "alert", title: "bob@localhost", body: "hi", threadId: "t", accountId: "a" },
          { kind: "silent", reason: "no-new-messages" },
        ],
      }),
    );
    expect(line && displayedContents(line)).toEqual([
      { title: "bob@localhost", body: "hi", threadId: "t" },
    ]);
    for (const junk of ["", "not json", "{broken", '{"outcome":"synced"}', "[1,2]"])
      expect(parseNsePushLine(junk), junk).toBeNull();
  });

  it("deliveries for another token, without aps, or with a garbage payload start nothing and show nothing", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "lichen-device-units-")), "a.db");
    openStore({ path: db, role: "main" }).close();
    const sim = new DeviceSimulator({ db, token: "aa", seed: 1 });
    try {
      const base = { headers: {}, bytes: 0, at: Date.now() };
      sim.deliver({ ...base, token: "bb", apnsId: "x1", payload: { aps: { alert: "hi" } } });
      sim.deliver({ ...base, token: "aa", apnsId: "x2", payload: null });
      sim.deliver({ ...base, token: "aa", apnsId: "x3", payload: { aps: "garbage" } });
      sim.deliver({ ...base, token: "aa", apnsId: "x4", payload: "<xml/>" });
      expect(sim.nsePids).toEqual([]);
      expect(sim.displayed).toEqual([]);
      expect(sim.timeline.filter((e) => /dropped/.test(e.what))).toHaveLength(3);
    } finally {
      await sim.stop();
    }
  });
});
