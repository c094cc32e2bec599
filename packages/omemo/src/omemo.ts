// The OMEMO engine plugin: decrypts in the stanza's prepare step, commits ratchet state with the
// message, encrypts outgoing messages for every device, publishes our device and bundle.
import { randomInt, randomUUID } from "node:crypto";
import {
  EncryptionFailedError,
  isChatEncrypted,
  markDecrypted,
  xml,
  type DurableSession,
  type Element,
  type OutgoingEncryption,
  type PluginPrepared,
  type SessionPlugin,
  type StanzaContext,
} from "@lichen/engine";
import {
  DatabaseCorruptError,
  quarantineRow,
  StoreLockTimeoutError,
  tables,
  type StoreTx,
} from "@lichen/store";
import { validateHandlerDescriptor, type HandlerDescriptor } from "@lichen/schema";
import { and, eq } from "drizzle-orm";
import { OmemoError, type DecryptFailureReason } from "./errors.js";
import { bare, locate, setBody, type Located, type RoomOrigin } from "./locate.js";
import { publishOpenItem, request } from "./pep.js";
import { createIdentity, loadBundle, refillPreKeys, rotateSignedPreKey } from "./keys.js";
import { signal, unqueuedSessionCipher } from "./libsignal.js";
import { hotQueries } from "./queries.js";
import { openPayload, sealPayload } from "./payload.js";
import {
  addressName,
  loadOwnIdentity,
  SignalView,
  type OwnIdentity,
  type TrustLevel,
} from "./view.js";
import {
  bundleElement,
  deviceListElement,
  emeElement,
  encryptedElement,
  FALLBACK_BODY,
  latestItem,
  NODE_BUNDLES,
  NODE_DEVICELIST,
  NS_OMEMO,
  NS_PUBSUB,
  NS_PUBSUB_EVENT,
  parseBundle,
  parseDeviceList,
  parseEncrypted,
  type Bundle,
  type EncryptedMessage,
} from "./wire.js";

const NS_SID = "urn:xmpp:sid:0";
const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";
const NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin";
const NS_MUC_USER = "http://jabber.org/protocol/muc#user";
/** Queued work (omemo_pending_work): a session repair with `{ jid, deviceId }`. */
const REPAIR_SESSION = "omemo.repairSession";
const repairKey = (jid: string, deviceId: number) => `repair ${jid} ${deviceId}`;

export interface OmemoOptions {
  /**
   * "app" (default) generates the identity, publishes the bundle and device list and refills
   * prekeys. "nse" only decrypts: whatever else it finds to do (a used prekey) is flagged in the
   * account state for the main app, so a push wake-up stays short and small.
   */
  role?: "app" | "nse";
  /** Prekeys in the bundle (XEP-0384: about 100). */
  preKeyCount?: number;
  /** How long an IQ to the server may take. Default 30 s. */
  requestTimeoutMs?: number;
  /**
   * Age (by the store's clock) after which publish() replaces the signed prekey. The previous one
   * is kept, for sessions peers build from a bundle fetched before. Default 7 days.
   */
  signedPreKeyMaxAgeMs?: number;
  /**
   * After a session repair was sent to a device, further decryption failures from it (messages it
   * sent before it got the repair) queue none for this long (by the store's clock). Default 10 min.
   */
  repairIntervalMs?: number;
}

export interface DeviceFingerprint {
  jid: string;
  deviceId: number;
  /** Hex of the 32-byte Curve25519 identity key, as clients show it. */
  fingerprint: string;
  trust: TrustLevel;
}

export interface OmemoSendResult {
  originId: string;
  /** Devices the message was encrypted for. */
  devices: { jid: string; deviceId: number }[];
  /** Devices left out, and why (distrusted, no bundle, bad signature…). */
  skipped: { jid: string; deviceId: number; reason: string }[];
  /** Recipients (room members) without any OMEMO device we could learn: they cannot read it. */
  noDevices: string[];
}

/** What a room's disco#info says about OMEMO in it. */
export interface RoomOmemoSupport {
  room: string;
  /** Real JIDs shown to all occupants: required for OMEMO. */
  nonAnonymous: boolean;
  /** Only members may enter (Conversations offers OMEMO for such rooms only). */
  membersOnly: boolean;
}

class StaleView extends Error {}

/** Send errors no retry can cure: the engine fails the outbox item or upload with the reason. */
const FINAL_SEND_ERRORS = new Set<OmemoError["code"]>([
  "no-devices",
  "bad-device-list",
  "no-identity",
  "not-in-room",
  "room-anonymous",
  "unknown-occupant",
]);

/** What the checks before a decryption hand to it: the view (rows read) and our key element. */
class Ready {
  constructor(
    readonly view: SignalView,
    readonly enc: EncryptedMessage,
    readonly mine: EncryptedMessage["keys"][number],
  ) {}
}

function fingerprintOf(identityKey: string): string {
  return Buffer.from(identityKey, "base64").subarray(1).toString("hex");
}

export class Omemo implements SessionPlugin {
  readonly name = "omemo";
  /** Contacts' PEP services then push their device list changes to us (XEP-0163 +notify). */
  readonly features = [`${NODE_DEVICELIST}+notify`];
  private session: DurableSession | null = null;
  private publishing: Promise<void> | null = null;
  private readonly role: "app" | "nse";
  private readonly preKeyCount: number;
  private readonly requestTimeoutMs: number;
  private readonly signedPreKeyMaxAgeMs: number;
  private readonly repairIntervalMs: number;

  constructor(opts: OmemoOptions = {}) {
    this.role = opts.role ?? "app";
    this.preKeyCount = opts.preKeyCount ?? 100;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.signedPreKeyMaxAgeMs = opts.signedPreKeyMaxAgeMs ?? 7 * 24 * 3600_000;
    this.repairIntervalMs = opts.repairIntervalMs ?? 10 * 60_000;
  }

  attach(session: DurableSession): void {
    // An AppController makes a new session per connection attempt: the latest one is ours.
    this.session = session;
    // The main app publishes (and refills) once online; the NSE never does.
    if (this.role === "app") {
      session.on("online", () => {
        if (this.session !== session) return;
        // Both retried on the next "online" if they fail.
        this.publish().catch(() => {});
        this.runPendingWork().catch(() => {});
      });
      session.on("roster", (event) => {
        if (this.session !== session || !("push" in event) || !event.push) return;
        for (const item of event.items)
          if (item.subscription === "to" || item.subscription === "both")
            this.fetchUnknownDeviceList(item.jid);
      });
    }
  }

  private readonly fetchingLists = new Set<string>();

  /**
   * A contact's presence just became visible to us (roster push to "to"/"both"). Prosody's PEP
   * then sends us their current device list; ejabberd 23.01 does not: it tries once when the
   * contact approves, but delivers PEP items only to full JIDs whose caps the contact's own
   * session learnt from our presence, which it has not received yet at that moment
   * (mod_pubsub:c2s_handle_info). Later changes do come as notifications on both servers, so
   * a list we never had is fetched once here.
   */
  private fetchUnknownDeviceList(jid: string): void {
    if (this.fetchingLists.has(jid) || this.hasStoredDeviceList(jid)) return;
    this.fetchingLists.add(jid);
    this.fetchDeviceList(jid)
      .catch(() => {}) // learnt when sending instead
      .finally(() => this.fetchingLists.delete(jid));
  }

  private hasStoredDeviceList(jid: string): boolean {
    const s = this.s;
    const d = tables.omemoDeviceLists;
    return (
      s.store.read((tx) =>
        tx
          .select({ id: d.deviceId })
          .from(d)
          .where(and(eq(d.accountId, s.accountId), eq(d.jid, jid)))
          .get(),
      ) !== undefined
    );
  }

