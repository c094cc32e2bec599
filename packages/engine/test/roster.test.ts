// Roster and presence subscriptions stored (RFC 6121, XEP-0237) on real Prosody and ejabberd:
// a subscription request waits in the DB until answered, the roster follows the server's pushes,
// a new stream in another process asks with the stored version and still has the roster
// whatever the server answers, and nobody but the server can change it.
import { openStore } from "@lichen/store";
import { xml } from "@xmpp/client";
import { describe, expect, it } from "vitest";
import {
  listRoster,
  listSubscriptionRequests,
  type RosterEvent,
  type RosterItem,
} from "../src/index.js";
import { SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";

const T = 180_000;

describe.each(SERVERS)("roster and subscriptions on %s", (kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-roster-" });
  const bobItem = (): RosterItem | undefined =>
    listRoster(env.store, "alice").find((i) => i.jid === "bob@localhost");

  it(
    "a request is stored until approved; the roster follows the pushes, survives a versioned new stream in another process, and ignores pushes not from the server",
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const alice = env.session();
      const requests: { jid: string; status: string | null }[] = [];
      alice.on("subscription-request", (r) => requests.push(r));
      try {
        await alice.connect();
        await bob.xmpp.send(
          xml(
            "presence",
            { to: "alice@localhost", type: "subscribe" },
            xml("status", {}, "it's bob"),
          ),
        );
        await until(() => requests.length === 1 || undefined, "the request reaches alice");
        expect(requests[0]).toEqual({ jid: "bob@localhost", status: "it's bob" });
        expect(listSubscriptionRequests(env.store, "alice")).toEqual([
          expect.objectContaining({ jid: "bob@localhost", status: "it's bob" }),
        ]);

        // Approve and ask back; bob approves too: both see each other.
        alice.answerSubscription("bob@localhost", "approve", { subscribeBack: true });
        expect(listSubscriptionRequests(env.store, "alice")).toEqual([]);
        await until(() => bobItem()?.ask === "subscribe" || undefined, "alice's request pending");
        await bob.xmpp.send(xml("presence", { to: "alice@localhost", type: "subscribed" }));
        await until(() => bobItem()?.subscription === "both" || undefined, "mutual subscription");
        expect(bobItem()!.ask).toBeNull();

        // A roster push from anyone but the server is not applied (RFC 6121 §2.1.6).
        await bob.xmpp.iqCaller
          .request(
            xml(
              "iq",
              { type: "set", to: "alice@localhost/phone" },
              xml(
                "query",
                { xmlns: "jabber:iq:roster" },
                xml("item", { jid: "mallory@localhost", subscription: "both" }),
              ),
            ),
          )
          .catch(() => {}); // answered with an error
        await alice.syncBarrier();
        expect(listRoster(env.store, "alice").map((i) => i.jid)).toEqual(["bob@localhost"]);
        await alice.close(); // logout: the next login is a new stream
      } finally {
        await bob.stop();
      }

      // Another process, a new stream: the roster get carries the stored version; whatever the
      // server answers (Prosody: "unchanged", no items; ejabberd without versioning: the items),
      // the roster is there.
      const other = openStore({ path: env.db, role: "main" });
      const again = env.session({ store: other });
      const events: RosterEvent[] = [];
      again.on("roster", (e) => events.push(e));
      try {
        expect(await again.connect()).toBe("new");
        await until(() => events.length > 0 || undefined, "the roster answer");
        console.log(`roster ${kind}: second login answered ${JSON.stringify(events[0])}`);
        expect(listRoster(other, "alice")).toEqual([
          expect.objectContaining({ jid: "bob@localhost", subscription: "both" }),
        ]);
        expect(events[0]).toMatchObject({ unchanged: true }); // both servers answer so (XEP-0237)

        // The server pushes a removal made by another resource of alice: gone from the DB.
        again.write((ctx) =>
          ctx.send(
            xml(
              "iq",
              { type: "set", id: "rm-bob" },
              xml(
                "query",
                { xmlns: "jabber:iq:roster" },
                xml("item", { jid: "bob@localhost", subscription: "remove" }),
              ),
            ),
          ),
        );
        await until(
          () => events.some((e) => "removed" in e && e.removed.includes("bob@localhost")),
          "the removal pushed",
        );
        expect(listRoster(other, "alice")).toEqual([]);
      } finally {
        await again.close();
        other.close();
      }
    },
    T,
  );
});
