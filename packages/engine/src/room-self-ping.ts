/**
 * XEP-0410 self-ping while online: a room can drop us without telling (it restarted, a ghost
 * cleanup, a server-to-server link that went away) and our client would show "joined" forever,
 * receiving nothing. A room quiet for `idleMs` is asked about us (a ping to our own occupant
 * JID); a not-acceptable / item-not-found answer re-joins it (handler lichen.muc.self-ping).
 * Any stanza from the room counts as a sign of life, so busy rooms cost nothing.
 */

export interface RoomSelfPingOptions {
  /** A joined room silent this long is self-pinged. Default 15 min (XEP-0410 §4's example). */
  idleMs?: number;
  /** How often rooms are checked. Default a quarter of idleMs, at most 1 min. */
  checkMs?: number;
  /** Clock (tests inject one; the timer only decides when to look). */
  now?: () => number;
}

export const DEFAULT_ROOM_SELF_PING_IDLE_MS = 15 * 60_000;

export interface RoomSelfPingIo {
  /** Bare JIDs of the rooms we are joined to now. */
  joinedRooms(): string[];
  /** Self-ping these rooms. */
  ping(rooms: string[]): void;
}

export class RoomSelfPinger {
  private timer: NodeJS.Timeout | null = null;
  /** Joined room → last time we heard from it (or pinged it). Bounded by the joined rooms. */
  private readonly lastSeen = new Map<string, number>();
  private readonly idleMs: number;
  private readonly checkMs: number;
  private readonly now: () => number;

  constructor(
    private readonly io: RoomSelfPingIo,
    opts: RoomSelfPingOptions = {},
  ) {
    this.idleMs = opts.idleMs ?? DEFAULT_ROOM_SELF_PING_IDLE_MS;
    this.checkMs = opts.checkMs ?? Math.min(this.idleMs / 4, 60_000);
    if (!(this.idleMs > 0) || !(this.checkMs > 0))
      throw new RangeError("roomSelfPing idleMs and checkMs must be positive");
    this.now = opts.now ?? Date.now;
  }

  /** `run` wraps each check (the session serializes it with stanza handling). */
  start(run: (check: () => void) => void = (c) => c()): void {
    this.stop();
    this.lastSeen.clear(); // a new connection: every room starts a fresh idle period
    this.timer = setInterval(() => run(() => this.check()), this.checkMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** A stanza from `bareJid` arrived: if it is a joined room, it is alive. */
  seen(bareJid: string): void {
    if (this.lastSeen.has(bareJid)) this.lastSeen.set(bareJid, this.now());
  }

  /** One check: self-ping every joined room silent for idleMs (exposed for tests). */
  check(): void {
    const now = this.now();
    const joined = new Set(this.io.joinedRooms());
    for (const room of this.lastSeen.keys()) if (!joined.has(room)) this.lastSeen.delete(room);
    const due: string[] = [];
    for (const room of joined) {
      const last = this.lastSeen.get(room);
      if (last === undefined || now - last >= this.idleMs) {
        // Newly joined: its idle period starts now. Due: pinged now, next one after idleMs more.
        if (last !== undefined) due.push(room);
        this.lastSeen.set(room, now);
      }
    }
    if (due.length > 0) this.io.ping(due);
  }
}