  private get s(): DurableSession {
    if (!this.session) throw new Error("the Omemo plugin is not attached to a session");
    return this.session;
  }

  /** Own bare JID. */
  get jid(): string {
    const s = this.s;
    const cached = this.cache.get(s);
    if (cached?.jid) return cached.jid;
    const row = s.store.read((tx) =>
      tx
        .select({ jid: tables.accounts.jid })
        .from(tables.accounts)
        .where(eq(tables.accounts.id, s.accountId))
        .get(),
    );
    if (!row) throw new Error(`account ${s.accountId} does not exist`);
    this.cache.set(s, { ...cached, jid: row.jid });
    return row.jid;
  }

  /** Own device id (null until the main app generated the identity). */
  get deviceId(): number | null {
    return this.own()?.deviceId ?? null;
  }

  /** Per session (account and store): the bare JID and our identity never change once known. */
  private readonly cache = new WeakMap<DurableSession, { jid?: string; own?: OwnIdentity }>();

  private own(): OwnIdentity | null {
    const s = this.s;
    const cached = this.cache.get(s);
    if (cached?.own) return cached.own;
    const own = s.store.read((tx) => loadOwnIdentity(tx, s.accountId));
    if (own) this.cache.set(s, { ...cached, own });
    return own;
  }

  // ---- identity, bundle, device list -------------------------------------------------------

  /** Generates our identity, signed prekey and prekeys once (main app only). */
  ensureIdentity(): OwnIdentity {
    const existing = this.own();
    if (existing) return existing;
    if (this.role !== "app")
      throw new OmemoError("no-identity", "no OMEMO identity yet: the main app creates it");
    return this.s.write(
      (ctx) =>
        loadOwnIdentity(ctx.tx, ctx.accountId) ??
        createIdentity(ctx.tx, ctx.accountId, ctx.state, this.preKeyCount),
    );
  }

  /**
   * Main app: identity, prekey refill, bundle and device list publication (access model open, as
   * Conversations does: Prosody's default "presence" hides bundles from non-contacts).
   */
  publish(): Promise<void> {
    this.publishing ??= this.doPublish().finally(() => (this.publishing = null));
    return this.publishing;
  }

  private async doPublish(): Promise<void> {
    if (this.role !== "app") return;
    const own = this.ensureIdentity();
    this.s.write((ctx) => {
      if (ctx.state.omemo.preKeysNeedRefill)
        refillPreKeys(ctx.tx, ctx.accountId, ctx.state, this.preKeyCount);
      rotateSignedPreKey(ctx.tx, ctx.accountId, ctx.state, own, this.signedPreKeyMaxAgeMs);
    });
    await this.publishItem(
      `${NODE_BUNDLES}${own.deviceId}`,
      "current",
      bundleElement(this.s.store.read((tx) => loadBundle(tx, this.s.accountId, own))),
    );
    const ownJid = this.jid;
    const listed = await this.fetchDeviceList(ownJid).catch((e: unknown): number[] => {
      if (e instanceof OmemoError && e.code === "bad-device-list") return [];
      throw e;
    });
    if (!listed.includes(own.deviceId))
      await this.publishItem(
        NODE_DEVICELIST,
        "current",
        deviceListElement([...listed, own.deviceId]),
      );
    this.s.write((ctx) => {
      writeDeviceList(ctx.tx, ctx.accountId, ownJid, [...new Set([...listed, own.deviceId])]);
      ctx.state.omemo.bundlePublished = true;
      ctx.state.omemo.deviceListPublished = true;
    });
  }

  private publishItem(node: string, id: string, payload: Element): Promise<void> {
    return publishOpenItem(this.s, node, id, payload, this.requestTimeoutMs);
  }

  /** Sends an IQ and waits for its answer (handled, like every stanza, in its own transaction). */
  request(iq: Element): Promise<Element> {
    return request(this.s, iq, this.requestTimeoutMs);
  }

  /** Fetches and stores a JID's device list; [] when it has none. */
  async fetchDeviceList(jid: string): Promise<number[]> {
    const res = await this.request(
      xml(
        "iq",
        { type: "get", to: jid },
        xml("pubsub", { xmlns: NS_PUBSUB }, xml("items", { node: NODE_DEVICELIST })),
      ),
    );
    let ids: number[] = [];
    if (res.attrs.type === "result") {
      const items = res.getChild("pubsub", NS_PUBSUB)?.getChild("items");
      ids = parseDeviceList(latestItem(items)?.getChild("list", NS_OMEMO));
    } else if (res.getChild("error")?.getChild("forbidden")) {
      // Prosody's answer for an account that never published one, to a non-contact: either way
      // no device we could encrypt for. What we knew (if anything) is kept.
      throw new OmemoError(
        "no-devices",
        `the device list of ${jid} is not visible to us (forbidden)`,
      );
    } else if (!res.getChild("error")?.getChild("item-not-found")) {
      throw new OmemoError("iq-error", `device list of ${jid}: ${res.toString()}`);
    }
    this.s.write((ctx) => writeDeviceList(ctx.tx, ctx.accountId, jid, ids));
    return ids;
  }

  async fetchBundle(jid: string, deviceId: number): Promise<Bundle> {
    const res = await this.request(
      xml(
        "iq",
        { type: "get", to: jid },
        xml("pubsub", { xmlns: NS_PUBSUB }, xml("items", { node: `${NODE_BUNDLES}${deviceId}` })),
      ),
    );
    if (res.attrs.type !== "result")
      throw new OmemoError("iq-error", `no bundle for ${jid} device ${deviceId}`);
    const bundle = parseBundle(
      latestItem(res.getChild("pubsub", NS_PUBSUB)?.getChild("items"))?.getChild(
        "bundle",
        NS_OMEMO,
      ),
    );
    // libsignal's initOutgoing does not check it (it passes isInit): we must.
    let ok = false;
    try {
      ok = signal.curve.verifySignature(
        bundle.identityKey,
        bundle.signedPreKey.publicKey,
        bundle.signedPreKey.signature,
      );
    } catch {
      ok = false;
    }
    if (!ok)
      throw new OmemoError(
        "bad-bundle",
        `signed prekey signature of ${jid} device ${deviceId} is wrong`,
      );
    return bundle;
  }

  /** Active device ids stored for a JID. */
  devices(jid: string): number[] {
    const s = this.s;
    const d = tables.omemoDeviceLists;
    return s.store.read((tx) =>
      tx
        .select({ id: d.deviceId })
        .from(d)
        .where(and(eq(d.accountId, s.accountId), eq(d.jid, jid), eq(d.active, true)))
        .all()
        .map((r) => r.id),
    );
  }

  // ---- trust (blind trust before verification) ---------------------------------------------

  fingerprints(jid?: string): DeviceFingerprint[] {
    const s = this.s;
    const t = tables.omemoTrust;
    return s.store.read((tx) =>
      tx
        .select()
        .from(t)
        .where(
          jid ? and(eq(t.accountId, s.accountId), eq(t.jid, jid)) : eq(t.accountId, s.accountId),
        )
        .all()
        .map((r) => ({
          jid: r.jid,
          deviceId: r.deviceId,
          fingerprint: fingerprintOf(r.identityKey),
          trust: r.trust,
        })),
    );
  }

  ownFingerprint(): string | null {
    const own = this.own();
    return own ? fingerprintOf(own.identity.pubKey.toString("base64")) : null;
  }

