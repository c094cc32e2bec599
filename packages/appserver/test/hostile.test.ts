import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pushIq } from "../src/testing/component-server.js";
import { startApns, type ApnsHarness } from "./helpers/apns.js";
import { hostileIqs } from "./helpers/hostile.js";
import { startNode, until } from "./helpers/nodes.js";

const SEED = Number(process.env.LICHEN_FUZZ_SEED ?? Date.now() % 2 ** 31);

describe(
  `10k hostile push IQs (seed ${SEED}; replay with LICHEN_FUZZ_SEED=${SEED})`,
  { timeout: 180_000 },
  () => {
    let apns: ApnsHarness;
    beforeAll(async () => {
      apns = await startApns();
    });
    afterAll(async () => {
      await apns?.stop();
    });

    it("no crash, a precise error for each, healthy pushes still delivered", async () => {
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(chunk.toString());
          cb();
        },
      });
      const node = await startNode(
        apns.createSender,
        { apps: { default: apns.appConfig } },
        { logger: pino({ level: "debug" }, sink) },
      );
      try {
        const iqs = hostileIqs(SEED, 10_000);
        // interleave a healthy push every 1000 hostile ones
        const healthy: string[] = [];
        iqs.forEach((q, i) => {
          node.xmpp.send(q.xml);
          if (i % 1000 === 999) {
            const id = `healthy${i}`;
            healthy.push(id);
            node.xmpp.send(
              pushIq({ id, token: (i + 10_000).toString(16).padStart(64, "0"), from: "localhost" }),
            );
          }
        });
        const expected = iqs.flatMap((q) => (q.expectReplyId ? [q.expectReplyId] : []));
        for (const id of expected) await node.xmpp.waitFor(id, 60_000);
        for (const id of healthy) expect((await node.xmpp.waitFor(id)).type, id).toBe("result");
        // IQs of type result/error are never answered (their replies would have come before the
        // later ones awaited above: rejections are answered synchronously, in order)
        const silent = iqs.flatMap((q) => (q.mustNotAnswerId ? [q.mustNotAnswerId] : []));
        expect(silent.length).toBeGreaterThan(0);
        for (const id of silent) expect(node.xmpp.replies.has(id), id).toBe(false);
        // an unknown or missing type is answered with bad-request (RFC 6120 §8.3.3.1)
        const badType = iqs.filter(
          (q) => q.expectReplyId && /^<iq (type='(bogus)'|(?!type=))/.test(q.xml),
        );
        expect(badType.length).toBeGreaterThan(0);
        for (const q of badType) {
          const r = node.xmpp.replies.get(q.expectReplyId!)!;
          expect(r.raw, q.xml.slice(0, 200)).toMatch(
            /<error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>iq type missing/,
          );
        }
        const byKind = new Map<string, number>();
        for (const id of expected) {
          const r = node.xmpp.replies.get(id)!;
          if (r.type === "error") {
            const m =
              /<error type='(\w+)'><([\w-]+) xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>([^<]+)<\/text>/.exec(
                r.raw,
              );
            expect(
              m,
              `error reply without condition and text: ${r.raw.slice(0, 300)}`,
            ).not.toBeNull();
            byKind.set(`${m![1]}/${m![2]}`, (byKind.get(`${m![1]}/${m![2]}`) ?? 0) + 1);
          } else {
            expect(r.type).toBe("result");
          }
        }
        // hostile input is never answered with an internal error, and nothing crashed
        expect(byKind.has("wait/internal-server-error")).toBe(false);
        expect(lines.filter((l) => l.includes('"level":50'))).toEqual([]);
        expect(node.server.health().ok).toBe(true);
        // the healthy pushes reached the simulator
        await until(
          () =>
            healthy.every(
              (_, k) =>
                apns.deliveries(((k + 1) * 1000 - 1 + 10_000).toString(16).padStart(64, "0"))
                  .length === 1,
            ),
          "healthy deliveries",
        );
      } finally {
        await node.stop();
      }
    });

    it("not-well-formed XML from the server side: link resets, reconnects, keeps serving", async () => {
      const node = await startNode(apns.createSender, { apps: { default: apns.app(1) } });
      try {
        // mismatched tags and a closed stream are fatal for the stream: the link must come back
        for (const garbage of ["<iq type='set' id='g1'><pubsub></iq>", "</stream:stream><x>"]) {
          const reconnects = node.server.link.reconnects;
          node.xmpp.send(garbage);
          await until(
            () => node.server.link.reconnects > reconnects && node.xmpp.connected,
            "reconnected after garbage",
          );
        }
        // what the (lenient) parser tolerates must not wedge the stream
        node.xmpp.send("<iq id='a' id='b'/><iq type='set'/><message/>");
        node.xmpp.send(
          "<iq type='get' id='p1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        );
        expect((await node.xmpp.waitFor("p1")).type).toBe("result");
        node.xmpp.send(pushIq({ id: "after", token: "ab".repeat(32) }));
        expect((await node.xmpp.waitFor("after")).type).toBe("result");
      } finally {
        await node.stop();
      }
    });
  },
);
