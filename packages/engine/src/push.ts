// XEP-0357 in Lichen's privacy design: the device token is registered straight on the user's own
// server as the pubsub node; the appserver never learns the JID. `pushModule` (publish-option)
// selects the app at the appserver, compatible with Monal's appserver.
//
// The registration lives in the account state (`state.push`), so any process can tell where it
// stands from the database alone, offline too: `enabling`/`disabling` while the IQ waits in the
// outbound queue or for its answer, then `enabled`/`disabled`, with the last error. The enable and
// disable IQs go through the outbound queue with stored handlers, like every IQ: whichever process
// receives the answer records it.
import { randomUUID } from "node:crypto";
import type {
  PushRegistration,
  PushRegistrationError,
  PushRegistrationStatus,
} from "@lichen/schema";
import { validatePushRegistration } from "@lichen/schema";
import { loadAccountState, type Store } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import type { HandlerRegistry } from "./handlers.js";
import type { ProtocolContext } from "./context.js";

export const NS_PUSH = "urn:xmpp:push:0";

/** The stream an IQ was sent on was lost before its answer (set by the invalidation handler). */
const NOT_RESUMED = "session-not-resumed";

export interface PushTarget {
  appServerJid: string;
  /** Device token (APNs/FCM) used as node. */
  node: string;
  pushModule?: string;
}

/** A push target the schema refuses (empty appserver JID, a node shorter than 8, ...). */
export class InvalidPushTargetError extends Error {
  override readonly name = "InvalidPushTargetError";
  constructor(readonly problems: string[]) {
    super(`invalid push target: ${problems.join("; ")}`);
  }
}

/** Throws InvalidPushTargetError naming each bad field; nothing is written or sent then. */
export function checkPushTarget(target: PushTarget): void {
  const r = validatePushRegistration({ ...target, enabled: false, registeredAt: 0 });
  if (!r.ok)
    throw new InvalidPushTargetError(
      r.errors.map((e) => `${e.path.replace(/^\//, "") || "target"} ${e.message}`),
    );
}

/** A registration's status; states written before `status` existed have only `enabled`. */
export function pushStatus(reg: PushRegistration | null): PushRegistrationStatus {
  if (!reg) return "disabled";
  return reg.status ?? (reg.enabled ? "enabled" : "enabling");
}

/** The account's push registration as stored (null: never enabled). A read: works offline. */
export function readPushRegistration(store: Store, accountId: string): PushRegistration | null {
  return store.read((tx) => loadAccountState(tx, accountId).push);
}

function enableIq(target: PushTarget): Element {
  const form = target.pushModule
    ? xml(
        "x",
        { xmlns: "jabber:x:data", type: "submit" },
        xml(
          "field",
          { var: "FORM_TYPE" },
          xml("value", {}, "http://jabber.org/protocol/pubsub#publish-options"),
        ),
        xml("field", { var: "pushModule" }, xml("value", {}, target.pushModule)),
      )
    : undefined;
  return xml(
    "iq",
    { type: "set" },
    xml("enable", { xmlns: NS_PUSH, jid: target.appServerJid, node: target.node }, form),
  );
}

function disableIq(reg: { appServerJid: string; node: string }): Element {
  return xml(
    "iq",
    { type: "set" },
    xml("disable", { xmlns: NS_PUSH, jid: reg.appServerJid, node: reg.node }),
  );
}

function targetOf(reg: PushRegistration): PushTarget {
  return {
    appServerJid: reg.appServerJid,
    node: reg.node,
    ...(reg.pushModule !== undefined ? { pushModule: reg.pushModule } : {}),
  };
}

function sendEnable(ctx: ProtocolContext, target: PushTarget): void {
  ctx.sendIq(
    enableIq(target),
    ctx.session.registry.descriptor(
      "lichen.push.enabled",
      { ...target, op: "enable" },
      "lichen.push.invalidated",
    ),
    { timeoutTicks: 60 },
  );
}

function sendDisable(ctx: ProtocolContext, reg: PushRegistration): void {
  ctx.sendIq(
    disableIq(reg),
    ctx.session.registry.descriptor(
      "lichen.push.disabled",
      { ...targetOf(reg), op: "disable" },
      "lichen.push.invalidated",
    ),
    { timeoutTicks: 60 },
  );
}

/**
 * Enable push unless the same registration is already enabled or being enabled (a token change
 * re-enables, and disables the old token). Queued in the caller's transaction; the answer sets
 * `status` to `enabled` (event `push-enabled`) or `disabled` with `lastError` (event `push-error`).
 * Returns whether an enable IQ was queued. A target the schema refuses throws
 * InvalidPushTargetError (the caller's write rolls back: nothing stored or sent).
 */