  /**
   * Verify (after comparing fingerprints), distrust or trust a device. Once a contact has a
   * verified device, its new devices are no longer trusted blindly.
   */
  setTrust(jid: string, deviceId: number, trust: "verified" | "untrusted" | "trusted"): void {
    const t = tables.omemoTrust;
    const changed = this.s.write(
      (ctx) =>
        ctx.tx
          .update(t)
          .set({ trust, updatedAt: ctx.tx.now })
          .where(and(eq(t.accountId, ctx.accountId), eq(t.jid, jid), eq(t.deviceId, deviceId)))
          .run().changes,
    );
    if (changed === 0) throw new Error(`no identity known for ${jid} device ${deviceId}`);
  }

  // ---- per-chat setting ------------------------------------------------------------------------

  /**
   * Turns OMEMO on or off for a chat (a contact's or a room's bare JID), stored in `chats.omemo`.
   * While it is on, the engine refuses plain messages to the chat (EncryptionRequiredError from
   * session.send; the share outbox fails such items), so it never falls back to plaintext
   * silently: sendMessage() encrypts, or fails with OmemoError "no-devices".
   */
  setChatEncrypted(jid: string, on: boolean): void {
    const chat = bare(jid);
    const c = tables.chats;
    this.s.write((ctx) =>
      ctx.tx
        .insert(c)
        .values({ accountId: ctx.accountId, jid: chat, omemo: on, createdAt: ctx.tx.now })
        .onConflictDoUpdate({ target: [c.accountId, c.jid], set: { omemo: on } })
        .run(),
    );
  }

  /** Whether OMEMO is on for this chat (see setChatEncrypted). */
  isChatEncrypted(jid: string): boolean {
    const s = this.s;
    return s.store.read((tx) => isChatEncrypted(tx, s.accountId, jid));
  }

  /**
   * Sends `body` to a chat as its setting says: encrypted when OMEMO is on for it (a joined room
   * through sendToRoom), with every error of send()/sendToRoom() and never in plaintext instead;
   * else a plain message. `omemo` is the encryption's result, null for a plain message.
   */
  async sendMessage(
    to: string,
    body: string,
  ): Promise<{ originId: string; omemo: OmemoSendResult | null }> {
    const s = this.s;
    const c = tables.chats;
    const chat = s.store.read((tx) =>
      tx
        .select({ kind: c.kind, omemo: c.omemo })
        .from(c)
        .where(and(eq(c.accountId, s.accountId), eq(c.jid, bare(to))))
        .get(),
    );
    if (!chat?.omemo) {
      const plain = s.send(to, body);
      plain.acked.catch(() => {}); // queued durably either way: news, not a failure
      return { originId: plain.originId, omemo: null };
    }
    const result =
      chat.kind !== "groupchat"
        ? await this.send(to, body)
        : to !== bare(to)
          ? await this.sendPrivate(to, body)
          : await this.sendToRoom(to, body);
    return { originId: result.originId, omemo: result };
  }

  // ---- sending -------------------------------------------------------------------------------

  /**
   * Encrypts `body` for every trusted device of `to` and our own other devices, stores the
   * message (plaintext, encrypted=true) and queues it with the ratchet changes in one
   * transaction. Throws OmemoError("no-devices") when no device of `to` can receive it.
   */
  async send(to: string, body: string): Promise<OmemoSendResult> {
    // Without a commit hook it is never declined.
    return (await this.encryptAndQueue(bare(to), [bare(to)], body))!;
  }

  /**
   * A private message to a room occupant (`room/nick`, XEP-0045 §7.5) of a joined non-anonymous
   * room, encrypted for the devices of the occupant's real JID (from the room's presence) and our
   * own other devices, sent to room/nick as a chat message and stored in the room's chat. Throws
   * OmemoError "not-in-room", "room-anonymous" (the room hides real JIDs), "unknown-occupant"
   * (not in the room now, or its JID hidden) or "no-devices".
   */
  async sendPrivate(occupant: string, body: string): Promise<OmemoSendResult> {
    const room = bare(occupant);
    const nick = occupant.slice(room.length + 1);
    if (!nick) throw new OmemoError("unknown-occupant", `${occupant} is not room/nick`);
    const s = this.s;
    const c = tables.chats;
    const o = tables.roomOccupants;
    const joined = s.store.read((tx) =>
      tx
        .select({ kind: c.kind, nick: c.nick })
        .from(c)
        .where(and(eq(c.accountId, s.accountId), eq(c.jid, room)))
        .get(),
    );
    if (joined?.kind !== "groupchat" || !joined.nick)
      throw new OmemoError("not-in-room", `not an occupant of ${room}`);
    // The room's configuration, not one occupant's presence, tells that real JIDs are shown.
    const support = this.roomCache().get(room) ?? (await this.roomSupport(room));
    if (!support.nonAnonymous)
      throw new OmemoError(
        "room-anonymous",
        `${room} is semi-anonymous (no muc_nonanonymous): OMEMO needs the occupant's real JID`,
      );
    const realJid = s.store.read(
      (tx) =>
        tx
          .select({ realJid: o.realJid })
          .from(o)
          .where(and(eq(o.accountId, s.accountId), eq(o.roomJid, room), eq(o.nick, nick)))
          .get()?.realJid,
    );
    if (!realJid)
      throw new OmemoError(
        "unknown-occupant",
        `the real JID of ${occupant} is unknown (not in the room now, or hidden)`,
      );
    // XEP-0045 §7.5: a private message carries an empty muc#user element.
    return (await this.encryptAndQueue(occupant, [bare(realJid)], body, {
      extra: [xml("x", { xmlns: NS_MUC_USER })],
    }))!;
  }

  /**
   * The engine's hook (SessionPlugin.encryptOutgoing) for what it sends on the user's behalf into
   * an encrypted chat: a share outbox item, the aesgcm:// link of an uploaded file (XEP-0454).
   * Encrypted exactly like sendMessage(), the outbox item id as origin-id; `commit` (marking the
   * item sent) runs in the transaction that stores and queues it with the ratchet changes.
   * Failures that cannot pass (no device, semi-anonymous room, …) become EncryptionFailedError.
   */
  async encryptOutgoing(message: OutgoingEncryption<StanzaContext>): Promise<boolean> {
    const s = this.s;
    const to = bare(message.to);
    const c = tables.chats;
    const kind = s.store.read(
      (tx) =>
        tx
          .select({ kind: c.kind })
          .from(c)
          .where(and(eq(c.accountId, s.accountId), eq(c.jid, to)))
          .get()?.kind,
    );
    try {
      const recipients = kind === "groupchat" ? await this.roomRecipients(to) : [to];
      const sent = await this.encryptAndQueue(to, recipients, message.body, {
        originId: message.originId,
        commit: message.commit,
      });
      return sent !== null;
    } catch (e) {
      if (e instanceof OmemoError && FINAL_SEND_ERRORS.has(e.code))
        throw new EncryptionFailedError(e.code, e.message);
      throw e;
    }
  }

