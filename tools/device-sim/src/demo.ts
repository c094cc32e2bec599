// `npm run demo`: the whole chain on loopback with embedded defaults, narrated as a timeline —
// Prosody (from Debian), the real lichen-push daemon, the APNs simulator, the device simulator
// running the real lichen-chat processes, two accounts (alice on the phone, bob writing).
// Ctrl-C (or the end of the story) stops everything it started, by PID.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startProsody, startTestPeer, type XmppTestServer } from "@lichen/test-servers";
import { until } from "@lichen/test-kit";
import { startPushChain, setUpAccount, type PushChain } from "./chain.js";
import { scaledRules } from "./rules.js";
import { DeviceSimulator } from "./simulator.js";

const started = Date.now();
const say = (line: string) => {
  const t = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
  process.stdout.write(`${t} s  ${line}\n`);
};

async function main(): Promise<void> {
  const stops: (() => Promise<void>)[] = [];
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say("stopping everything this demo started …");
    for (const stop of stops.reverse()) await stop().catch(() => {});
    say("stopped; nothing is left running");
    process.exit(code);
  };
  process.once("SIGINT", () => void stopAll(130));
  process.once("SIGTERM", () => void stopAll(143));
  process.stdout.write("Lichen demo: a message to a frozen app, end to end. Ctrl-C to stop.\n\n");
  try {
    say("starting Prosody 0.12 on loopback (mod_cloud_notify for XEP-0357) …");
    const server: XmppTestServer = await startProsody();
    stops.push(() => server.stop());
    await server.registerUser("alice", "alicepw");
    await server.registerUser("bob", "bobpw");
    say(`Prosody on 127.0.0.1:${server.c2sPort}; accounts alice@localhost and bob@localhost`);
    say(
      "starting lichen-push (the push appserver, a component of Prosody) and the APNs simulator …",
    );
    const chain: PushChain = await startPushChain(server);
    stops.push(() => chain.stop());
    say(`lichen-push online as ${chain.appServerJid}; APNs simulator at ${chain.apns.url}`);
    const db = join(mkdtempSync(join(tmpdir(), "lichen-demo-")), "alice.db");
    const token = "d3".repeat(32);
    await setUpAccount({
      db,
      jid: "alice@localhost",
      password: "alicepw",
      service: `xmpp://127.0.0.1:${server.c2sPort}`,
      token,
      chain,
    });
    say(
      `alice logged in (lichen-chat login) and enabled push for device token ${token.slice(0, 8)}…`,
    );
    // The iOS timers at a tenth: the app is frozen 3 s after leaving it instead of 30 s.
    const phone = new DeviceSimulator({ db, token, rules: scaledRules(0.1, { nseLingerMs: 500 }) });
    stops.push(() => phone.stop());
    chain.onDelivery((d) =>
      say(
        `APNs: push ${d.apnsId.slice(0, 8)} delivered to the phone (${d.bytes} bytes, no message text)`,
      ),
    );
    chain.onDelivery(phone.deliver);
    phone.on("timeline", (e) => say(`phone: ${e.what}${e.pid ? ` [pid ${e.pid}]` : ""}`));

    phone.openApp();
    await until(() => /online as/.test(phone.appOutput().stderr), "the app online", 60_000);
    say(`app: ${/online as [^\n]*/.exec(phone.appOutput().stderr)![0]}`);
    phone.leaveApp();
    await until(() => phone.appState === "frozen", "the app frozen", 60_000);

    const bob = await startTestPeer(server.c2sPort, "bob", "bobpw");
    stops.push(() => bob.stop());
    say('bob sends "hello" to alice, whose app is frozen');
    await bob.send("alice@localhost", "hello");
    say("Prosody → lichen-push: an XEP-0357 publish for alice's token (no body, no sender)");
    const shown = await until(
      () => phone.displayed.find((d) => d.body === "hello"),
      "the notification",
      60_000,
    );
    const result = phone.nseResults.find((r) => r.pushId === shown.pushId);
    say(
      `NSE ${shown.pid}: ${result?.stream === "resumed" ? "resumed alice's stream from the database" : "synced"}; notification "${shown.title}: ${shown.body}"`,
    );
    await phone.nsesIdle();
    say("alice opens the app");
    const before = phone.appOutput().stderr.length;
    const online = () =>
      /[^\n]*\((resumed|new stream)\)/.exec(phone.appOutput().stderr.slice(before))?.[0];
    phone.openApp();
    const line = await until(online, "the app online again", 60_000);
    say(`app: ${line ?? "online"} — the same session, nothing fetched twice`);
    say("the story is over");
    await stopAll(0);
  } catch (err) {
    process.stderr.write(`demo failed: ${(err as Error).message}\n`);
    await stopAll(1);
  }
}

void main();
