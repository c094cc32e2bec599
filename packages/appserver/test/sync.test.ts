import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pushIq } from "../src/testing/component-server.js";
import { startRedis, type RedisTestServer } from "@lichen/test-servers";
import { startApns, type ApnsHarness } from "./helpers/apns.js";
import { startNode, until, type TestNode } from "./helpers/nodes.js";

const adminToken = (n: TestNode): string =>
  readFileSync(join(n.dataDir, "admin-token"), "utf8").trim();

describe("multi-node blacklist sync through Redis (3 nodes)", { timeout: 120_000 }, () => {
  let redis: RedisTestServer;
  let apns: ApnsHarness;
  let nodes: TestNode[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    apns = await startApns();
    nodes = await Promise.all(
      ["a", "b", "c"].map((id, i) =>
        startNode(apns.createSender, {
          apps: { default: apns.app(i) },
          redis: { url: redis.url, keyPrefix: "t:", nodeId: id },
          blacklist: { domain: { threshold: 3 } },
        }),
      ),
    );
    await until(() => nodes.every((n) => n.server.sync!.connected), "all nodes connected to redis");
  });

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
    await apns?.stop();
  });

  it("a token reported invalid on one node is honoured on the others within 1 s", async () => {
    const [a, b, c] = nodes as [TestNode, TestNode, TestNode];
    const token = "1".repeat(64);
    const hash = a.server.hasher.hash(token);
    apns.script(token, "unregistered");
    const t0 = performance.now();
    const applied = [b, c].map(
      (n) =>
        new Promise<number>((resolve) =>
          n.server.sync!.once("applied", () => resolve(performance.now())),
        ),
    );
    a.xmpp.send(pushIq({ id: "a1", token }));
    expect((await a.xmpp.waitFor("a1")).raw).toContain("reports this token invalid");
    const times = await Promise.all(applied);
    // measured from the IQ (an upper bound: it includes the provider round trip)
    for (const t of times) expect(t - t0).toBeLessThan(1000);
    expect(b.server.tokens.isBlocked(hash)).toBe(true);
    expect(c.server.tokens.isBlocked(hash)).toBe(true);
    b.xmpp.send(pushIq({ id: "b1", token }));
    const r = await b.xmpp.waitFor("b1");
    expect(r.raw).toContain("<error type='cancel'><item-not-found");
    expect(r.raw).toContain("token is blacklisted");
    expect(apns.deliveries(token, { includeRejected: true })).toHaveLength(1); // only node a asked
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
    process.kill(redis.pid, "SIGKILL"); // Redis dies; restart() below brings it back, empty
    await until(() => nodes.every((n) => !n.server.sync!.connected), "nodes noticed redis is down");
    const tokA = "2".repeat(64);
    const tokA2 = "5".repeat(64);
    const tokC = "3".repeat(64);
    apns.script(tokA, "bad-device-token");
    apns.script(tokA2, "unregistered");
    apns.script(tokC, "unregistered");
    const from = "flaky.example";
    a.xmpp.send(pushIq({ id: "y1", token: tokA, from }));
    a.xmpp.send(pushIq({ id: "y0", token: tokA2, from }));
    c.xmpp.send(pushIq({ id: "y2", token: tokC, from }));
    expect((await a.xmpp.waitFor("y1")).raw).toContain("reports this token invalid");
    expect((await a.xmpp.waitFor("y0")).raw).toContain("reports this token invalid");
    expect((await c.xmpp.waitFor("y2")).raw).toContain("reports this token invalid");
    // 2 + 1 bad tokens of flaky.example on two nodes: below the threshold (3) on each
    expect(nodes.some((n) => n.server.domains.isRestricted(from))).toBe(false);
    // local state is honoured at once, without Redis; the others do not know yet
    a.xmpp.send(pushIq({ id: "y3", token: tokA }));
    expect((await a.xmpp.waitFor("y3")).raw).toContain("token is blacklisted");
    expect(b.server.tokens.isBlocked(b.server.hasher.hash(tokA))).toBe(false);
    // a healthy push still goes out while Redis is down
    b.xmpp.send(pushIq({ id: "y4", token: "4".repeat(64) }));
    expect((await b.xmpp.waitFor("y4")).type).toBe("result");
    await redis.restart();
    const hashes = [tokA, tokC, "1".repeat(64)].map((t) => a.server.hasher.hash(t));
    await until(
      () => nodes.every((n) => hashes.every((h) => n.server.tokens.isBlocked(h))),
      "every node has every entry after redis came back",
    );
    expect(b.server.domains.isBlocked("spam.example")).toBe(true);
    // the counters inside the window converged too: 3 bad tokens → restricted on every node
    await until(
      () => nodes.every((n) => n.server.domains.isRestricted(from)),
      "flaky.example restricted everywhere",
    );
    expect(b.server.domains.countInWindow(from)).toBe(3);
    // an operator's unblock on one node lifts it on every node, and Redis forgets it too
    a.server.domains.unblock(from);
    a.server.domains.unblock("spam.example");
    await until(
      () =>
        nodes.every(
          (n) =>
            n.server.domains.state(from) === "ok" &&
            n.server.domains.state("spam.example") === "ok",
        ),
      "unblocked everywhere",
    );
    // a token unblock travels the same way
    const hA = a.server.hasher.hash(tokA);
    a.server.tokens.unblock(hA);
    await until(
      () => nodes.every((n) => !n.server.tokens.isBlocked(hA)),
      "token unblocked everywhere",
    );
    await b.server.sync!.resync(); // a resync does not bring the old state back
    expect(b.server.domains.state("spam.example")).toBe("ok");
    expect(b.server.domains.countInWindow(from)).toBe(0);
    expect(b.server.tokens.isBlocked(hA)).toBe(false);
  });

  it("a node started while Redis is down joins the sync (live changes) once Redis is up", async () => {
    const [a] = nodes as [TestNode];
    process.kill(redis.pid, "SIGKILL");
    await until(() => !a.server.sync!.connected, "node a noticed redis is down");
    const d = await startNode(apns.createSender, {
      apps: { default: apns.app(3) },
      redis: { url: redis.url, keyPrefix: "t:", nodeId: "d" },
    });
    nodes.push(d);
    await until(() => d.server.health().ok, "node d healthy without redis");
    // long enough down for a first subscribe to have failed (several reconnect attempts each)
    await until(() => d.server.sync!.reconnectAttempts >= 6, "node d retried redis a few times");
    const resynced = new Promise((resolve) => d.server.sync!.once("resynced", resolve));
    await redis.restart();
    await resynced;
    await until(() => a.server.sync!.connected, "node a reconnected");
    await new Promise((r) => setTimeout(r, 200)); // let a's own resync finish
    const token = "6".repeat(64);
    const applied = new Promise((resolve) => d.server.sync!.once("applied", resolve));
    a.server.tokens.block(a.server.hasher.hash(token), "localhost");
    await Promise.race([
      applied,
      new Promise((_, reject) =>
        setTimeout(
          () => reject(new Error("node d never received the live change (not subscribed?)")),
          10_000,
        ),
      ),
    ]);
    expect(d.server.tokens.isBlocked(d.server.hasher.hash(token))).toBe(true);
  });

  it("an operator's token unblock sticks: a node that missed it (Redis down) does not bring the block back, a block reported after it does sync", async () => {
    const [a, b, c] = nodes as [TestNode, TestNode, TestNode];
    const token = "7".repeat(64);
    const hash = a.server.hasher.hash(token);
    apns.sim.script(token, ["410-Unregistered"]);
    a.xmpp.send(pushIq({ id: "k1", token }));
    expect((await a.xmpp.waitFor("k1")).raw).toContain("reports this token invalid");
    await until(() => b.server.tokens.isBlocked(hash), "block synced to node b");
    // node b misses the unblock: Redis is down while the operator unblocks on node a
    process.kill(redis.pid, "SIGKILL");
    await until(() => nodes.every((n) => !n.server.sync!.connected), "nodes noticed redis is down");
    const unblocked = await fetch(
      `http://127.0.0.1:${a.server.httpPort}/admin/tokens/${hash}/unblock`,
      { method: "POST", headers: { authorization: `Bearer ${adminToken(a)}` } },
    );
    expect(unblocked.status).toBe(200);
    expect(a.server.tokens.isBlocked(hash)).toBe(false);
    expect(b.server.tokens.isBlocked(hash)).toBe(true);
    const resynced = nodes.map(
      (n) => new Promise((resolve) => n.server.sync!.once("resynced", resolve)),
    );
    await redis.restart(); // empty: node b's resync pushes its stale block, node a its tombstone
    await Promise.all(resynced);
    const check = new Redis(redis.url);
    try {
      await until(
        async () =>
          nodes.every((n) => !n.server.tokens.isBlocked(hash)) &&
          (await check.exists(`t:tok:${hash}`)) === 0,
        "the unblock won on every node and in Redis",
      );
      expect(Number(await check.get(`t:tun:${hash}`))).toBeGreaterThan(0);
      // later resyncs do not bring it back either
      await b.server.sync!.resync();
      await a.server.sync!.resync();
      expect(nodes.map((n) => n.server.tokens.isBlocked(hash))).toEqual(nodes.map(() => false));
      // the token works again through node b
      b.xmpp.send(pushIq({ id: "k2", token }));
      expect((await b.xmpp.waitFor("k2")).type).toBe("result");
      // a block reported after the unblock is newer than the tombstone: it syncs as usual
      apns.sim.script(token, ["410-Unregistered"]);
      // (through node c: node b's rate limit would queue a second push within 20 s)
      c.xmpp.send(pushIq({ id: "k3", token }));
      expect((await c.xmpp.waitFor("k3")).raw).toContain("reports this token invalid");
      await until(
        () => a.server.tokens.isBlocked(hash) && b.server.tokens.isBlocked(hash),
        "the new block synced to nodes a and b",
      );
    } finally {
      check.disconnect();
    }
  });

  it("the unblocking node restarts before Redis returns (empty): its tombstone, read back from SQLite, still outweighs the stale block of the node that missed it", async () => {
    const [a, b] = nodes as [TestNode, TestNode];
    const token = "8".repeat(64);
    const hash = a.server.hasher.hash(token);
    apns.sim.script(token, ["410-Unregistered"]);
    a.xmpp.send(pushIq({ id: "m1", token }));
    expect((await a.xmpp.waitFor("m1")).raw).toContain("reports this token invalid");
    await until(() => b.server.tokens.isBlocked(hash), "block synced to node b");
    process.kill(redis.pid, "SIGKILL");
    await until(() => nodes.every((n) => !n.server.sync!.connected), "nodes noticed redis is down");
    const unblocked = await fetch(
      `http://127.0.0.1:${a.server.httpPort}/admin/tokens/${hash}/unblock`,
      { method: "POST", headers: { authorization: `Bearer ${adminToken(a)}` } },
    );
    expect(unblocked.status).toBe(200);
    // node a restarts (Redis still down): only its SQLite file remembers the unblock
    await a.stop();
    const a2 = await startNode(
      apns.createSender,
      {
        apps: { default: apns.app(0) },
        redis: { url: redis.url, keyPrefix: "t:", nodeId: "a" },
        blacklist: { domain: { threshold: 3 } },
      },
      { dataDir: a.dataDir },
    );
    nodes[0] = a2;
    expect(a2.server.tokens.isBlocked(hash)).toBe(false);
    expect(a2.server.tokens.unblockedSince(hash)).toBeGreaterThan(0);
    expect(b.server.tokens.isBlocked(hash)).toBe(true);
    const resynced = nodes.map(
      (n) => new Promise((resolve) => n.server.sync!.once("resynced", resolve)),
    );
    await redis.restart(); // empty: node b pushes its stale block, node a2 its persisted tombstone
    await Promise.all(resynced);
    const check = new Redis(redis.url);
    try {
      await until(
        async () =>
          nodes.every((n) => !n.server.tokens.isBlocked(hash)) &&
          (await check.exists(`t:tok:${hash}`)) === 0,
        "the persisted unblock won on every node and in Redis",
      );
      await a2.server.sync!.resync();
      expect(a2.server.tokens.isBlocked(hash)).toBe(false);
    } finally {
      check.disconnect();
    }
  });

  it("a domain unblock missed by the other nodes (Redis down) wins at the next resync: tombstone dun:<domain>, replayed", async () => {
    const [a, b] = nodes as [TestNode, TestNode];
    const domain = "stale.example";
    a.server.domains.block(domain, Date.now() + 3_600_000);
    await until(() => nodes.every((n) => n.server.domains.isBlocked(domain)), "blocked everywhere");
    process.kill(redis.pid, "SIGKILL");
    await until(() => nodes.every((n) => !n.server.sync!.connected), "nodes noticed redis is down");
    const res = await fetch(
      `http://127.0.0.1:${a.server.httpPort}/admin/domains/${domain}/unblock`,
      { method: "POST", headers: { authorization: `Bearer ${adminToken(a)}` } },
    );
    expect(res.status).toBe(200);
    expect(b.server.domains.isBlocked(domain)).toBe(true);
    const resynced = nodes.map(
      (n) => new Promise((resolve) => n.server.sync!.once("resynced", resolve)),
    );
    await redis.restart(); // empty: the others push their stale block, node a its tombstone
    await Promise.all(resynced);
    const check = new Redis(redis.url);
    try {
      await until(
        async () =>
          nodes.every((n) => n.server.domains.state(domain) === "ok") &&
          Number(await check.get(`t:dun:${domain}`)) > 0,
        "the unblock won on every node, its tombstone in Redis",
      );
      await b.server.sync!.resync(); // a later resync does not bring the block back
      expect(nodes.map((n) => n.server.domains.state(domain))).toEqual(nodes.map(() => "ok"));
      // a block set after the unblock syncs as usual
      a.server.domains.block(domain, Date.now() + 12 * 3_600_000);
      await until(() => b.server.domains.isBlocked(domain), "the new block synced to node b");
    } finally {
      check.disconnect();
    }
  });
});

