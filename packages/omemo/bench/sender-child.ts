// The sender of the OMEMO benchmark (bob), in a process of its own: its encryption, its garbage
// and its handling of the receipts alice sends back never share the CPU time, the heap or the
// event loop of the receiver being measured. Driven over IPC, one command at a time:
//   { cmd: "send", to, mode: "omemo" | "plain", bodies } → sends them, waits until the server has
//     them all (syncBarrier), then suspends bob's session (its receipts wait on the server);
//   { cmd: "resume" } → reconnects (and handles what waited); { cmd: "close" } → logs out, exits.
// argv[2] = JSON { db, service, user }. Each command is answered { ok: true } or { error }.
import { DurableSession, ensureAccount } from "@lichen/engine";
import { openStore } from "@lichen/store";
import { Omemo } from "#src/index.js";

interface Args {
  db: string;
  service: string;
  user: string;
}
type Command =
  | { cmd: "send"; to: string; mode: "omemo" | "plain"; bodies: string[] }
  | { cmd: "resume" }
  | { cmd: "close" };

const args = JSON.parse(process.argv[2] ?? "{}") as Args;
const store = openStore({ path: args.db, role: "main" });
ensureAccount(store, { id: args.user, jid: `${args.user}@localhost`, resource: "phone" });
const omemo = new Omemo({ requestTimeoutMs: 60_000 });
const session = new DurableSession({
  store,
  accountId: args.user,
  service: args.service,
  domain: "localhost",
  username: args.user,
  password: `${args.user}pw`,
  resource: "phone",
  plugins: [omemo],
});
session.setMaxListeners(0); // one "acked" waiter per plain message of a burst

async function run(c: Command): Promise<void> {
  if (c.cmd === "send") {
    for (const body of c.bodies) {
      if (c.mode === "omemo") await omemo.send(c.to, body);
      else session.send(c.to, body);
    }
    await session.syncBarrier();
    await session.suspend();
  } else if (c.cmd === "resume") {
    await session.connect();
  } else {
    await session.close().catch(() => {});
    store.close();
    process.send!({ ok: true }, () => process.exit(0));
    return;
  }
  process.send!({ ok: true });
}

let chain: Promise<void> = Promise.resolve();
process.on("message", (c: Command) => {
  chain = chain.then(() =>
    run(c).catch((e: unknown) => {
      process.send!({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    }),
  );
});

await session.connect();
await omemo.publish();
process.send!({ ok: true }); // ready
