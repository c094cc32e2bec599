// An in-memory view of the account's omemo_* rows for one unit of crypto work. libsignal reads
// and writes through it; nothing touches the database until `apply` runs inside the stanza's (or
// the send's) transaction, after `stillValid` proved that every row read is unchanged. A kill at
// any point therefore leaves the ratchet and the stored messages in step.
import { tables, type Store, type StoreTx } from "@lichen/store";
import { and, eq } from "drizzle-orm";
import { signal, type KeyPair, type SessionRecord, type SignalStorage } from "./libsignal.js";
import { hotQueries } from "./queries.js";

/** readRow's value for a row that is not there (no record text can be this). */
const NO_ROW = "\u0000none";

/** libsignal's ProtocolAddress refuses '.', which every JID has: base64url has none. */
export function addressName(bareJid: string): string {
  return Buffer.from(bareJid, "utf8").toString("base64url");
}

export interface OwnIdentity {
  deviceId: number;
  registrationId: number;
  identity: KeyPair;
}

export type TrustLevel = "undecided" | "trusted" | "untrusted" | "verified";

/**
 * The record object each session row was last committed from, with that text, per store: while the
 * row still holds exactly that text, loadSession reuses the object instead of parsing and
 * deserializing the row again for every message. Taken out when used, so an attempt that fails
 * half-way never leaves a ratcheted object behind; put back only after the commit that wrote it.
 * The row stays the truth: another process's write changes the text, and the cache is skipped.
 */
const committedRecords = new WeakMap<Store, Map<string, { text: string; record: SessionRecord }>>();
/** Peer devices whose record objects stay cached per store (the least recently committed go first). */
const MAX_CACHED_RECORDS = 256;

function recordCache(store: Store): Map<string, { text: string; record: SessionRecord }> {
  let cache = committedRecords.get(store);
  if (!cache) committedRecords.set(store, (cache = new Map()));
  return cache;
}

/** Receiving chains kept per session (out-of-order messages of older chains), and closed sessions per record. */
const MAX_RECEIVING_CHAINS = 5;
const MAX_CLOSED_SESSIONS = 3;

/** Keeps a session record bounded: libsignal keeps 40 closed sessions and every old chain. */
export function pruneRecord(record: SessionRecord): void {
  const closed = Object.entries(record.sessions)
    .filter(([, s]) => s.indexInfo.closed !== -1)
    .sort((a, b) => a[1].indexInfo.closed - b[1].indexInfo.closed);
  while (closed.length > MAX_CLOSED_SESSIONS) delete record.sessions[closed.shift()![0]];
  for (const s of Object.values(record.sessions)) {
    const sending = s.currentRatchet.ephemeralKeyPair.pubKey.toString("base64");
    const receiving = Object.keys(s._chains).filter((k) => k !== sending);
    while (receiving.length > MAX_RECEIVING_CHAINS) delete s._chains[receiving.shift()!];
  }
}

function key(b64: string): Buffer {
  return Buffer.from(b64, "base64");
}

export function loadOwnIdentity(tx: StoreTx, accountId: string): OwnIdentity | null {
  const row = tx
    .select()
    .from(tables.omemoIdentity)
    .where(eq(tables.omemoIdentity.accountId, accountId))
    .get();
  if (!row) return null;
  return {
    deviceId: row.deviceId,
    registrationId: row.registrationId,
    identity: { pubKey: key(row.identityPublicKey), privKey: key(row.identityPrivateKey) },
  };
}

interface Identity {
  jid: string;
  deviceId: number;
  identityKey: string;
  trust: TrustLevel;
}

/** Blind trust before verification: trusted unless the contact verified some device (then undecided). */
export function initialTrust(tx: StoreTx, accountId: string, jid: string): TrustLevel {
  const t = tables.omemoTrust;
  const verified = tx
    .select({ d: t.deviceId })
    .from(t)
    .where(and(eq(t.accountId, accountId), eq(t.jid, jid), eq(t.trust, "verified")))
    .get();
  return verified ? "undecided" : "trusted";
}

export class SignalView {
  /** Every row read, as it was read (JSON), to compare inside the transaction. */
  private readonly reads = new Map<string, { read: (tx: StoreTx) => string; seen: string }>();
  private readonly sessions = new Map<
    string,
    { jid: string; deviceId: number; record: SessionRecord }
  >();
  private readonly usedPreKeys = new Set<number>();
  private readonly identities = new Map<string, Identity>();
  /** Identities as read (parsed once: libsignal asks for each message more than once). */
  private readonly readIdentities = new Map<string, Identity | null>();

  constructor(
    readonly store: Store,
    readonly accountId: string,
    readonly own: OwnIdentity,
  ) {}

  /** Reads through the snapshot: remembered, so the transaction can prove it unchanged. */
  private readRow(id: string, read: (tx: StoreTx) => string): string {
    const known = this.reads.get(id);
    if (known) return known.seen;
    const seen = this.store.read(read);
    this.reads.set(id, { read, seen });
    return seen;
  }

  sessionRow(jid: string, deviceId: number): string | null {
    // The record text itself is what stillValid compares (no JSON round trip of it).
    const text = this.readRow(
      `session ${jid} ${deviceId}`,
      (tx) =>
        hotQueries(tx).sessionRecord.get({ account: this.accountId, jid, device: deviceId })
          ?.record ?? NO_ROW,
    );
    return text === NO_ROW ? null : text;
  }

