/**
 * The other process of the store benchmark (run as a child by store.bench.ts):
 * - "nse": takes the session lock whenever asked ("push-arrived"), yields it on "disconnect-all".
 * - "responder": answers ping with pong.
 * - "writer": read-modify-write transactions for the contention figure.
 * Reports JSON lines on stdout.
 */
import { and, eq } from "drizzle-orm";
import { openStore } from "#src/store.js";
import { Ipc } from "#src/ipc.js";
import { ProcessLock } from "#src/lock.js";
import { yieldOnDisconnectAll } from "#src/priority.js";
import { isBusyError } from "#src/errors.js";
import { chats, syncErrors } from "#src/schema.js";
import type { ProcessRole } from "@lichen/schema";

interface PeerArgs {
  db: string;
  role: ProcessRole;
  mode: "nse" | "responder" | "writer" | "hot";
  durationMs?: number;
  count?: number;
  startAt?: number;
  tag?: string;
}

const a = JSON.parse(process.argv[2] ?? "{}") as PeerArgs;
const out = (o: object) => process.stdout.write(JSON.stringify(o) + "\n");
const store = openStore({ path: a.db, role: a.role });
const ipc = new Ipc(store, { role: a.role, pollMs: 50 });
process.on("SIGTERM", () => {
  ipc.close();
  store.close();
  process.exit(0);
});

if (a.mode === "nse") {
  const lock = new ProcessLock(store, {
    key: "xmpp-session",
    holder: `nse:${process.pid}`,
    leaseMs: 2000,
  });
  yieldOnDisconnectAll(lock, ipc, () => ({ handledStanzas: 0 }));
  ipc.on("push-arrived", async (msg) => {
    const generation = await lock.acquire({ timeoutMs: 10_000 });
    ipc.respond(msg, { type: "pong", data: { nonce: String(generation) } });
  });
  ipc.start();
  out({ ready: true });
} else if (a.mode === "responder") {
  ipc.on("ping", (msg) => {
    ipc.respond(msg, {
      type: "pong",
      data: msg.data.nonce === undefined ? {} : { nonce: msg.data.nonce },
    });
  });
  ipc.start();
  out({ ready: true });
} else if (a.mode === "hot") {
  // Commit in a tight loop (synchronous writes, 20 rows each) for durationMs.
  out({ ready: true });
  const end = Date.now() + (a.durationMs ?? 3000);
  let n = 0;
  while (Date.now() < end) {
    store.write((tx) => {
      for (let i = 0; i < 20; i++) {
        tx.insert(syncErrors)
          .values({ accountId: "bench", code: "hot", message: "x".repeat(100), createdAt: tx.now })
          .run();
      }
    });
    n++;
  }
  out({ done: true, transactions: n });
  ipc.close();
  store.close();
} else {
  const count = a.count ?? 1000;
  while (Date.now() < (a.startAt ?? 0)) await new Promise((r) => setTimeout(r, 1));
  let busy = 0;
  const where = and(eq(chats.accountId, "bench"), eq(chats.jid, "counter"));
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    try {
      const inc = (tx: Parameters<Parameters<typeof store.write>[0]>[0]) => {
        const row = tx.select({ n: chats.unreadCount }).from(chats).where(where).get();
        tx.update(chats)
          .set({ unreadCount: (row?.n ?? 0) + 1 })
          .where(where)
          .run();
        tx.insert(syncErrors)
          .values({ accountId: "bench", code: a.tag ?? "w", message: "m", createdAt: tx.now })
          .run();
      };
      if (i % 2 === 0) store.write(inc);
      else await store.writeAsync(inc);
    } catch (e) {
      if (isBusyError(e)) busy++;
      else throw e;
    }
  }
  out({ done: true, busy, ms: performance.now() - t0, endedAt: Date.now() });
  ipc.close();
  store.close();
}
