// Typed access to libsignal 6 (libsignal-node, CommonJS). Its bundled index.d.ts omits curve,
// keyhelper and the record internals we need, so the parts Lichen uses are declared here.
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

export const signal = createRequire(import.meta.url)("libsignal") as LibSignal;
