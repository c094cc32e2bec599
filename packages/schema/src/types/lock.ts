import type { Counter, EpochMs } from "./common.js";

/**
 * The cross-process lease lock row. Whoever holds an unexpired lease may drive the XMPP session.
 * The generation increases whenever a different holder takes the lock, so a holder that sees a new
 * generation knows another process changed the store and reloads its caches.
 */
export interface ProcessLockRecord {
  /**
   * Lock name, e.g. "xmpp-session".
   * @minLength 1
   * @maxLength 200
   */
  key: string;
  /**
   * Holder identity: process role plus a per-process nonce, e.g. "nse:4f2c".
   * @minLength 1
   * @maxLength 200
   */
  holder: string;
  /** The lease ends at this instant unless renewed. */
  leaseExpiresAt: EpochMs;
  /** Increased each time the holder changes. */
  generation: Counter;
}
