// Serializable IQ handlers against real Prosody and ejabberd: argument merging, timeouts in ticks of connected
// time, unknown handler names, and invalidation when a stream is not resumed.
import { join } from "node:path";
import { addIdleTimer, loadAccountState, openStore, tables, type Store } from "@lichen/store";
import { xml } from "@xmpp/client";
import { afterAll, describe, expect, it, onTestFailed } from "vitest";
import {
  DurableSession,
  ensureAccount,
  HandlerRegistry,
  UnknownHandlerError,
  type HandlerContext,
  type SessionOptions,
  type StanzaContext,
} from "../src/index.js";
import { SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";

const T = 120_000;
const BOB_DESK = "bob@localhost/desk";

interface Call {
  handler: string;
  args: Record<string, unknown>;
}

/** A registry whose handlers record their arguments in the DB (same transaction) and in memory. */
function recordingRegistry(names: string[]): { registry: HandlerRegistry; calls: Call[] } {
  const registry = new HandlerRegistry();
  const calls: Call[] = [];
  for (const handler of names)
    registry.define(handler, (ctx: HandlerContext, args) => {
      ctx.tx
        .insert(tables.syncErrors)
        .values({
          accountId: ctx.accountId,
          code: handler,
          message: JSON.stringify(args),
          createdAt: ctx.tx.now,
        })
        .run();
      (ctx as StanzaContext).afterCommit(() => calls.push({ handler, args }));
    });
  return { registry, calls };
}

function recorded(store: Store, code: string): Record<string, unknown>[] {
  return (
    store.sqlite
      .prepare("SELECT message FROM sync_errors WHERE code = ? ORDER BY id")
      .all(code) as { message: string }[]
  ).map((r) => JSON.parse(r.message) as Record<string, unknown>);
}

function pendingTicks(store: Store, iqId: string): number | undefined {
  return (
    store.sqlite
      .prepare("SELECT remaining_ticks AS n FROM iq_handlers WHERE iq_id = ?")
      .get(iqId) as { n: number } | undefined
  )?.n;
}

/** IQ handler rows moved to the quarantine table: row key, raw descriptor, error. */
function quarantinedIqHandlers(store: Store): { k: string; raw: string; error: string }[] {
  return store.sqlite
    .prepare("SELECT row_key AS k, raw, error FROM quarantine WHERE table_name = 'iq_handlers'")
    .all() as { k: string; raw: string; error: string }[];
}

/** Adds diagnostics to a failing test's error (e.g. the session's log events). */
function onFailure(details: () => string): void {
  onTestFailed(({ task }) => {
    const err = task.result?.errors?.[0];
    if (err) err.message += `\n${details()}`;
  });
}

/** IQ to the peer's test namespace: startPeer answers only when the test says so. */
const testIq = () =>
  xml("iq", { type: "get", to: BOB_DESK }, xml("query", { xmlns: "urn:lichen:test" }));

describe.each(SERVERS)("serializable IQ handlers on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-handlers-", users: ["alice", "bob", "carol"] });
  const cleanup: (() => Promise<unknown> | void)[] = [];
  // Registered after useEngineEnv's hook, so it runs first (before the server stops).
  afterAll(async () => {
    for (const fn of cleanup.reverse()) await fn();
  }, T);

  const openDb = (name: string) => {
    const store = openStore({ path: join(env.dir, `${name}.db`), role: "main" });
    ensureAccount(store, { id: "alice", jid: "alice@localhost", resource: "phone" });
    cleanup.push(() => store.close());
    return store;
  };
  const session = (
    store: Store,
    registry: HandlerRegistry,
    extra: Pick<SessionOptions, "tickMs" | "logger"> = {},
  ) => {
    const s = new DurableSession({ store, registry, ...env.config(), ...extra });
    cleanup.push(() => s.close().catch(() => {}));
    return s;
  };
  // A new stream is live for a message to the bare JID once its catch-up ended: its initial
  // presence waits for the XEP-0013 answer on ejabberd, and bob's message sent before that went to
  // offline storage and the archive instead, and was not stored live within the wait (clean-clone
  // CI of 8eaf803, 1 in 4 local runs of the ejabberd suite). Whether the catch-up's last page can
  // miss such a message is a follow-up (session note, stop 24).
  const mamComplete = (s: DurableSession) =>
    new Promise<void>((resolve) => s.once("mam-complete", () => resolve()));
  const peer = async () => {
    const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
    cleanup.push(() => bob.stop());
    return bob;
  };

  it(
    "call-time args override bound values (registry.call, and an answered IQ in its transaction)",
    async () => {
      // The registry itself.
      const { registry, calls } = recordingRegistry(["t.answer"]);
      const seen: Record<string, unknown>[] = [];
      registry.define("t.echo", (_ctx, args) => seen.push(args));
      const d = registry.descriptor("t.echo", {
        type: "bound",
        label: "L",
        n: 1,
        nested: { a: 1 },
      });
      const fakeCtx = { tx: null as never, accountId: "alice", send: () => {} };
      registry.call(fakeCtx, d, { type: "call", n: 2 });
      registry.call(fakeCtx, d);
      expect(seen).toEqual([
        { type: "call", label: "L", n: 2, nested: { a: 1 } },
        { type: "bound", label: "L", n: 1, nested: { a: 1 } },
      ]);
      // Bound values are stored as JSON: what would not survive storage is converted at creation.
      expect(registry.descriptor("t.echo", { when: new Date(0), gone: undefined }).bound).toEqual({
        when: "1970-01-01T00:00:00.000Z",
      });
      expect(() => registry.call(fakeCtx, { v: 1, name: "t.nope", bound: {} })).toThrow(
        UnknownHandlerError,
      );
      expect(() => registry.descriptor("t.nope")).toThrow(/t\.nope/);

      // Through a real IQ round trip: the answer's type/iqId/from override the bound ones.
      const store = openDb("args");
      const bob = await peer();
      const s = session(store, registry);
      expect(await s.connect()).toBe("new");
      const iqId = s.write((ctx) =>
        ctx.sendIq(
          testIq(),
          registry.descriptor("t.answer", { type: "bound-type", iqId: "bound-id", label: "A1" }),
          { timeoutTicks: 600 },
        ),
      );
      const iq = await until(() => bob.iqs.find((q) => q.id === iqId), "bob receives the IQ");
      iq.answer();
      await until(() => calls.length > 0 || undefined, "t.answer ran");
      expect(calls[0]!.args).toMatchObject({ type: "result", iqId, label: "A1", from: BOB_DESK });
      expect(recorded(store, "t.answer")).toEqual([calls[0]!.args]); // written in its transaction
      expect(pendingTicks(store, iqId)).toBeUndefined();
    },
    T,
  );

  it(
    "an answer from someone other than the IQ's addressee is ignored (RFC 6120 §8.1.2.1); the real answer completes it",
    async () => {
      const { registry, calls } = recordingRegistry(["t.answer"]);
      const store = openDb("forged");
      const bob = await peer();
      const carol = await startPeer(env.server.c2sPort, "carol", "carolpw");
      cleanup.push(() => carol.stop());
      const s = session(store, registry);
      const ignored: { iqId: string; from: string | null }[] = [];
      s.on("iq-answer-ignored", (e: { iqId: string; from: string | null }) => ignored.push(e));
      expect(await s.connect()).toBe("new");
      const iqId = s.write((ctx) =>
        ctx.sendIq(testIq(), registry.descriptor("t.answer", { label: "F1" }), {
          timeoutTicks: 600,
        }),
      );
      const iq = await until(() => bob.iqs.find((q) => q.id === iqId), "bob receives the IQ");

      // Carol guessed the id: her server stamps her JID on the forged result and error.
      await carol.xmpp.send(xml("iq", { type: "result", id: iqId, to: "alice@localhost/phone" }));
      await carol.xmpp.send(
        xml(
          "iq",
          { type: "error", id: iqId, to: "alice@localhost/phone" },
          xml(
            "error",
            { type: "cancel" },
            xml("item-not-found", { xmlns: "urn:ietf:params:xml:ns:xmpp-stanzas" }),
          ),
        ),
      );
      await until(() => ignored.length === 2 || undefined, "both forged answers ignored");
      expect(ignored).toEqual([
        { iqId, from: "carol@localhost/desk" },
        { iqId, from: "carol@localhost/desk" },
      ]);
      expect(calls).toEqual([]);
      expect(pendingTicks(store, iqId)).toBeGreaterThan(0); // still waiting

      iq.answer();
      await until(() => calls.length > 0 || undefined, "t.answer ran on bob's answer");
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatchObject({
        handler: "t.answer",
        args: { label: "F1", type: "result", iqId, from: BOB_DESK },
      });
      expect(pendingTicks(store, iqId)).toBeUndefined();
    },
    T,
  );

  it(
    "IQ timeout counts ticks of connected time: remote-server-timeout in a transaction; no ticks while suspended",
    async () => {
      const { registry, calls } = recordingRegistry(["t.answer"]);
      const store = openDb("timeout");
      const bob = await peer();
      const s = session(store, registry, { tickMs: 20 });
      expect(await s.connect()).toBe("new");

      // 5 ticks of 20 ms, the peer never answers.
      const fast = s.write((ctx) =>
        ctx.sendIq(testIq(), registry.descriptor("t.answer", { label: "T1" }), { timeoutTicks: 5 }),
      );
      await until(() => bob.iqs.some((q) => q.id === fast) || undefined, "bob receives T1");
      await until(() => calls.find((c) => c.args.label === "T1"), "T1 timed out");
      expect(calls[0]!.args).toEqual({
        label: "T1",
        type: "error",
        condition: "remote-server-timeout",
        synthetic: true,
        iqId: fast,
      });
      expect(recorded(store, "t.answer")).toEqual([calls[0]!.args]);
      expect(pendingTicks(store, fast)).toBeUndefined();

      // A suspended session does not tick: the remaining ticks stay put however long it is away.
      const slow = s.write((ctx) =>
        ctx.sendIq(testIq(), registry.descriptor("t.answer", { label: "T2" }), {
          timeoutTicks: 40,
        }),
      );
      await until(() => (pendingTicks(store, slow) ?? 40) < 38 || undefined, "T2 ticking");
      await s.suspend();
      const frozen = pendingTicks(store, slow)!;
      expect(frozen).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 40 * 20 + 200)); // longer than the whole timeout
      expect(pendingTicks(store, slow)).toBe(frozen);
      expect(calls.filter((c) => c.args.label === "T2")).toEqual([]);

      // Back online (resumed), it counts down the rest and expires.
      expect(await s.connect()).toBe("resumed");
      await until(() => calls.find((c) => c.args.label === "T2"), "T2 timed out after resume");
      expect(calls.find((c) => c.args.label === "T2")!.args).toMatchObject({
        condition: "remote-server-timeout",
        synthetic: true,
        iqId: slow,
      });
    },
    T,
  );

  it(
    "an idle timer (store addIdleTimer) fires its handler after its ticks of connected time, in a transaction",
    async () => {
      const { registry, calls } = recordingRegistry(["t.timer"]);
      const store = openDb("timer");
      const s = session(store, registry, { tickMs: 20 });
      expect(await s.connect()).toBe("new");
      s.write((ctx) =>
        addIdleTimer(ctx.tx, {
          id: "timer-1",
          accountId: "alice",
          handler: registry.descriptor("t.timer", { label: "I1" }),
          ticks: 3,
        }),
      );
      await until(() => calls.length > 0 || undefined, "the timer fired", 30_000);
      expect(calls).toEqual([{ handler: "t.timer", args: { label: "I1", timerId: "timer-1" } }]);
      expect(recorded(store, "t.timer")).toEqual([{ label: "I1", timerId: "timer-1" }]);
      expect(store.sqlite.prepare("SELECT count(*) AS n FROM idle_timers").get()).toEqual({ n: 0 });
    },
    T,
  );

  it(
    "a timeout handler that throws is rolled back alone and quarantined: other timeouts still fire, the session continues",
    async () => {
      const { registry, calls } = recordingRegistry(["t.answer"]);
      registry.define("t.throws", (ctx, args) => {
        // Writes first, then fails: the write must not survive.
        ctx.tx
          .insert(tables.syncErrors)
          .values({ accountId: ctx.accountId, code: "t.throws", message: "partial", createdAt: 0 })
          .run();
        (ctx as StanzaContext).state.csi = "inactive";
        throw new Error(`handler bug (${String(args.condition)})`);
      });
      const store = openDb("throws");
      const bob = await peer();
      const s = session(store, registry, { tickMs: 20 });
      const errors: Error[] = [];
      s.on("handler-error", (e: Error) => errors.push(e));
      expect(await s.connect()).toBe("new");
      const [bad, good] = s.write((ctx) => [
        ctx.sendIq(testIq(), registry.descriptor("t.throws", { label: "X" }), { timeoutTicks: 3 }),
        ctx.sendIq(testIq(), registry.descriptor("t.answer", { label: "G" }), { timeoutTicks: 8 }),
      ]);
      await until(
        () => bob.iqs.filter((q) => q.id === bad || q.id === good).length === 2 || undefined,
        "bob gets both",
      );
      await until(() => calls.find((c) => c.args.label === "G"), "the other timeout fired", 30_000);
      expect(errors.map((e) => e.message)).toEqual(["handler bug (remote-server-timeout)"]);
      expect(recorded(store, "t.throws")).toEqual([]); // its partial write was rolled back
      expect(store.read((tx) => loadAccountState(tx, "alice")).csi).not.toBe("inactive");
      const q = quarantinedIqHandlers(store);
      expect(q).toHaveLength(1);
      expect(q[0]!.k).toBe(`alice/${bad}`);
      expect(JSON.parse(q[0]!.raw)).toMatchObject({ name: "t.throws", bound: { label: "X" } });
      expect(q[0]!.error).toMatch(/handler bug/);
      await bob.send("alice@localhost", "after-throw");
      await until(
        () =>
          (
            store.sqlite
              .prepare("SELECT count(*) AS n FROM messages WHERE body = 'after-throw'")
              .get() as { n: number }
          ).n === 1 || undefined,
        "session continues",
      );
    },
    T,
  );

  it(
    "an answer whose handler always throws: rolled back and replayed, quarantined after 3 tries, later stanzas handled once",
    async () => {
      const registry = new HandlerRegistry();
      let attempts = 0;
      registry.define("t.always-throws", () => {
        attempts++;
        throw new Error("handler bug on answer");
      });
      const store = openDb("poison");
      const bob = await peer();
      const logs: Record<string, unknown>[] = [];
      const s = session(store, registry, { logger: (e) => logs.push(e) });
      s.on("online", (how: string) => logs.push({ event: "online", how }));
      s.on("offline", () => logs.push({ event: "offline" }));
      onFailure(() => `session events: ${JSON.stringify(logs.slice(-20))}`);
      const failed: string[] = [];
      const quarantinedIds: string[] = [];
      s.on("stanza-failed", (st: { attrs: { id?: string } }) => failed.push(st.attrs.id ?? ""));
      s.on("stanza-quarantined", (st: { attrs: { id?: string } }) =>
        quarantinedIds.push(st.attrs.id ?? ""),
      );
      expect(await s.connect()).toBe("new");
      const iqId = s.write((ctx) =>
        ctx.sendIq(testIq(), registry.descriptor("t.always-throws"), { timeoutTicks: 600 }),
      );
      // Generous waits: three reconnects in a row, on a loaded machine.
      const iq = await until(
        () => bob.iqs.find((q) => q.id === iqId),
        "bob receives the IQ",
        60_000,
      );
      iq.answer();
      await bob.send("alice@localhost", "after-poison");
      await until(() => quarantinedIds.length > 0 || undefined, "the answer quarantined", 60_000);
      expect(quarantinedIds).toEqual([iqId]);
      // Each failure: reconnect, the server replays (Prosody may reorder the attributes then).
      expect(failed).toEqual([iqId, iqId, iqId]);
      expect(attempts).toBe(3);
      await until(
        () =>
          (
            store.sqlite
              .prepare("SELECT count(*) AS n FROM messages WHERE body = 'after-poison'")
              .get() as { n: number }
          ).n === 1 || undefined,
        "the message after it stored once",
        60_000,
      );
      const q = store.sqlite
        .prepare("SELECT raw, error FROM quarantine WHERE table_name = 'inbound_stanza'")
        .all() as { raw: string; error: string }[];
      expect(q).toHaveLength(1);
      expect(q[0]!.raw).toContain(iqId);
      expect(q[0]!.error).toMatch(/failed 3 times/);
      expect(s.online).toBe(true);
      expect(s.lastConnect).toBe("resumed");
    },
    T,
  );

  it(
    "unknown handler name: handler-error, the row is kept, the session continues; a process that knows it can still run it",
    async () => {
      const store = openDb("unknown");
      const bob = await peer();
      const a = recordingRegistry(["t.known"]);
      const s1 = session(store, a.registry);
      expect(await s1.connect()).toBe("new");
      const iqId = s1.write((ctx) =>
        ctx.sendIq(testIq(), a.registry.descriptor("t.known", { label: "U1" }), {
          timeoutTicks: 100,
        }),
      );
      const iq = await until(() => bob.iqs.find((q) => q.id === iqId), "bob receives the IQ");
      await s1.suspend();

      // Another process (older build) that does not register t.known resumes and gets the answer.
      const other = openStore({ path: join(env.dir, "unknown.db"), role: "main" });
      cleanup.push(() => other.close());
      const b = recordingRegistry([]);
      const s2 = session(other, b.registry);
      const errors: UnknownHandlerError[] = [];
      s2.on("handler-error", (e) => errors.push(e as UnknownHandlerError));
      expect(await s2.connect()).toBe("resumed");
      iq.answer();
      await until(() => errors.length > 0 || undefined, "handler-error");
      expect(errors[0]).toBeInstanceOf(UnknownHandlerError);
      expect(errors[0]!.handlerName).toBe("t.known");
      expect(errors[0]!.message).toMatch(/no handler named "t\.known"/);
      expect(pendingTicks(other, iqId)).toBeGreaterThan(0); // kept
      await bob.send("alice@localhost", "after-unknown");
      await until(
        () =>
          (
            other.sqlite
              .prepare("SELECT count(*) AS n FROM messages WHERE body = 'after-unknown'")
              .get() as {
              n: number;
            }
          ).n === 1 || undefined,
        "later message stored",
      );
      expect(s2.online).toBe(true);
      await s2.suspend();

      // A process that knows the handler resumes: the kept row still runs (here: its timeout).
      const s3 = session(store, a.registry, { tickMs: 20 });
      expect(await s3.connect()).toBe("resumed");
      await until(
        () => a.calls.find((c) => c.args.label === "U1"),
        "kept handler ran in s3",
        30_000,
      );
      expect(a.calls[0]!.args).toMatchObject({ type: "error", condition: "remote-server-timeout" });
    },
    T,
  );

  it(
    "a timeout whose handler this process does not know: handler-error, the row is quarantined (not lost), the session continues",
    async () => {
      const { registry, calls } = recordingRegistry(["t.answer"]);
      const store = openDb("unknown-timeout");
      const bob = await peer();
      const s = session(store, registry, { tickMs: 20 });
      const errors: Error[] = [];
      s.on("handler-error", (e: Error) => errors.push(e));
      expect(await s.connect()).toBe("new");
      // As a row written by a build that had "t.renamed" (the descriptor is plain data).
      const gone = s.write((ctx) =>
        ctx.sendIq(
          testIq(),
          { v: 1, name: "t.renamed", bound: { label: "R" } },
          { timeoutTicks: 3 },
        ),
      );
      const known = s.write((ctx) =>
        ctx.sendIq(testIq(), registry.descriptor("t.answer", { label: "K" }), { timeoutTicks: 6 }),
      );
      await until(() => calls.find((c) => c.args.label === "K"), "the known timeout fired", 30_000);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(UnknownHandlerError);
      expect((errors[0] as UnknownHandlerError).handlerName).toBe("t.renamed");
      expect(pendingTicks(store, gone)).toBeUndefined();
      const q = quarantinedIqHandlers(store);
      expect(q).toHaveLength(1);
      expect(q[0]!.k).toBe(`alice/${gone}`);
      expect(JSON.parse(q[0]!.raw)).toEqual({ v: 1, name: "t.renamed", bound: { label: "R" } });
      expect(q[0]!.error).toMatch(/no handler named "t\.renamed"/);
      expect(calls.map((c) => c.args.iqId)).toEqual([known]);
      expect(s.online).toBe(true);
      expect(bob.iqs.map((i) => i.id)).toEqual(expect.arrayContaining([gone, known]));
    },
    T,
  );

  it(
    "a reconnect that does not resume invalidates pending handlers (reason session-not-resumed), via failed resume and via no stored stream",
    async () => {
      const store = openDb("invalidate");
      const bob = await peer();
      const make = () => recordingRegistry(["t.known", "t.invalidated"]);
      const garble = (streamId: string | null) => {
        const row = store.sqlite
          .prepare("SELECT state FROM account_state WHERE account_id = 'alice'")
          .get() as { state: string };
        const st = JSON.parse(row.state) as { sm: { streamId: string | null } };
        st.sm.streamId = streamId;
        store.sqlite
          .prepare("UPDATE account_state SET state = ? WHERE account_id = 'alice'")
          .run(JSON.stringify(st));
      };

      for (const [label, streamId] of [
        ["I1", "no-such-stream"], // the server refuses the resume (<failed/>)
        ["I2", null], // nothing to resume: a fresh login
      ] as const) {
        const first = make();
        const s1 = session(store, first.registry);
        await s1.connect();
        const iqId = s1.write((ctx) =>
          ctx.sendIq(testIq(), first.registry.descriptor("t.known", { label }, "t.invalidated"), {
            timeoutTicks: 600,
          }),
        );
        const iq = await until(() => bob.iqs.find((q) => q.id === iqId), `bob receives ${label}`);
        await s1.suspend();
        garble(streamId);

        const second = make();
        const events: Record<string, unknown>[] = [];
        const s2 = session(store, second.registry, { logger: (e) => events.push(e) });
        let resumeFailed = false;
        s2.on("resume-failed", () => (resumeFailed = true));
        const caughtUp = mamComplete(s2);
        expect(await s2.connect()).toBe("new");
        expect(resumeFailed).toBe(streamId !== null);
        await until(() => second.calls.length > 0 || undefined, `${label} invalidated`).catch(
          (err: Error) => {
            // Seen once on ejabberd under a loaded full run: say where the handler row went.
            throw new Error(
              `${err.message}; session events: ${JSON.stringify(events.slice(-20))}; ` +
                `t.known calls: ${JSON.stringify(recorded(store, "t.known"))}; ` +
                `quarantine: ${JSON.stringify(store.sqlite.prepare("SELECT table_name, error FROM quarantine").all())}`,
            );
          },
        );
        expect(second.calls).toEqual([
          { handler: "t.invalidated", args: { label, reason: "session-not-resumed" } },
        ]);
        expect(recorded(store, "t.invalidated").at(-1)).toEqual({
          label,
          reason: "session-not-resumed",
        });
        expect(pendingTicks(store, iqId)).toBeUndefined();
        // A late answer to the dead stream's IQ runs nothing.
        iq.answer();
        await caughtUp;
        await bob.send("alice@localhost", `after-${label}`);
        await until(
          () =>
            (
              store.sqlite
                .prepare("SELECT count(*) AS n FROM messages WHERE body = ?")
                .get(`after-${label}`) as {
                n: number;
              }
            ).n === 1 || undefined,
          `after-${label} stored`,
        );
        expect(second.calls.map((c) => c.handler)).toEqual(["t.invalidated"]);
        await s2.suspend();
      }
    },
    T,
  );
  it(
    "an unknown invalidation handler on a non-resumed reconnect: handler-error, the row is kept; a process that knows it invalidates it later",
    async () => {
      const store = openDb("unknown-invalidation");
      const bob = await peer();
      const full = recordingRegistry(["t.known", "t.invalidated"]);
      const s1 = session(store, full.registry);
      await s1.connect();
      const iqId = s1.write((ctx) =>
        ctx.sendIq(testIq(), full.registry.descriptor("t.known", { label: "K" }, "t.invalidated"), {
          timeoutTicks: 600,
        }),
      );
      await until(() => bob.iqs.find((q) => q.id === iqId), "bob receives the IQ");
      await s1.suspend();
      const dropStream = () => {
        const row = store.sqlite
          .prepare("SELECT state FROM account_state WHERE account_id = 'alice'")
          .get() as { state: string };
        const st = JSON.parse(row.state) as { sm: { streamId: string | null } };
        st.sm.streamId = null;
        store.sqlite
          .prepare("UPDATE account_state SET state = ? WHERE account_id = 'alice'")
          .run(JSON.stringify(st));
      };
      dropStream();

      // A process without t.invalidated logs in anew.
      const partial = recordingRegistry(["t.known"]);
      const s2 = session(store, partial.registry);
      const errors: UnknownHandlerError[] = [];
      s2.on("handler-error", (e) => errors.push(e as UnknownHandlerError));
      const caughtUp = mamComplete(s2);
      expect(await s2.connect()).toBe("new");
      await until(() => errors.length > 0 || undefined, "handler-error");
      expect(errors.map((e) => e.handlerName)).toEqual(["t.invalidated"]);
      expect(pendingTicks(store, iqId)).toBeGreaterThan(0); // kept
      expect(partial.calls).toEqual([]);
      await caughtUp;
      await bob.send("alice@localhost", "after-unknown-invalidation");
      await until(
        () =>
          (
            store.sqlite
              .prepare(
                "SELECT count(*) AS n FROM messages WHERE body = 'after-unknown-invalidation'",
              )
              .get() as { n: number }
          ).n === 1 || undefined,
        "session continues",
      );
      await s2.suspend();
      dropStream();

      // A process that knows it: invalidated with the reason, the row is gone.
      const again = recordingRegistry(["t.known", "t.invalidated"]);
      const s3 = session(store, again.registry);
      expect(await s3.connect()).toBe("new");
      await until(() => again.calls.length > 0 || undefined, "invalidated by s3");
      expect(again.calls).toEqual([
        { handler: "t.invalidated", args: { label: "K", reason: "session-not-resumed" } },
      ]);
      expect(pendingTicks(store, iqId)).toBeUndefined();
    },
    T,
  );
});
