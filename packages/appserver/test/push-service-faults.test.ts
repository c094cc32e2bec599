import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { DomainBlacklist, TokenBlacklist } from "../src/blacklist.js";
import { ManualClock } from "../src/clock.js";
import { DeliveryMemory } from "../src/deliveries.js";
import { AppServerMetrics } from "../src/metrics.js";
import { PushService, type AppSender } from "../src/push-service.js";
import { TokenHasher } from "../src/token.js";

const TOKEN = "a".repeat(64);

function setup(onDelivery: () => void, windowMs = 20_000) {
  const clock = new ManualClock(1_800_000_000_000);
  const metrics = new AppServerMetrics();
  const sent: string[] = [];
  // a sender that always delivers: the fault is in what the pipeline does afterwards
  const sender: AppSender = {
    attemptTimeoutMs: 1000,
    send: (job) => {
      sent.push(job.token);
      return Promise.resolve({ kind: "delivered" });
    },
  };
  const service = new PushService({
    clock,
    hasher: new TokenHasher("0123456789abcdef0123456789abcdef"),
    tokens: new TokenBlacklist({
      clock,
      firstBlockMs: 86_400_000,
      repeatBlockMs: 432_000_000,
      hitExtensionMs: 600_000,
      memoryMs: 2_592_000_000,
    }),
    domains: new DomainBlacklist({
      clock,
      windowMs: 3_600_000,
      threshold: 50,
      blockMs: 21_600_000,
    }),
    apps: new Map([["ios", sender]]),
    defaultApp: "ios",
    rateLimitWindowMs: windowMs,
    hardLimitMs: 600_000,
    retry: {
      attempts: 3,
      initialDelayMs: 10,
      maxDelayMs: 50,
      circuitThreshold: 5,
      circuitPauseMs: 30_000,
    },
    logger: pino({ level: "silent" }),
    metrics,
    deliveries: new DeliveryMemory({ clock, healthyMs: 7 * 86_400_000 }),
    onDelivery,
  });
  return { clock, metrics, service, sent };
}

const outcomes = async (m: AppServerMetrics) =>
  Object.fromEntries((await m.requests.get()).values.map((v) => [v.labels.outcome, v.value]));

// A fault after the provider answered (here: persisting the delivery throws) must not reject or
// leak: the push is answered wait/internal-server-error and counted, the in-flight count returns
// to zero, and a queued push hit by the same fault is logged, not an unhandled rejection.
describe("PushService faults after the send", () => {
  it("a direct push: wait/internal-server-error, counted once, nothing left in flight", async () => {
    const { metrics, service, sent } = setup(() => {
      throw new Error("disk full");
    });
    const reply = await service.handle({
      id: "1",
      domain: "example.org",
      token: TOKEN,
      app: undefined,
      important: true,
    });
    expect(sent).toEqual([TOKEN]);
    expect(reply).toMatchObject({
      type: "error",
      error: { type: "wait", condition: "internal-server-error" },
    });
    expect(service.inFlightCount).toBe(0);
    expect(await outcomes(metrics)).toEqual({ internal_error: 1 });
  });

  it("a queued push: the fault is caught when it falls due, the service closes cleanly", async () => {
    let faults = 0;
    // a window past the healthy-token refresh (1 h): the queued delivery is persisted too
    const { clock, metrics, service, sent } = setup(() => {
      if (++faults > 1) throw new Error("disk full"); // the first (direct) delivery persists
    }, 3_600_001);
    const req = { id: "1", domain: "example.org", token: TOKEN, app: undefined, important: true };
    expect(await service.handle(req)).toEqual({ type: "result" });
    expect(await service.handle({ ...req, id: "2" })).toEqual({ type: "result" }); // queued
    clock.advance(3_600_001);
    await service.close(); // waits for the queued send that just started
    expect(sent).toEqual([TOKEN, TOKEN]);
    expect(service.inFlightCount).toBe(0);
    expect(await outcomes(metrics)).toEqual({ sent: 1, queued: 1 });
  });
});
