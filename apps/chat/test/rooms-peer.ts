// The peer (bob, a plain xmpp.js client) as a room owner for the chat e2e tests.
import { PERSISTENT_ROOM, roomConfigForm } from "@lichen/test-kit";
import { xml } from "@xmpp/client";
import { startPeer, until } from "./helpers.js";

const NS_MUC = "http://jabber.org/protocol/muc";

export type Peer = Awaited<ReturnType<typeof startPeer>>;

/** The peer creates a persistent room (instant, configured: ejabberd keeps new rooms locked). */
export async function createRoom(
  peer: Peer,
  room: string,
  o: { membersOnly?: boolean } = {},
): Promise<void> {
  const self = new Promise<void>((resolve) =>
    peer.xmpp.on(
      "stanza",
      (s: {
        is(n: string): boolean;
        attrs: Record<string, string>;
        getChild(
          n: string,
          ns?: string,
        ): { getChildren(n: string): { attrs: Record<string, string> }[] } | undefined;
      }) => {
        const x =
          s.is("presence") && s.attrs.from?.startsWith(room)
            ? s.getChild("x", `${NS_MUC}#user`)
            : undefined;
        if (x?.getChildren("status").some((st) => st.attrs.code === "110")) resolve();
      },
    ),
  );
  await peer.xmpp.send(xml("presence", { to: `${room}/bob` }, xml("x", { xmlns: NS_MUC })));
  await self;
  await peer.xmpp.iqCaller.request(
    xml(
      "iq",
      { type: "set", to: room },
      roomConfigForm(xml, {
        ...PERSISTENT_ROOM,
        ...(o.membersOnly ? { "muc#roomconfig_membersonly": "1" } : {}),
      }),
    ),
  );
}

/** A groupchat message; resolves once the room reflected it to the peer. */
export async function sayInRoom(peer: Peer, room: string, body: string): Promise<void> {
  const id = `say-${Math.random().toString(36).slice(2, 10)}`;
  await peer.xmpp.send(xml("message", { to: room, type: "groupchat", id }, xml("body", {}, body)));
  await until(() => peer.received.some((m) => m.id === id), `the room reflects ${body}`);
}
