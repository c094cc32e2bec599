// The benchmark's message sender ("bob"): a plain @xmpp/client in its own process, so the receiver
// under test does not share its event loop with the sender. argv[2] = JSON
// { service, domain, username, password }. Commands are JSON lines on stdin, answers JSON lines on
// stdout:
//   {cmd:"burst", to, prefix, n} -> {event:"burst-start", t} ... {event:"burst-sent", t}
//   {cmd:"one", to, body}        -> {event:"queued"} once the server has routed the message
//   {cmd:"stop"}                 -> closes the stream and exits
import { createInterface } from "node:readline";
import { streamManagementEnabled } from "@lichen/test-servers";
import { client, xml } from "@xmpp/client";

interface Args {
  service: string;
  domain: string;
  username: string;
  password: string;
}
type Command =
  | { cmd: "burst"; to: string; prefix: string; n: number }
  | { cmd: "one"; to: string; body: string }
  | { cmd: "stop" };

const args = JSON.parse(process.argv[2] ?? "{}") as Args;
const out = (e: Record<string, unknown>) => process.stdout.write(JSON.stringify(e) + "\n");

const xmpp = client({
  service: args.service,
  domain: args.domain,
  username: args.username,
  password: args.password,
  resource: "bench-sender",
});
xmpp.on("error", (err: Error) => process.stderr.write(`sender: ${err.message}\n`));
xmpp.reconnect.stop();

const message = (to: string, body: string) =>
  xml("message", { to, type: "chat", id: body }, xml("body", {}, body));

/**
 * The server handles one client's stanzas in order, so when its answer to this ping arrives every
 * message sent before it has been routed (delivered, or queued for a hibernating session).
 */
const serverRoundTrip = () =>
  xmpp.iqCaller.request(
    xml("iq", { type: "get", to: args.domain }, xml("ping", { xmlns: "urn:xmpp:ping" })),
    60_000,
  );

async function run(c: Command): Promise<void> {
  if (c.cmd === "burst") {
    out({ event: "burst-start", t: Date.now() });
    for (let i = 0; i < c.n; i++) await xmpp.send(message(c.to, `${c.prefix}${i}`));
    await serverRoundTrip();
    out({ event: "burst-sent", t: Date.now() });
  } else if (c.cmd === "one") {
    await xmpp.send(message(c.to, c.body));
    await serverRoundTrip();
    out({ event: "queued" });
  } else if (c.cmd === "stop") {
    await xmpp.stop().catch(() => {});
    process.exit(0);
  }
}

await xmpp.start();
await streamManagementEnabled(xmpp);
out({ event: "ready" });
// Commands run one after another, in the order they arrive.
let chain: Promise<void> = Promise.resolve();
createInterface({ input: process.stdin }).on("line", (line) => {
  const c = JSON.parse(line) as Command;
  chain = chain.then(() =>
    run(c).catch((err: unknown) => {
      out({ event: "error", error: err instanceof Error ? err.message : String(err) });
    }),
  );
});
// The parent went away: do not linger.
process.stdin.on("end", () => void run({ cmd: "stop" }));