  hasSession(jid: string, deviceId: number): boolean {
    return this.sessions.has(`${jid} ${deviceId}`) || this.sessionRow(jid, deviceId) !== null;
  }

  identity(jid: string, deviceId: number): Identity | null {
    const k = `${jid} ${deviceId}`;
    const pending = this.identities.get(k);
    if (pending) return pending;
    const known = this.readIdentities.get(k);
    if (known !== undefined) return known;
    const text = this.readRow(
      `trust ${k}`,
      (tx) => hotQueries(tx).trustJson.get(this.accountId, jid, deviceId) ?? NO_ROW,
    );
    const identity = text === NO_ROW ? null : (JSON.parse(text) as Identity);
    this.readIdentities.set(k, identity);
    return identity;
  }

  /** libsignal storage bound to one peer device (the address it passes is ignored on purpose: it
   * passes `id` in some calls and `id.device` in others). */
  storageFor(jid: string, deviceId: number): SignalStorage {
    const k = `${jid} ${deviceId}`;
    return {
      loadSession: () => {
        const written = this.sessions.get(k);
        if (written) return written.record;
        const row = this.sessionRow(jid, deviceId);
        if (row === null) return undefined;
        const cache = recordCache(this.store);
        const cacheKey = `${this.accountId} ${k}`;
        const committed = cache.get(cacheKey);
        if (committed) {
          cache.delete(cacheKey);
          if (committed.text === row) return committed.record;
        }
        return signal.SessionRecord.deserialize(JSON.parse(row));
      },
      storeSession: (_id, record) => {
        pruneRecord(record);
        this.sessions.set(k, { jid, deviceId, record });
      },
      isTrustedIdentity: (_id, identityKey) => {
        const known = this.identity(jid, deviceId);
        const b64 = identityKey.toString("base64");
        if (known) return known.identityKey === b64 && known.trust !== "untrusted";
        // libsignal has no saveIdentity hook: the first key seen for a device is recorded here.
        const trust = this.store.read((tx) => initialTrust(tx, this.accountId, jid));
        this.identities.set(k, { jid, deviceId, identityKey: b64, trust });
        return true;
      },
      loadPreKey: (id) => (id === undefined ? undefined : this.preKey(id)),
      removePreKey: (id) => void this.usedPreKeys.add(id),
      loadSignedPreKey: (id) => this.signedPreKey(id),
      getOurRegistrationId: () => this.own.registrationId,
      getOurIdentity: () => this.own.identity,
    };
  }

  private preKey(id: number): KeyPair | undefined {
    if (this.usedPreKeys.has(id)) return undefined;
    const p = tables.omemoPrekeys;
    const text = this.readRow(`prekey ${id}`, (tx) =>
      JSON.stringify(
        tx
          .select({ pub: p.publicKey, priv: p.privateKey, consumedAt: p.consumedAt })
          .from(p)
          .where(and(eq(p.accountId, this.accountId), eq(p.keyId, id)))
          .get() ?? null,
      ),
    );
    const row = JSON.parse(text) as { pub: string; priv: string; consumedAt: number | null } | null;
    // A consumed prekey is never used twice, even before the bundle is republished.
    if (!row || row.consumedAt !== null) return undefined;
    return { pubKey: key(row.pub), privKey: key(row.priv) };
  }

  private signedPreKey(id: number): KeyPair | undefined {
    const s = tables.omemoSignedPrekeys;
    const row = this.store.read((tx) =>
      tx
        .select({ pub: s.publicKey, priv: s.privateKey })
        .from(s)
        .where(and(eq(s.accountId, this.accountId), eq(s.keyId, id)))
        .get(),
    );
    return row ? { pubKey: key(row.pub), privKey: key(row.priv) } : undefined;
  }

  /** True when no row this view read changed since (checked inside the writing transaction). */
  stillValid(tx: StoreTx): boolean {
    for (const r of this.reads.values()) if (r.read(tx) !== r.seen) return false;
    return true;
  }

  /** Whether `apply` would write anything (a prekey used, a session ratcheted, an identity seen). */
  get changed(): boolean {
    return this.sessions.size + this.usedPreKeys.size + this.identities.size > 0;
  }

  /** Writes the sessions, used prekeys and first-seen identities: call inside the transaction. */
  apply(tx: StoreTx): { preKeysUsed: number } {
    for (const { jid, deviceId, record } of this.sessions.values()) {
      const text = JSON.stringify(record.serialize());
      hotQueries(tx).upsertSession.run({
        account: this.accountId,
        jid,
        device: deviceId,
        record: text,
        now: tx.now,
      });
      tx.afterCommit(() => {
        const cache = recordCache(this.store);
        cache.set(`${this.accountId} ${jid} ${deviceId}`, { text, record });
        if (cache.size > MAX_CACHED_RECORDS) cache.delete(cache.keys().next().value!);
      });
    }
    const p = tables.omemoPrekeys;
    for (const id of this.usedPreKeys)
      tx.update(p)
        .set({ consumedAt: tx.now })
        .where(and(eq(p.accountId, this.accountId), eq(p.keyId, id)))
        .run();
    for (const i of this.identities.values())
      tx.insert(tables.omemoTrust)
        .values({ accountId: this.accountId, ...i, updatedAt: tx.now })
        .onConflictDoNothing()
        .run();
    return { preKeysUsed: this.usedPreKeys.size };
  }
}
