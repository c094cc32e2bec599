// One object per account: identity given once (the JID), the server found the way other XMPP
// clients find it (DNS SRV, see resolve.ts), and the process-model API (AppController for the main
// app, handlePush for the notification service extension) on top of it.
import { openStore, type ProcessRole, type Store } from "@lichen/store";
import { ensureAccount } from "./accounts.js";
import {
  AppController,
  handlePush,
  type NseOptions,
  type NseResult,
  type ReconnectPolicy,
} from "./modes.js";
import { resolveXmppServices, type DnsResolver, type ServiceCandidate } from "./resolve.js";
import type { DurableSession, SessionOptions } from "./session.js";

/** The JID given to createClient is not `localpart@domain[/resource]` (RFC 7622). */
export class InvalidJidError extends Error {
  override readonly name = "InvalidJidError";
  constructor(
    readonly jid: string,
    reason: string,
  ) {
    super(`invalid JID ${JSON.stringify(jid)}: ${reason}`);
  }
}

export interface ParsedJid {
  local: string;
  domain: string;
  resource?: string;
}

// RFC 7622 §3.3.1: characters a localpart must not contain (besides whitespace and controls).
const LOCAL_FORBIDDEN = /["&'/:<>@\s\p{Cc}]/u;

/**
 * `local@domain[/resource]` of an account (a localpart is required: it is the login name). Checks
 * what would otherwise fail later and less clearly (at DNS or SASL); not full PRECIS.
 */
export function parseAccountJid(jid: string): ParsedJid {
  const slash = jid.indexOf("/");
  const head = slash === -1 ? jid : jid.slice(0, slash);
  const resource = slash === -1 ? undefined : jid.slice(slash + 1);
  const at = head.lastIndexOf("@");
  if (at === -1) throw new InvalidJidError(jid, "no localpart (expected user@domain)");
  const local = head.slice(0, at);
  const domain = head.slice(at + 1).replace(/\.$/, "");
  if (local === "" || Buffer.byteLength(local) > 1023)
    throw new InvalidJidError(jid, "the localpart is empty or longer than 1023 bytes");
  if (LOCAL_FORBIDDEN.test(local))
    throw new InvalidJidError(jid, "the localpart contains a forbidden character");
  const labels = domain.split(".");
  const bracketed = /^\[[0-9a-fA-F:.]+\]$/.test(domain); // IPv6 literal
  if (
    !bracketed &&
    (domain === "" ||
      Buffer.byteLength(domain) > 1023 ||
      labels.some((l) => l === "" || /[\s\p{Cc}/@:<>"'&\\[\]]/u.test(l)))
  )
    throw new InvalidJidError(jid, "the domain is not a valid host name");
  if (resource !== undefined && (resource === "" || Buffer.byteLength(resource) > 1023))
    throw new InvalidJidError(jid, "the resource is empty or longer than 1023 bytes");
  return { local, domain: domain.toLowerCase(), ...(resource !== undefined ? { resource } : {}) };
}

type PassThrough = Omit<
  SessionOptions,
  | "store"
  | "accountId"
  | "service"
  | "services"
  | "domain"
  | "username"
  | "password"
  | "resource"
  | "lock"
>;

export interface ClientOptions extends PassThrough {
  /** An open store, or `path` to open one (closed again by close()). */
  store?: Store;
  path?: string;
  /** Role when opening `path` (default "main"; "nse" in a notification service extension). */
  role?: ProcessRole;
  /** The account: `user@domain`, optionally `/resource`. */
  jid: string;
  password: string;
  /** Overrides the JID's resource. */
  resource?: string;
  /** Connect here (e.g. "xmpp://127.0.0.1:5222") instead of resolving the domain. */
  service?: string;
  /** Account row id (default: the bare JID). */
  accountId?: string;
  /** DNS for the SRV lookup (default: the system's); tests point one at a loopback server. */
  resolver?: DnsResolver;
  /** [0, 1) source for the SRV weight choice (default Math.random). */
  random?: () => number;
  /** Main-app options of the AppController. */
  app?: { leaseMs?: number; reconnect?: ReconnectPolicy | false; backgroundDrainMs?: number };
}

export interface LichenClient {
  readonly store: Store;
  readonly accountId: string;
  /** The bare JID. */
  readonly jid: string;
  readonly domain: string;
  /** Where connect() goes, in order (from DNS SRV unless `service` was given). */
  readonly candidates: readonly ServiceCandidate[];
  /** The session options AppController and handlePush are given (store excluded). */
  readonly config: Omit<SessionOptions, "store">;
  /** The main app's controller (created on first use: an NSE process never needs one). */
  readonly app: AppController;
  /** The one session of the main app; null before the first foreground(). */
  readonly session: DurableSession | null;
  foreground(): Promise<"resumed" | "new">;
  background(): Promise<void>;
  /** The NSE role: sync on a push (handlePush with this account). */
  push(opts?: Omit<NseOptions, "store" | "session">): Promise<NseResult>;
  /** Background, stop the controller, and close the store if createClient opened it. */
  close(): Promise<void>;
}

/**
 * Parse the JID (InvalidJidError before any I/O), resolve the server (ServiceResolutionError when
 * the domain has none), open the store if given a path, and create the account row.
 */
export async function createClient(opts: ClientOptions): Promise<LichenClient> {
  const {
    store: given,
    path,
    role,
    jid,
    password,
    resource,
    service,
    accountId,
    resolver,
    random,
    app: appOpts,
    ...pass
  } = opts;
  if (!given === !path) throw new TypeError("createClient needs exactly one of `store` or `path`");
  const parsed = parseAccountJid(jid);
  const bareJid = `${parsed.local}@${parsed.domain}`;
  const candidates: ServiceCandidate[] = service
    ? [
        {
          service,
          host: parsed.domain,
          port: Number(new URL(service).port) || 5222,
          directTls: service.startsWith("xmpps:"),
        },
      ]
    : await resolveXmppServices(parsed.domain, {
        ...(resolver ? { resolver } : {}),
        ...(random ? { random } : {}),
      });
  const store = given ?? openStore({ path: path!, role: role ?? "main" });
  const id = accountId ?? bareJid;
  const res = resource ?? parsed.resource;
  ensureAccount(store, { id, jid: bareJid, ...(res !== undefined ? { resource: res } : {}) });
  const config: Omit<SessionOptions, "store"> = {
    ...pass,
    accountId: id,
    service: candidates[0]!.service,
    services: candidates.map((c) => c.service),
    domain: parsed.domain,
    username: parsed.local,
    password,
    ...(res !== undefined ? { resource: res } : {}),
  };
  let app: AppController | null = null;
  const getApp = () => (app ??= new AppController(store, config, appOpts ?? {}));
  return {
    store,
    accountId: id,
    jid: bareJid,
    domain: parsed.domain,
    candidates,
    config,
    get app() {
      return getApp();
    },
    get session() {
      return app?.session ?? null;
    },
    foreground: () => getApp().foreground(),
    background: async () => {
      await app?.background();
    },
    push: (o = {}) => handlePush({ ...o, store, session: config }),
    close: async () => {
      await app?.close();
      if (!given) store.close();
    },
  };
}
