// `lichen-chat push enable|disable|status`: the account's XEP-0357 registration on its own server.
// enable/disable run as the main app (foreground, queue the IQ, wait for the server's answer,
// background); the answer is recorded by the engine's stored handler, so `status` reads it from
// the database alone, offline too.
import {
  AppController,
  checkPushTarget,
  InvalidPushTargetError,
  disablePush,
  ensurePush,
  pushStatus,
  readPushRegistration,
  type DurableSession,
  type PushTarget,
} from "@lichen/engine";
import type { PushRegistration } from "@lichen/schema";
import { InvalidArgumentError, type Command } from "commander";
import { type CliContext, foregroundOrExplain, openAccount } from "../context.js";
import { CliError, UsageError } from "../errors.js";
import { isoTime } from "../format.js";

export interface PushEnableOptions {
  /** The push appserver's JID (an XEP-0114 component, e.g. push.localhost). */
  appserver: string;
  /** The device token (APNs hex or FCM token), registered as the pubsub node. */
  node: string;
  /** The app at the appserver (pushModule publish-option); absent: its default app. */
  module?: string;
  timeoutMs: number;
}

/** What `push status` prints with --json (and what enable/disable print after the answer). */
export interface PushStatusView {
  status: ReturnType<typeof pushStatus>;
  appServerJid: string | null;
  node: string | null;
  pushModule: string | null;
  registeredAt: number | null;
  updatedAt: number | null;
  lastError: PushRegistration["lastError"] | null;
}

export function pushStatusView(reg: PushRegistration | null): PushStatusView {
  return {
    status: pushStatus(reg),
    appServerJid: reg?.appServerJid ?? null,
    node: reg?.node ?? null,
    pushModule: reg?.pushModule ?? null,
    registeredAt: reg?.registeredAt ?? null,
    updatedAt: reg?.updatedAt ?? null,
    lastError: reg?.lastError ?? null,
  };
}

function formatStatus(v: PushStatusView): string {
  const lines = [`push: ${v.status}`];
  if (v.appServerJid) lines.push(`  appserver: ${v.appServerJid}`);
  if (v.node) lines.push(`  node (device token): ${v.node}`);
  if (v.pushModule) lines.push(`  push module: ${v.pushModule}`);
  if (v.registeredAt) lines.push(`  registered: ${isoTime(v.registeredAt)}`);
  if (v.lastError)
    lines.push(
      `  last error: ${v.lastError.op} failed: ${v.lastError.condition}${
        v.lastError.text ? ` (${v.lastError.text})` : ""
      } at ${isoTime(v.lastError.at)}`,
    );
  return lines.join("\n");
}

/**
 * The server's answer to the enable/disable just queued, as the engine recorded it: resolves on
 * `done` (push-enabled / push-disabled) or push-error, rejects when the connection goes away or
 * after `timeoutMs` (the IQ stays queued or pending: the next connection gets its answer).
 */
function answered(
  session: DurableSession,
  done: "push-enabled" | "push-disabled",
  timeoutMs: number,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const finish = (err?: Error) => {
      clearTimeout(timer);
      session.off(done, onDone);
      session.off("push-error", onDone);
      session.off("offline", onGone);
      if (err) reject(err);
      else resolve();
    };
    const onDone = () => finish();
    const onGone = () =>
      finish(
        new CliError(
          "the connection ended before the server answered; the request stays pending and is sent again on the next connection",
        ),
      );
    const timer = setTimeout(
      () =>
        finish(
          new CliError(
            `no answer from the server within ${timeoutMs} ms; the request stays pending (see "lichen-chat push status")`,
          ),
        ),
      timeoutMs,
    );
    session.on(done, onDone);
    session.on("push-error", onDone);
    session.on("offline", onGone);
  });
}