describe(
  "a single node without Redis keeps operators' unblocks in SQLite",
  { timeout: 60_000 },
  () => {
    it("block, unblock, restart: still unblocked, an older block (a stale node's) is not merged back, a newer block survives the next restart", async () => {
      const apns = await startApns();
      let node = await startNode(apns.createSender, { apps: { default: apns.app(0) } });
      try {
        const token = "9".repeat(64);
        const hash = node.server.hasher.hash(token);
        apns.sim.script(token, ["410-Unregistered"]);
        node.xmpp.send(pushIq({ id: "s1", token }));
        expect((await node.xmpp.waitFor("s1")).raw).toContain("reports this token invalid");
        const blockedSince = node.server.tokens.get(hash)!.since!;
        const res = await fetch(
          `http://127.0.0.1:${node.server.httpPort}/admin/tokens/${hash}/unblock`,
          { method: "POST", headers: { authorization: `Bearer ${adminToken(node)}` } },
        );
        expect(res.status).toBe(200);
        const restart = async () => {
          const dataDir = node.dataDir;
          await node.stop();
          node = await startNode(
            apns.createSender,
            { apps: { default: apns.app(0) } },
            { dataDir },
          );
        };
        await restart();
        expect(node.server.tokens.isBlocked(hash)).toBe(false);
        const at = node.server.tokens.unblockedSince(hash)!;
        expect(at).toBeGreaterThanOrEqual(blockedSince);
        // the block as a node that missed the unblock would send it: older than the tombstone
        expect(
          node.server.tokens.merge(hash, Date.now() + 3_600_000, 1, "remote", blockedSince),
        ).toBe(false);
        node.xmpp.send(pushIq({ id: "s2", token }));
        expect((await node.xmpp.waitFor("s2")).type).toBe("result");
        // a block reported after the unblock is kept, with its time, across a restart
        node.server.tokens.block(hash, "localhost");
        await restart();
        expect(node.server.tokens.isBlocked(hash)).toBe(true);
        expect(node.server.tokens.get(hash)!.since!).toBeGreaterThanOrEqual(at);
      } finally {
        await node.stop();
        await apns.stop();
      }
    });
  },
);