  /**
   * Encrypts for the devices of `recipients` and ours, and queues the message to `to`. With
   * `commit`: it runs first in that transaction; false → nothing more is written, null returned.
   */
  private async encryptAndQueue(
    to: string,
    recipients: readonly string[],
    body: string,
    opts: {
      originId?: string;
      commit?: (ctx: StanzaContext) => boolean;
      /** More payload elements (e.g. muc#user of a private message). */
      extra?: Element[];
    } = {},
  ): Promise<OmemoSendResult | null> {
    const s = this.s;
    const own = this.role === "app" ? this.ensureIdentity() : this.own();
    if (!own) throw new OmemoError("no-identity", "no OMEMO identity yet");
    const ownJid = this.jid;
    const theirs: { jid: string; deviceId: number }[] = [];
    const noDevices: string[] = [];
    for (const jid of recipients) {
      let ids: number[];
      try {
        ids = await this.fetchDeviceList(jid);
      } catch (e) {
        // One room member's broken or hidden list must not stop the message to the others.
        const perMember =
          e instanceof OmemoError &&
          (e.code === "iq-error" || e.code === "bad-device-list" || e.code === "no-devices");
        if (recipients.length === 1 || !perMember) throw e;
        ids = [];
      }
      if (ids.length === 0) noDevices.push(jid);
      for (const deviceId of ids) theirs.push({ jid, deviceId });
    }
    const mine = recipients.includes(ownJid) ? [] : await this.fetchDeviceList(ownJid);
    const recipient = recipients.join(", ");
    const isRecipient = (jid: string) => recipients.includes(jid);
    const originId = opts.originId ?? randomUUID();
    const bundles = new Map<string, Bundle | Error>();
    for (let attempt = 1; attempt <= 5; attempt++) {
      const view = new SignalView(s.store, s.accountId, own);
      const skipped: OmemoSendResult["skipped"] = [];
      const targets: { jid: string; deviceId: number }[] = [];
      const candidates = [
        ...theirs,
        ...mine.filter((d) => d !== own.deviceId).map((deviceId) => ({ jid: ownJid, deviceId })),
      ];
      for (const c of candidates) {
        const known = view.identity(c.jid, c.deviceId);
        if (known && known.trust !== "trusted" && known.trust !== "verified") {
          skipped.push({ ...c, reason: `device is ${known.trust}` });
          continue;
        }
        if (!view.hasSession(c.jid, c.deviceId)) {
          const k = `${c.jid} ${c.deviceId}`;
          if (!bundles.has(k))
            bundles.set(
              k,
              await this.fetchBundle(c.jid, c.deviceId).catch((e: unknown) =>
                e instanceof Error ? e : new Error(String(e)),
              ),
            );
          const bundle = bundles.get(k)!;
          if (bundle instanceof Error) {
            skipped.push({ ...c, reason: bundle.message });
            continue;
          }
          const preKey = bundle.preKeys[randomInt(bundle.preKeys.length)]!;
          try {
            await new signal.SessionBuilder(
              view.storageFor(c.jid, c.deviceId),
              new signal.ProtocolAddress(addressName(c.jid), c.deviceId),
            ).initOutgoing({
              identityKey: bundle.identityKey,
              registrationId: 0,
              signedPreKey: bundle.signedPreKey,
              preKey,
            });
          } catch (e) {
            skipped.push({ ...c, reason: e instanceof Error ? e.message || e.name : String(e) });
            continue;
          }
        }
        targets.push(c);
      }
      if (!targets.some((t) => isRecipient(t.jid)))
        throw new OmemoError(
          "no-devices",
          `no OMEMO device of ${recipient} can receive the message${skipped.length ? `: ${skipped.map((k) => `${k.deviceId} ${k.reason}`).join("; ")}` : ""}`,
        );
      const sealed = sealPayload(body);
      const keys: { rid: number; prekey: boolean; data: Buffer }[] = [];
      const sent: typeof targets = [];
      for (const t of targets) {
        try {
          const r = await new signal.SessionCipher(
            view.storageFor(t.jid, t.deviceId),
            new signal.ProtocolAddress(addressName(t.jid), t.deviceId),
          ).encrypt(sealed.keyAndTag);
          keys.push({ rid: t.deviceId, prekey: r.type === 3, data: r.body });
          sent.push(t);
        } catch (e) {
          skipped.push({ ...t, reason: e instanceof Error ? e.message || e.name : String(e) });
        }
      }
      if (!sent.some((t) => isRecipient(t.jid)))
        throw new OmemoError(
          "no-devices",
          `no session with any device of ${recipient} could encrypt`,
        );
      const encrypted = encryptedElement({
        sid: own.deviceId,
        keys,
        iv: sealed.iv,
        payload: sealed.payload,
      });
      let declined = false;
      try {
        s.write((ctx) => {
          if (!view.stillValid(ctx.tx)) throw new StaleView();
          if (opts.commit && !opts.commit(ctx)) {
            declined = true; // the item moved on: no ratchet step without its message
            return;
          }
          view.apply(ctx.tx);
          s.queueMessage(ctx, {
            to,
            body,
            originId,
            wireBody: FALLBACK_BODY,
            encrypted: true,
            extra: [encrypted, emeElement(), ...(opts.extra ?? [])],
          });
        });
      } catch (e) {
        if (e instanceof StaleView) continue; // another process ratcheted meanwhile: encrypt again
        throw e;
      }
      if (declined) return null;
      return { originId, devices: sent, skipped, noDevices };
    }
    throw new OmemoError("state-conflict", "session state changed at every attempt");
  }

  /** Repairs under way in this process (a second call for the same device waits for none). */
  private readonly repairing = new Set<string>();
  private working: Promise<number> | null = null;
  private workAgain = false;

  /**
   * Main app: runs the work queued in omemo_pending_work (session repairs the NSE, or this app
   * before a crash, could not do), each row deleted in the transaction that does the work. Runs
   * on "online"; returns how many were done. A row that fails for a transient reason (timeout,
   * database) stays for the next run; one that cannot succeed (bundle gone, wrong signature,
   * unreadable row) is moved to quarantine with the reason.
   */
  runPendingWork(): Promise<number> {
    if (this.role !== "app") return Promise.resolve(0);
    if (this.working) {
      this.workAgain = true; // a row queued after the running pass read the table
      return this.working;
    }
    this.working = (async () => {
      let done = 0;
      do {
        this.workAgain = false;
        done += await this.doPendingWork();
      } while (this.workAgain);
      return done;
    })().finally(() => (this.working = null));
    return this.working;
  }

  private async doPendingWork(): Promise<number> {
    const s = this.s;
    const w = tables.omemoPendingWork;
    const rows = s.store.read((tx) =>
      tx.select().from(w).where(eq(w.accountId, s.accountId)).orderBy(w.createdAt).all(),
    );
    let done = 0;
    const drop = (key: string, raw: string, reason: string) =>
      s.write((ctx) => {
        ctx.tx
          .delete(w)
          .where(and(eq(w.accountId, ctx.accountId), eq(w.key, key)))
          .run();
        quarantineRow(ctx.tx, "omemo_pending_work", key, raw, reason);
      });
    for (const row of rows) {
      let descriptor: HandlerDescriptor | null = null;
      try {
        const parsed = validateHandlerDescriptor(JSON.parse(row.handler));
        if (parsed.ok) descriptor = parsed.value;
      } catch {
        descriptor = null;
      }
      const jid = descriptor?.bound.jid;
      const deviceId = descriptor?.bound.deviceId;
      if (
        descriptor?.name !== REPAIR_SESSION ||
        typeof jid !== "string" ||
        typeof deviceId !== "number" ||
        !Number.isInteger(deviceId)
      ) {
        drop(row.key, row.handler, "not an OMEMO work item this version knows");
        continue;
      }
      try {
        if (await this.repairSession(jid, deviceId)) done++;
      } catch (e) {
        if (e instanceof StoreLockTimeoutError || e instanceof DatabaseCorruptError) throw e;
        if (e instanceof OmemoError && (e.code === "iq-timeout" || e.code === "state-conflict"))
          continue; // the next run tries again
        drop(row.key, row.handler, `session repair failed: ${(e as Error).message}`);
      }
    }
    return done;
  }

