import { startProsody } from "@lichen/test-servers";
import { describe, expect, it } from "vitest";
import { markDecrypted, xml, type Element, type SessionPlugin } from "../src/index.js";
import { startPeer, until, useEngineEnv } from "./helpers.js";

const T = 120_000;

describe("session plugins (the seam OMEMO uses)", () => {
  const env = useEngineEnv(startProsody, { prefix: "lichen-plugins-" });

  it(
    "a plugin's replacement stanza is stored (encrypted flag by object identity only), its apply runs in the stanza's transaction, a stale check re-runs prepare",
    async () => {
      let prepares = 0;
      let stale = true;
      const upper: SessionPlugin = {
        name: "upper",
        async prepare(stanza: Element) {
          const body = stanza.getChildText("body");
          if (!stanza.is("message") || !body?.startsWith("secret:")) return null;
          prepares++;
          const copy = xml("message", { ...stanza.attrs }, xml("body", {}, body.toUpperCase()));
          return {
            stanza: markDecrypted(copy),
            stillValid: () => {
              const ok = !stale;
              stale = false; // stale once, as if another process wrote meanwhile
              return ok;
            },
            apply: (ctx) => {
              ctx.tx.sqlite
                .prepare(
                  "INSERT INTO quarantine (table_name, row_key, raw, error, at) VALUES ('plugin-test', ?, '', 'applied', 0)",
                )
                .run(body);
            },
          };
        },
      };
      const session = env.session({ plugins: [upper] });
      await session.connect();
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      try {
        await bob.send("alice@localhost", "secret:hello");
        await bob.send("alice@localhost", "plain");
        // A sender cannot mark a plain message encrypted: the marker is object identity.
        await bob.xmpp.send(
          xml(
            "message",
            { to: "alice@localhost", type: "chat", encrypted: "1" },
            xml("body", {}, "forged"),
          ),
        );
        const rows = () =>
          env.store.sqlite
            .prepare("SELECT body, encrypted FROM messages WHERE account_id = 'alice' ORDER BY id")
            .all() as { body: string; encrypted: number }[];
        await until(() => rows().length === 3, "three messages stored");
        expect(rows().map((r) => [r.body.replace(/-\w+$/, ""), r.encrypted])).toEqual([
          ["SECRET:HELLO", 1],
          ["plain", 0],
          ["forged", 0],
        ]);
        expect(prepares).toBe(2); // once stale, once applied
        const applied = env.store.sqlite
          .prepare("SELECT count(*) AS n FROM quarantine WHERE table_name = 'plugin-test'")
          .get() as { n: number };
        expect(applied.n).toBe(1);
      } finally {
        await bob.stop();
        await session.close();
      }
    },
    T,
  );

  it(
    "a plugin whose prepare throws fails the stanza: never stored as received, replayed, then kept in quarantine",
    async () => {
      const failing: SessionPlugin = {
        name: "failing",
        async prepare(stanza: Element) {
          if (stanza.getChildText("body")?.startsWith("boom")) throw new Error("plugin bug");
          return null;
        },
      };
      const session = env.session({ plugins: [failing] });
      await session.connect();
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      try {
        await bob.send("alice@localhost", "boom");
        await bob.send("alice@localhost", "after-boom");
        const stored = (prefix: string) =>
          (
            env.store.sqlite
              .prepare("SELECT count(*) AS n FROM messages WHERE body LIKE ?")
              .get(`${prefix}%`) as { n: number }
          ).n;
        await until(() => stored("after-boom") === 1, "the next message is handled");
        expect(stored("boom-")).toBe(0);
        const q = env.store.sqlite
          .prepare("SELECT raw, error FROM quarantine WHERE table_name = 'inbound_stanza'")
          .all() as { raw: string; error: string }[];
        expect(q).toHaveLength(1);
        expect(q[0]!.raw).toContain("boom-");
      } finally {
        await bob.stop();
        await session.close();
      }
    },
    T,
  );
});