export function ensurePush(ctx: ProtocolContext, target: PushTarget): boolean {
  checkPushTarget(target);
  const cur = ctx.state.push;
  const status = pushStatus(cur);
  if (
    cur &&
    (status === "enabled" || status === "enabling") &&
    cur.node === target.node &&
    cur.appServerJid === target.appServerJid &&
    cur.pushModule === target.pushModule
  ) {
    return false;
  }
  if (
    cur &&
    status !== "disabled" &&
    (cur.node !== target.node || cur.appServerJid !== target.appServerJid)
  ) {
    // The old token must not receive pushes any more; nobody waits for this answer (an IQ
    // without an id would be refused by the server).
    const iq = disableIq(cur);
    iq.attrs.id = `push-disable-${randomUUID()}`;
    ctx.send(iq);
  }
  ctx.state.push = {
    ...target,
    enabled: false,
    registeredAt: ctx.tx.now,
    status: "enabling",
    lastError: null,
    updatedAt: ctx.tx.now,
  };
  sendEnable(ctx, target);
  return true;
}

/**
 * Disable the current registration: `status` becomes `disabling` until the server answers
 * (`disabled`, event `push-disabled`; an error keeps it `enabled` with `lastError`). Returns whether
 * a disable IQ was queued (false when nothing is registered or it is already disabled).
 */
export function disablePush(ctx: ProtocolContext): boolean {
  const cur = ctx.state.push;
  if (!cur || pushStatus(cur) === "disabled") return false;
  ctx.state.push = { ...cur, status: "disabling", lastError: null, updatedAt: ctx.tx.now };
  sendDisable(ctx, cur);
  return true;
}

/**
 * On a new stream (the old one could not be resumed): an enable or disable whose answer was lost
 * with the old stream is sent again (both are idempotent on the server).
 */
export function resendPendingPush(ctx: ProtocolContext): void {
  const cur = ctx.state.push;
  if (!cur || cur.lastError?.condition !== NOT_RESUMED) return;
  const status = pushStatus(cur);
  if (status !== "enabling" && status !== "disabling") return;
  ctx.state.push = { ...cur, lastError: null };
  if (status === "enabling") sendEnable(ctx, targetOf(cur));
  else sendDisable(ctx, cur);
}

/** Whether an answer is about the registration we have (not a replaced token's). */
function isCurrent(reg: PushRegistration | null, args: Record<string, unknown>): boolean {
  return !!reg && reg.node === args.node && reg.appServerJid === args.appServerJid;
}

function errorOf(ctx: ProtocolContext, op: "enable" | "disable", args: Record<string, unknown>) {
  const err: PushRegistrationError = {
    op,
    condition: String(args.condition ?? args.reason ?? "undefined-condition").slice(0, 200),
    at: ctx.tx.now,
  };
  const text =
    typeof args.stanza === "string" ? /<text[^>]*>([^<]*)<\/text>/.exec(args.stanza) : null;
  if (text?.[1]) err.text = text[1].slice(0, 1000);
  return err;
}

export function registerPushHandlers(registry: HandlerRegistry): void {
  if (registry.has("lichen.push.enabled")) return;
  registry.define("lichen.push.enabled", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const cur = ctx.state.push;
    // A late answer for a token replaced or disabled since: not ours to record.
    if (!cur || !isCurrent(cur, args) || pushStatus(cur) !== "enabling") return;
    if (args.type !== "result") {
      const lastError = errorOf(ctx, "enable", args);
      ctx.state.push = {
        ...cur,
        enabled: false,
        status: "disabled",
        lastError,
        updatedAt: ctx.tx.now,
      };
      ctx.afterCommit(() => ctx.session.emit("push-error", lastError.condition));
      return;
    }
    const reg: PushRegistration = {
      ...cur,
      enabled: true,
      status: "enabled",
      registeredAt: ctx.tx.now,
      lastError: null,
      updatedAt: ctx.tx.now,
    };
    ctx.state.push = reg;
    ctx.afterCommit(() => ctx.session.emit("push-enabled", reg));
  });
  registry.define("lichen.push.disabled", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const cur = ctx.state.push;
    if (!cur || !isCurrent(cur, args) || pushStatus(cur) !== "disabling") return;
    // item-not-found: the server has no such registration, which is what we asked for.
    if (args.type === "result" || args.condition === "item-not-found") {
      const reg: PushRegistration = {
        ...cur,
        enabled: false,
        status: "disabled",
        lastError: null,
        updatedAt: ctx.tx.now,
      };
      ctx.state.push = reg;
      ctx.afterCommit(() => ctx.session.emit("push-disabled", reg));
      return;
    }
    // Refused: the server may still push to this token, so it stays enabled, with the error.
    const lastError = errorOf(ctx, "disable", args);
    ctx.state.push = { ...cur, enabled: true, status: "enabled", lastError, updatedAt: ctx.tx.now };
    ctx.afterCommit(() => ctx.session.emit("push-error", lastError.condition));
  });
  // The stream carrying the IQ is gone: resendPendingPush sends it again on the new stream.
  registry.define("lichen.push.invalidated", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const cur = ctx.state.push;
    if (!cur || !isCurrent(cur, args)) return;
    const status = pushStatus(cur);
    if (status !== "enabling" && status !== "disabling") return;
    ctx.state.push = {
      ...cur,
      lastError: errorOf(ctx, args.op === "disable" ? "disable" : "enable", {
        condition: NOT_RESUMED,
      }),
    };
  });
}
