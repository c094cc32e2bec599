import { existsSync } from "node:fs";
import { AppController, isTransientConnectError, type SessionOptions } from "@lichen/engine";
import {
  DatabaseCorruptError,
  LockTimeoutError,
  openStore,
  roleOfHolder,
  type ProcessRole,
  type Store,
} from "@lichen/store";
import { CliError, describeError } from "./errors.js";
import {
  readAccountSettings,
  readAllAccountSettings,
  sessionConfig,
  type AccountSettings,
} from "./settings.js";

export type Logger = (event: Record<string, unknown>) => void;

/** What every command gets from the global options. */
export interface CliContext {
  db: string;
  /** --account: the account send, chats, tail and share use (default: the first, login's). */
  account?: string;
  verbose: boolean;
  /** Structured logs with --verbose (nothing otherwise): see logLine. */
  log: Logger;
  /** Program output (stdout). */
  out(line: string): void;
  /** Human status and progress lines (stderr). */
  status(line: string): void;
}

export function makeContext(opts: { db: string; verbose?: boolean; account?: string }): CliContext {
  const verbose = opts.verbose === true;
  return {
    db: opts.db,
    ...(opts.account !== undefined ? { account: opts.account } : {}),
    verbose,
    log: verbose
      ? (event) => process.stderr.write(logLine({ time: Date.now(), ...event }) + "\n")
      : () => {},
    out: (line) => process.stdout.write(line + "\n"),
    status: (line) => process.stderr.write(line + "\n"),
  };
}

/**
 * One log line on stderr: readable (`12:00:00.123 event key=value …`) when stderr is a terminal,
 * a JSON line otherwise (for scripts and log collectors); LICHEN_LOG_FORMAT=pretty|json overrides.
 */
export function logLine(
  event: Record<string, unknown>,
  format = process.env.LICHEN_LOG_FORMAT ?? (process.stderr.isTTY ? "pretty" : "json"),
): string {
  if (format !== "pretty") return JSON.stringify(event);
  const { time, event: name, ...rest } = event;
  const at = typeof time === "number" ? new Date(time).toISOString().slice(11, 23) : "";
  const fields = Object.entries(rest).map(
    ([k, v]) => `${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`,
  );
  return [at, typeof name === "string" ? name : "", ...fields].filter(Boolean).join(" ");
}

/** Opens the database a previous `login` created (only `login` may create one). */
export function openDatabase(ctx: CliContext, role: ProcessRole): Store {
  if (!existsSync(ctx.db))
    throw new CliError(`no database at ${ctx.db}: run "lichen-chat login" first (or pass --db)`);
  return openStoreChecked(ctx, role);
}

export function openStoreChecked(ctx: CliContext, role: ProcessRole): Store {
  try {
    return openStore({
      path: ctx.db,
      role,
      // The main app (app, send, tail, chats) can afford PRAGMA quick_check at open (2–3.5 ms
      // per MB, measured in the store benchmark) and so never writes into a damaged file it could
      // have noticed; the NSE's budget is seconds per push: header check only.
      damageCheck: role === "main" ? "quick" : "header",
      ...(ctx.verbose ? { logger: (e) => ctx.log(e) } : {}),
    });
  } catch (err) {
    if (err instanceof DatabaseCorruptError) throw new CliError(err.message);
    throw new CliError(`cannot open database ${ctx.db}: ${describeError(err)}`);
  }
}

/** The account's settings, its store opened as `role`, and the session config. */
export function openAccount(ctx: CliContext, role: ProcessRole) {
  const settings = selectAccount(ctx);
  const store = openDatabase(ctx, role);
  return { settings, store, config: sessionConfig(settings, ctx.log) };
}

/** The account --account names (a CliError listing the accounts if none matches), else the first. */
export function selectAccount(ctx: CliContext): AccountSettings {
  if (ctx.account === undefined) return readAccountSettings(ctx.db);
  const all = readAllAccountSettings(ctx.db);
  const wanted = ctx.account.toLowerCase();
  const found = all.find((a) => a.jid.toLowerCase() === wanted);
  if (!found)
    throw new CliError(
      `no account ${ctx.account} in ${ctx.db}; it has ${all.map((a) => a.jid).join(", ")} ("lichen-chat account list")`,
    );
  return found;
}

/** Every account's settings (the first is login's), its store opened as `role`, the configs. */
export function openAccounts(ctx: CliContext, role: ProcessRole) {
  const accounts = readAllAccountSettings(ctx.db);
  const store = openDatabase(ctx, role);
  return {
    accounts,
    store,
    configs: accounts.map((a) => sessionConfig(a, (e) => ctx.log({ account: a.jid, ...e }))),
  };
}

export type SessionConfig = Omit<SessionOptions, "store">;

/** AppController.foreground() with errors a user can act on. */
export async function foregroundOrExplain(
  app: AppController,
  settings: AccountSettings,
): Promise<"resumed" | "new">;
export async function foregroundOrExplain(
  app: AppController,
  settings: AccountSettings,
  opts: { allowOffline: true },
): Promise<"resumed" | "new" | "offline">;
/**
 * foreground(), with errors in words. With `allowOffline`, an unreachable server (no network,
 * DNS down, server away) is not an error: "offline" — the session exists, what the user sends is
 * queued, and the controller keeps trying to get online (its reconnect loop).
 */
export async function foregroundOrExplain(
  app: AppController,
  settings: AccountSettings,
  opts: { allowOffline?: boolean } = {},
): Promise<"resumed" | "new" | "offline"> {
  try {
    return await app.foreground();
  } catch (err) {
    if (err instanceof DatabaseCorruptError) throw new CliError(err.message);
    if (opts.allowOffline && isTransientConnectError(err) && app.session) return "offline";
    if (err instanceof LockTimeoutError)
      throw new CliError(
        `${describeHolder(err.holder)} holds the session of ${settings.jid}: ${
          roleOfHolder(err.holder ?? "") === "main"
            ? 'use it, or queue with "lichen-chat share"'
            : "try again in a moment"
        }`,
      );
    throw new CliError(
      `cannot connect as ${settings.jid} to ${settings.service}: ${describeError(err)}`,
    );
  }
}

/** A lock holder ("main:4711-ab12cd34") in words, with its pid. */
export function describeHolder(holder: string | null | undefined): string {
  if (!holder) return "another process";
  const pid = /^[a-z]+:(\d+)/.exec(holder)?.[1];
  const which = pid ? ` (pid ${pid})` : "";
  switch (roleOfHolder(holder)) {
    case "main":
      return `another lichen-chat main process (e.g. "lichen-chat app")${which}`;
    case "nse":
      return `a push process ("lichen-chat nse")${which} that did not yield`;
    default:
      return `another process (${holder})`;
  }
}
