// One NSE run for the OMEMO cold-start benchmark: opens the store as "nse", runs handlePush() with
// the OMEMO plugin in its NSE role (or without it: the plain baseline), and prints one JSON line
// with the epoch ms of the first message stored (decrypted, with OMEMO) and its peak RSS.
// argv[2] = JSON { db, service, domain, username, password, accountId, resource, omemo }.
import { DurableSession, handlePush } from "@lichen/engine";
import { openStore } from "@lichen/store";
import { omemo } from "#src/index.js";

interface Args {
  db: string;
  service: string;
  domain: string;
  username: string;
  password: string;
  accountId: string;
  resource: string;
  omemo: boolean;
}

const args = JSON.parse(process.argv[2] ?? "{}") as Args;
let firstStoredAt: number | null = null;
let firstBody: string | null = null;
// handlePush() owns its session: observe "message-stored" without changing its behaviour.
const proto = DurableSession.prototype as unknown as {
  emit(event: string | symbol, ...rest: unknown[]): boolean;
};
const emit = proto.emit;
proto.emit = function (this: DurableSession, event: string | symbol, ...rest: unknown[]): boolean {
  if (event === "message-stored" && firstStoredAt === null) {
    firstStoredAt = Date.now();
    firstBody = (rest[0] as { body: string }).body;
  }
  return emit.call(this, event, ...rest);
};

const store = openStore({ path: args.db, role: "nse" });
const result = await handlePush({
  store,
  session: {
    accountId: args.accountId,
    service: args.service,
    domain: args.domain,
    username: args.username,
    password: args.password,
    resource: args.resource,
    ...(args.omemo ? { plugins: [omemo({ role: "nse" })] } : {}),
  },
  lingerMs: 100,
});
store.close();
const line = JSON.stringify({
  event: "done",
  firstStoredAt,
  firstBody,
  outcome: result.outcome,
  maxRssKiB: process.resourceUsage().maxRSS,
});
process.stdout.write(line + "\n", () => process.exit(0));