  /**
   * Session repair: builds a new session with the device from its bundle and sends it an empty
   * key transport element (no payload), so its next messages use a session we can read. At most
   * once per device per `repairIntervalMs` (recorded in omemo_repairs, across processes), so two
   * broken peers cannot ping-pong repairs. Main app only (the NSE queues it, see decrypt()); the
   * queued row, if any, is deleted with the send. False: nothing sent (NSE, done recently).
   */
  async repairSession(jid: string, deviceId: number): Promise<boolean> {
    if (this.role !== "app") return false;
    const k = `${jid} ${deviceId}`;
    const w = tables.omemoPendingWork;
    const dequeue = (tx: StoreTx, accountId: string) =>
      tx
        .delete(w)
        .where(and(eq(w.accountId, accountId), eq(w.key, repairKey(jid, deviceId))))
        .run();
    if (this.repairing.has(k)) return false; // under way: it dequeues when sent
    const recent = this.s.write((ctx) => {
      const last = lastRepairAt(ctx.tx, ctx.accountId, jid, deviceId);
      if (last === null || ctx.tx.now - last >= this.repairIntervalMs) return false;
      dequeue(ctx.tx, ctx.accountId); // done already, a moment ago
      return true;
    });
    if (recent) return false;
    const own = this.own();
    if (!own) return false;
    this.repairing.add(k);
    try {
      return await this.sendRepair(own, jid, deviceId, dequeue);
    } finally {
      this.repairing.delete(k);
    }
  }

  private async sendRepair(
    own: OwnIdentity,
    jid: string,
    deviceId: number,
    dequeue: (tx: StoreTx, accountId: string) => void,
  ): Promise<boolean> {
    const bundle = await this.fetchBundle(jid, deviceId);
    for (let attempt = 1; attempt <= 5; attempt++) {
      const view = new SignalView(this.s.store, this.s.accountId, own);
      const address = new signal.ProtocolAddress(addressName(jid), deviceId);
      const storage = view.storageFor(jid, deviceId);
      await new signal.SessionBuilder(storage, address).initOutgoing({
        identityKey: bundle.identityKey,
        registrationId: 0,
        signedPreKey: bundle.signedPreKey,
        preKey: bundle.preKeys[randomInt(bundle.preKeys.length)]!,
      });
      const sealed = sealPayload("");
      const r = await new signal.SessionCipher(storage, address).encrypt(sealed.keyAndTag);
      const transport = encryptedElement({
        sid: own.deviceId,
        keys: [{ rid: deviceId, prekey: r.type === 3, data: r.body }],
        iv: sealed.iv,
        payload: null,
      });
      try {
        this.s.write((ctx) => {
          if (!view.stillValid(ctx.tx)) throw new StaleView();
          view.apply(ctx.tx);
          dequeue(ctx.tx, ctx.accountId);
          const r = tables.omemoRepairs;
          ctx.tx
            .insert(r)
            .values({ accountId: ctx.accountId, jid, deviceId, sentAt: ctx.tx.now })
            .onConflictDoUpdate({
              target: [r.accountId, r.jid, r.deviceId],
              set: { sentAt: ctx.tx.now },
            })
            .run();
          ctx.send(
            xml(
              "message",
              { to: jid, type: "chat", id: randomUUID() },
              transport,
              xml("store", { xmlns: "urn:xmpp:hints" }),
            ),
          );
        });
        return true;
      } catch (e) {
        if (!(e instanceof StaleView)) throw e;
      }
    }
    throw new OmemoError("state-conflict", "session state changed at every attempt");
  }

  // ---- group chats (XEP-0384 §6 as Conversations/Dino do it) ----------------------------------

  /** Room features learnt by disco, per session (forgotten when we join the room again). */
  private readonly roomSupportCache = new WeakMap<DurableSession, Map<string, RoomOmemoSupport>>();

  private roomCache(): Map<string, RoomOmemoSupport> {
    const s = this.s;
    let cache = this.roomSupportCache.get(s);
    if (!cache) {
      const fresh = new Map<string, RoomOmemoSupport>();
      // A room may be reconfigured while we are out of it: ask again after each join.
      s.on("room-joined", (room) => fresh.delete(room));
      this.roomSupportCache.set(s, (cache = fresh));
    }
    return cache;
  }

  /**
   * Asks the room (disco#info) whether it shows real JIDs (muc_nonanonymous) and admits members
   * only (muc_membersonly). OMEMO needs the first: the devices of an occupant whose real JID is
   * hidden cannot be found.
   */
  async roomSupport(room: string): Promise<RoomOmemoSupport> {
    room = bare(room);
    const res = await this.request(
      xml("iq", { type: "get", to: room }, xml("query", { xmlns: NS_DISCO_INFO })),
    );
    if (res.attrs.type !== "result")
      throw new OmemoError("iq-error", `disco#info of ${room}: ${res.toString()}`);
    const features = new Set(
      (res.getChild("query", NS_DISCO_INFO)?.getChildren("feature") ?? []).map((f) => f.attrs.var),
    );
    const support: RoomOmemoSupport = {
      room,
      nonAnonymous: features.has("muc_nonanonymous"),
      membersOnly: features.has("muc_membersonly"),
    };
    this.roomCache().set(room, support);
    return support;
  }

  /**
   * A room announces a configuration change (XEP-0045 §10.2.1: 104, 172 now non-anonymous, 173
   * semi-anonymous, 174 fully anonymous) from its bare JID: what disco said may be wrong now.
   */
  private noteRoomConfigChange(stanza: Element): void {
    const from = stanza.attrs.from;
    if (!from || from !== bare(from)) return;
    const codes = (stanza.getChild("x", NS_MUC_USER)?.getChildren("status") ?? []).map(
      (st) => st.attrs.code,
    );
    if (codes.some((c) => c === "104" || c === "172" || c === "173" || c === "174"))
      this.roomCache().delete(from);
  }

  /** Bare real JIDs of a room's other occupants, as the room showed them in their presence. */
  roomMembers(room: string): string[] {
    const s = this.s;
    const o = tables.roomOccupants;
    const own = this.jid;
    const rows = s.store.read((tx) =>
      tx
        .select({ realJid: o.realJid })
        .from(o)
        .where(and(eq(o.accountId, s.accountId), eq(o.roomJid, bare(room))))
        .all(),
    );
    const jids = new Set<string>();
    for (const r of rows) if (r.realJid && bare(r.realJid) !== own) jids.add(bare(r.realJid));
    return [...jids].sort();
  }

  /**
   * Encrypts `body` for every device of every occupant of a joined non-anonymous room (and our own
   * other devices) and sends it as one groupchat message; stored as plaintext, encrypted=true.
   * Throws OmemoError "not-in-room", "room-anonymous" (semi-anonymous room: refused), or
   * "no-devices" (no occupant can read it).
   */
  async sendToRoom(room: string, body: string): Promise<OmemoSendResult> {
    room = bare(room);
    // Without a commit hook it is never declined.
    return (await this.encryptAndQueue(room, await this.roomRecipients(room), body))!;
  }

  /** The real JIDs a message to a joined non-anonymous room is encrypted for (see sendToRoom). */
  private async roomRecipients(room: string): Promise<string[]> {
    const s = this.s;
    const c = tables.chats;
    const row = s.store.read((tx) =>
      tx
        .select({ kind: c.kind, nick: c.nick })
        .from(c)
        .where(and(eq(c.accountId, s.accountId), eq(c.jid, room)))
        .get(),
    );
    if (row?.kind !== "groupchat" || !row.nick)
      throw new OmemoError("not-in-room", `not an occupant of ${room}`);
    const support = this.roomCache().get(room) ?? (await this.roomSupport(room));
    if (!support.nonAnonymous)
      throw new OmemoError(
        "room-anonymous",
        `${room} is semi-anonymous (no muc_nonanonymous): OMEMO needs the occupants' real JIDs`,
      );
    const members = this.roomMembers(room);
    // Members who are not in the room now read it later (room MAM): Conversations encrypts for
    // the member list too. Only owners/admins may always read it: best effort.
    if (support.membersOnly)
      for (const jid of await this.roomAffiliates(room))
        if (jid !== this.jid && !members.includes(jid)) members.push(jid);
    if (members.length === 0)
      throw new OmemoError("no-devices", `nobody else in ${room} shows a real JID`);
    return members;
  }

