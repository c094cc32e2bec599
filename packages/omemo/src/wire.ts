// OMEMO 0.3 (XEP-0384 v0.3.0, namespace eu.siacs.conversations.axolotl) elements: build and parse.
import { xml, type Element } from "@lichen/engine";
import { OmemoError } from "./errors.js";

export const NS_OMEMO = "eu.siacs.conversations.axolotl";
export const NODE_DEVICELIST = `${NS_OMEMO}.devicelist`;
export const NODE_BUNDLES = `${NS_OMEMO}.bundles:`;
export const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
export const NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event";
export const NS_EME = "urn:xmpp:eme:0";
/** Text peers without OMEMO see. */
export const FALLBACK_BODY =
  "I sent you an OMEMO encrypted message but your client doesn't seem to support that.";
/** More device ids than any real account has: a longer list is hostile or broken. */
export const MAX_DEVICES = 64;

/** XEP-0384 device ids are 1..2^31-1. */
export function isDeviceId(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 0x7fffffff;
}

function parseDeviceId(text: string | undefined): number | null {
  if (!text || !/^\d{1,10}$/.test(text)) return null;
  const n = Number(text);
  return isDeviceId(n) ? n : null;
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
function b64(text: string | null | undefined, what: string): Buffer {
  const t = (text ?? "").replace(/\s+/g, "");
  if (!t || !B64.test(t)) throw new OmemoError("bad-bundle", `${what} is not base64`);
  return Buffer.from(t, "base64");
}

/** A <list/> of device ids; throws OmemoError("bad-device-list") for non-numeric or too many ids. */
export function parseDeviceList(list: Element | undefined): number[] {
  if (!list || !list.is("list", NS_OMEMO)) return [];
  const devices = list.getChildren("device");
  if (devices.length > MAX_DEVICES)
    throw new OmemoError(
      "bad-device-list",
      `device list has ${devices.length} devices (at most ${MAX_DEVICES} accepted)`,
    );
  const ids = new Set<number>();
  for (const d of devices) {
    const id = parseDeviceId(d.attrs.id);
    if (id === null)
      throw new OmemoError(
        "bad-device-list",
        `device id ${JSON.stringify(d.attrs.id)} is not 1..2^31-1`,
      );
    ids.add(id);
  }
  return [...ids];
}

export function deviceListElement(ids: readonly number[]): Element {
  return xml("list", { xmlns: NS_OMEMO }, ...ids.map((id) => xml("device", { id: String(id) })));
}

/** The latest item of a pubsub <items/> (whatever its id: peers use "current" or random ids). */
export function latestItem(items: Element | undefined): Element | undefined {
  const all = items?.getChildren("item") ?? [];
  return all[all.length - 1];
}

export interface Bundle {
  identityKey: Buffer;
  signedPreKey: { keyId: number; publicKey: Buffer; signature: Buffer };
  preKeys: { keyId: number; publicKey: Buffer }[];
}

function publicKey(text: string | null | undefined, what: string): Buffer {
  const key = b64(text, what);
  if (key.length !== 33 || key[0] !== 5)
    throw new OmemoError("bad-bundle", `${what} is not a 33-byte 0x05-prefixed Curve25519 key`);
  return key;
}

function keyId(text: string | undefined, what: string): number {
  if (!text || !/^\d{1,10}$/.test(text) || Number(text) > 0xffffffff)
    throw new OmemoError("bad-bundle", `${what} id ${JSON.stringify(text)} is not a number`);
  return Number(text);
}

export function parseBundle(bundle: Element | undefined): Bundle {
  if (!bundle || !bundle.is("bundle", NS_OMEMO))
    throw new OmemoError("bad-bundle", "no <bundle/> in the item");
  const spk = bundle.getChild("signedPreKeyPublic");
  const signature = b64(bundle.getChildText("signedPreKeySignature"), "signedPreKeySignature");
  if (signature.length !== 64) throw new OmemoError("bad-bundle", "signature is not 64 bytes");
  const preKeys = (bundle.getChild("prekeys")?.getChildren("preKeyPublic") ?? []).map((p) => ({
    keyId: keyId(p.attrs.preKeyId, "preKey"),
    publicKey: publicKey(p.getText(), "preKeyPublic"),
  }));
  if (preKeys.length === 0) throw new OmemoError("bad-bundle", "bundle has no prekeys");
  return {
    identityKey: publicKey(bundle.getChildText("identityKey"), "identityKey"),
    signedPreKey: {
      keyId: keyId(spk?.attrs.signedPreKeyId, "signedPreKey"),
      publicKey: publicKey(spk?.getText(), "signedPreKeyPublic"),
      signature,
    },
    preKeys,
  };
}

export function bundleElement(b: Bundle): Element {
  return xml(
    "bundle",
    { xmlns: NS_OMEMO },
    xml(
      "signedPreKeyPublic",
      { signedPreKeyId: String(b.signedPreKey.keyId) },
      b.signedPreKey.publicKey.toString("base64"),
    ),
    xml("signedPreKeySignature", {}, b.signedPreKey.signature.toString("base64")),
    xml("identityKey", {}, b.identityKey.toString("base64")),
    xml(
      "prekeys",
      {},
      ...b.preKeys.map((p) =>
        xml("preKeyPublic", { preKeyId: String(p.keyId) }, p.publicKey.toString("base64")),
      ),
    ),
  );
}

/** A parsed <encrypted/> element. `payload` null: a key transport element (session repair). */
export interface EncryptedMessage {
  sid: number;
  keys: { rid: number; prekey: boolean; data: Buffer }[];
  iv: Buffer;
  payload: Buffer | null;
}

/** Parses <encrypted/>; throws a plain Error saying what is wrong (stored as the failure reason). */
export function parseEncrypted(el: Element): EncryptedMessage {
  const header = el.getChild("header");
  const sid = parseDeviceId(header?.attrs.sid);
  if (!header || sid === null) throw new Error("header without a valid sid");
  const keys = header.getChildren("key").map((k) => {
    const rid = parseDeviceId(k.attrs.rid);
    const text = k.getText().replace(/\s+/g, "");
    if (rid === null || !B64.test(text) || !text) throw new Error("malformed <key/>");
    return {
      rid,
      prekey: k.attrs.prekey === "true" || k.attrs.prekey === "1",
      data: Buffer.from(text, "base64"),
    };
  });
  const ivText = (header.getChildText("iv") ?? "").replace(/\s+/g, "");
  const iv = Buffer.from(ivText, "base64");
  if (!B64.test(ivText) || (iv.length !== 12 && iv.length !== 16))
    throw new Error(`IV must be 12 or 16 bytes, got ${iv.length}`);
  const payloadText = el.getChildText("payload");
  let payload: Buffer | null = null;
  if (payloadText !== null) {
    const t = payloadText.replace(/\s+/g, "");
    if (!B64.test(t)) throw new Error("payload is not base64");
    payload = Buffer.from(t, "base64");
  }
  return { sid, keys, iv, payload };
}

export function encryptedElement(m: EncryptedMessage): Element {
  return xml(
    "encrypted",
    { xmlns: NS_OMEMO },
    xml(
      "header",
      { sid: String(m.sid) },
      ...m.keys.map((k) =>
        xml(
          "key",
          { rid: String(k.rid), ...(k.prekey ? { prekey: "true" } : {}) },
          k.data.toString("base64"),
        ),
      ),
      xml("iv", {}, m.iv.toString("base64")),
    ),
    ...(m.payload ? [xml("payload", {}, m.payload.toString("base64"))] : []),
  );
}

export function emeElement(): Element {
  return xml("encryption", { xmlns: NS_EME, namespace: NS_OMEMO, name: "OMEMO" });
}
