import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AppSender } from "../src/push-service.js";
import { pushIq } from "../src/testing/component-server.js";
import { startTestRedis, type TestRedis } from "../src/testing/redis-server.js";
import { startNode, until, type TestNode } from "./helpers/nodes.js";

// Nodes in this test never reach a provider: every request for a synced entry is refused first.
const neverCalled: AppSender = {
  send: () => Promise.reject(new Error("provider must not be reached for a blacklisted token")),
};

describe("multi-node blacklist sync through Redis", { timeout: 120_000 }, () => {
  let redis: TestRedis;
  let nodes: TestNode[] = [];

  beforeAll(async () => {
    redis = await startTestRedis();
    nodes = await Promise.all(
      ["a", "b", "c"].map((id) =>
        startNode(() => neverCalled, { redis: { url: redis.url, keyPrefix: "t:", nodeId: id } }),
      ),
    );
    await until(() => nodes.every((n) => n.server.sync!.connected), "all nodes connected to redis");
  });

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
  });

  it("an entry made on one node is honoured on the others within 1 s", async () => {
    const [a, b, c] = nodes as [TestNode, TestNode, TestNode];
    const token = "1".repeat(64);
    const hash = a.server.hasher.hash(token);
    const applied = [b, c].map(
      (n) =>
        new Promise<number>((resolve) =>
          n.server.sync!.once("applied", () => resolve(performance.now())),
        ),
    );
    const t0 = performance.now();
    a.server.tokens.block(hash, "localhost");
    const times = await Promise.all(applied);
    for (const t of times) expect(t - t0).toBeLessThan(1000);
    expect(b.server.tokens.isBlocked(hash)).toBe(true);
    b.xmpp.send(pushIq({ id: "x1", token }));
    const r = await b.xmpp.waitFor("x1");
    expect(r.type).toBe("error");
    expect(r.raw).toContain("type='cancel'");
    expect(r.raw).toContain("item-not-found");
  });

  it("domain blocks sync too", async () => {
    const [a, , c] = nodes as [TestNode, TestNode, TestNode];
    const applied = new Promise((resolve) => c.server.sync!.once("applied", resolve));
    a.server.domains.merge("spam.example", Date.now() + 3_600_000, "local");
    await applied;
    expect(c.server.domains.isBlocked("spam.example")).toBe(true);
  });

  it("keeps serving while Redis is down and converges after it returns (empty)", async () => {
    const [a, b, c] = nodes as [TestNode, TestNode, TestNode];
    await redis.stop();
    await until(() => nodes.every((n) => !n.server.sync!.connected), "nodes noticed redis is down");
    const tokA = "2".repeat(64);
    const tokC = "3".repeat(64);
    a.server.tokens.block(a.server.hasher.hash(tokA), "localhost");
    c.server.tokens.block(c.server.hasher.hash(tokC), "localhost");
    // Local state is honoured at once, without Redis.
    a.xmpp.send(pushIq({ id: "y1", token: tokA }));
    expect((await a.xmpp.waitFor("y1")).raw).toContain("item-not-found");
    expect(b.server.tokens.isBlocked(b.server.hasher.hash(tokA))).toBe(false);
    await redis.restart();
    const hashes = [tokA, tokC, "1".repeat(64)].map((t) => a.server.hasher.hash(t));
    await until(
      () => nodes.every((n) => hashes.every((h) => n.server.tokens.isBlocked(h))),
      "every node has every entry after redis came back",
    );
    expect(b.server.domains.isBlocked("spam.example")).toBe(true);
  });
});
