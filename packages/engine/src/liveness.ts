/**
 * Link liveness for an idle online session (XEP-0198 §4 <r/> as the probe). A half-open TCP
 * link — the phone changed network, a NAT dropped its mapping — gives no RST and no FIN: writes
 * succeed into the void and reads never come. Only a request that must be answered finds out.
 * While bytes arrive the link is alive; after `idleMs` without any, one ack request goes out; if
 * nothing at all arrives within `timeoutMs` after it, the link is declared dead (the session
 * drops the socket and the app resumes on a fresh connection).
 */

export interface LivenessOptions {
  /** Silence (no byte received) after which an ack request probes the link. Default 60 s. */
  idleMs?: number;
  /** Silence after the probe after which the link is dead. Default 30 s. */
  timeoutMs?: number;
}

/** Mobile-friendly defaults: the main app is in the foreground while it is online. */
export const DEFAULT_LIVENESS: Required<LivenessOptions> = { idleMs: 60_000, timeoutMs: 30_000 };

export interface LivenessIo {
  /** Bytes read from the socket so far (any growth is a sign of life, even a stanza in flight). */
  bytesRead(): number;
  /** Send (or reuse an outstanding) ack request. */
  requestAck(): void;
  /** The link is dead: nothing arrived for `silentMs`, `timeoutMs` of it after a probe. */
  dead(silentMs: number): void;
  now?: () => number;
}

export class LinkLiveness {
  private timer: NodeJS.Timeout | null = null;
  private lastBytes = 0;
  private lastActivity = 0;
  private probeAt: number | null = null;
  private readonly idleMs: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;

  constructor(
    private readonly io: LivenessIo,
    opts: LivenessOptions = {},
  ) {
    this.idleMs = opts.idleMs ?? DEFAULT_LIVENESS.idleMs;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_LIVENESS.timeoutMs;
    if (!(this.idleMs > 0) || !(this.timeoutMs > 0))
      throw new RangeError("liveness idleMs and timeoutMs must be positive");
    this.now = io.now ?? Date.now;
  }

  start(): void {
    this.stop();
    this.lastBytes = this.io.bytesRead();
    this.lastActivity = this.now();
    this.probeAt = null;
    // Checked at a quarter of the shorter period: a dead link is found within 1.25× its bounds.
    const every = Math.max(20, Math.min(this.idleMs, this.timeoutMs) / 4);
    this.timer = setInterval(() => this.check(), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One check (the timer calls it; exposed for tests with an injected clock). */
  check(): void {
    const now = this.now();
    const bytes = this.io.bytesRead();
    if (bytes !== this.lastBytes) {
      this.lastBytes = bytes;
      this.lastActivity = now;
      this.probeAt = null;
      return;
    }
    if (this.probeAt !== null) {
      if (now - this.probeAt >= this.timeoutMs) {
        this.stop();
        this.io.dead(now - this.lastActivity);
      }
      return;
    }
    if (now - this.lastActivity >= this.idleMs) {
      this.probeAt = now;
      this.io.requestAck();
    }
  }
}
