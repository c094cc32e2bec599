import { until } from "@lichen/test-kit";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { DomainBlacklist, TokenBlacklist } from "../src/blacklist.js";
import { ManualClock } from "../src/clock.js";
import { DeliveryMemory } from "../src/deliveries.js";
import { AppServerMetrics } from "../src/metrics.js";
import { PushService, type AppSender } from "../src/push-service.js";
import { TokenHasher } from "../src/token.js";

const TOKEN = "a".repeat(64);

function setup(onDelivery: () => void, windowMs = 20_000, custom?: AppSender) {
  const clock = new ManualClock(1_800_000_000_000);
  const metrics = new AppServerMetrics();
  const sent: string[] = [];
  // a sender that always delivers: the fault is in what the pipeline does afterwards
  const sender: AppSender = custom ?? {
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

// The callback path (AppSender.sendWith, the APNs provider's): whatever the sender does, each push
// is answered exactly once and leaves nothing in flight.
describe("PushService with a callback sender", () => {
  const req = { id: "1", domain: "example.org", token: TOKEN, app: undefined, important: true };
  const answers = (service: PushService) => {
    const got: unknown[] = [];
    service.handleWith(req, (reply) => got.push(reply));
    return got;
  };
  const never = () => Promise.reject(new Error("send() must not be used when sendWith exists"));

  it("an answer before sendWith returns, then a throw: answered once, with the answer", async () => {
    const sender: AppSender = {
      attemptTimeoutMs: 1000,
      send: never,
      sendWith: (_job, done) => {
        done({ kind: "delivered" });
        throw new Error("after the answer");
      },
    };
    const { metrics, service } = setup(() => undefined, 20_000, sender);
    expect(answers(service)).toEqual([{ type: "result" }]);
    expect(service.inFlightCount).toBe(0);
    expect(await outcomes(metrics)).toEqual({ sent: 1 });
  });

  it("a later answer, and a second one ignored; a fault in the bookkeeping is answered wait", async () => {
    let answer: ((o: { kind: "delivered" }) => void) | undefined;
    const sender: AppSender = {
      attemptTimeoutMs: 1000,
      send: never,
      sendWith: (_job, done) => {
        answer = done;
      },
    };
    const { metrics, service } = setup(
      () => {
        throw new Error("disk full");
      },
      20_000,
      sender,
    );
    const got = answers(service);
    expect(got).toEqual([]);
    expect(service.inFlightCount).toBe(1);
    answer!({ kind: "delivered" });
    answer!({ kind: "delivered" });
    expect(got).toEqual([
      {
        type: "error",
        error: expect.objectContaining({ type: "wait", condition: "internal-server-error" }),
      },
    ]);
    expect(service.inFlightCount).toBe(0);
    expect(await outcomes(metrics)).toEqual({ internal_error: 1 });
  });

  it("a sender that throws before answering: a transient failure, retried through send()", async () => {
    const tries: string[] = [];
    const sender: AppSender = {
      attemptTimeoutMs: 1000,
      send: () => {
        tries.push("send");
        return Promise.resolve({ kind: "delivered" });
      },
      sendWith: () => {
        tries.push("sendWith");
        throw new Error("socket gone");
      },
    };
    const { clock, metrics, service } = setup(() => undefined, 20_000, sender);
    const got = answers(service);
    await until(() => clock.pendingTimers > 0, "the retry's back-off timer");
    clock.advance(10); // the first back-off
    await until(() => got.length === 1, "the retried push's reply");
    expect(tries).toEqual(["sendWith", "send"]);
    expect(got).toEqual([{ type: "result" }]);
    expect(service.inFlightCount).toBe(0);
    expect(await outcomes(metrics)).toEqual({ sent: 1 });
  });
});
