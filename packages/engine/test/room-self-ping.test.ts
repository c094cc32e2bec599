// RoomSelfPinger's decisions with an injected clock (no servers; the real-room path is in
// muc-invite.test.ts): only rooms silent for idleMs are pinged, once per idle period.
import { describe, expect, it } from "vitest";
import { RoomSelfPinger } from "../src/index.js";

describe("RoomSelfPinger", () => {
  it("pings a joined room silent for idleMs; traffic from a room postpones it; left rooms are forgotten", () => {
    let now = 0;
    let joined = ["a@muc", "b@muc"];
    const pings: string[][] = [];
    const p = new RoomSelfPinger(
      { joinedRooms: () => joined, ping: (rooms) => pings.push(rooms) },
      { idleMs: 100, now: () => now },
    );
    p.check(); // both rooms seen for the first time: their idle period starts now
    now = 99;
    p.seen("b@muc"); // b talks
    p.check();
    expect(pings).toEqual([]);
    now = 100;
    p.check();
    expect(pings).toEqual([["a@muc"]]);
    now = 150;
    p.check(); // a was just pinged: not again within idleMs
    expect(pings).toEqual([["a@muc"]]);
    now = 199;
    p.seen("c@muc"); // not a joined room: ignored (bounded memory)
    p.check();
    expect(pings).toEqual([["a@muc"], ["b@muc"]]);
    joined = ["a@muc"]; // b left
    now = 1000;
    p.check();
    expect(pings).toEqual([["a@muc"], ["b@muc"], ["a@muc"]]);
    expect(
      () => new RoomSelfPinger({ joinedRooms: () => [], ping: () => {} }, { idleMs: 0 }),
    ).toThrow(RangeError);
  });
});