  /**
   * Bare JIDs with affiliation member, admin or owner (XEP-0045 §9.5); lists we may not read are
   * skipped. Read from the room once, then from `room_members` until the room announces an
   * affiliation change or we join it again (see noteAffiliations).
   */
  async roomAffiliates(room: string): Promise<string[]> {
    room = bare(room);
    const s = this.s;
    const c = tables.chats;
    const rm = tables.roomMembers;
    const cached = s.store.read((tx) => {
      const row = tx
        .select({ readAt: c.membersReadAt })
        .from(c)
        .where(and(eq(c.accountId, s.accountId), eq(c.jid, room)))
        .get();
      if (row?.readAt == null) return null;
      return tx
        .select({ jid: rm.jid })
        .from(rm)
        .where(and(eq(rm.accountId, s.accountId), eq(rm.roomJid, room)))
        .orderBy(rm.jid)
        .all()
        .map((r) => r.jid);
    });
    if (cached) return cached;
    const heard: Announcement[] = [];
    let listening = this.announcementsDuringRead.get(room);
    if (!listening) this.announcementsDuringRead.set(room, (listening = new Set()));
    listening.add(heard);
    const affiliates = new Map<string, "member" | "admin" | "owner">();
    try {
      for (const affiliation of ["member", "admin", "owner"] as const) {
        const res = await this.request(
          xml(
            "iq",
            { type: "get", to: room },
            xml("query", { xmlns: NS_MUC_ADMIN }, xml("item", { affiliation })),
          ),
        ).catch(() => null);
        if (res?.attrs.type !== "result") continue;
        for (const item of res.getChild("query", NS_MUC_ADMIN)?.getChildren("item") ?? [])
          if (item.attrs.jid && (item.attrs.affiliation ?? affiliation) === affiliation)
            affiliates.set(bare(item.attrs.jid), affiliation);
      }
    } finally {
      listening.delete(heard);
      if (listening.size === 0) this.announcementsDuringRead.delete(room);
    }
    // A change announced while we asked may be missing from the answers: then not cached.
    const consistent = heard.every(
      (a) => a.jid !== null && (affiliates.get(a.jid) ?? "none") === a.affiliation,
    );
    if (consistent)
      s.write((ctx) => {
        ctx.tx
          .delete(rm)
          .where(and(eq(rm.accountId, ctx.accountId), eq(rm.roomJid, room)))
          .run();
        for (const [jid, affiliation] of affiliates)
          ctx.tx
            .insert(rm)
            .values({
              accountId: ctx.accountId,
              roomJid: room,
              jid,
              affiliation,
              updatedAt: ctx.tx.now,
            })
            .run();
        ctx.tx
          .update(c)
          .set({ membersReadAt: ctx.tx.now })
          .where(and(eq(c.accountId, ctx.accountId), eq(c.jid, room)))
          .run();
      });
    return [...affiliates.keys()].sort();
  }

  /** Per room: the announcements heard by each running read of its lists. */
  private readonly announcementsDuringRead = new Map<string, Set<Announcement[]>>();

  /**
   * A room's affiliation announcements (XEP-0045 §9: muc#user items in an occupant's presence, or
   * in a message from the room's bare JID for someone not in it) and our own presence in it (a
   * join: changes made while we were away were not announced to us). When one differs from the
   * cached member list, or we (re)joined, the cache is dropped: the next send reads the lists
   * again. Nothing announced is written as such (an occupant's presence could carry a forged
   * item): the room's own lists stay the only source.
   */
  private noteAffiliations(stanza: Element): PluginPrepared | null {
    const from = stanza.attrs.from;
    if (!from) return null;
    const room = bare(from);
    if (stanza.is("message") && from !== room) return null;
    const x = stanza.getChild("x", NS_MUC_USER);
    const items = (x?.getChildren("item") ?? []).filter((i) => i.attrs.affiliation);
    const ownPresence =
      stanza.is("presence") &&
      stanza.attrs.type !== "unavailable" &&
      !!x?.getChildren("status").some((st) => st.attrs.code === "110");
    if (items.length === 0 && !ownPresence) return null;
    const announced = items.map((i): Announcement => ({
      jid: i.attrs.jid ? bare(i.attrs.jid) : null,
      affiliation: listedAffiliation(i.attrs.affiliation!),
    }));
    const s = this.s;
    const c = tables.chats;
    const rm = tables.roomMembers;
    const { joining, stale } = s.store.read((tx) => {
      const row = tx
        .select({ kind: c.kind, readAt: c.membersReadAt, status: c.roomStatus })
        .from(c)
        .where(and(eq(c.accountId, s.accountId), eq(c.jid, room)))
        .get();
      if (row?.kind !== "groupchat") return { joining: false, stale: false };
      // Our own presence while joining (not an update of it once joined): we were away.
      const joining = ownPresence && row.status !== "joined";
      if (row.readAt === null || joining) return { joining, stale: joining };
      const known = new Map(
        tx
          .select({ jid: rm.jid, affiliation: rm.affiliation })
          .from(rm)
          .where(and(eq(rm.accountId, s.accountId), eq(rm.roomJid, room)))
          .all()
          .map((r) => [r.jid, r.affiliation as string]),
      );
      // An item whose JID we cannot see: read the lists again.
      const changed = announced.some(
        (a) => a.jid === null || (known.get(a.jid) ?? "none") !== a.affiliation,
      );
      return { joining, stale: changed };
    });
    // A read of the lists running now may have been answered before these: it checks them.
    if (joining) announced.push({ jid: null, affiliation: "none" }); // never consistent
    for (const heard of this.announcementsDuringRead.get(room) ?? []) heard.push(...announced);
    if (!stale) return null;
    return {
      apply: (ctx) =>
        void ctx.tx
          .update(c)
          .set({ membersReadAt: null })
          .where(and(eq(c.accountId, ctx.accountId), eq(c.jid, room)))
          .run(),
    };
  }

  /**
   * Who wrote a groupchat message: our own nick → us; a room archive result → the muc#user item
   * the room archived with it, else the occupant list; live → the occupant list (an occupant's
   * own muc#user element is not the room's word). Null: not from a room we are in, or a room
   * archive result we did not ask for (the engine drops those too).
   */
  /**
   * A private message from an occupant (room/nick, not groupchat) of a room we are in: its
   * author is resolved like a room message's, from the occupant list (null: not such a message).
   */
  private privateMessageOrigin(located: Located): RoomOrigin | null {
    const from = located.inner.attrs.from as string | undefined;
    const slash = from?.indexOf("/") ?? -1;
    if (!from || slash < 0 || located.inner.attrs.type === "groupchat") return null;
    const room = from.slice(0, slash);
    const s = this.s;
    // Asked for every message from a full JID (a contact's too): a prepared statement, as a
    // query built per message cost more than the Signal decryption (CPU profile of the bench).
    const kind = s.store.read(
      (tx) => hotQueries(tx).chat.get({ account: s.accountId, jid: room })?.kind,
    );
    if (kind !== "groupchat") return null;
    return { room, nick: from.slice(slash + 1), archivedRealJid: null, queryId: null };
  }

