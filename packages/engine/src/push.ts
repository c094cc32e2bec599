// XEP-0357 in Lichen's privacy design: the device token is registered straight on the user's own
// server as the pubsub node; the appserver never learns the JID. `pushModule` (publish-option)
// selects the app at the appserver, compatible with Monal's appserver.
import type { PushRegistration } from "@lichen/schema";
import xml from "@xmpp/xml";
import type { HandlerRegistry } from "./handlers.js";
import type { StanzaContext } from "./session.js";

export const NS_PUSH = "urn:xmpp:push:0";

export interface PushTarget {
  appServerJid: string;
  /** Device token (APNs/FCM) used as node. */
  node: string;
  pushModule?: string;
}

/** Enable push unless the same registration is already active (token changes re-enable). */
export function ensurePush(ctx: StanzaContext, target: PushTarget): boolean {
  const cur = ctx.state.push;
  if (
    cur &&
    cur.enabled &&
    cur.node === target.node &&
    cur.appServerJid === target.appServerJid &&
    cur.pushModule === target.pushModule
  ) {
    return false;
  }
  if (
    cur &&
    cur.enabled &&
    (cur.node !== target.node || cur.appServerJid !== target.appServerJid)
  ) {
    ctx.send(
      xml(
        "iq",
        { type: "set", id: `push-disable-${Date.now()}` },
        xml("disable", { xmlns: NS_PUSH, jid: cur.appServerJid, node: cur.node }),
      ),
    );
  }
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
  ctx.sendIq(
    xml(
      "iq",
      { type: "set" },
      xml("enable", { xmlns: NS_PUSH, jid: target.appServerJid, node: target.node }, form),
    ),
    ctx.session.registry.descriptor("lichen.push.enabled", { ...target }),
    { timeoutTicks: 60 },
  );
  return true;
}

/** Disable push for the current registration. */
export function disablePush(ctx: StanzaContext): void {
  const cur = ctx.state.push;
  if (!cur) return;
  ctx.send(
    xml(
      "iq",
      { type: "set", id: `push-disable-${Date.now()}` },
      xml("disable", { xmlns: NS_PUSH, jid: cur.appServerJid, node: cur.node }),
    ),
  );
  ctx.state.push = null;
}

export function registerPushHandlers(registry: HandlerRegistry): void {
  if (registry.has("lichen.push.enabled")) return;
  registry.define("lichen.push.enabled", (hctx, args) => {
    const ctx = hctx as StanzaContext;
    if (args.type !== "result") {
      ctx.afterCommit(() => ctx.session.emit("push-error", String(args.condition)));
      return;
    }
    const reg: PushRegistration = {
      appServerJid: String(args.appServerJid),
      node: String(args.node),
      ...(typeof args.pushModule === "string" ? { pushModule: args.pushModule } : {}),
      enabled: true,
      registeredAt: ctx.tx.now,
    };
    ctx.state.push = reg;
    ctx.afterCommit(() => ctx.session.emit("push-enabled", reg));
  });
}
