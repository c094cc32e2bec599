import { describe, expect, it } from "vitest";
import { AppServerMetrics } from "../src/metrics.js";

// The hot-path counters count in a plain Map and fold into prom-client when it collects: every
// read (scrape, get()) must still see every increment, exactly once.
describe("AppServerMetrics counters", () => {
  it("show every increment in the scrape and in get(), once, across several scrapes", async () => {
    const m = new AppServerMetrics();
    m.requests.inc({ outcome: "sent" });
    m.requests.inc({ outcome: "sent" });
    m.requests.inc({ outcome: "queued" }, 2);
    m.providerSends.inc({ app: "monal", result: "delivered" });
    m.providerSends.inc({ app: "monal", result: "transient" });
    m.providerSends.inc({ app: "conversations", result: "delivered" });
    m.replies.inc({ type: "wait" });

    let text = await m.registry.metrics();
    expect(text).toContain('lichen_push_requests_total{outcome="sent"} 2');
    expect(text).toContain('lichen_push_requests_total{outcome="queued"} 2');
    expect(text).toContain('lichen_push_provider_sends_total{app="monal",result="delivered"} 1');
    expect(text).toContain('lichen_push_provider_sends_total{app="monal",result="transient"} 1');
    expect(text).toContain(
      'lichen_push_provider_sends_total{app="conversations",result="delivered"} 1',
    );
    expect(text).toContain('lichen_push_iq_replies_total{type="wait"} 1');

    m.requests.inc({ outcome: "sent" });
    text = await m.registry.metrics();
    // folded once: a second scrape adds only what came after the first
    expect(text).toContain('lichen_push_requests_total{outcome="sent"} 3');
    expect(text).toContain('lichen_push_requests_total{outcome="queued"} 2');

    m.requests.inc({ outcome: "sent" });
    const values = (await m.requests.get()).values;
    expect(values.find((v) => v.labels.outcome === "sent")?.value).toBe(4);
    expect(values.find((v) => v.labels.outcome === "queued")?.value).toBe(2);
  });

  it("counts repeated and alternating labels, also the same labels right after a scrape", async () => {
    // inc() skips the key and the Map when the labels repeat the previous call's: that shortcut
    // must not outlive a fold (the entry it points at is gone) nor mix two-label combinations
    const m = new AppServerMetrics();
    m.providerSends.inc({ app: "a", result: "delivered" });
    m.providerSends.inc({ app: "a", result: "delivered" });
    m.providerSends.inc({ app: "a", result: "transient" });
    m.providerSends.inc({ app: "b", result: "transient" });
    m.providerSends.inc({ app: "a", result: "delivered" }, 3);
    m.requests.inc({ outcome: "sent" });
    let text = await m.registry.metrics();
    expect(text).toContain('lichen_push_provider_sends_total{app="a",result="delivered"} 5');
    expect(text).toContain('lichen_push_provider_sends_total{app="a",result="transient"} 1');
    expect(text).toContain('lichen_push_provider_sends_total{app="b",result="transient"} 1');
    m.requests.inc({ outcome: "sent" }); // the same labels as the last call before the scrape
    m.providerSends.inc({ app: "a", result: "delivered" });
    text = await m.registry.metrics();
    expect(text).toContain('lichen_push_requests_total{outcome="sent"} 2');
    expect(text).toContain('lichen_push_provider_sends_total{app="a",result="delivered"} 6');
  });

  it("refuses a negative increment at the call, as prom-client does", () => {
    const m = new AppServerMetrics();
    expect(() => m.requests.inc({ outcome: "sent" }, -1)).toThrow(/not possible to decrease/);
  });
});
