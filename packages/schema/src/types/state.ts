import type { Counter, EpochMs, EpochMsOrNull } from "./common.js";
import type { PushRegistration } from "./push.js";

/** Current version of the persisted account state format. */
export const ACCOUNT_STATE_VERSION = 1;

/**
 * XEP-0198 stream-management state. Survives a state-version bump (state invalidation), because
 * losing it would lose or duplicate stanzas.
 */
export interface StreamManagementState {
  /** Stream id from <enabled id/> (null when no resumable stream exists). */
  streamId: string | null;
  /** Preferred resume location from <enabled location/>, "host:port" (null: same server). */
  location: string | null;
  /** The full JID bound on that stream (resume does not re-bind). */
  boundJid: string | null;
  /**
   * Seconds the server keeps the session for resumption (<enabled max/>).
   * @TJS-type ["integer", "null"]
   * @minimum 0
   */
  maxResumeSeconds: number | null;
  /** Inbound h: number of stanzas handled and committed on this stream. */
  inboundH: Counter;
  /** Number of stanzas sent on this stream (sequence of the last unacked-queue entry). */
  outboundSent: Counter;
  /** Last h acknowledged by the server. */
  outboundAcked: Counter;
  /**
   * Which unacked queue holds the stanzas sent but not yet acked (rows of the outbound queue table
   * with this stream key).
   * @minLength 1
   */
  unackedQueue: string;
  /** When the stream was enabled (null: never). */
  enabledAt: EpochMsOrNull;
}

/** Features discovered via XEP-0030 (server and own bare JID). */
export interface DiscoveredFeatures {
  /** Feature vars of the server domain. */
  server: string[];
  /** Feature vars of the account's bare JID (PEP, MAM on the account). */
  account: string[];
  /** When discovery last ran (null: never). */
  discoveredAt: EpochMsOrNull;
  /**
   * XEP-0115 ver the server advertised in its stream features when `server` was discovered: a new
   * stream whose features carry the same ver skips both disco#info queries (absent: always query).
   */
  serverCapsVer?: string | null;
}

/** XEP-0313 catch-up marks for the account archive (per-room marks live in their own table). */
export interface MamCatchupState {
  /** Archive id (XEP-0359 stanza-id by the account) of the newest stored message. */
  lastStanzaId: string | null;
  /** Timestamp of that message. */
  lastTimestamp: EpochMsOrNull;
  /** A gap was detected (session not resumed) and catch-up has not finished yet. */
  gapOpen: boolean;
  /** When the last catch-up completed. */
  completedAt: EpochMsOrNull;
  /**
   * Last time (local clock) the account was known to be in sync with its archive: a stanza was
   * handled on a stream with no gap open (everything the server archived before sending it came
   * before it on that stream), or a catch-up completed. With no archive id to page after, the next
   * catch-up starts from this time (XEP-0313 `start`). Absent in states written before it existed.
   */
  syncedAt?: EpochMsOrNull;
}

/** XEP-0352 client state indication last sent. */
export type CsiState = "active" | "inactive";

/** OMEMO bookkeeping flags (keys themselves live in their own tables). */
export interface OmemoBookkeeping {
  /**
   * Own OMEMO device id (null: not generated yet).
   * @TJS-type ["integer", "null"]
   * @minimum 0
   */
  deviceId: number | null;
  /** Own device id is present in the published device list. */
  deviceListPublished: boolean;
  /** Own bundle is published and current. */
  bundlePublished: boolean;
  /** Pre-keys were consumed and the bundle must be refilled and republished. */
  preKeysNeedRefill: boolean;
}

/**
 * The persisted session state of one account. @lichen/store keeps the fields a stanza changes
 * (sm.inboundH, sm.outboundSent, sm.outboundAcked, mam.syncedAt, mam.lastStanzaId,
 * mam.lastTimestamp) in their own columns, written with one UPDATE per stanza, and the rest as
 * JSON; the type stays one object because a native NSE then decodes and encodes one AccountState
 * (the SQL contract merges and splits the row), with no second type to keep in step.
 */
export interface AccountState {
  /** Format version; see ACCOUNT_STATE_VERSION. */
  stateVersion: Counter;
  /** Stream management (kept across state invalidation). */
  sm: StreamManagementState;
  /** Discovered features. */
  features: DiscoveredFeatures;
  /** XEP-0237 roster version (null: no versioned roster yet). */
  rosterVersion: string | null;
  /** MAM catch-up marks for the account archive. */
  mam: MamCatchupState;
  /** Current push registration (null: push not enabled). */
  push: PushRegistration | null;
  /** Last CSI state sent. */
  csi: CsiState;
  /** OMEMO bookkeeping flags. */
  omemo: OmemoBookkeeping;
  /** When this state was last written. */
  updatedAt: EpochMs;
}
