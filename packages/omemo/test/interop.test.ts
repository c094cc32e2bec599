// Interop with a real third-party OMEMO 0.3 client: Profanity 0.13.1 from Debian (OMEMO through
// libsignal-protocol-c), driven in tmux, on a local Prosody.
// Profanity quirks met here (see also the shared OMEMO notes):
// - It refuses plaintext: libstrophe's mandatory-TLS flag is set even with tls.policy=disable, so
//   the server offers STARTTLS and Profanity's policy "trust" accepts the test certificate.
// - Its accounts file lives in $XDG_DATA_HOME/profanity/accounts (not the config directory).
// - On a fresh account it never creates its device list (own-list fetch gets item-not-found and it
//   stops), so the test publishes it for Profanity from a helper connection of the same account.
// - Its bundle node has Prosody's default "presence" access model: without a mutual presence
//   subscription, fetching it is <forbidden/>. The test sets up the subscription first.
// - It trusts new devices only after `/omemo trustmode blind` (or a manual /omemo trust).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listRoster, xml } from "@lichen/engine";
import { requireInstalled, startProsody } from "@lichen/test-servers";
import { describe, expect, it } from "vitest";
import { NS_OMEMO } from "../src/index.js";
import { online, openDevice, publishIq, until, useServer } from "./helpers.js";
import { Profanity } from "./profanity.js";

const T = 240_000;

describe("OMEMO interop with Profanity 0.13 (Prosody)", () => {
  let ca: string;
  let profanity: Profanity | undefined;
  const env = useServer(
    () => {
      requireInstalled(["profanity"]); // fails (never skips) when missing
      return startProsody({ tls: true });
    },
    ["alice", "bob"],
    {
      timeoutMs: T,
      setUp: async ({ server, stops }) => {
        ca = readFileSync(server.caCertPath, "utf8");
        stops.push(() => {
          profanity?.stop();
          if (profanity) rmSync(profanity.dir, { recursive: true, force: true });
        });
      },
    },
  );
  const { devices } = env;

  it(
    "Lichen → Profanity (Lichen starts X3DH) and Profanity → Lichen",
    async () => {
      // alice: a Lichen device. bobHelper: a Lichen connection of Profanity's account that does
      // what Profanity does not (role nse: it publishes nothing of its own).
      const alice = await online(openDevice(env.server, "alice", "phone", { ca }));
      const bobHelper = openDevice(env.server, "bob", "helper", { ca, role: "nse" });
      devices.push(alice, bobHelper);
      await bobHelper.session.connect();
      // Mutual presence subscription (Profanity's bundle is presence-access).
      alice.session.answerSubscription("bob@localhost", "subscribe");
      await until(
        () =>
          bobHelper.store.sqlite.prepare("SELECT 1 FROM subscription_requests").get() !==
            undefined || listRoster(bobHelper.store, "bob").length > 0,
        "bob sees alice's request",
      );
      bobHelper.session.answerSubscription("alice@localhost", "approve", { subscribeBack: true });
      await until(
        () =>
          listRoster(alice.store, "alice").some(
            (r) => r.jid === "bob@localhost" && r.subscription === "to",
          ),
        "alice subscribed to bob",
      );
      alice.session.answerSubscription("bob@localhost", "approve");
      await until(
        () =>
          listRoster(alice.store, "alice").some(
            (r) => r.jid === "bob@localhost" && r.subscription === "both",
          ),
        "mutual subscription",
      );

      const pf = (profanity = new Profanity(
        mkdtempSync(join(tmpdir(), "lichen-profanity-")),
        "bob@localhost",
        "bobpw",
        env.server.c2sPort,
      ));
      pf.start();
      const pane = () =>
        `\n--- profanity pane (end) ---\n${pf.pane().trimEnd().split("\n").slice(-25).join("\n")}` +
        `\n--- profanity log (end) ---\n${pf.logTail()}`;
      /** until(), with Profanity's screen in the failure. */
      const wait = (pred: () => boolean | Promise<boolean>, what: string) =>
        until(pred, what).catch((e: unknown) => {
          throw new Error(`${(e as Error).message}${pane()}`);
        });
      await wait(() => /logged in/i.test(pf.pane()), "profanity logged in");
      pf.type("/omemo gen");
      await wait(() => pf.deviceId() !== null, "profanity generated its OMEMO keys");
      pf.type("/omemo trustmode blind");
      const pfDevice = pf.deviceId()!;

      // Publish Profanity's device list for it (quirk), open to all, as Conversations does.
      const published = await bobHelper.omemo.request(
        publishIq(
          `${NS_OMEMO}.devicelist`,
          xml("list", { xmlns: NS_OMEMO }, xml("device", { id: String(pfDevice) })),
        ),
      );
      expect(published.attrs.type).toBe("result");

      await wait(
        () =>
          alice.omemo.fetchBundle("bob@localhost", pfDevice).then(
            () => true,
            () => false,
          ),
        "Profanity published its bundle",
      );
      const sent = await alice.omemo.send("bob@localhost", "hello Profanity, this is Lichen");
      expect(sent.devices).toEqual([{ jid: "bob@localhost", deviceId: pfDevice }]);
      // It opens a window for the chat; its screen shows the decrypted text ("~" marks OMEMO).
      await wait(() => pf.pane().includes("<< chat message: alice@localhost"), "Profanity got it");
      pf.type("/win 2");
      await wait(
        () => /~ alice@localhost\S*: hello Profanity, this is Lichen/.test(pf.pane()),
        "Profanity decrypted Lichen's message",
      );

      pf.type("/msg alice@localhost");
      pf.type("/omemo start");
      pf.type("hi Lichen, Profanity answers over OMEMO");
      await wait(
        () =>
          alice
            .messages("bob@localhost")
            .some((m) => m.body === "hi Lichen, Profanity answers over OMEMO"),
        "Lichen decrypted Profanity's message",
      );
      expect(alice.messages("bob@localhost").at(-1)).toEqual({
        body: "hi Lichen, Profanity answers over OMEMO",
        encrypted: 1,
        direction: "in",
      });
      expect(alice.omemo.fingerprints("bob@localhost").map((f) => f.deviceId)).toEqual([pfDevice]);
    },
    T,
  );
});
