// The accounts' connection settings live in a JSON file next to the database (`<db>.account.json`,
// mode 0600): the shared store schema has no place for them and every process (main app, NSE,
// share) needs them. On a phone this would be the keychain. One account: `{ v: 1, ...account }`
// (as written by `login`); several (`account add`): `{ v: 2, accounts: [account, ...] }`, the
// first being the one `login` created (send, chats, tail and share use it).
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import type { SessionOptions } from "@lichen/engine";
import { CliError } from "./errors.js";

export interface AccountSettings {
  v: 1;
  /** Account id in the store (the bare JID). */
  accountId: string;
  /** Bare JID, local@domain. */
  jid: string;
  /** xmpp://host:port or xmpps://host:port */
  service: string;
  password: string;
  /** Resource to bind; absent: the server picks one. */
  resource?: string;
}

export function settingsPath(db: string): string {
  return `${db}.account.json`;
}

/** Splits a bare JID; rejects full JIDs and obviously broken ones. */
export function parseBareJid(jid: string): { local: string; domain: string } {
  const m = /^([^@/\s]+)@([^@/\s]+)$/.exec(jid);
  if (!m) {
    const hint = jid.includes("/") ? " (give the resource with --resource)" : "";
    throw new CliError(`"${jid}" is not a bare JID like alice@example.org${hint}`);
  }
  return { local: m[1]!, domain: m[2]!.toLowerCase() };
}

/** Accepts xmpp://host:port and xmpps://host:port (port defaults to 5222 / 5223). */
export function normalizeService(service: string): string {
  let url: URL;
  try {
    url = new URL(service);
  } catch {
    throw new CliError(`service "${service}" is not a URL like xmpp://127.0.0.1:5222`);
  }
  if (url.protocol !== "xmpp:" && url.protocol !== "xmpps:")
    throw new CliError(`service "${service}" must start with xmpp:// or xmpps://`);
  if (!url.hostname) throw new CliError(`service "${service}" has no host`);
  const port = url.port || (url.protocol === "xmpp:" ? "5222" : "5223");
  return `${url.protocol}//${url.hostname}:${port}`;
}

function problemOf(value: unknown, version: 1 | 2 = 1): string | null {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return "not a JSON object";
  const o = value as Record<string, unknown>;
  if (version === 1 && o.v !== 1) return `"v" must be 1 or 2`;
  for (const key of ["accountId", "jid", "service", "password"] as const) {
    if (typeof o[key] !== "string" || o[key] === "") return `"${key}" must be a non-empty string`;
  }
  if (o.resource !== undefined && (typeof o.resource !== "string" || o.resource === ""))
    return `"resource" must be a non-empty string when present`;
  try {
    parseBareJid(o.jid as string);
    normalizeService(o.service as string);
  } catch (err) {
    return (err as Error).message;
  }
  return null;
}

/** The first account (the one `login` created); see readAllAccountSettings. */
export function readAccountSettings(db: string): AccountSettings {
  return readAllAccountSettings(db)[0]!;
}

/**
 * Every account, the first being the one `login` created. Reads and validates the file; every
 * failure is a CliError naming the file and the fix.
 */
export function readAllAccountSettings(db: string): AccountSettings[] {
  const file = settingsPath(db);
  if (!existsSync(file))
    throw new CliError(
      `no account configured for ${db} (missing ${file}): run "lichen-chat login --jid ... --password ..." first`,
    );
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new CliError(
      `account settings ${file} are corrupt (${(err as Error).message}): fix the file or run "lichen-chat login" again`,
    );
  }
  const invalid = (problem: string) =>
    new CliError(
      `account settings ${file} are invalid: ${problem}; fix the file or run "lichen-chat login" again`,
    );
  const o = value as Record<string, unknown> | null;
  if (o && typeof o === "object" && o.v === 2) {
    if (!Array.isArray(o.accounts) || o.accounts.length === 0)
      throw invalid(`"accounts" must be a non-empty array`);
    const jids = new Set<string>();
    return o.accounts.map((entry: unknown, i: number) => {
      const problem = problemOf(entry, 2);
      if (problem) throw invalid(`accounts[${i}]: ${problem}`);
      const a = entry as Omit<AccountSettings, "v">;
      if (jids.has(a.jid)) throw invalid(`accounts[${i}]: ${a.jid} is listed twice`);
      jids.add(a.jid);
      return { ...a, v: 1 } as AccountSettings;
    });
  }
  const problem = problemOf(value);
  if (problem) throw invalid(problem);
  return [value as AccountSettings];
}

/** Writes one account as v1 (what `login` writes) or several as v2. */
export function writeAllAccountSettings(db: string, all: AccountSettings[]): void {
  if (all.length === 1) return writeAccountSettings(db, all[0]!);
  writeSettingsFile(db, {
    v: 2,
    accounts: all.map(({ v: _v, ...rest }) => rest),
  });
}

/** Atomic write (temp file + rename), readable by the owner only: it holds the password. */
export function writeAccountSettings(db: string, settings: AccountSettings): void {
  writeSettingsFile(db, settings);
}

function writeSettingsFile(db: string, content: unknown): void {
  const file = settingsPath(db);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(content, null, 2) + "\n", { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

type SessionConfig = Omit<SessionOptions, "store">;

/** What DurableSession / AppController / handlePush need for this account. */
export function sessionConfig(
  s: AccountSettings,
  logger?: (event: Record<string, unknown>) => void,
): SessionConfig {
  const { local, domain } = parseBareJid(s.jid);
  return {
    accountId: s.accountId,
    service: s.service,
    domain,
    username: local,
    password: s.password,
    ...(s.resource ? { resource: s.resource } : {}),
    ...(logger ? { logger } : {}),
  };
}
