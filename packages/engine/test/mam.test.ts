// Issue 17 item 3: with no stored archive id, the catch-up after a lost stream must start from
// the time the account was last known to be in sync and page forward until the server says the
// last page is complete — not fetch the newest page and close the gap. Servers without offline
// storage, so the archive is the only copy of what was missed; more than two pages missed.
import { loadAccountState } from "@lichen/store";
import { startEjabberd, startProsody } from "@lichen/test-servers";
import { describe, expect, it } from "vitest";
import { MAM_PAGE } from "../src/mam.js";
import { startPeer, useEngineEnv } from "./helpers.js";

const T = 180_000;
const MISSED = 2 * MAM_PAGE + 20; // three pages

describe.each([
  ["prosody", (o?: { tls?: boolean }) => startProsody({ ...o, offlineStorage: false })],
  ["ejabberd", (o?: { tls?: boolean }) => startEjabberd({ ...o, offlineStorage: false })],
] as const)("MAM catch-up with no archive id on %s (no offline storage)", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-mam-" });

  it(
    `a new stream after ${MISSED} missed messages fetches every page from the last sync time`,
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      try {
        // Alice is online once (no message: no archive id stored), then her stream ends.
        // It handles at least one stanza there (its roster, its own presence): in sync then.
        const first = env.session();
        const handled = new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("no stanza within 30 s")), 30_000);
          first.once("stanza", () => (clearTimeout(timer), resolve()));
        });
        expect(await first.connect()).toBe("new");
        await handled;
        await first.close();
        const before = env.store.read((tx) => loadAccountState(tx, "alice").mam);
        expect(before.lastStanzaId).toBeNull();
        expect(before.gapOpen).toBe(false);

        for (let i = 0; i < MISSED; i++) await bob.send("alice@localhost", `missed-${i}`);
        await bob.barrier(); // routed (and archived) before alice comes back

        const again = env.session();
        let live = 0; // copies outside MAM results (offline delivery): must be none here
        let pages = 0;
        again.on("stanza", (s: { toString(): string }) => {
          const text = s.toString();
          if (text.includes("<body>missed-") && !text.includes("urn:xmpp:mam:2")) live++;
          if (/<fin\b/.test(text)) pages++;
        });
        const complete = new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("no mam-complete within 60 s")), 60_000);
          again.once("mam-complete", () => (clearTimeout(timer), resolve()));
          again.once("mam-error", (c: unknown) => {
            clearTimeout(timer);
            reject(new Error(`mam-error ${String(c)}`));
          });
        });
        expect(await again.connect()).toBe("new");
        await complete;
        const rows = env.store.sqlite
          .prepare(
            "SELECT body, count(*) AS n FROM messages WHERE account_id = 'alice' AND body LIKE 'missed-%' GROUP BY body",
          )
          .all() as { body: string; n: number }[];
        await again.close();
        expect(live).toBe(0);
        // Every missed message, once (not only the newest page of MAM_PAGE).
        expect({ stored: rows.length, doubled: rows.filter((r) => r.n !== 1).length }).toEqual({
          stored: MISSED,
          doubled: 0,
        });
        expect(pages).toBeGreaterThanOrEqual(3);
        const after = env.store.read((tx) => loadAccountState(tx, "alice").mam);
        expect(after.gapOpen).toBe(false);
        expect(after.lastStanzaId).toBeTruthy();
      } finally {
        await bob.stop();
      }
    },
    T,
  );
});
