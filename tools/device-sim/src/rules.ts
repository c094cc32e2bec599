// iOS's rules for the processes of one app, in milliseconds. Tests scale them down (the
// processes stay real; only the OS's timers run faster).

export interface DeviceRules {
  /** The NSE is killed this long after it started (iOS: ~30 s). */
  nseKillMs: number;
  /** The deadline the NSE is started with (`lichen-chat nse --deadline-ms`; Monal: 25 s). */
  nseDeadlineMs: number;
  /** How long the NSE stays connected for a further push after syncing. */
  nseLingerMs: number;
  /** Delay of the NSE's "could not synchronize" warning (a later sync cancels it). */
  syncWarningDelayMs: number;
  /** The main app runs this long after the user left it, then is frozen (SIGSTOP) (~30 s). */
  backgroundRunMs: number;
  /** Swipe-away: SIGTERM, then SIGKILL after a grace in this range (iOS: 1–2 s). */
  swipeGraceMs: [min: number, max: number];
  /** A silent (content-available) push wakes the main app for this long (~30 s). */
  silentPushRunMs: number;
  /** A granted BGProcessingTask runs at most this long (5 min). */
  backgroundTaskBudgetMs: number;
  /** Before a background run's end the app is told to wrap up (iOS: the expiration handler). */
  expiryNoticeMs: number;
  /** How often the OS side looks for due local notifications and background-task requests. */
  tickMs: number;
}

export const IOS_RULES: DeviceRules = {
  nseKillMs: 30_000,
  nseDeadlineMs: 25_000,
  nseLingerMs: 1_500,
  syncWarningDelayMs: 60_000,
  backgroundRunMs: 30_000,
  swipeGraceMs: [1_000, 2_000],
  silentPushRunMs: 30_000,
  backgroundTaskBudgetMs: 300_000,
  expiryNoticeMs: 5_000,
  tickMs: 250,
};

/**
 * The rules with every duration multiplied by `scale` (e.g. 0.2 in a test: the NSE is killed
 * after 6 s). `overrides` are taken as given (already scaled).
 */
export function scaledRules(scale: number, overrides: Partial<DeviceRules> = {}): DeviceRules {
  if (!(scale > 0)) throw new RangeError(`scale must be > 0, got ${scale}`);
  const s = (ms: number) => Math.max(1, Math.round(ms * scale));
  const r = IOS_RULES;
  return {
    nseKillMs: s(r.nseKillMs),
    nseDeadlineMs: s(r.nseDeadlineMs),
    nseLingerMs: s(r.nseLingerMs),
    syncWarningDelayMs: s(r.syncWarningDelayMs),
    backgroundRunMs: s(r.backgroundRunMs),
    swipeGraceMs: [s(r.swipeGraceMs[0]), s(r.swipeGraceMs[1])],
    silentPushRunMs: s(r.silentPushRunMs),
    backgroundTaskBudgetMs: s(r.backgroundTaskBudgetMs),
    expiryNoticeMs: s(r.expiryNoticeMs),
    tickMs: Math.min(r.tickMs, s(r.tickMs) * 4),
    ...overrides,
  };
}