  private roomSender(origin: RoomOrigin): { jid: string } | { unknown: string } | null {
    const s = this.s;
    const w = tables.iqHandlers;
    return s.store.read((tx) => {
      const q = hotQueries(tx);
      const room = q.chat.get({ account: s.accountId, jid: origin.room });
      if (room?.kind !== "groupchat") return null;
      if (origin.queryId !== null) {
        const expected = tx
          .select({ handler: w.handler })
          .from(w)
          .where(eq(w.accountId, s.accountId))
          .all()
          .some((h) => {
            try {
              const d = JSON.parse(h.handler) as HandlerDescriptor;
              return (
                d.name === "lichen.mam.room-page" &&
                d.bound.room === origin.room &&
                d.bound.queryId === origin.queryId
              );
            } catch {
              return false;
            }
          });
        if (!expected) return null;
        if (origin.archivedRealJid) return { jid: origin.archivedRealJid };
      }
      if (room.nick !== null && origin.nick === room.nick) return { jid: this.jid };
      const occupant = q.occupantRealJid.get({
        account: s.accountId,
        room: origin.room,
        nick: origin.nick,
      });
      if (occupant?.realJid) return { jid: bare(occupant.realJid) };
      return {
        unknown: `the real JID of ${origin.room}/${origin.nick} is unknown (${occupant ? "the room hides it" : "not an occupant now"})`,
      };
    });
  }

  // ---- receiving (the engine's prepare step) --------------------------------------------------

  async prepare(stanza: Element, session: DurableSession): Promise<PluginPrepared | null> {
    if (stanza.is("presence")) return this.noteAffiliations(stanza);
    if (!stanza.is("message")) return null;
    const own = this.jid;
    const event = stanza.getChild("event", NS_PUBSUB_EVENT);
    if (event) return this.prepareDeviceListEvent(stanza, event, own);
    this.noteRoomConfigChange(stanza);
    const located = locate(stanza, own);
    if (!located) return this.noteAffiliations(stanza);
    const encryptedEl = located.inner.getChild("encrypted", NS_OMEMO);
    if (!encryptedEl) return this.noteAffiliations(stanza);
    // Everything decryption needs from the database, read in one snapshot (one transaction:
    // each read of its own costs as much as the Signal crypto itself).
    let at = located;
    let ready: PluginPrepared | null | Ready;
    try {
      ready = session.store.read((): PluginPrepared | null | Ready => {
        // A replay (or a room message live and again in the room's archive): the engine's unique
        // indexes drop it. Checked first: a failure stored twice would be quarantined twice.
        if (this.alreadyStored(located)) return null;
        const origin = located.roomOrigin ?? this.privateMessageOrigin(located);
        if (origin) {
          const resolved = this.roomSender(origin);
          if (resolved === null) return null; // not a room of ours / not our catch-up: the engine drops it
          if ("unknown" in resolved)
            return this.failure(
              stanza,
              { ...located, sender: `${origin.room}/${origin.nick}` },
              "unknown-occupant",
              resolved.unknown,
            );
          at = { ...located, sender: resolved.jid };
        }
        return this.beforeDecrypt(stanza, at, encryptedEl, session);
      });
    } catch (e) {
      if (e instanceof StoreLockTimeoutError || e instanceof DatabaseCorruptError) throw e;
      return this.failure(stanza, at, "internal", e instanceof Error ? e.message : String(e));
    }
    if (!(ready instanceof Ready)) return ready;
    try {
      return await this.decrypt(stanza, at, ready);
    } catch (e) {
      // The database failed: the stanza is not handled now (the engine replays it later).
      if (e instanceof StoreLockTimeoutError || e instanceof DatabaseCorruptError) throw e;
      // Anything else is a bug or input nobody foresaw: stored as a failure, never a crash.
      return this.failure(stanza, at, "internal", e instanceof Error ? e.message : String(e));
    }
  }

  /** The checks before the Signal decryption (reads only): a failure to store, null, or Ready. */
  private beforeDecrypt(
    stanza: Element,
    at: Located,
    encryptedEl: Element,
    session: DurableSession,
  ): PluginPrepared | null | Ready {
    const own = this.jid;
    const ownIdentity = this.own();
    const fail = (reason: DecryptFailureReason, detail: string): PluginPrepared =>
      this.failure(stanza, at, reason, detail);
    if (!ownIdentity) return fail("no-identity", "this device has no OMEMO identity yet");
    let enc;
    try {
      enc = parseEncrypted(encryptedEl);
    } catch (e) {
      return fail("bad-element", (e as Error).message);
    }
    const mine = enc.keys.find((k) => k.rid === ownIdentity.deviceId);
    if (!mine) {
      // Our own message coming back (carbon/MAM of what this device sent): no key for us, by design.
      if (at.sender === own && enc.sid === ownIdentity.deviceId) return null;
      return fail(
        "not-for-this-device",
        `no key for device ${ownIdentity.deviceId} (keys for ${enc.keys.map((k) => k.rid).join(", ") || "none"})`,
      );
    }
    const listed = this.listedDevices(at.sender);
    if (listed.size > 0 && !listed.has(enc.sid))
      return fail("unknown-device", `device ${enc.sid} is not in ${at.sender}'s device list`);
    const view = new SignalView(session.store, session.accountId, ownIdentity);
    if (view.identity(at.sender, enc.sid)?.trust === "untrusted")
      return fail("distrusted-device", `device ${enc.sid} of ${at.sender} is distrusted`);
    view.sessionRow(at.sender, enc.sid); // read now, in this snapshot, for libsignal's loadSession
    return new Ready(view, enc, mine);
  }

  private async decrypt(stanza: Element, at: Located, ready: Ready): Promise<PluginPrepared> {
    const { view, mine, enc } = ready;
    const fail = (
      reason: DecryptFailureReason,
      detail: string,
      withView?: SignalView,
    ): PluginPrepared => this.failure(stanza, at, reason, detail, withView);
    const cipher = unqueuedSessionCipher(
      view.storageFor(at.sender, enc.sid),
      new signal.ProtocolAddress(addressName(at.sender), enc.sid),
    );
    let keyMaterial: Buffer;
    try {
      keyMaterial = mine.prekey
        ? await cipher.decryptPreKeyWhisperMessage(mine.data)
        : await cipher.decryptWhisperMessage(mine.data);
    } catch (e) {
      // Nothing of the view is written: the ratchet stays where it was.
      const err = e as Error;
      const failed = fail("signal", err.message || err.name);
      return {
        ...failed,
        stillValid: (tx) => view.stillValid(tx),
        apply: (ctx) => {
          failed.apply!(ctx);
          // Our state for that device is lost or broken (a WhisperMessage we cannot read), or the
          // session its PreKeyWhisperMessage starts cannot be built here (prekey used or unknown,
          // a signed prekey we no longer have, a bad signature): either way its sender goes on
          // writing into a session we do not have, so offer a new one. Queued with the failure,
          // so neither a kill nor the NSE (which must not fetch bundles or send) loses it: the
          // main app does it now or when next online. At most one pending per device, and none
          // while the last repair sent to it is recent (its next messages may still be in flight).
          if (queueRepair(ctx.tx, ctx.accountId, at.sender, enc.sid, this.repairIntervalMs))
            if (this.role === "app")
              ctx.afterCommit(() => void this.runPendingWork().catch(() => {}));
        },
      };
    }
    if (!enc.payload) return this.success(at, null, view); // key transport element
    let text: string;
    try {
      text = openPayload(keyMaterial, enc.iv, enc.payload);
    } catch (e) {
      // The Signal message was genuine and its key is spent: commit that with the failure.
      return fail("payload", (e as Error).message, view);
    }
    return this.success(at, text, view);
  }

  private success(at: Located, text: string | null, view: SignalView): PluginPrepared {
    const { stanza, inner } = at.copy();
    setBody(inner, text);
    markDecrypted(inner);
    return {
      stanza,
      stillValid: (tx) => view.stillValid(tx),
      apply: (ctx) => {
        const { preKeysUsed } = view.apply(ctx.tx);
        // Only a prekey consumed now needs a refill: a sender keeps sending PreKeyWhisperMessages
        // (for a session this device already built) until we reply, and republishing the bundle
        // for each of them cost more than decrypting it.
        if (preKeysUsed > 0) this.afterPreKeyUse(ctx);
      },
    };
  }

