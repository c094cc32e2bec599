// Reconnecting after a lost connection: which errors are worth retrying, and when.

/** How the main app gets back online after the network (or the server) dropped the connection. */
export interface ReconnectPolicy {
  /** First retry after this long (default 1 s); doubled per failed attempt. */
  initialDelayMs?: number;
  /** Never wait longer than this between attempts (default 60 s). */
  maxDelayMs?: number;
  /** Give one attempt this long to get online (default 20 s). */
  connectTimeoutMs?: number;
  /** [0, 1) source for the jitter (default Math.random); inject a seeded one in tests. */
  random?: () => number;
}

const TRANSIENT_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND", // no DNS while offline
  "EAI_AGAIN",
]);

/**
 * Whether a failed connect is worth retrying: the network or the server was away. A refused
 * password, a bad certificate or a refused plaintext login will fail the same way again.
 */
export function isTransientConnectError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  if (code && TRANSIENT_CODES.has(code)) return true;
  // xmpp.js gave up waiting for the server (a stalled link, a server that accepts TCP and says
  // nothing): the same as unreachable, not a refusal.
  if (err.name === "TimeoutError") return true;
  return /^session not online after|^the connection closed before the session was online/.test(
    err.message,
  );
}

/**
 * Delay before retry `attempt` (0-based): exponential, capped, with "equal jitter" (half fixed,
 * half random) so many clients that lost the same server do not come back in lockstep.
 */
export function reconnectDelay(attempt: number, policy: ReconnectPolicy = {}): number {
  const initial = policy.initialDelayMs ?? 1000;
  const max = policy.maxDelayMs ?? 60_000;
  const base = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  const r = (policy.random ?? Math.random)();
  return Math.round(base / 2 + (base / 2) * r);
}
