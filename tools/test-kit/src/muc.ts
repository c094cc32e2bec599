const NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner";
const NS_ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig";

/** An element factory: `xml` from @xmpp/client or @lichen/engine (the kit depends on neither). */
export type XmlFactory<E> = (
  name: string,
  attrs?: Record<string, string> | null,
  ...children: (E | string)[]
) => E;

/**
 * The muc#owner `<query/>` that submits a room configuration (XEP-0045 §10.2), e.g.
 * `roomConfigForm(xml, { "muc#roomconfig_persistentroom": "1" })`: send it in an IQ set to the
 * room. Fields not named keep the room's values.
 */
export function roomConfigForm<E>(xml: XmlFactory<E>, fields: Record<string, string>): E {
  const field = (name: string, value: string) =>
    xml("field", { var: name }, xml("value", {}, value));
  return xml(
    "query",
    { xmlns: NS_MUC_OWNER },
    xml(
      "x",
      { xmlns: "jabber:x:data", type: "submit" },
      field("FORM_TYPE", NS_ROOMCONFIG),
      ...Object.entries(fields).map(([name, value]) => field(name, value)),
    ),
  );
}

/** The configuration every test room needs: kept when its last occupant leaves. */
export const PERSISTENT_ROOM = { "muc#roomconfig_persistentroom": "1" } as const;
