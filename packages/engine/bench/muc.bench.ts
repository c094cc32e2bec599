/**
 * Group chat catch-up benchmark (`npm run bench -- muc`, issue 14): on real Prosody and ejabberd,
 * alice's main app is in a room, closes (stream gone), bob writes ROOM_MESSAGES messages, then
 * alice's next start — a new stream, the room re-joined without MUC history, its archive fetched
 * after the room's mark — until the room's catch-up completes [room_catchup_500_s], with how many
 * it stored [room_catchup_500_stored]. Baseline in the same run: a bare xmpp.js client paging the
 * same room archive (RSM pages of the engine's size, nothing stored) [bare_mam_500_s];
 * ratios.room_catchup_vs_bare_mam = bare / ours (1 = no overhead). Medians over rounds; keys
 * prefixed by the server; room_catchup_500_s is the worse server's median (the key).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore, tables } from "@lichen/store";
import {
  startEjabberd,
  startProsody,
  streamManagementEnabled,
  type XmppTestServer,
} from "@lichen/test-servers";
import { PERSISTENT_ROOM, roomConfigForm } from "@lichen/test-kit";
import { client, xml } from "@xmpp/client";
import { and, count, eq } from "drizzle-orm";
import { ensureAccount } from "#src/accounts.js";
import { MAM_PAGE } from "#src/mam.js";
import { joinRoom } from "#src/muc.js";
import { DurableSession } from "#src/session.js";
import { median, round3 } from "./children.js";

interface BenchContext {
  log(msg: string): void;
  quick: boolean;
}

const ROOM_MESSAGES = 500;
const PAGE = MAM_PAGE; // the engine's page size
const NS_MUC = "http://jabber.org/protocol/muc";

interface El {
  is(n: string): boolean;
  attrs: Record<string, string>;
  getChild(n: string, ns?: string): El | undefined;
  getChildText(n: string): string | null;
}

async function plainClient(server: XmppTestServer, user: string) {
  const xmpp = client({
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: "localhost",
    username: user,
    password: `${user}pw`,
    resource: "bench",
  });
  xmpp.on("error", () => {});
  xmpp.reconnect.stop();
  await xmpp.start();
  await streamManagementEnabled(xmpp);
  return xmpp;
}

function waitFor(xmpp: ReturnType<typeof client>, pred: (s: El) => boolean): Promise<El> {
  return new Promise((resolve) => {
    const on = (s: El) => {
      if (!pred(s)) return;
      xmpp.off("stanza", on);
      resolve(s);
    };
    xmpp.on("stanza", on);
  });
}

export default async function mucBench(ctx: BenchContext) {
  const rounds = ctx.quick ? 1 : 3;
  const metrics: Record<string, number> = {};
  const ratios: Record<string, number> = {};
  for (const [kind, start] of [
    ["prosody", startProsody],
    ["ejabberd", startEjabberd],
  ] as const) {
    ctx.log(`${kind}: starting`);
    const server = await start();
    const ours: number[] = [];
    const bare: number[] = [];
    const stored: number[] = [];
    try {
      await server.registerUser("bob", "bobpw");
      for (let r = 0; r < rounds; r++) {
        const alice = `alice${r}`;
        await server.registerUser(alice, `${alice}pw`);
        const f = await oneRound(server, alice, `bench-${r}-${Date.now()}@${server.mucDomain}`);
        ctx.log(`${kind} round ${r + 1}/${rounds}: ${JSON.stringify(f)}`);
        ours.push(f.catchup_s);
        bare.push(f.bare_s);
        stored.push(f.stored);
      }
    } finally {
      await server.stop();
    }
    metrics[`${kind}_room_catchup_500_s`] = round3(median(ours));
    metrics[`${kind}_bare_mam_500_s`] = round3(median(bare));
    metrics[`${kind}_room_catchup_500_stored`] = median(stored);
    ratios[`${kind}_room_catchup_vs_bare_mam`] = round3(median(bare) / median(ours));
  }
  metrics.room_catchup_500_s = Math.max(
    metrics.prosody_room_catchup_500_s!,
    metrics.ejabberd_room_catchup_500_s!,
  );
  return { metrics, ratios };
}

async function oneRound(server: XmppTestServer, alice: string, room: string) {
  const bob = await plainClient(server, "bob");
  const dir = mkdtempSync(join(tmpdir(), "lichen-muc-bench-"));
  const store = openStore({ path: join(dir, "lichen.db"), role: "main" });
  try {
    // bob's persistent, archived room.
    const joined = waitFor(bob, (s) => s.is("presence") && s.attrs.from === `${room}/bob`);
    await bob.send(xml("presence", { to: `${room}/bob` }, xml("x", { xmlns: NS_MUC })));
    await joined;
    await bob.iqCaller.set(roomConfigForm(xml, PERSISTENT_ROOM), room);
    ensureAccount(store, { id: alice, jid: `${alice}@localhost`, resource: "phone" });
    const config = {
      store,
      accountId: alice,
      service: `xmpp://127.0.0.1:${server.c2sPort}`,
      domain: "localhost",
      username: alice,
      password: `${alice}pw`,
      resource: "phone",
    };
    const first = new DurableSession(config);
    await first.connect();
    const inRoom = new Promise((r) => first.once("room-mam-complete", r));
    first.write((c) => joinRoom(c, room, "alice"));
    await inRoom;
    await first.close();

    // 500 messages while alice is away; the last reflected means all are archived.
    const last = `m${ROOM_MESSAGES - 1}`;
    const reflected = waitFor(bob, (s) => s.is("message") && s.attrs.id === last);
    for (let i = 0; i < ROOM_MESSAGES; i++)
      await bob.send(
        xml("message", { to: room, type: "groupchat", id: `m${i}` }, xml("body", {}, `msg ${i}`)),
      );
    await reflected;

    // Ours: the next start (new stream → rejoin → MAM after the room's mark).
    const again = new DurableSession(config);
    const t0 = performance.now();
    const done = new Promise((r) => again.once("room-mam-complete", r));
    await again.connect();
    await done;
    const catchup_s = (performance.now() - t0) / 1000;
    const stored = store.read(
      (tx) =>
        tx
          .select({ n: count() })
          .from(tables.messages)
          .where(and(eq(tables.messages.accountId, alice), eq(tables.messages.chatJid, room)))
          .get()!.n,
    );
    await again.close();

    // Baseline: a bare client pages the same archive (a connected client, as ours connects too:
    // its login is inside the timing as well).
    const t1 = performance.now();
    const reader = await plainClient(server, alice);
    let after: string | null = null;
    for (;;) {
      const answer = (await reader.iqCaller.request(
        xml(
          "iq",
          { type: "set", to: room },
          xml(
            "query",
            { xmlns: "urn:xmpp:mam:2" },
            xml(
              "set",
              { xmlns: "http://jabber.org/protocol/rsm" },
              xml("max", {}, String(PAGE)),
              ...(after ? [xml("after", {}, after)] : []),
            ),
          ),
        ),
        60_000,
      )) as El;
      const fin = answer.getChild("fin", "urn:xmpp:mam:2");
      if (!fin) throw new Error("the room's archive answered without <fin/>");
      after = fin.getChild("set", "http://jabber.org/protocol/rsm")?.getChildText("last") ?? null;
      if (fin.attrs.complete === "true" || !after) break;
    }
    const bare_s = (performance.now() - t1) / 1000;
    await reader.stop();
    return { catchup_s, bare_s, stored };
  } finally {
    store.close();
    await bob.stop().catch(() => {});
  }
}
