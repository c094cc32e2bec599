// LinkLiveness decides from bytes read and an injected clock; the real-server behaviour (a
// stalled link found dead and resumed) is in reconnect.test.ts.
import { describe, expect, it } from "vitest";
import { LinkLiveness } from "../src/index.js";

function rig(opts = { idleMs: 1000, timeoutMs: 500 }) {
  let now = 0;
  let bytes = 0;
  const probes: number[] = [];
  const deaths: number[] = [];
  const l = new LinkLiveness(
    {
      bytesRead: () => bytes,
      requestAck: () => probes.push(now),
      dead: (silentMs) => deaths.push(silentMs),
      now: () => now,
    },
    opts,
  );
  l.start();
  l.stop(); // the test drives check() itself
  return {
    l,
    at(t: number, readBytes = 0) {
      now = t;
      bytes += readBytes;
      l.check();
    },
    probes,
    deaths,
  };
}

describe("LinkLiveness", () => {
  it("probes after idleMs of silence and declares the link dead timeoutMs after the probe", () => {
    const r = rig();
    r.at(999);
    expect(r.probes).toEqual([]);
    r.at(1000);
    expect(r.probes).toEqual([1000]);
    r.at(1499);
    r.at(1499);
    expect(r.probes).toEqual([1000]); // one probe outstanding, not one per check
    expect(r.deaths).toEqual([]);
    r.at(1500);
    expect(r.deaths).toEqual([1500]);
  });

  it("any byte read is a sign of life: it cancels the probe and restarts the idle period", () => {
    const r = rig();
    r.at(1000); // probe
    r.at(1400, 30); // the <a/> (or anything) arrives
    r.at(2000);
    r.at(2399);
    expect(r.probes).toEqual([1000]);
    r.at(2400); // 1000 ms after the last byte
    expect(r.probes).toEqual([1000, 2400]);
    // A large stanza trickling in on a slow link keeps it alive past timeoutMs.
    for (let t = 2500; t <= 6000; t += 250) r.at(t, 100);
    expect(r.deaths).toEqual([]);
  });

  it("refuses periods that are not positive", () => {
    const io = { bytesRead: () => 0, requestAck: () => {}, dead: () => {} };
    expect(() => new LinkLiveness(io, { idleMs: 0 })).toThrow(RangeError);
    expect(() => new LinkLiveness(io, { timeoutMs: Number.NaN })).toThrow(RangeError);
  });
});
