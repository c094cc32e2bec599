// One notification-service-extension run for the NSE cold-start benchmark: opens the store as
// "nse", calls handlePush() with its defaults, and prints one JSON line with epoch-ms marks
// (after module load, session online, first message stored) and its peak RSS.
// argv[2] = JSON { db, service, domain, username, password, accountId, resource }.
import { openStore } from "@lichen/store";
import { handlePush } from "#src/modes.js";
import { DurableSession } from "#src/session.js";

interface Args {
  db: string;
  service: string;
  domain: string;
  username: string;
  password: string;
  accountId: string;
  resource: string;
}

// Static imports are evaluated before this line: this is "modules loaded".
const loadedAt = Date.now();
const args = JSON.parse(process.argv[2] ?? "{}") as Args;

// handlePush() owns its session; observe the session's events without changing its behaviour.
let onlineAt: number | null = null;
let onlineHow: unknown = null;
let firstStoredAt: number | null = null;
// Untyped on purpose: this wraps every event of the map.
const proto = DurableSession.prototype as unknown as {
  emit(event: string | symbol, ...rest: unknown[]): boolean;
};
const emit = proto.emit;
proto.emit = function (this: DurableSession, event: string | symbol, ...rest: unknown[]): boolean {
  if (event === "online" && onlineAt === null) {
    onlineAt = Date.now();
    onlineHow = rest[0];
  } else if (event === "message-stored" && firstStoredAt === null) {
    firstStoredAt = Date.now();
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
  },
});
store.close();
const line = JSON.stringify({
  event: "done",
  loadedAt,
  onlineAt,
  onlineHow,
  firstStoredAt,
  outcome: result.outcome,
  notifications: result.notifications,
  maxRssKiB: process.resourceUsage().maxRSS,
  endedAt: Date.now(),
});
process.stdout.write(line + "\n", () => process.exit(0));
