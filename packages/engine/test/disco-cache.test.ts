// Issue 17: a new stream does not ask the server and the account for their disco#info again when
// the server's XEP-0115 caps in its stream features say nothing changed (3-6 KB on a slow link).
import { loadAccountState, saveAccountState } from "@lichen/store";
import { describe, expect, it } from "vitest";
import { SERVERS, useEngineEnv } from "./helpers.js";

const T = 120_000;

describe.each(SERVERS)("disco#info on a new stream on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-disco-cache-" });

  /** Connects a new stream; returns the disco#info queries it queued and whether it used the cache. */
  async function newStream() {
    // No stored stream: the next connect logs in (the invalidation handlers run as usual).
    env.store.write((tx) => {
      const st = loadAccountState(tx, "alice");
      st.sm.streamId = null;
      saveAccountState(tx, "alice", st);
    });
    const s = env.session();
    let queued: string[] = [];
    let cached: unknown = null;
    s.on("disco-cached", (ver: unknown) => (cached = ver));
    // Read the queue right after the new stream's transaction committed (before any <a/>).
    s.once("online", () => {
      queued = (
        env.store.sqlite.prepare("SELECT stanza FROM outbound_queue").all() as { stanza: string }[]
      )
        .map((r) => r.stanza)
        // (the XEP-0013 query to the offline node is a disco#info too, with a node: not ours)
        .filter((x) => x.includes("http://jabber.org/protocol/disco#info") && !x.includes("node="));
    });
    expect(await s.connect()).toBe("new");
    await s.idle();
    // The disco answers (if asked) are handled before we look at the stored features.
    await s.syncBarrier();
    await s.close();
    return { queued, cached };
  }

  it(
    "the first new stream discovers and stores the server's caps ver; the next one with the same ver sends no disco#info and keeps the features",
    async () => {
      const first = await newStream();
      expect(first.queued).toHaveLength(2); // server and account
      expect(first.cached).toBeNull();
      const after = env.store.read((tx) => loadAccountState(tx, "alice")).features;
      expect(after.serverCapsVer).toMatch(/.+/);
      expect(after.server).toContain("urn:xmpp:ping");
      const account = after.account;

      const second = await newStream();
      expect(second.queued).toEqual([]);
      expect(second.cached).toBe(after.serverCapsVer);
      const kept = env.store.read((tx) => loadAccountState(tx, "alice")).features;
      expect(kept.server).toEqual(after.server);
      expect(kept.account).toEqual(account);

      // A different ver (the server was upgraded or reconfigured): discovery runs again.
      env.store.write((tx) => {
        const st = loadAccountState(tx, "alice");
        st.features.serverCapsVer = "some-older-ver";
        saveAccountState(tx, "alice", st);
      });
      const third = await newStream();
      expect(third.queued).toHaveLength(2);
      expect(env.store.read((tx) => loadAccountState(tx, "alice")).features.serverCapsVer).toBe(
        after.serverCapsVer,
      );
    },
    T,
  );
});
