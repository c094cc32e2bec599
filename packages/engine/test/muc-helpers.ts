// Test helpers for group chats: a plain client that owns rooms, and awaiting a session event.
import { PERSISTENT_ROOM, roomConfigForm } from "@lichen/test-kit";
import { streamManagementEnabled, type XmppTestServer } from "@lichen/test-servers";
import { client, xml } from "@xmpp/client";
import type { DurableSession, SessionEvents } from "../src/index.js";
import { until } from "./helpers.js";

export const NS_MUC = "http://jabber.org/protocol/muc";

interface Stanza {
  is(n: string): boolean;
  attrs: Record<string, string>;
  getChild(n: string, ns?: string): Stanza | undefined;
  getChildren(n: string): Stanza[];
}

/** A plain client (bob) that owns rooms: creates, configures, kicks, bans, destroys. */
export async function roomOwner(
  server: XmppTestServer,
  o: { user?: string; resource?: string } = {},
) {
  const xmpp = client({
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: "localhost",
    username: o.user ?? "bob",
    password: `${o.user ?? "bob"}pw`,
    resource: o.resource ?? "desk",
  });
  xmpp.on("error", () => {});
  xmpp.reconnect.stop();
  const joined = new Set<string>();
  xmpp.on("stanza", (s: Stanza) => {
    const x = s.is("presence") ? s.getChild("x", `${NS_MUC}#user`) : undefined;
    if (x?.getChildren("status").some((st) => st.attrs.code === "110"))
      joined.add(s.attrs.from!.split("/")[0]!);
  });
  // The room reflects each groupchat message to its sender once it has handled (and archived) it.
  const echoed = new Set<string>();
  xmpp.on("stanza", (s: Stanza) => {
    if (s.is("message") && s.attrs.type === "groupchat" && s.attrs.id) echoed.add(s.attrs.id);
  });
  let n = 0;
  await xmpp.start();
  await streamManagementEnabled(xmpp);
  const admin = (room: string, item: Record<string, string>) =>
    xmpp.iqCaller.set(
      xml("query", { xmlns: `${NS_MUC}#admin` }, xml("item", item, xml("reason", {}, "test"))),
      room,
    );
  return {
    xmpp,
    create: async (room: string) => {
      await xmpp.send(
        xml("presence", { to: `${room}/${o.user ?? "bob"}` }, xml("x", { xmlns: NS_MUC })),
      );
      await until(() => joined.has(room), `owner joined ${room}`);
      await xmpp.iqCaller.set(roomConfigForm(xml, PERSISTENT_ROOM), room);
    },
    /** Resolves once the room reflected the message (so it is archived). */
    say: async (room: string, body: string) => {
      const id = `say-${n++}-${Math.random().toString(36).slice(2, 8)}`;
      await xmpp.send(xml("message", { to: room, type: "groupchat", id }, xml("body", {}, body)));
      await until(() => echoed.has(id), `the room reflects ${body}`);
    },
    kick: (room: string, nick: string) => admin(room, { nick, role: "none" }),
    ban: (room: string, jid: string) => admin(room, { jid, affiliation: "outcast" }),
    subject: (room: string, subject: string) =>
      xmpp.send(xml("message", { to: room, type: "groupchat" }, xml("subject", {}, subject))),
    destroy: (room: string) =>
      xmpp.iqCaller.set(
        xml(
          "query",
          { xmlns: `${NS_MUC}#owner` },
          xml("destroy", {}, xml("reason", {}, "closing down")),
        ),
        room,
      ),
    stop: () => xmpp.stop().catch(() => {}),
  };
}

/** The next `event` of the session (subscribed before the action that causes it). */
export function next<K extends keyof SessionEvents>(
  s: DurableSession,
  event: K,
  match: (...args: SessionEvents[K]) => boolean = () => true,
): Promise<SessionEvents[K]> {
  return new Promise((resolve) => {
    const on = (...args: SessionEvents[K]) => {
      if (!match(...args)) return;
      (s.off as (e: K, l: typeof on) => void)(event, on);
      resolve(args);
    };
    (s.on as (e: K, l: typeof on) => void)(event, on);
  });
}
