// Fencing (DESIGN.md "the rule a thawed process must obey"): every write of session state carries
// the lock generation its connection was opened under, and the store refuses it once another
// process took the lock; a connection opened under an older hold of the lock is not ours.
import {
  FencedOutError,
  type ProcessLock,
  type StoreFence,
  type WriteOptions,
} from "@lichen/store";
import type { XmppConnection } from "./connection.js";

/**
 * This process may not drive the session: it does not hold the session lock (it was never taken,
 * or another process took it while this one was frozen, or it yielded).
 */
export class SessionLockError extends Error {
  override readonly name = "SessionLockError";
  constructor(
    message: string,
    /** Who holds the lock now, when known (e.g. "nse:4711-ab12cd34"). */
    readonly holder: string | null = null,
  ) {
    super(message);
  }
}

/** What this process knew when it opened a connection: elements of older connections are ignored. */
interface ConnectionFence {
  fence: StoreFence | null;
  acquisition: number;
  /** Removes this connection's listener for the lock's "lost" event. */
  unlisten: () => void;
}

/**
 * The session's side of the lock: which hold each connection belongs to, and whether this
 * process was fenced out. Without a lock (the caller guarantees a single driver) every check
 * passes and writes carry no fence.
 */
export class SessionFence {
  /** Set when the lock was lost or a write was fenced out; cleared by the next acquire(). */
  fencedOut = false;
  private readonly connFences = new WeakMap<XmppConnection, ConnectionFence>();

  /**
   * @param fencedOutBy called once per hold when a write was refused (the store's FencedOutError,
   * or our own SessionLockError) or the lock was lost: the session stops there.
   */
  constructor(
    readonly lock: ProcessLock | undefined,
    private readonly fencedOutBy: (reason: string, holder: string | null) => void,
  ) {}

  /**
   * Before opening a connection: re-acquire, so a connection is only ever opened under a held
   * lock and remembers which hold it belongs to. Throws SessionLockError when the lock is not held.
   */
  acquire(): StoreFence | null {
    const lock = this.lock;
    const fence = lock ? lock.fence() : null;
    if (lock && !fence) {
      throw new SessionLockError(
        `${lock.holder} does not hold the session lock "${lock.key}": take it before connecting`,
        lock.current()?.holder ?? null,
      );
    }
    this.fencedOut = false;
    return fence;
  }

  /**
   * `conn` was opened under `fence` (from acquire()). `onLost` runs when the lock's renewal finds
   * another holder: stop then, even before our next write is refused.
   */
  bind(
    conn: XmppConnection,
    fence: StoreFence | null,
    onLost: (newHolder: string | null) => void,
  ): void {
    const lock = this.lock;
    const listener = (info: { newHolder: string | null }) => onLost(info.newHolder);
    lock?.on("lost", listener);
    this.connFences.set(conn, {
      fence,
      acquisition: lock?.acquisitions ?? 0,
      unlisten: () => lock?.off("lost", listener),
    });
  }

  /** `conn` is dropped or closed: its lock listener goes. */
  release(conn: XmppConnection): void {
    this.connFences.get(conn)?.unlisten();
  }

  /** Whether `conn` was opened under the hold of the lock this process still has. */
  holds(conn: XmppConnection): boolean {
    if (this.fencedOut) return false;
    const lock = this.lock;
    if (!lock) return true;
    const f = this.connFences.get(conn);
    return (
      !!f &&
      !!f.fence &&
      f.acquisition === lock.acquisitions &&
      lock.generation === f.fence.generation
    );
  }

  /**
   * Options for a write of session state: the fence of the current connection (or of the lock
   * as held now) and the deadline. Throws SessionLockError when a lock is configured but not held.
   */
  writeOptions(current: XmppConnection | null, deadlineAt: number | null): WriteOptions {
    const lock = this.lock;
    const opts: WriteOptions = deadlineAt !== null ? { deadlineAt } : {};
    if (!lock) return opts;
    const fence = (current && this.connFences.get(current)?.fence) ?? lock.fence();
    if (!fence || this.fencedOut || lock.generation !== fence.generation) {
      throw new SessionLockError(
        `${lock.holder} does not hold the session lock "${lock.key}"`,
        lock.current()?.holder ?? null,
      );
    }
    return { ...opts, fence };
  }

  /** A write failed: if it was refused by the fence, this process is fenced out. */
  noteError(err: unknown): void {
    if (err instanceof FencedOutError) {
      this.fencedOutBy(err.message, err.current?.holder ?? null);
      // Let the lock object learn it too (its renewal emits "lost" and forgets the generation),
      // so nobody reconnects on it before re-acquiring.
      try {
        this.lock?.renew();
      } catch {
        /* the renewal timer will tell */
      }
    } else if (err instanceof SessionLockError) this.fencedOutBy(err.message, err.holder);
  }
}
