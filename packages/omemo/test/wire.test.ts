// Pure functions: the payload forms peers send, the element parsers on hostile input, and the
// bound on session records.
import { createCipheriv, randomBytes } from "node:crypto";
import { xml } from "@lichen/engine";
import { describe, expect, it } from "vitest";
import { OmemoError, parseBundle, parseDeviceList, parseEncrypted } from "../src/index.js";
import { signal } from "../src/libsignal.js";
import { openPayload, sealPayload } from "../src/payload.js";
import { addressName } from "../src/view.js";
import { NS_OMEMO } from "../src/wire.js";
import { signalParty } from "./signal-party.js";

function gcm(key: Buffer, iv: Buffer, text: string) {
  const c = createCipheriv("aes-128-gcm", key, iv);
  const ciphertext = Buffer.concat([c.update(text, "utf8"), c.final()]);
  return { ciphertext, tag: c.getAuthTag() };
}

describe("OMEMO payload", () => {
  it("round-trips with a 12-byte IV and key||tag", () => {
    const s = sealPayload("grüße 👋");
    expect(s.iv.length).toBe(12);
    expect(s.keyAndTag.length).toBe(32);
    expect(openPayload(s.keyAndTag, s.iv, s.payload)).toBe("grüße 👋");
  });

  it("accepts a 16-byte IV (older Conversations) and the key-only form with the tag in the payload", () => {
    const key = randomBytes(16);
    const iv16 = randomBytes(16);
    const a = gcm(key, iv16, "sixteen-byte iv");
    expect(openPayload(Buffer.concat([key, a.tag]), iv16, a.ciphertext)).toBe("sixteen-byte iv");
    const iv12 = randomBytes(12);
    const b = gcm(key, iv12, "tag in payload");
    expect(openPayload(key, iv12, Buffer.concat([b.ciphertext, b.tag]))).toBe("tag in payload");
  });

  it("refuses a tampered or truncated payload", () => {
    const s = sealPayload("hello");
    const bad = Buffer.from(s.payload);
    bad[0] = bad[0]! ^ 0x80;
    expect(() => openPayload(s.keyAndTag, s.iv, bad)).toThrow("GCM tag mismatch");
    expect(() => openPayload(s.keyAndTag, s.iv, s.payload.subarray(0, 2))).toThrow(
      "GCM tag mismatch",
    );
    expect(() => openPayload(s.keyAndTag.subarray(0, 7), s.iv, s.payload)).toThrow("7 bytes");
  });
});

describe("OMEMO elements from the network", () => {
  const header = (attrs: Record<string, string>, ...children: unknown[]) =>
    xml("encrypted", { xmlns: NS_OMEMO }, xml("header", attrs, ...children));

  it("parses keys with prekey='true' or '1', and a header without payload (key transport)", () => {
    const e = parseEncrypted(
      header(
        { sid: "42" },
        xml("key", { rid: "7", prekey: "1" }, "AAAA"),
        xml("key", { rid: "8" }, "AQID"),
        xml("iv", {}, randomBytes(12).toString("base64")),
      ),
    );
    expect(e.sid).toBe(42);
    expect(e.keys.map((k) => [k.rid, k.prekey])).toEqual([
      [7, true],
      [8, false],
    ]);
    expect(e.payload).toBeNull();
  });

  it.each([
    ["no sid", header({}, xml("iv", {}, "AAAAAAAAAAAAAAAA"))],
    ["a sid out of range", header({ sid: "2147483648" }, xml("iv", {}, "AAAAAAAAAAAAAAAA"))],
    [
      "a non-numeric rid",
      header({ sid: "1" }, xml("key", { rid: "x" }, "AA=="), xml("iv", {}, "AAAAAAAAAAAAAAAA")),
    ],
    ["an 8-byte IV", header({ sid: "1" }, xml("iv", {}, "AAAAAAAAAAA="))],
  ])("refuses a header with %s", (_what, el) => {
    expect(() => parseEncrypted(el)).toThrow(Error);
  });

  it("refuses device lists with too many or non-numeric ids, with a typed error", () => {
    const list = (ids: string[]) =>
      xml("list", { xmlns: NS_OMEMO }, ...ids.map((id) => xml("device", { id })));
    expect(parseDeviceList(list(["1", "2", "2"]))).toEqual([1, 2]);
    for (const bad of [
      Array.from({ length: 65 }, (_, i) => String(i + 1)),
      ["0"],
      ["-1"],
      ["1e3"],
    ]) {
      const e = (() => {
        try {
          parseDeviceList(list(bad));
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(OmemoError);
      expect((e as OmemoError).code).toBe("bad-device-list");
    }
  });

  it("refuses bundles with keys that are not 33-byte Curve25519 keys", () => {
    const k = signal.curve.generateKeyPair().pubKey.toString("base64");
    const bundle = (identity: string) =>
      xml(
        "bundle",
        { xmlns: NS_OMEMO },
        xml("signedPreKeyPublic", { signedPreKeyId: "1" }, k),
        xml("signedPreKeySignature", {}, randomBytes(64).toString("base64")),
        xml("identityKey", {}, identity),
        xml("prekeys", {}, xml("preKeyPublic", { preKeyId: "1" }, k)),
      );
    expect(parseBundle(bundle(k)).preKeys).toHaveLength(1);
    expect(() => parseBundle(bundle(randomBytes(32).toString("base64")))).toThrow(OmemoError);
    expect(() => parseBundle(bundle("not base64!"))).toThrow(OmemoError);
  });

  it("encodes JIDs into libsignal addresses without '.'", () => {
    const name = addressName("user.name@sub.example.org");
    expect(name).not.toContain(".");
    expect(() => new signal.ProtocolAddress(name, 1)).not.toThrow();
  });
});

describe("session records", () => {
  const party = () => signalParty({ prune: true });

  it("stays bounded over many ratchet steps and re-keyings", async () => {
    const a = party();
    const b = party();
    const addrB = new signal.ProtocolAddress(addressName("b@x.org"), 2);
    const addrA = new signal.ProtocolAddress(addressName("a@x.org"), 1);
    const size = () => JSON.stringify(b.sessions.get(addrA.toString())!.serialize()).length;
    const sizes: number[] = [];
    // Six new sessions (a re-keys, as after a reinstall), each with a ping-pong of 24 ratchet steps.
    for (let session = 0; session < 6; session++) {
      await new signal.SessionBuilder(a.storage, addrB).initOutgoing(b.bundle());
      const ca = new signal.SessionCipher(a.storage, addrB);
      const cb = new signal.SessionCipher(b.storage, addrA);
      const first = await ca.encrypt(Buffer.from("hi"));
      await cb.decryptPreKeyWhisperMessage(first.body);
      for (let i = 0; i < 12; i++) {
        await ca.decryptWhisperMessage((await cb.encrypt(Buffer.from(`b${i}`))).body);
        await cb.decryptWhisperMessage((await ca.encrypt(Buffer.from(`a${i}`))).body);
      }
      sizes.push(size());
    }
    const record = b.sessions.get(addrA.toString())!;
    expect(Object.keys(record.sessions).length).toBeLessThanOrEqual(4); // open + 3 closed
    for (const s of Object.values(record.sessions))
      expect(Object.keys(s._chains).length).toBeLessThanOrEqual(6);
    // Flat, not growing with the sessions and steps seen.
    expect(Math.max(...sizes)).toBeLessThan(30_000);
    expect(sizes.at(-1)!).toBeLessThanOrEqual(sizes[3]! * 1.5);
  }, 60_000);
});