/** Runs `change` in the main app and waits for the answer; prints the resulting status. */
async function changePush(
  ctx: CliContext,
  change: (session: DurableSession) => "queued" | string,
  done: "push-enabled" | "push-disabled",
  timeoutMs: number,
): Promise<void> {
  const { settings, store, config } = openAccount(ctx, "main");
  const app = new AppController(store, config);
  try {
    const how = await foregroundOrExplain(app, settings, { allowOffline: true });
    const session = app.session!;
    const wait = answered(session, done, timeoutMs);
    wait.catch(() => {});
    const outcome = change(session);
    if (outcome !== "queued") {
      ctx.status(outcome);
    } else if (how === "offline") {
      ctx.status(
        `offline (${settings.service} unreachable): queued; it is sent the next time lichen-chat gets online`,
      );
    } else {
      await wait;
    }
    const view = pushStatusView(readPushRegistration(store, settings.accountId));
    ctx.out(formatStatus(view));
    if (view.lastError && outcome === "queued" && how !== "offline")
      throw new CliError(
        `the server refused push ${view.lastError.op}: ${view.lastError.condition}${
          view.lastError.text ? ` (${view.lastError.text})` : ""
        }`,
      );
  } finally {
    await app.close().catch((err: unknown) => {
      if (!store.damage) throw err;
    });
    store.close();
  }
}

export function pushEnable(ctx: CliContext, opts: PushEnableOptions): Promise<void> {
  const target: PushTarget = {
    appServerJid: opts.appserver,
    node: opts.node,
    ...(opts.module ? { pushModule: opts.module } : {}),
  };
  try {
    checkPushTarget(target); // before connecting: a bad token is a usage error
  } catch (err) {
    if (err instanceof InvalidPushTargetError) return Promise.reject(new UsageError(err.message));
    throw err;
  }
  return changePush(
    ctx,
    (session) =>
      session.write((c) => ensurePush(c, target))
        ? "queued"
        : "push is already enabled (or being enabled) for this token",
    "push-enabled",
    opts.timeoutMs,
  );
}

export function pushDisable(ctx: CliContext, opts: { timeoutMs: number }): Promise<void> {
  return changePush(
    ctx,
    (session) => (session.write((c) => disablePush(c)) ? "queued" : "push is not enabled"),
    "push-disabled",
    opts.timeoutMs,
  );
}

/** From the database only: no lock, no network. */
export function pushStatusCommand(ctx: CliContext, opts: { json?: boolean }): void {
  const { settings, store } = openAccount(ctx, "main");
  try {
    const view = pushStatusView(readPushRegistration(store, settings.accountId));
    ctx.out(opts.json ? JSON.stringify(view) : formatStatus(view));
  } finally {
    store.close();
  }
}

function nonEmpty(what: string) {
  return (value: string): string => {
    if (!/^\S+$/.test(value))
      throw new InvalidArgumentError(`${what} must be non-empty without spaces.`);
    return value;
  };
}

function positiveMs(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0)
    throw new InvalidArgumentError("--timeout-ms must be a positive integer.");
  return n;
}

/** Adds `push enable|disable|status` to the program. */
export function registerPushCommand(program: Command, context: () => CliContext): void {
  const push = program
    .command("push")
    .description(
      "XEP-0357 push on your own server: enable (register a device token with a push appserver), disable, status",
    );
  push
    .command("enable")
    .description(
      "register the device token as the push node with the appserver on your server; waits for the server's answer",
    )
    .requiredOption(
      "--appserver <jid>",
      "the push appserver's JID, e.g. push.localhost",
      nonEmpty("--appserver"),
    )
    .requiredOption(
      "--node <token>",
      "the device token (APNs hex token or FCM token)",
      nonEmpty("--node"),
    )
    .option(
      "--module <name>",
      "the app at the appserver (pushModule), e.g. ios or android",
      nonEmpty("--module"),
    )
    .option("--timeout-ms <ms>", "how long to wait for the server's answer", positiveMs, 30_000)
    .action((opts: Omit<PushEnableOptions, "timeoutMs"> & { timeoutMs: number }) =>
      pushEnable(context(), opts),
    );
  push
    .command("disable")
    .description("unregister the current device token; waits for the server's answer")
    .option("--timeout-ms <ms>", "how long to wait for the server's answer", positiveMs, 30_000)
    .action((opts: { timeoutMs: number }) => pushDisable(context(), opts));
  push
    .command("status")
    .description(
      "the stored registration: status, appserver, node, last error (database only, no network)",
    )
    .option("--json", "print JSON")
    .action((opts: { json?: boolean }) => pushStatusCommand(context(), opts));
}
