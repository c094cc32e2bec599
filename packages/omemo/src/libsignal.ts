// Typed access to libsignal 6 (libsignal-node, CommonJS). Its bundled index.d.ts omits curve,
// keyhelper and the record internals we need, so the parts Lichen uses are declared here.
import { createHmac, hkdfSync } from "node:crypto";
import { createRequire } from "node:module";

export interface KeyPair {
  pubKey: Buffer;
  privKey: Buffer;
}

export interface SessionEntry {
  indexInfo: { closed: number; baseKey: Buffer; remoteIdentityKey: Buffer };
  currentRatchet: { ephemeralKeyPair: KeyPair };
  _chains: Record<string, unknown>;
}

export interface SessionRecord {
  sessions: Record<string, SessionEntry>;
  serialize(): unknown;
  haveOpenSession(): boolean;
}

export interface SignalStorage {
  loadSession(id: string): SessionRecord | undefined;
  storeSession(id: string, record: SessionRecord): void;
  isTrustedIdentity(id: string, identityKey: Buffer, direction?: number): boolean;
  loadPreKey(id: number | undefined): KeyPair | undefined;
  removePreKey(id: number): void;
  loadSignedPreKey(id: number): KeyPair | undefined;
  getOurRegistrationId(): number;
  getOurIdentity(): KeyPair;
}

export interface ProtocolAddress {
  readonly id: string;
  readonly deviceId: number;
  toString(): string;
}

export interface SessionCipher {
  encrypt(data: Buffer): Promise<{ type: 1 | 3; body: Buffer }>;
  decryptWhisperMessage(data: Buffer): Promise<Buffer>;
  decryptPreKeyWhisperMessage(data: Buffer): Promise<Buffer>;
}

export interface PreKeyBundle {
  identityKey: Buffer;
  registrationId: number;
  signedPreKey: { keyId: number; publicKey: Buffer; signature: Buffer };
  preKey?: { keyId: number; publicKey: Buffer };
}

interface LibSignal {
  ProtocolAddress: new (name: string, deviceId: number) => ProtocolAddress;
  SessionCipher: new (storage: SignalStorage, address: ProtocolAddress) => SessionCipher;
  SessionBuilder: new (
    storage: SignalStorage,
    address: ProtocolAddress,
  ) => { initOutgoing(bundle: PreKeyBundle): Promise<void> };
  SessionRecord: { deserialize(data: unknown): SessionRecord; new (): SessionRecord };
  curve: {
    generateKeyPair(): KeyPair;
    calculateSignature(privKey: Buffer, message: Buffer): Buffer;
    verifySignature(pubKey: Buffer, message: Buffer, signature: Buffer): boolean;
  };
  keyhelper: { generateRegistrationId(): number };
}

const require = createRequire(import.meta.url);
export const signal = require("libsignal") as LibSignal;

/** libsignal's crypto module, whose functions its ciphers and builders call through the exports. */
interface LibSignalCrypto {
  deriveSecrets(input: Buffer, salt: Buffer, info: Buffer, chunks?: number): Buffer[];
  calculateMAC(key: Buffer, data: Buffer): Buffer;
}
const signalCrypto = require("libsignal/src/crypto") as LibSignalCrypto;

/** libsignal's own HKDF and HMAC, kept to check the replacements against (tests). */
export const originalSignalCrypto: LibSignalCrypto = {
  deriveSecrets: signalCrypto.deriveSecrets,
  calculateMAC: signalCrypto.calculateMAC,
};

/**
 * libsignal's deriveSecrets is RFC 5869 HKDF-SHA256 (the first 1-3 blocks of 32 bytes), built
 * from 2-4 HMAC objects and copies; node's hkdfSync computes the same bytes in one native call.
 * Each message derives its keys once: this is a third of the crypto a decryption does in
 * JavaScript (bench/replay-engine.mjs). Same checks, same result (test: libsignal.test).
 */
function deriveSecrets(input: Buffer, salt: Buffer, info: Buffer, chunks = 3): Buffer[] {
  if (!Buffer.isBuffer(input) || !Buffer.isBuffer(salt) || !Buffer.isBuffer(info))
    throw new TypeError("Expected Buffer");
  if (salt.byteLength !== 32) throw new Error("Got salt of incorrect length");
  if (!(chunks >= 1 && chunks <= 3)) throw new RangeError("chunks must be 1, 2 or 3");
  const okm = Buffer.from(hkdfSync("sha256", input, salt, info, 32 * chunks));
  const out: Buffer[] = [];
  for (let i = 0; i < chunks; i++) out.push(okm.subarray(32 * i, 32 * (i + 1)));
  return out;
}

/** HMAC-SHA256 without libsignal's extra copy of the digest. */
function calculateMAC(key: Buffer, data: Buffer): Buffer {
  if (!Buffer.isBuffer(key) || !Buffer.isBuffer(data)) throw new TypeError("Expected Buffer");
  return createHmac("sha256", key).update(data).digest();
}

signalCrypto.deriveSecrets = deriveSecrets;
signalCrypto.calculateMAC = calculateMAC;

/**
 * A SessionCipher without libsignal's per-address job queue (a promise chain, a Map entry and a
 * defineProperty per call). The queue serializes operations that share a record object; here each
 * decryption has its own SignalView, whose record is its own copy, and the stanza's transaction
 * re-checks the row it read, so there is nothing to serialize.
 */
export function unqueuedSessionCipher(
  storage: SignalStorage,
  address: ProtocolAddress,
): SessionCipher {
  const cipher = new signal.SessionCipher(storage, address);
  (cipher as unknown as { queueJob: (job: () => Promise<unknown>) => Promise<unknown> }).queueJob =
    (job) => job();
  return cipher;
}
