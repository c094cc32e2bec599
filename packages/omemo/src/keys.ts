// Our key material in the omemo_* tables: identity, signed prekey (rotation), prekeys (refill),
// and the bundle built from them. Every function runs inside the caller's transaction.
import { randomInt } from "node:crypto";
import type { AccountState } from "@lichen/schema";
import { tables, type StoreTx } from "@lichen/store";
import { and, eq, inArray, isNotNull, max } from "drizzle-orm";
import { signal } from "./libsignal.js";
import type { OwnIdentity } from "./view.js";
import type { Bundle } from "./wire.js";

function addSignedPreKey(
  tx: StoreTx,
  accountId: string,
  identityPriv: Buffer,
  keyId: number,
): void {
  const pair = signal.curve.generateKeyPair();
  tx.insert(tables.omemoSignedPrekeys)
    .values({
      accountId,
      keyId,
      publicKey: pair.pubKey.toString("base64"),
      privateKey: pair.privKey.toString("base64"),
      signature: signal.curve.calculateSignature(identityPriv, pair.pubKey).toString("base64"),
      createdAt: tx.now,
    })
    .run();
}

function addPreKeys(tx: StoreTx, accountId: string, firstId: number, count: number): void {
  for (let i = 0; i < count; i++) {
    const pair = signal.curve.generateKeyPair();
    tx.insert(tables.omemoPrekeys)
      .values({
        accountId,
        keyId: firstId + i,
        publicKey: pair.pubKey.toString("base64"),
        privateKey: pair.privKey.toString("base64"),
        createdAt: tx.now,
      })
      .run();
  }
}

/** A new identity: device id (1..2^31-1), identity key pair, signed prekey 1, prekeys 1..count. */
export function createIdentity(
  tx: StoreTx,
  accountId: string,
  state: AccountState,
  preKeyCount: number,
): OwnIdentity {
  const identity = signal.curve.generateKeyPair();
  const deviceId = randomInt(1, 0x7fffffff);
  const registrationId = signal.keyhelper.generateRegistrationId();
  tx.insert(tables.omemoIdentity)
    .values({
      accountId,
      deviceId,
      registrationId,
      identityPublicKey: identity.pubKey.toString("base64"),
      identityPrivateKey: identity.privKey.toString("base64"),
      createdAt: tx.now,
    })
    .run();
  addSignedPreKey(tx, accountId, identity.privKey, 1);
  addPreKeys(tx, accountId, 1, preKeyCount);
  state.omemo.deviceId = deviceId;
  state.omemo.bundlePublished = false;
  state.omemo.deviceListPublished = false;
  return { deviceId, registrationId, identity };
}

/**
 * Replaces used prekeys with fresh ones. New ids are above every id ever used (the highest row is
 * never older than a deleted one), so a peer holding an old bundle gets "unknown prekey", never
 * another key under a known id. Returns how many were added.
 */
export function refillPreKeys(
  tx: StoreTx,
  accountId: string,
  state: AccountState,
  preKeyCount: number,
): number {
  const p = tables.omemoPrekeys;
  const top =
    tx
      .select({ m: max(p.keyId) })
      .from(p)
      .where(eq(p.accountId, accountId))
      .get()?.m ?? 0;
  tx.delete(p)
    .where(and(eq(p.accountId, accountId), isNotNull(p.consumedAt)))
    .run();
  const left = tx.select({ id: p.keyId }).from(p).where(eq(p.accountId, accountId)).all().length;
  const missing = Math.max(preKeyCount - left, 0);
  addPreKeys(tx, accountId, top + 1, missing);
  state.omemo.preKeysNeedRefill = false;
  state.omemo.bundlePublished = false;
  return missing;
}

/** A new signed prekey once the newest is older than `maxAgeMs`; only the one before it is kept. */
export function rotateSignedPreKey(
  tx: StoreTx,
  accountId: string,
  state: AccountState,
  own: OwnIdentity,
  maxAgeMs: number,
): boolean {
  const t = tables.omemoSignedPrekeys;
  const rows = tx
    .select({ keyId: t.keyId, createdAt: t.createdAt })
    .from(t)
    .where(eq(t.accountId, accountId))
    .all()
    .sort((a, b) => b.keyId - a.keyId);
  const newest = rows[0];
  if (newest && tx.now - newest.createdAt < maxAgeMs) return false;
  addSignedPreKey(tx, accountId, own.identity.privKey, (newest?.keyId ?? 0) + 1);
  const old = rows.slice(1).map((r) => r.keyId);
  if (old.length)
    tx.delete(t)
      .where(and(eq(t.accountId, accountId), inArray(t.keyId, old)))
      .run();
  state.omemo.bundlePublished = false;
  return true;
}

/** Our bundle: identity key, newest signed prekey, unused prekeys. */
export function loadBundle(tx: StoreTx, accountId: string, own: OwnIdentity): Bundle {
  const spk = tx
    .select()
    .from(tables.omemoSignedPrekeys)
    .where(eq(tables.omemoSignedPrekeys.accountId, accountId))
    .all()
    .sort((a, b) => b.keyId - a.keyId)[0];
  if (!spk) throw new Error("no signed prekey stored");
  const p = tables.omemoPrekeys;
  const pre = tx.select().from(p).where(eq(p.accountId, accountId)).all();
  return {
    identityKey: own.identity.pubKey,
    signedPreKey: {
      keyId: spk.keyId,
      publicKey: Buffer.from(spk.publicKey, "base64"),
      signature: Buffer.from(spk.signature, "base64"),
    },
    preKeys: pre
      .filter((k) => k.consumedAt === null)
      .map((k) => ({ keyId: k.keyId, publicKey: Buffer.from(k.publicKey, "base64") })),
  };
}
