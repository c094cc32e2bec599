// IQs over the engine's session: a request that waits for its answer, and PEP publication with
// an open access model.
import { randomUUID } from "node:crypto";
import { xml, type DurableSession, type Element } from "@lichen/engine";
import { OmemoError } from "./errors.js";
import { NS_PUBSUB } from "./wire.js";

/**
 * Sends an IQ (queued and sent after commit, like every stanza) and resolves with its answer,
 * which the session handles in its own transaction first. Rejects after `timeoutMs`.
 */
export function request(s: DurableSession, iq: Element, timeoutMs: number): Promise<Element> {
  const id = (iq.attrs.id ??= randomUUID());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.off("stanza", onStanza);
      reject(new OmemoError("iq-timeout", `no answer to IQ ${id} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onStanza = (el: Element) => {
      if (el.name !== "iq" || el.attrs.id !== id) return;
      if (el.attrs.type !== "result" && el.attrs.type !== "error") return;
      clearTimeout(timer);
      s.off("stanza", onStanza);
      resolve(el);
    };
    s.on("stanza", onStanza);
    try {
      s.write((ctx) => ctx.send(iq));
    } catch (err) {
      clearTimeout(timer);
      s.off("stanza", onStanza);
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/**
 * Publishes an item to our PEP node with `pubsub#access_model=open`, as Conversations does
 * (Prosody's default "presence" hides bundles from non-contacts). A node created earlier with
 * another access model refuses the options: then it is published without them.
 */
export async function publishOpenItem(
  s: DurableSession,
  node: string,
  id: string,
  payload: Element,
  timeoutMs: number,
): Promise<void> {
  const options = xml(
    "publish-options",
    {},
    xml(
      "x",
      { xmlns: "jabber:x:data", type: "submit" },
      xml(
        "field",
        { var: "FORM_TYPE", type: "hidden" },
        xml("value", {}, `${NS_PUBSUB}#publish-options`),
      ),
      xml("field", { var: "pubsub#access_model" }, xml("value", {}, "open")),
    ),
  );
  const iq = (withOptions: boolean) =>
    xml(
      "iq",
      { type: "set", id: randomUUID() },
      xml(
        "pubsub",
        { xmlns: NS_PUBSUB },
        xml("publish", { node }, xml("item", { id }, payload)),
        ...(withOptions ? [options] : []),
      ),
    );
  if ((await request(s, iq(true), timeoutMs)).attrs.type === "result") return;
  const again = await request(s, iq(false), timeoutMs);
  if (again.attrs.type !== "result")
    throw new OmemoError("iq-error", `publishing ${node} failed: ${again.toString()}`);
}
