// The main app on a phone whose network drops: through a TCP link the test cuts and restores
// (tools/test-servers startFlakyLink) to real Prosody and ejabberd, the AppController retries with
// back-off while the link is down and resumes the stream when it is back: nothing is lost or
// doubled in either direction. Delays use a seeded jitter (printed on failure).
import { startFlakyLink, type FlakyLink } from "@lichen/test-servers";
import { afterEach, describe, expect, it, onTestFailed } from "vitest";
import {
  AppController,
  isTransientConnectError,
  reconnectDelay,
  type DurableSession,
  type SessionOptions,
} from "../src/index.js";

type SessionConfig = Omit<SessionOptions, "store">;
import { prng, SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";

const T = 180_000;

/** Resolves with the number of the session's acked events once `n` <a/> answers arrived. */
function countProbes(session: DurableSession, n: number): Promise<number> {
  return new Promise((resolve) => {
    let seen = 0;
    const on = () => {
      if (++seen < n) return;
      session.off("acked", on);
      resolve(seen);
    };
    session.on("acked", on);
  });
}

describe("reconnectDelay", () => {
  it("doubles from the initial delay up to the cap, with half of it jittered", () => {
    const p = { initialDelayMs: 100, maxDelayMs: 1000 };
    expect(
      [0, 1, 2, 3, 4, 10, 5000].map((a) => reconnectDelay(a, { ...p, random: () => 0 })),
    ).toEqual([50, 100, 200, 400, 500, 500, 500]);
    expect([0, 1, 2, 3, 4].map((a) => reconnectDelay(a, { ...p, random: () => 0.999999 }))).toEqual(
      [100, 200, 400, 800, 1000],
    );
    const r = prng(7).next;
    for (let a = 0; a < 50; a++) {
      const d = reconnectDelay(a, { ...p, random: r });
      const base = Math.min(1000, 100 * 2 ** a);
      expect(d).toBeGreaterThanOrEqual(base / 2);
      expect(d).toBeLessThanOrEqual(base);
    }
    // Defaults: 1 s first, 60 s at most.
    expect(reconnectDelay(0, { random: () => 0.999999 })).toBe(1000);
    expect(reconnectDelay(20, { random: () => 0.999999 })).toBe(60_000);
  });
});

describe("isTransientConnectError", () => {
  it("retries what the network or an absent server caused, not what would fail again", () => {
    const sys = (code: string) => Object.assign(new Error(`connect ${code}`), { code });
    for (const code of ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH", "EAI_AGAIN"])
      expect(isTransientConnectError(sys(code)), code).toBe(true);
    expect(isTransientConnectError(new Error("session not online after 20000 ms"))).toBe(true);
    expect(
      isTransientConnectError(new Error("the connection closed before the session was online")),
    ).toBe(true);
    // xmpp.js's TimeoutError (empty message): a server that accepted TCP and never answered.
    expect(isTransientConnectError(Object.assign(new Error(""), { name: "TimeoutError" }))).toBe(
      true,
    );
    const sasl = Object.assign(new Error("not-authorized"), { name: "SASLError" });
    expect(isTransientConnectError(sasl)).toBe(false);
    expect(isTransientConnectError(sys("CERT_HAS_EXPIRED"))).toBe(false);
    expect(isTransientConnectError(new Error("refusing to authenticate without TLS"))).toBe(false);
    expect(isTransientConnectError("ECONNRESET")).toBe(false); // not an Error at all
  });
});

describe.each(SERVERS)("the main app across a network drop on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-reconnect-" });
  const cleanup: (() => Promise<unknown> | unknown)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.reverse()) await fn();
    cleanup.length = 0;
  });

  const bodies = (prefix: string) =>
    (
      env.store.sqlite
        .prepare("SELECT body FROM messages WHERE direction = 'in' AND body LIKE ? ORDER BY body")
        .all(`${prefix}%`) as { body: string }[]
    ).map((r) => r.body);

  async function setup(seed: number, session: Partial<SessionConfig> = {}) {
    onTestFailed(({ task }) => {
      const err = task.result?.errors?.[0];
      if (err) err.message += `\n(jitter seed ${seed})`;
    });
    const link: FlakyLink = await startFlakyLink({ port: env.server.c2sPort });
    cleanup.push(() => link.close());
    const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
    cleanup.push(() => bob.stop());
    const app = new AppController(
      env.store,
      { ...env.config(), service: `xmpp://127.0.0.1:${link.port}`, ...session },
      { reconnect: { initialDelayMs: 40, maxDelayMs: 300, random: prng(seed).next } },
    );
    cleanup.push(() => app.close());
    const events: { event: string; attempt?: number; delayMs?: number; how?: string }[] = [];
    app.on("reconnecting", (e: { attempt: number; delayMs: number }) =>
      events.push({ event: "reconnecting", ...e }),
    );
    app.on("reconnect-failed", (e: { attempt: number }) =>
      events.push({ event: "reconnect-failed", attempt: e.attempt }),
    );
    app.on("reconnected", (how: string) => events.push({ event: "reconnected", how }));
    return { link, bob, app, events };
  }

  it(
    "retries with growing delays while the link is down, then resumes: messages both ways arrive once",
    async () => {
      const seed = Date.now() % 100_000;
      const { link, bob, app, events } = await setup(seed);
      expect(await app.foreground()).toBe("new");
      const session: DurableSession = app.session!;
      await bob.send("alice@localhost", "rc-before");
      await until(() => bodies("rc-before").length === 1 || undefined, "rc-before stored");

      link.cut();
      await until(() => events.some((e) => e.event === "reconnecting") || undefined, "app notices");
      expect(session.online).toBe(false);
      // While the phone is offline: bob writes (the server holds the stream for resumption) and
      // the user writes (queued in the DB).
      for (let i = 1; i <= 3; i++) await bob.send("alice@localhost", `rc-down-${i}`);
      const originId = session.sendMessage("bob@localhost", "rc-out-while-down");
      await until(
        () => events.filter((e) => e.event === "reconnect-failed").length >= 3 || undefined,
        "three refused attempts",
      );
      expect(link.refused).toBeGreaterThanOrEqual(3);
      // The same session object, one attempt after another, each after its back-off delay.
      const attempts = events.filter((e) => e.event === "reconnecting");
      expect(attempts.map((e) => e.attempt)).toEqual(attempts.map((_e, i) => i + 1));
      for (const e of attempts) {
        const base = Math.min(300, 40 * 2 ** (e.attempt! - 1));
        expect(e.delayMs).toBeGreaterThanOrEqual(base / 2);
        expect(e.delayMs).toBeLessThanOrEqual(base);
      }

      link.restore();
      await until(() => events.find((e) => e.event === "reconnected"), "back online");
      expect(events.find((e) => e.event === "reconnected")!.how).toBe("resumed");
      expect(app.session).toBe(session);
      await until(() => bodies("rc-down-").length === 3 || undefined, "the held messages");
      await until(
        () => bob.received.some((m) => m.body === "rc-out-while-down") || undefined,
        "bob gets the queued message",
      );
      await bob.send("alice@localhost", "rc-after");
      await until(() => bodies("rc-after").length === 1 || undefined, "rc-after stored");
      expect(bodies("rc-")).toEqual([
        "rc-after",
        "rc-before",
        "rc-down-1",
        "rc-down-2",
        "rc-down-3",
      ]);
      expect(bob.received.filter((m) => m.body === "rc-out-while-down")).toHaveLength(1);
      const row = env.store.sqlite
        .prepare("SELECT delivery_state AS s FROM messages WHERE origin_id = ?")
        .get(originId) as { s: string };
      await until(
        () =>
          (
            env.store.sqlite
              .prepare("SELECT delivery_state AS s FROM messages WHERE origin_id = ?")
              .get(originId) as { s: string }
          ).s === "sent" || undefined,
        `the queued message marked sent (was ${row.s})`,
      );
    },
    T,
  );

  it(
    "a link that goes silent (no RST, no FIN) is found dead by an unanswered ack request; the app resumes on a new connection and nothing is lost either way",
    async () => {
      const seed = Date.now() % 100_000;
      const { link, bob, app, events } = await setup(seed, {
        liveness: { idleMs: 300, timeoutMs: 700 },
      });
      await app.foreground(); // "new", or "resumed" after the test before
      const session: DurableSession = app.session!;
      const dead: { silentMs: number }[] = [];
      session.on("link-dead", (e: { silentMs: number }) => dead.push(e));
      await bob.send("alice@localhost", "lv-before");
      await until(() => bodies("lv-before").length === 1 || undefined, "lv-before stored");
      // Idle and alive: the probes are answered, the link is kept.
      const probes = await countProbes(session, 2);
      expect(probes).toBeGreaterThanOrEqual(2);
      expect(dead).toEqual([]);

      const accepted = link.accepted;
      link.stall();
      // Into the void both ways: the server holds bob's messages for alice's stream (it still
      // thinks her connection is up), alice's message waits unacknowledged in her queue.
      for (let i = 1; i <= 3; i++) await bob.send("alice@localhost", `lv-stalled-${i}`);
      const originId = session.sendMessage("bob@localhost", "lv-out-while-stalled");
      await until(() => events.find((e) => e.event === "reconnected"), "back online");
      expect(dead).toHaveLength(1);
      expect(dead[0]!.silentMs).toBeGreaterThanOrEqual(700);
      expect(events.find((e) => e.event === "reconnected")!.how).toBe("resumed");
      expect(link.accepted).toBe(accepted + 1); // one new connection, no retry storm
      expect(app.session).toBe(session);
      await until(() => bodies("lv-stalled-").length === 3 || undefined, "the held messages");
      await until(
        () => bob.received.some((m) => m.body === "lv-out-while-stalled") || undefined,
        "bob gets alice's message",
      );
      expect(bob.received.filter((m) => m.body === "lv-out-while-stalled")).toHaveLength(1);
      expect(bodies("lv-")).toEqual(["lv-before", "lv-stalled-1", "lv-stalled-2", "lv-stalled-3"]);
      await until(
        () =>
          (
            env.store.sqlite
              .prepare("SELECT delivery_state AS s FROM messages WHERE origin_id = ?")
              .get(originId) as { s: string }
          ).s === "sent" || undefined,
        "alice's message marked sent",
      );
    },
    T,
  );

  it(
    "no network at foreground(): it rejects, keeps trying and gets online when the link is back; a wrong password is not retried",
    async () => {
      const { link, app, events } = await setup(Date.now() % 100_000);
      link.cut();
      await expect(app.foreground()).rejects.toThrow(/ECONNRESET|closed before the session/);
      await until(() => link.refused >= 2 || undefined, "retries while down");
      link.restore();
      await until(() => events.find((e) => e.event === "reconnected"), "online after all");
      expect(app.session!.online).toBe(true);
      await app.background();

      // A refused password fails the same way every time: no retry loop.
      const wrong = new AppController(
        env.store,
        { ...env.config(), service: `xmpp://127.0.0.1:${link.port}`, password: "wrong" },
        { reconnect: { initialDelayMs: 20, maxDelayMs: 40 } },
      );
      cleanup.push(() => wrong.close());
      const tries: unknown[] = [];
      wrong.on("reconnecting", (e) => tries.push(e));
      const accepted = link.accepted;
      await expect(wrong.foreground()).rejects.toThrow(/not-authorized/);
      await new Promise((r) => setTimeout(r, 500)); // > 10 retry delays
      expect(tries).toEqual([]);
      expect(link.accepted).toBe(accepted + 1);
    },
    T,
  );

  it(
    "background() while the link is down stops the retries; foreground() later resumes",
    async () => {
      const { link, bob, app, events } = await setup(Date.now() % 100_000);
      await app.foreground();
      link.cut();
      await until(
        () => events.some((e) => e.event === "reconnect-failed") || undefined,
        "a refused attempt",
      );
      await app.background();
      const refused = link.refused;
      const attempts = events.length;
      await bob.send("alice@localhost", "bg-held");
      // Longer than several maximal delays: nothing more is tried in the background.
      await new Promise((r) => setTimeout(r, 1500));
      expect(link.refused).toBe(refused);
      expect(events).toHaveLength(attempts);

      link.restore();
      expect(await app.foreground()).toBe("resumed");
      await until(() => bodies("bg-held").length === 1 || undefined, "bg-held stored");
    },
    T,
  );
});
