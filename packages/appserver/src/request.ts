import { checkToken, domainOf, type TokenRules } from "./token.js";
import { countChildren, firstChild, type XmlElement } from "./xml.js";

export const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
export const NS_PUSH = "urn:xmpp:push:0";
export const NS_DATA = "jabber:x:data";
export const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";
export const NS_PING = "urn:xmpp:ping";
export const PUSH_SUMMARY = "urn:xmpp:push:summary";
export const PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options";
/** Publish-option naming the app (Monal / fpush compatible). */
export const PUSH_MODULE_FIELD = "pushModule";

/** One XEP-0357 push notification request, reduced to what the appserver may know. */
export interface PushRequest {
  /** IQ id, echoed in the reply. */
  id: string;
  /** Server domain the request came from (never a JID). */
  domain: string;
  /** The pubsub node = the device token. Never stored or logged in this form. */
  token: string;
  /** `pushModule` publish-option, if any. */
  app: string | undefined;
  /** The summary carried a non-empty last-message-body: a message worth an alert. */
  important: boolean;
}

/** Error reply conditions we use; `type` follows the policy: cancel only for known-bad input. */
export interface StanzaErrorSpec {
  type: "cancel" | "wait" | "modify";
  condition: string;
  text: string;
}

export type ParsedIq =
  | { kind: "push"; request: PushRequest }
  | { kind: "disco-info"; id: string; to: string; from: string }
  | { kind: "ping"; id: string; to: string; from: string }
  | { kind: "ignore" } // results/errors addressed to us, and non-IQ stanzas: never answered
  | { kind: "error"; id: string; to: string; from: string; error: StanzaErrorSpec };

function fieldValue(field: XmlElement): string | undefined {
  const v = field.getChild("value");
  return v ? v.getText() : undefined;
}

function formFields(x: XmlElement): Map<string, string | undefined> {
  const m = new Map<string, string | undefined>();
  for (const f of x.getChildren("field")) {
    const name = f.attrs.var;
    if (typeof name === "string" && !m.has(name)) m.set(name, fieldValue(f));
  }
  return m;
}

const MAX_ID = 256;
const MAX_APP = 64;
const APP_CHARSET = /^[A-Za-z0-9_.:-]+$/;

/** An error reply to `stanza` (a plain function: no closure made per request). */
function errorIq(
  stanza: XmlElement,
  type: StanzaErrorSpec["type"],
  condition: string,
  text: string,
): ParsedIq {
  const a = stanza.attrs;
  return {
    kind: "error",
    id: a.id ?? "",
    to: a.to ?? "",
    from: a.from ?? "",
    error: { type, condition, text },
  };
}

/**
 * Classifies one incoming stanza. The token check comes first for publish requests, before any other
 * part of the request is trusted; malformed input yields an error spec with a precise text.
 */
export function parseStanza(stanza: XmlElement, rules: TokenRules): ParsedIq {
  if (stanza.name !== "iq") return { kind: "ignore" };
  const { type } = stanza.attrs;
  const id = stanza.attrs.id ?? "";
  const from = stanza.attrs.from ?? "";
  const to = stanza.attrs.to ?? "";
  // Replies (result/error) are never answered, whatever they carry: answering them could loop.
  if (type === "result" || type === "error") return { kind: "ignore" };
  // RFC 6120 §8.2.3 / §8.3.3.1: `type` is required and one of get/set/result/error; anything else
  // (missing included) is a malformed request and gets bad-request, like any other malformed IQ.
  if (type !== "get" && type !== "set")
    return errorIq(
      stanza,
      "modify",
      "bad-request",
      "iq type missing or not one of get/set/result/error",
    );
  if (id.length === 0 || id.length > MAX_ID)
    return errorIq(stanza, "modify", "bad-request", "iq id missing or too long");

  // (counted and looked up in place: getChildElements / getChildren build arrays, ~6 per push)
  let payload: XmlElement | undefined;
  let elements = 0;
  for (const c of stanza.children) {
    if (typeof c !== "object") continue;
    payload ??= c;
    elements++;
  }
  if (!payload) return errorIq(stanza, "modify", "bad-request", "iq without payload");

  if (type === "get") {
    if (payload.name === "query" && payload.attrs.xmlns === NS_DISCO_INFO && elements === 1) {
      return { kind: "disco-info", id, to, from };
    }
    if (payload.name === "ping" && payload.attrs.xmlns === NS_PING && elements === 1) {
      return { kind: "ping", id, to, from };
    }
    return errorIq(stanza, "cancel", "service-unavailable", "unsupported request");
  }

  if (payload.name !== "pubsub" || payload.attrs.xmlns !== NS_PUBSUB) {
    return errorIq(
      stanza,
      "cancel",
      "service-unavailable",
      "only XEP-0357 pubsub publish is served here",
    );
  }
  // From here on the request is a push publish. A malformed one (a bug or an old version of the
  // server's push module) says nothing about the token: `wait`, because ejabberd deletes the
  // registration on any other error type (and Prosody counts it towards push_max_errors).
  if (elements !== 1)
    return errorIq(stanza, "wait", "bad-request", "iq must carry exactly one payload");
  const publish = firstChild(payload, "publish");
  if (!publish || countChildren(payload, "publish") !== 1)
    return errorIq(stanza, "wait", "bad-request", "pubsub needs exactly one publish");

  // The node is the device token: validated before anything else about the request is considered.
  // A node that cannot be a token (length, charset) never will be one: cancel ends the registration.
  const node = publish.attrs.node;
  const tc = checkToken(node, rules);
  if (!tc.ok)
    return errorIq(
      stanza,
      "cancel",
      "item-not-found",
      `node is not a valid push token: ${tc.reason}`,
    );

  const domain = domainOf(from);
  if (!domain) return errorIq(stanza, "wait", "bad-request", "request has no usable sender domain");

  const item = firstChild(publish, "item");
  const notification = item && firstChild(item, "notification", NS_PUSH);
  if (!notification)
    return errorIq(
      stanza,
      "wait",
      "bad-request",
      `publish item lacks <notification xmlns='${NS_PUSH}'/>`,
    );

  let important = false;
  for (const x of notification.children) {
    if (typeof x !== "object" || x.getName() !== "x" || x.getNS() !== NS_DATA) continue;
    const fields = formFields(x);
    if (fields.get("FORM_TYPE") !== PUSH_SUMMARY) continue;
    const body = fields.get("last-message-body");
    important = typeof body === "string" && body.trim().length > 0;
  }

  // Publish-options: only `pushModule` matters; other fields (whatever the registration carried) are
  // accepted and ignored. A malformed form is tolerated as "no options" unless pushModule is unusable.
  let app: string | undefined;
  const po = firstChild(payload, "publish-options");
  if (po) {
    for (const x of po.getChildren("x", NS_DATA)) {
      const fields = formFields(x);
      const ft = fields.get("FORM_TYPE");
      if (ft !== undefined && ft !== PUBLISH_OPTIONS) continue;
      const m = fields.get(PUSH_MODULE_FIELD);
      if (m === undefined) continue;
      if (m.length === 0 || m.length > MAX_APP || !APP_CHARSET.test(m)) {
        return errorIq(stanza, "wait", "bad-request", "publish-option pushModule is malformed");
      }
      app = m;
    }
  }

  return { kind: "push", request: { id, domain, token: node!, app, important } };
}
