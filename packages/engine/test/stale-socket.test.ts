// A socket we dropped can still deliver what the server wrote before it saw us go (its bytes sit in
// our receive buffer). Once the stream is resumed on a new socket, those late stanzas must not be
// handled or counted: the server replays them there, and counting them would push our h past what
// the server sent (ejabberd ends the stream: "Client acknowledged more stanzas than sent").
import type { EventEmitter } from "node:events";
import { loadAccountState } from "@lichen/store";
import { xml } from "@xmpp/client";
import { describe, expect, it } from "vitest";
import { SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";

const T = 120_000;

describe.each(SERVERS)("late stanzas from a dropped socket on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-stale-" });

  it(
    "are neither stored nor counted after the resume; the stream resumes again with a correct h",
    async () => {
      const logs: Record<string, unknown>[] = [];
      const s = env.session({ logger: (e) => logs.push(e) });
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const count = (body: string) =>
        (
          env.store.sqlite
            .prepare("SELECT count(*) AS n FROM messages WHERE body = ?")
            .get(body) as {
            n: number;
          }
        ).n;
      try {
        expect(await s.connect()).toBe("new");
        await bob.send("alice@localhost", "before");
        await until(() => count("before") > 0, "before");
        const old = (s as unknown as { conn: { entity: EventEmitter } }).conn;
        await s.suspend();
        expect(await s.connect()).toBe("resumed");
        const hAtResume = env.store.read((tx) => loadAccountState(tx, "alice")).sm.inboundH;

        // What the old socket's parser would emit for bytes still buffered from the server.
        old.entity.emit(
          "element",
          xml(
            "message",
            { from: "bob@localhost/desk", to: "alice@localhost/phone", type: "chat", id: "late-1" },
            xml("body", {}, "late-from-old-socket"),
          ),
        );
        await bob.send("alice@localhost", "after");
        await until(() => count("after") > 0, "after");
        await s.idle();
        expect(count("late-from-old-socket")).toBe(0);
        const hAfter = env.store.read((tx) => loadAccountState(tx, "alice")).sm.inboundH;
        // Only what the server sent on the resumed stream is counted (bob's message; presence
        // may come too, but never more than the server sent: the next resume proves it).
        expect(hAfter - hAtResume).toBeGreaterThanOrEqual(1);

        await s.suspend();
        expect(await s.connect()).toBe("resumed");
        await bob.send("alice@localhost", "after-second-resume");
        await until(() => count("after-second-resume") > 0, "after-second-resume");
        expect(logs.filter((e) => e.event === "xmpp-error" || e.event === "resume-error")).toEqual(
          [],
        );
        expect(s.online).toBe(true);
      } finally {
        await s.close();
        await bob.stop();
      }
    },
    T,
  );
});
