// The plugin's replacements for libsignal's HKDF and HMAC (libsignal.ts) give the same bytes and
// refuse the same input, and sessions keep working across libsignal's own crypto and ours: a peer
// running stock libsignal (or libsignal-protocol-c) derives exactly what we derive.
import { createHash, createHmac } from "node:crypto";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { originalSignalCrypto, signal, unqueuedSessionCipher } from "../src/libsignal.js";
import { addressName } from "../src/view.js";
import { signalParty } from "./signal-party.js";

const signalCrypto = createRequire(import.meta.url)("libsignal/src/crypto") as {
  deriveSecrets: typeof originalSignalCrypto.deriveSecrets;
  calculateMAC: typeof originalSignalCrypto.calculateMAC;
};

/** Deterministic bytes (no seed to print): SHA-512 of a label, repeated to the length. */
function bytes(label: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += 64)
    createHash("sha512").update(`${label}/${i}`).digest().copy(out, i);
  return out;
}

describe("libsignal crypto replacements", () => {
  it("are installed in libsignal's crypto module", () => {
    expect(signalCrypto.deriveSecrets).not.toBe(originalSignalCrypto.deriveSecrets);
    expect(signalCrypto.calculateMAC).not.toBe(originalSignalCrypto.calculateMAC);
  });

  it("deriveSecrets gives libsignal's bytes for every chunk count, input and info length", () => {
    let cases = 0;
    for (const inputLength of [0, 1, 32, 33, 64, 100])
      for (const info of [
        "",
        "WhisperText",
        "WhisperRatchet",
        "WhisperMessageKeys",
        "x".repeat(200),
      ])
        for (const chunks of [1, 2, 3, undefined]) {
          const label = `${inputLength}/${info.length}/${chunks}`;
          const input = bytes(`in ${label}`, inputLength);
          const salt = bytes(`salt ${label}`, 32);
          const ours = signalCrypto.deriveSecrets(input, salt, Buffer.from(info), chunks);
          const theirs = originalSignalCrypto.deriveSecrets(input, salt, Buffer.from(info), chunks);
          expect(
            ours.map((b) => b.toString("hex")),
            label,
          ).toEqual(theirs.map((b) => b.toString("hex")));
          expect(ours.every((b) => Buffer.isBuffer(b) && b.length === 32)).toBe(true);
          cases++;
        }
    expect(cases).toBe(120);
  });

  it("deriveSecrets refuses what libsignal's refuses", () => {
    const b32 = Buffer.alloc(32);
    for (const fn of [signalCrypto.deriveSecrets, originalSignalCrypto.deriveSecrets]) {
      expect(() => fn(b32, Buffer.alloc(31), b32)).toThrow(/salt of incorrect length/);
      expect(() => fn(b32, b32, b32, 4)).toThrow();
      expect(() => fn("text" as unknown as Buffer, b32, b32)).toThrow(TypeError);
    }
  });

  it("calculateMAC is HMAC-SHA256 into a Buffer of its own", () => {
    const key = bytes("key", 32);
    const data = bytes("data", 77);
    const mac = signalCrypto.calculateMAC(key, data);
    expect(mac.equals(createHmac("sha256", key).update(data).digest())).toBe(true);
    expect(mac.equals(originalSignalCrypto.calculateMAC(key, data))).toBe(true);
    expect(() => signalCrypto.calculateMAC(key, "x" as unknown as Buffer)).toThrow(TypeError);
  });
});

describe("sessions across libsignal's crypto and ours", () => {
  const party = () => signalParty();

  /** Runs fn with libsignal's own crypto functions installed (a stock peer). */
  async function stock<T>(fn: () => Promise<T>): Promise<T> {
    const ours = { ...signalCrypto };
    Object.assign(signalCrypto, originalSignalCrypto);
    try {
      return await fn();
    } finally {
      Object.assign(signalCrypto, ours);
    }
  }

  it("a stock peer and an unqueued cipher with our crypto talk through prekey messages, ratchet steps and out-of-order messages", async () => {
    const a = party(); // stock libsignal
    const b = party(); // the plugin's crypto and cipher
    const addrB = new signal.ProtocolAddress(addressName("b@x.org"), 2);
    const addrA = new signal.ProtocolAddress(addressName("a@x.org"), 1);
    const ca = new signal.SessionCipher(a.storage, addrB);
    const cb = () => unqueuedSessionCipher(b.storage, addrA);
    await stock(() => new signal.SessionBuilder(a.storage, addrB).initOutgoing(b.bundle()));
    // Three prekey messages before any reply; delivered out of order.
    const pre = await stock(async () => [
      await ca.encrypt(Buffer.from("p0")),
      await ca.encrypt(Buffer.from("p1")),
      await ca.encrypt(Buffer.from("p2")),
    ]);
    expect(pre.every((m) => m.type === 3)).toBe(true);
    for (const i of [1, 0, 2])
      expect((await cb().decryptPreKeyWhisperMessage(pre[i]!.body)).toString()).toBe(`p${i}`);
    // Ping-pong: every reply is a DH ratchet step on both sides.
    for (let i = 0; i < 5; i++) {
      const fromB = await cb().encrypt(Buffer.from(`b${i}`));
      expect((await stock(() => ca.decryptWhisperMessage(fromB.body))).toString()).toBe(`b${i}`);
      const fromA = await stock(async () => [
        await ca.encrypt(Buffer.from(`a${i}.0`)),
        await ca.encrypt(Buffer.from(`a${i}.1`)),
      ]);
      expect((await cb().decryptWhisperMessage(fromA[1]!.body)).toString()).toBe(`a${i}.1`);
      expect((await cb().decryptWhisperMessage(fromA[0]!.body)).toString()).toBe(`a${i}.0`);
    }
    // A replayed message is refused (its key is spent), with either crypto.
    const once = await stock(() => ca.encrypt(Buffer.from("once")));
    await cb().decryptWhisperMessage(once.body);
    await expect(cb().decryptWhisperMessage(once.body)).rejects.toThrow();
  });
});