  /** A prekey was used: the bundle needs a fresh one. The NSE leaves that to the main app. */
  private afterPreKeyUse(ctx: Pick<StanzaContext, "state" | "afterCommit">): void {
    ctx.state.omemo.preKeysNeedRefill = true;
    if (this.role === "app") ctx.afterCommit(() => void this.publish().catch(() => {}));
  }

  private failure(
    received: Element,
    at: Located,
    reason: DecryptFailureReason,
    detail: string,
    view?: SignalView,
  ): PluginPrepared {
    const { stanza, inner } = at.copy();
    setBody(inner, `could not decrypt (OMEMO ${reason}): ${detail}`);
    markDecrypted(inner);
    let raw: string;
    try {
      raw = received.toString();
    } catch {
      raw = "(unserializable)";
    }
    return {
      stanza,
      ...(view ? { stillValid: (tx: StoreTx) => view.stillValid(tx) } : {}),
      apply: (ctx) => {
        if (view) {
          const { preKeysUsed } = view.apply(ctx.tx);
          if (preKeysUsed > 0) this.afterPreKeyUse(ctx);
        }
        // The stanza itself is kept, with the reason, for a later retry or inspection.
        quarantineRow(
          ctx.tx,
          "omemo_message",
          `${at.sender}/${inner.attrs.id ?? at.archiveId ?? ""}`,
          raw,
          `could not decrypt: ${reason}: ${detail}`,
        );
      },
    };
  }

  private listedDevices(jid: string): Set<number> {
    const s = this.s;
    const rows = s.store.read((tx) => hotQueries(tx).deviceList.all({ account: s.accountId, jid }));
    return new Set(rows.filter((r) => r.active).map((r) => r.id));
  }

  /**
   * A copy of a message already stored: the same message live or from the offline store and
   * again in a MAM page (Prosody may deliver both), or a replay. Checked before decrypting: a
   * second decryption of a consumed message key (or prekey) fails and would store a failure.
   */
  private alreadyStored(at: Located): boolean {
    const s = this.s;
    const originId = at.inner.getChild("origin-id", NS_SID)?.attrs.id;
    // Only our archive's stanza-id, as the engine: a sender's forged one must not make us skip
    // decryption of a new message.
    // A room message: the room's archive id (as the engine keeps it).
    const idOwner = at.roomOrigin?.room ?? this.jid;
    const stanzaIds = at.inner
      .getChildren("stanza-id", NS_SID)
      .filter((e) => e.attrs.by === idOwner)
      .map((e) => e.attrs.id)
      .filter((x): x is string => !!x);
    // Archive ids are unique per archive only (ejabberd's are timestamps): a room's are matched
    // within that room's chat. One indexed lookup per kind of id: an OR of them would make SQLite
    // scan the account's whole history for every encrypted message.
    const room = at.roomOrigin?.room;
    const archiveIds = [...new Set([...(at.archiveId ? [at.archiveId] : []), ...stanzaIds])];
    const account = s.accountId;
    const from = at.inner.attrs.from;
    return s.store.read((tx) => {
      const q = hotQueries(tx);
      if (at.archiveId) {
        const id = at.archiveId;
        const hit = room
          ? q.byArchiveIdInChat.get({ account, id, chat: room })
          : q.byArchiveId.get({ account, id });
        if (hit) return true;
      }
      for (const id of archiveIds) {
        const hit = room
          ? q.byStanzaIdInChat.get({ account, by: idOwner, id, chat: room })
          : q.byStanzaId.get({ account, by: idOwner, id });
        if (hit) return true;
      }
      return (
        !!originId && !!from && q.byOriginId.get({ account, id: originId, from }) !== undefined
      );
    });
  }

  private prepareDeviceListEvent(
    stanza: Element,
    event: Element,
    own: string,
  ): PluginPrepared | null {
    const items = event.getChild("items");
    if (items?.attrs.node !== NODE_DEVICELIST) return null;
    const from = stanza.attrs.from ?? own;
    if (from !== bare(from)) return null; // PEP notifications come from the owner's bare JID
    let ids: number[];
    try {
      ids = parseDeviceList(latestItem(items)?.getChild("list", NS_OMEMO));
    } catch (e) {
      const detail = (e as Error).message;
      return {
        apply: (ctx) => quarantineRow(ctx.tx, "omemo_device_list", from, stanza.toString(), detail),
      };
    }
    return {
      apply: (ctx) => {
        writeDeviceList(ctx.tx, ctx.accountId, from, ids);
        const ownId = ctx.state.omemo.deviceId;
        // Another of our devices replaced the list without us: put ourselves back (main app).
        if (from === own && ownId !== null && !ids.includes(ownId)) {
          ctx.state.omemo.deviceListPublished = false;
          if (this.role === "app") ctx.afterCommit(() => void this.publish().catch(() => {}));
        }
      },
    };
  }
}

/** An affiliation a room announced (jid null: not shown to us). */
interface Announcement {
  jid: string | null;
  affiliation: "member" | "admin" | "owner" | "none";
}

/** What an announced affiliation means for the member lists (outcast, none: not in them). */
function listedAffiliation(affiliation: string): Announcement["affiliation"] {
  return affiliation === "member" || affiliation === "admin" || affiliation === "owner"
    ? affiliation
    : "none";
}

/** When a session repair was last sent to a device (null: never). */
function lastRepairAt(
  tx: StoreTx,
  accountId: string,
  jid: string,
  deviceId: number,
): number | null {
  const r = tables.omemoRepairs;
  return (
    tx
      .select({ sentAt: r.sentAt })
      .from(r)
      .where(and(eq(r.accountId, accountId), eq(r.jid, jid), eq(r.deviceId, deviceId)))
      .get()?.sentAt ?? null
  );
}

/**
 * Queues a session repair for the main app: once per device (a second failure while one is
 * pending adds nothing), and not within `intervalMs` of the last repair sent to that device.
 * True when a row is pending now.
 */
function queueRepair(
  tx: StoreTx,
  accountId: string,
  jid: string,
  deviceId: number,
  intervalMs: number,
): boolean {
  const last = lastRepairAt(tx, accountId, jid, deviceId);
  if (last !== null && tx.now - last < intervalMs) return false;
  const descriptor: HandlerDescriptor = { v: 1, name: REPAIR_SESSION, bound: { jid, deviceId } };
  tx.insert(tables.omemoPendingWork)
    .values({
      accountId,
      key: repairKey(jid, deviceId),
      handler: JSON.stringify(descriptor),
      createdAt: tx.now,
    })
    .onConflictDoNothing()
    .run();
  return true;
}

/** Stores a JID's device list: listed ids active, the others kept (their sessions too) but inactive. */
export function writeDeviceList(
  tx: StoreTx,
  accountId: string,
  jid: string,
  ids: readonly number[],
): void {
  const d = tables.omemoDeviceLists;
  tx.update(d)
    .set({ active: false, updatedAt: tx.now })
    .where(and(eq(d.accountId, accountId), eq(d.jid, jid)))
    .run();
  for (const deviceId of ids)
    tx.insert(d)
      .values({ accountId, jid, deviceId, active: true, updatedAt: tx.now })
      .onConflictDoUpdate({
        target: [d.accountId, d.jid, d.deviceId],
        set: { active: true, updatedAt: tx.now },
      })
      .run();
}

export function omemo(opts: OmemoOptions = {}): Omemo {
  return new Omemo(opts);
}
