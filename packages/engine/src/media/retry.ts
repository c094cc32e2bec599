// What a failed upload PUT does next, decided from the error alone (no I/O), so the rule is
// testable without a server: retry later, ask a new slot now, or fail the row for good.
import { reconnectDelay } from "../reconnect.js";
import type { MediaError } from "./errors.js";

/** Timers, injectable so tests decide when a retry runs (default: the global ones). */
export interface RetryTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** How a PUT broken while the app runs is retried (a new resume starts the count again). */
export interface UploadRetryPolicy {
  /** First retry after about this long (default 2 s); doubled per failed attempt, with jitter. */
  initialDelayMs?: number;
  /** Never wait longer than this (default 60 s). */
  maxDelayMs?: number;
  /**
   * Retries of one upload before giving up until the next resume (default 5). The row stays
   * `uploading` then: the next `online` (or `resume()`) restarts it.
   */
  maxAttempts?: number;
  /** [0, 1) source for the jitter (default Math.random). */
  random?: () => number;
  timers?: RetryTimers;
}

export type UploadFailureAction =
  /** The link (or the service, for a while) failed: the same upload again after a back-off. */
  | { kind: "retry"; newSlot: boolean }
  /** A reused slot the service refuses (ejabberd's are single-use): a new slot at once. */
  | { kind: "new-slot" }
  /** Will not get better (4xx, missing file …): the row fails with the error, for the user. */
  | { kind: "fail" };

/** Statuses that say "later", not "no" (RFC 9110 §15.5.9, RFC 6585 §4, and every 5xx). */
function transientStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/**
 * `reusedSlot`: the PUT went to a slot granted before this attempt (a restart after a kill, or a
 * retry). ejabberd consumes a slot when a PUT starts, even one that breaks, and may answer a
 * second PUT and close while we still write the body: so a reused slot that breaks is retried
 * with a new slot, and one refused with a status (other than 413) gets a new slot at once.
 */
export function uploadFailureAction(error: MediaError, reusedSlot: boolean): UploadFailureAction {
  if (error.code === "http-failed") return { kind: "retry", newSlot: reusedSlot };
  if (error.code === "http-status" && error.status !== undefined) {
    if (transientStatus(error.status)) return { kind: "retry", newSlot: false };
    if (reusedSlot && error.status !== 413) return { kind: "new-slot" };
  }
  return { kind: "fail" };
}

/** Delay before retry `attempt` (0-based): the reconnect back-off (exponential, capped, jitter). */
export function uploadRetryDelay(attempt: number, policy: UploadRetryPolicy = {}): number {
  return reconnectDelay(attempt, {
    initialDelayMs: policy.initialDelayMs ?? 2000,
    maxDelayMs: policy.maxDelayMs ?? 60_000,
    ...(policy.random ? { random: policy.random } : {}),
  });
}

export const DEFAULT_UPLOAD_ATTEMPTS = 5;
