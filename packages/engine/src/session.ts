import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { AccountState, HandlerDescriptor } from "@lichen/schema";
import {
  DatabaseCorruptError,
  FencedOutError,
  StoreLockTimeoutError,
  addIqHandler,
  loadAccountState,
  saveAccountState,
  type ProcessLock,
  type Store,
  type StoreTx,
  type WriteOptions,
} from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import { createConnection, type XmppConnection } from "./connection.js";
import { storedTlsSessions } from "./tls-sessions.js";
import { bare } from "./jid.js";
import { storeOutgoingMessage, type OutgoingChatMessage } from "./messages.js";
import { Outbox } from "./outbound.js";
import { AckWaiters, EncryptionRequiredError, syncPing, type OutgoingMessage } from "./outgoing.js";
import { drainBeforeDrop } from "./drain.js";
import { SessionFence, SessionLockError } from "./fencing.js";
import { useStreamManagement } from "./sm-negotiation.js";
import {
  AckRequests,
  applyAck,
  commitResumed,
  ContinuityError,
  newStreamState,
  NS_SM,
} from "./stream-management.js";
import {
  callHandlerSafely,
  fireExpiredHandlers,
  invalidatePendingHandlers,
} from "./pending-handlers.js";
import { commitPoisonStanza, StanzaFailures } from "./inbound-failures.js";
import { commitStanza, PreparedStale, type PreparedStanza } from "./inbound.js";
import { ServiceResolutionError } from "./resolve.js";
import type { ProtocolContext } from "./context.js";
import type { SessionEvents } from "./events.js";
import { answerSubscription } from "./roster.js";
import { LinkLiveness, type LivenessOptions } from "./liveness.js";
import { RoomSelfPinger, type RoomSelfPingOptions } from "./room-self-ping.js";
import { handlers as defaultRegistry, type HandlerRegistry } from "./handlers.js";
import { ownDiscoInfo, registerCapsHandlers, type DiscoInfo } from "./caps.js";
import { bookmarkRoomActions, joinedRoomJids, registerMucHandlers, selfPingRooms } from "./muc.js";
import { registerBookmarkHandlers } from "./bookmarks.js";
import { registerUploadHandlers } from "./media/upload.js";
import {
  FEATURES,
  initialPresence,
  OWN_INFO,
  registerBuiltinHandlers,
  startNewStreamCatchup,
} from "./protocol.js";
import { registerPushHandlers } from "./push.js";
import {
  preparePlugins,
  type OutgoingEncryption,
  type PluginPrepared,
  type SessionPluginOf,
} from "./plugins.js";
import { registerSetupHandlers, setupNewStream } from "./setup.js";

export { NS_SM } from "./stream-management.js";
export { SessionLockError } from "./fencing.js";
export type { PreparedStanza } from "./inbound.js";
export { MessageQueuedError, type OutgoingMessage } from "./outgoing.js";
/** Socket errors after which another of the domain's servers is worth trying at once. */
const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EADDRNOTAVAIL",
]);

export interface SessionOptions {
  store: Store;
  accountId: string;
  /** e.g. "xmpp://127.0.0.1:5222" */
  service: string;
  /**
   * Candidates in order (createClient fills these from DNS SRV): connect() tries the next when one
   * cannot be reached, and starts from the one that worked last. Default: just `service`.
   */
  services?: readonly string[];
  domain: string;
  username: string;
  password: string;
  resource?: string;
  /** Extra trusted CA certificates for STARTTLS (PEM). */
  tls?: { ca?: string | Buffer | (string | Buffer)[] };
  /** Authenticate without TLS (default: only to loopback addresses). */
  allowPlaintext?: boolean;
  /**
   * Keep the TLS session the server issues in the database and offer it on the next connection
   * (any process): the handshake then skips the certificate, where the server accepts it
   * (default true).
   */
  tlsSessionResumption?: boolean;
  registry?: HandlerRegistry;
  /**
   * The session lock this process holds (AppController and handlePush pass theirs). With it,
   * every write of session state is fenced by the lock generation (refused once another process
   * took the lock), connect() refuses to run without the lock, and losing the lock stops all
   * handling and sending at once. Without it the caller guarantees a single driver.
   */
  lock?: ProcessLock;
  /** Called for every inbound stanza inside its transaction (after built-in handling). Throwing rolls it back. */
  onStanza?: (ctx: StanzaContext, stanza: Element, prepared: unknown) => void;
  /**
   * Async work for a stanza (e.g. OMEMO decryption) done BEFORE its transaction, with reads only.
   * `stillValid(tx)` is re-checked inside the transaction; if what was read changed meanwhile
   * (another process wrote), the prepare step runs again (up to 5 times).
   */
  prepare?: (stanza: Element, store: Store) => Promise<PreparedStanza>;
  /** Plugins hooked into the receive path (e.g. OMEMO from @lichen/omemo), in order. */
  plugins?: readonly SessionPlugin[];
  /** Test seam: runs after a stanza's transaction committed, before its outbound stanzas are sent. */
  afterCommit?: (stanza: Element) => void;
  /**
   * XEP-0184 receipts for messages that ask for one: "send" them at once (default), or "defer"
   * them to the main app (stored; AppController sends them when online) — the NSE's default, so
   * a push on a slow link spends its bytes on the messages.
   */
  receipts?: "send" | "defer";
  /** Length of one tick of connected time (IQ timeouts count these). Default 1000 ms. */
  tickMs?: number;
  /**
   * Detect a silently dead link while online (see LinkLiveness; defaults 60 s idle, 30 s
   * timeout), or `false` for none. A dead link is dropped like a lost one: "connection-lost".
   */
  liveness?: LivenessOptions | false;
  /**
   * XEP-0410 self-ping of joined rooms silent for `idleMs` while online (default 15 min), to find
   * a silent removal (then the room is joined again), or `false` for none. On a resume every
   * joined room is pinged at once, whatever this says.
   */
  roomSelfPing?: RoomSelfPingOptions | false;
  logger?: (event: Record<string, unknown>) => void;
}

/** A plugin hooked into a DurableSession's receive path (e.g. OMEMO from @lichen/omemo). */
export type SessionPlugin = SessionPluginOf<DurableSession, StanzaContext>;

/** A ProtocolContext whose session is the DurableSession itself (what onStanza gets). */
export interface StanzaContext extends ProtocolContext {
  session: DurableSession;
}

/**
 * A durable XMPP session: every inbound stanza is handled in one store transaction that also
 * commits XEP-0198 h; outbound stanzas are queued in the causing transaction and hit the socket
 * only after commit; a session can be resumed by any process from the database alone.
 */
export class DurableSession extends EventEmitter<SessionEvents> {
  readonly store: Store;
  readonly accountId: string;
  readonly registry: HandlerRegistry;
  private conn: XmppConnection | null = null;
  /** Index in `services` of the one that worked last: tried first next time. */
  private serviceIndex = 0;
  private chain: Promise<void> = Promise.resolve();
  /** Highest outbound seq written to the current socket. */
  private flushedSeq = 0;
  /** Inbound h as last committed (answer to <r/>). */
  private committedH = 0;
  private smActive = false;
  private connecting: Promise<unknown> | null = null;
  /** A stanza failed: later stanzas must not be counted (h is positional) until we resume. */
  private halted = false;
  private readonly failures = new StanzaFailures();
  /** The acks we request and write (XEP-0198). */
  private readonly acks = new AckRequests((conn) => this.isCurrent(conn) && this.smActive);
  /** What send() callers wait for: one set of listeners for every message in flight. */
  private readonly ackWaiters = new AckWaiters(this);
  /** The XEP-0198 outbound queue of this account. */
  private readonly outbox: Outbox;
  private tickTimer: NodeJS.Timeout | null = null;
  private readonly log: (event: Record<string, unknown>) => void;
  /** Our disco#info and XEP-0115 caps: the engine's features and those of the plugins. */
  readonly ownInfo: DiscoInfo;
  /** Whether the current connection is TLS-encrypted. */
  get secure(): boolean {
    return this.conn?.entity.isSecure() === true;
  }
  /** Whether the current connection resumed a stored TLS session (no certificate exchanged). */
  get tlsSessionReused(): boolean {
    return this.conn?.tlsSessionReused === true;
  }
  /** SASL mechanism of the current connection (e.g. "SCRAM-SHA-256"). */
  get saslMechanism(): string | null {
    return this.conn?.mechanism ?? null;
  }
  /** How the last connect went: resumed the previous stream, or a new one. */
  lastConnect: "resumed" | "new" | null = null;
  /**
   * Epoch ms after which stanza transactions stop waiting for the database (StoreLockTimeoutError,
   * the stanza is not counted and the connection dropped): the NSE sets its deadline. Null: the
   * store's maxWaitMs bounds the wait.
   */
  deadlineAt: number | null = null;
  /** XEP-0115 ver in the server's stream features of the connection being negotiated. */
  private streamCapsVer: string | null = null;
  /** Which hold of the session lock each connection belongs to (fencing.ts). */
  private readonly fence: SessionFence;

  constructor(private readonly opts: SessionOptions) {
    super();
    this.store = opts.store;
    this.accountId = opts.accountId;
    this.registry = opts.registry ?? defaultRegistry;
    this.outbox = new Outbox(opts.accountId);
    this.fence = new SessionFence(opts.lock, (reason, holder) => this.onFencedOut(reason, holder));
    registerBuiltinHandlers(this.registry);
    registerPushHandlers(this.registry);
    registerSetupHandlers(this.registry);
    registerCapsHandlers(this.registry);
    registerMucHandlers(this.registry);
    registerUploadHandlers(this.registry);
    registerBookmarkHandlers(this.registry, bookmarkRoomActions);
    this.log = opts.logger ?? (() => {});
    this.ownInfo = opts.plugins?.some((p) => p.features?.length)
      ? ownDiscoInfo([...FEATURES, ...opts.plugins.flatMap((p) => p.features ?? [])])
      : OWN_INFO;
    for (const plugin of opts.plugins ?? []) plugin.attach?.(this);
  }

  /** How this session answers receipt requests (SessionOptions.receipts). */
  get receipts(): "send" | "defer" {
    return this.opts.receipts ?? "send";
  }

  /** Whether a plugin can end-to-end encrypt what the engine sends for the user (encryptOutgoing). */
  get canEncrypt(): boolean {
    return (this.opts.plugins ?? []).some((p) => p.encryptOutgoing);
  }

  /**
   * Sends a message to an encrypted chat through the plugin that encrypts (see
   * SessionPluginOf.encryptOutgoing): true when queued, false when `commit` declined. Throws
   * EncryptionRequiredError when no plugin can encrypt.
   */
  sendEncrypted(message: OutgoingEncryption<StanzaContext>): Promise<boolean> {
    const plugin = (this.opts.plugins ?? []).find((p) => p.encryptOutgoing);
    if (!plugin?.encryptOutgoing)
      return Promise.reject(new EncryptionRequiredError(bare(message.to)));
    return plugin.encryptOutgoing(message, this);
  }

  /** The lock this session is fenced by (undefined: unfenced). */
  get lock(): ProcessLock | undefined {
    return this.opts.lock;
  }

  /** Options for a write of session state (SessionFence.writeOptions). */
  private writeOptions(): WriteOptions {
    return this.fence.writeOptions(this.conn, this.deadlineAt);
  }

  /** A fenced write of session state (synchronous; waits for the database up to maxWaitMs). */
  private txWrite<T>(fn: (tx: StoreTx) => T): T {
    try {
      return this.store.write(fn, this.writeOptions());
    } catch (err) {
      this.fence.noteError(err);
      throw err;
    }
  }

  /** A fenced write that waits for the database without blocking the event loop. */
  private async txWriteAsync<T>(fn: (tx: StoreTx) => T): Promise<T> {
    try {
      return await this.store.writeAsync(fn, { ...this.writeOptions(), yieldFirst: false });
    } catch (err) {
      this.fence.noteError(err);
      throw err;
    }
  }

  /**
   * Another process owns the session now (our lease ran out while we were frozen, or we yielded):
   * stop at once. The socket is destroyed without closing the stream (closing it would end the
   * server's session that the new owner resumes), nothing more is counted, acknowledged or sent,
   * and whatever the old socket still delivers is ignored.
   */
  private onFencedOut(reason: string, holder: string | null): void {
    if (this.fence.fencedOut) return;
    this.fence.fencedOut = true;
    this.halted = true;
    const conn = this.conn;
    const negotiating = conn !== null && !this.smActive;
    if (conn) {
      this.discard(conn);
    }
    this.log({ event: "session-fenced-out", reason, holder });
    this.emit("session-lost", { reason, holder });
    if (conn) {
      this.emit("offline");
      if (negotiating) this.emit("connect-failed", new SessionLockError(reason, holder));
    }
  }

  /** Whether elements of `conn` may still be handled: current, not dropped, same lock hold. */
  private isCurrent(conn: XmppConnection | null): boolean {
    if (!conn || this.conn !== conn || this.droppedConns.has(conn)) return false;
    return this.fence.holds(conn);
  }

  get online(): boolean {
    return this.smActive;
  }

  /**
   * Resume the stored stream if there is one, otherwise log in and enable a new one. With several
   * `services`, one that cannot be reached (refused, unreachable, reset) is skipped for the next,
   * within the same `timeoutMs`; if none can, ServiceResolutionError ("unreachable", with the last
   * error's `code`, so a reconnect policy still sees it as transient).
   */
  async connect(timeoutMs = 30_000): Promise<"resumed" | "new"> {
    const services = this.opts.services?.length ? this.opts.services : null;
    if (!services) return this.connectVia(this.opts.service, timeoutMs);
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (let n = 0; n < services.length; n++) {
      const i = (this.serviceIndex + n) % services.length;
      try {
        const how = await this.connectVia(services[i]!, Math.max(1, deadline - Date.now()));
        this.serviceIndex = i;
        return how;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (!code || !UNREACHABLE_CODES.has(code) || Date.now() >= deadline) throw err;
        this.log({ event: "service-unreachable", service: services[i], code });
        last = err;
      }
    }
    throw Object.assign(
      new ServiceResolutionError(
        this.opts.domain,
        "unreachable",
        `no server of ${this.opts.domain} could be reached (${services.join(", ")}): ${(last as Error).message}`,
        { cause: last },
      ),
      { code: (last as NodeJS.ErrnoException).code },
    );
  }

  /** connectVia() calls that got past the "already connected" check. */
  private connectAttempts = 0;

  private async connectVia(service: string, timeoutMs: number): Promise<"resumed" | "new"> {
    if (this.conn) throw new Error("already connected");
    this.connectAttempts++;
    // Re-acquire before reconnecting (throws SessionLockError when the lock is not held).
    const fence = this.fence.acquire();
    this.offlineWanted = false;
    const conn = createConnection(
      {
        service,
        domain: this.opts.domain,
        username: this.opts.username,
        password: this.opts.password,
        resource: this.opts.resource,
        ...(this.opts.tls ? { tls: this.opts.tls } : {}),
        ...(this.opts.allowPlaintext !== undefined
          ? { allowPlaintext: this.opts.allowPlaintext }
          : {}),
        ...(this.opts.tlsSessionResumption !== false
          ? {
              tlsSessions: storedTlsSessions(
                this.store,
                this.accountId,
                (fn) => this.txWrite(fn),
                (e) => this.log(e),
              ),
            }
          : {}),
      },
      (c) => this.registerStreamManagement(c),
    );
    this.conn = conn;
    // The lock's renewal found another holder: stop now, even before our next write is refused.
    this.fence.bind(conn, fence, (newHolder) => {
      if (this.conn === conn) this.onFencedOut(`lock lost to ${newHolder ?? "nobody"}`, newHolder);
    });
    let negotiated = false;
    conn.entity.on("error", (err: Error) => {
      this.log({ event: "xmpp-error", error: err.message });
      if (this.conn === conn) this.onServerCounterComplaint(err);
      // An error before the session is online (SASL failure, reset, stream error) fails connect().
      if (!negotiated && this.conn === conn) this.emit("connect-failed", err);
    });
    conn.entity.on("disconnect", () => {
      if (this.conn !== conn) return;
      const lost = !this.droppedConns.has(conn); // not suspend() or a replay reconnect
      const negotiating = !this.smActive;
      this.onSocketGone();
      if (!lost) return;
      // The network (or the server) went away: the next connect() starts clean.
      this.abandon(conn);
      this.log({ event: "connection-lost", negotiating });
      this.emit("connection-lost");
      if (negotiating) {
        this.emit(
          "connect-failed",
          new Error("the connection closed before the session was online"),
        );
      }
    });
    conn.middleware.use((ctx: { stanza: Element }, next: () => unknown) => {
      // A dropped socket can still deliver what the server wrote before it saw us go; counted on
      // the resumed stream, those stanzas would push h past what the server sent there (ejabberd
      // ends the stream: "Client acknowledged more stanzas than sent by server"). It replays them.
      if (this.isCurrent(conn)) this.onElement(conn, ctx.stanza);
      return next();
    });
    let settle = () => {};
    const ready = new Promise<"resumed" | "new">((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`session not online after ${timeoutMs} ms`)),
        timeoutMs,
      );
      const onOnline = (how: "resumed" | "new") => {
        negotiated = true;
        resolve(how);
      };
      const onFailed = (err: Error) => reject(err);
      // Retries must not pile up listeners: each attempt removes its own.
      settle = () => {
        clearTimeout(timer);
        this.off("online", onOnline);
        this.off("connect-failed", onFailed);
      };
      this.once("online", onOnline);
      this.once("connect-failed", onFailed);
    });
    // Not entity.start(): it never resolves on a resume (xmpp.js only sets the status), and it
    // makes an "online" promise before opening the stream that nobody handles when the open
    // fails (a reset during the handshake crashed the process). We wait on our own event.
    const open = async () => {
      const e = conn.entity;
      await e.connect(e.options.service);
      await e.open({ domain: e.options.domain, lang: e.options.lang });
    };
    // Only for this attempt: an error of an abandoned one (also reported by its "error" event)
    // would otherwise fail the next attempt, e.g. the next of several services.
    open().catch((err: Error) => {
      if (this.conn === conn) this.emit("connect-failed", err);
    });
    this.connecting = ready;
    try {
      return await ready;
    } catch (err) {
      // Leave nothing half-open, so the next connect() (a retry) starts clean.
      this.discard(conn);
      conn.entity.stop().catch(() => {});
      throw err;
    } finally {
      settle();
      this.connecting = null;
    }
  }

  /** Run `fn` in one write transaction with the account state; stanzas it sends go out after commit. */
  write<T>(fn: (ctx: StanzaContext) => T): T {
    const result = this.txWrite((tx) => {
      const state = loadAccountState(tx, this.accountId);
      const out = fn(this.context(tx, state));
      saveAccountState(tx, this.accountId, state);
      return out;
    });
    this.flush();
    return result;
  }

  /** Send a chat message with an origin-id (XEP-0359) and a receipt request; stored as outgoing. */
  sendMessage(to: string, body: string): string {
    return this.send(to, body).originId;
  }

  /**
   * Answer or change a presence subscription (RFC 6121 §3): `approve` (optionally
   * `subscribeBack`), `deny`, `cancel` (they no longer see our presence), `subscribe`,
   * `unsubscribe`. Queued like any stanza; the stored request is forgotten in the same
   * transaction; the roster changes arrive as the server's pushes.
   */
  answerSubscription(
    jid: string,
    action: "approve" | "deny" | "cancel" | "subscribe" | "unsubscribe",
    opts: { subscribeBack?: boolean } = {},
  ): void {
    this.write((ctx) => answerSubscription(ctx, jid, action, opts));
  }

  /**
   * Send a chat message (stored as outgoing, queued durably in the same transaction) and learn
   * what became of it on this connection: `acked` resolves when the server acknowledged it
   * (XEP-0198) and rejects with a MessageQueuedError when it cannot be on this connection —
   * offline now, or the connection ended first. The message is never lost then: it stays
   * queued and goes out on the next connection (event `message-sent` { originId } when the
   * server has it). The rejection is handled if nobody listens (no unhandled-rejection crash).
   */
  send(to: string, body: string): OutgoingMessage {
    const originId = randomUUID();
    let seq: number | null = null;
    const conn = this.smActive ? this.conn : null;
    this.write((ctx) => {
      if (this.queueMessage(ctx, { to, body, originId })) seq = ctx.state.sm.outboundSent;
    });
    const online = seq !== null && conn !== null && this.isCurrent(conn) && this.smActive;
    return { originId, acked: this.ackWaiters.wait(originId, online ? seq : null) };
  }

  /**
   * Queue a chat message in the caller's transaction and store it as outgoing. The origin-id is
   * the message id too, so a resend after a crash is recognised by the receiver and by our own
   * unique index (a second call with the same origin-id stores and sends nothing).
   */
  queueMessage(ctx: StanzaContext, m: OutgoingChatMessage): boolean {
    const stanza = storeOutgoingMessage(
      ctx.tx,
      this.accountId,
      this.opts.username + "@" + this.opts.domain,
      m,
    );
    if (!stanza) return false;
    ctx.send(stanza);
    return true;
  }

  /**
   * XEP-0352 client state indication. A nonza (not counted by stream management), so it is written
   * straight to the socket; the state is persisted so a resumed stream knows what was sent.
   */
  setCsi(csi: "active" | "inactive"): void {
    this.write((ctx) => {
      ctx.state.csi = csi;
    });
    if (this.conn && this.smActive) {
      this.conn.entity.write(xml(csi, { xmlns: "urn:xmpp:csi:0" }).toString()).catch(() => {});
    }
  }

  /**
   * Resolves once the server has delivered, and this session has handled and committed, every
   * stanza the server had queued for us when this was called. An XEP-0199 ping to our server is
   * queued behind everything we sent (initial presence included); the server answers it only
   * after it has written what it held for this session — the replay that follows <resumed/>
   * (XEP-0198 §5), and offline messages, which it sends when it processes initial presence — and
   * on one stream its answer cannot overtake them. Our stanzas are handled strictly in order, so
   * when the answer's transaction commits, everything before it has been stored. An error answer
   * counts too: it is just as ordered. Rejects if the connection goes away first.
   */
  syncBarrier(): Promise<void> {
    return syncPing(this, (stanza) => this.write((ctx) => ctx.send(stanza)), {
      server: this.opts.domain,
      own: `${this.opts.username}@${this.opts.domain}`,
    });
  }

  /** Resolves when every stanza received so far has been handled (committed or rolled back). */
  idle(): Promise<void> {
    return this.chain;
  }

  /**
   * Drop the TCP connection WITHOUT closing the XMPP stream, so the server keeps the session for
   * resumption (iOS background / NSE yield). In-flight stanza transactions finish first.
   */
  async suspend(opts: { drainMs?: number } = {}): Promise<void> {
    this.offlineWanted = true; // a replay reconnect in flight must not undo this
    await this.dropConnection(opts.drainMs);
  }

  /** True from suspend()/close() until the next connect(). */
  private offlineWanted = false;
  /** Connections we dropped or closed: whatever they still deliver is ignored. */
  private readonly droppedConns = new WeakSet<XmppConnection>();

  /**
   * The drop in progress per connection. A second caller (the app suspending while a replay
   * reconnect drains) joins it rather than draining the same connection twice; its own drain
   * bound still holds (an NSE yielding must not wait out the replay's longer drain).
   */
  private readonly drops = new WeakMap<
    XmppConnection,
    { done: Promise<void>; cut: AbortController }
  >();

  private async dropConnection(drainMs = 1000): Promise<void> {
    // Never cut a connection mid-negotiation (SASL/bind/resume): let connect() settle first.
    if (this.connecting) await this.connecting.catch(() => {});
    const conn = this.conn;
    if (!conn) return;
    let drop = this.drops.get(conn);
    if (drop) {
      const timer = setTimeout(() => drop!.cut.abort(), drainMs);
      await drop.done;
      clearTimeout(timer);
      return;
    }
    const cut = new AbortController();
    drop = { done: this.dropNow(conn, drainMs, cut.signal), cut };
    this.drops.set(conn, drop);
    await drop.done;
  }

  private async dropNow(conn: XmppConnection, drainMs: number, cut: AbortSignal): Promise<void> {
    await this.idle();
    await drainBeforeDrop(
      {
        store: this.store,
        accountId: this.accountId,
        events: this,
        onStream: (c) => this.smActive && this.conn === c,
        halted: () => this.halted,
        // Only while it is still ours: a connection made after this one was lost is not halted.
        halt: () => {
          if (this.conn === conn) this.halted = true;
        },
        flushedSeq: () => this.flushedSeq,
        requestAck: (c) => this.acks.request(c),
        idle: () => this.idle(),
        log: this.log,
      },
      conn,
      drainMs,
      cut,
    );
    await this.idle(); // the ack's own work (after the drain's last wait) is done too
    this.ackCommitted(conn);
    this.stopTicks();
    this.smActive = false;
    this.droppedConns.add(conn);
    this.fence.release(conn);
    try {
      conn.entity.socket?.end();
    } catch {
      /* already gone */
    }
    await new Promise((r) => setTimeout(r, 10));
    // The app may have connected again meanwhile (a suspend and connect() while a replay
    // reconnect was still draining): that connection is not ours to forget.
    if (this.conn === conn) this.conn = null;
  }

  /**
   * Before a deliberate drop (suspend, NSE yield, replay reconnect): tell the server, unasked,
   * how many of its stanzas we have committed (XEP-0198 §4: an `<a/>` may be sent at any time).
   * Otherwise it keeps them queued and replays them on the next resume — on a slow link the
   * login's answers (a 2.5 KB disco#info) crossed the line again on every push. Written before
   * the socket is ended, so it crosses ahead of the FIN. Only on the current connection while we
   * hold the lock: another process may own the stream now, and our h is not its h. committedH is
   * only ever a committed count, so the server never drops a stanza we did not store.
   */
  private ackCommitted(conn: XmppConnection): void {
    if (!this.smActive || !this.isCurrent(conn)) return;
    if (this.acks.alreadySent(conn, this.committedH)) return;
    void this.acks.write(conn, this.committedH);
  }

  /** Close the stream for good (logout): the server ends the session. */
  async close(): Promise<void> {
    this.offlineWanted = true;
    const conn = this.conn;
    if (!conn) return;
    await this.idle();
    if (!this.isCurrent(conn)) {
      // Not ours any more: closing the stream would end the session its new owner resumed.
      this.discard(conn);
      return;
    }
    if (this.smActive) void this.acks.write(conn, this.committedH);
    this.stopTicks();
    this.smActive = false;
    this.fence.release(conn);
    await conn.entity.stop().catch(() => {});
    this.conn = null;
    try {
      this.txWrite((tx) => {
        const state = loadAccountState(tx, this.accountId);
        state.sm.streamId = null;
        saveAccountState(tx, this.accountId, state);
      });
    } catch (err) {
      // Another process owns the session now: the stream id is its business.
      if (!(err instanceof FencedOutError || err instanceof SessionLockError)) throw err;
    }
  }

  // ---- internals -------------------------------------------------------------------------

  private context(tx: StoreTx, state: AccountState): StanzaContext {
    return {
      // The store's queue: run right after COMMIT, dropped on rollback (savepoints included).
      afterCommit: (fn) => tx.afterCommit(fn),
      tx,
      accountId: this.accountId,
      state,
      session: this,
      send: (stanza: Element) => this.outbox.enqueue(tx, state, stanza),
      sendIq: (iq, handler, o) => {
        const id = iq.attrs.id || randomUUID();
        iq.attrs.id = id;
        addIqHandler(tx, {
          accountId: this.accountId,
          iqId: id,
          handler,
          streamKey: state.sm.unackedQueue,
          peer: iq.attrs.to || null,
          timeoutTicks: o?.timeoutTicks ?? 60,
        });
        this.outbox.enqueue(tx, state, iq);
        return id;
      },
    };
  }

  /** Write committed queue rows that this socket has not seen yet, in order. */
  private flush(force = false): void {
    const conn = this.conn;
    if (!conn || !this.isCurrent(conn) || !this.smActive) return;
    // Most stanzas queue nothing: skip the read unless this process queued something (hot path).
    if (!this.outbox.takeQueued(force)) return;
    const rows = this.outbox.pending(this.store, this.flushedSeq);
    if (rows.length === 0) return;
    for (const row of rows) this.flushedSeq = Math.max(this.flushedSeq, row.seq);
    conn.entity
      .write(rows.map((r) => r.stanza).join(""))
      .catch((err: Error) => this.log({ event: "write-failed", error: err.message }));
    this.acks.request(conn);
    this.emit("flushed", rows.length);
  }

  private onElement(conn: XmppConnection, el: Element): void {
    if (el.is("r", NS_SM)) {
      // Answer from the committed h, after every stanza received before this <r/> was handled,
      // on the connection that asked: after a reconnect meanwhile, an <a/> written on the new
      // socket before its stream header is invalid XML (ejabberd ends that stream).
      const asking = conn;
      this.enqueueWork(async () => {
        if (!this.isCurrent(asking) || !this.smActive) return;
        await this.acks.write(asking, this.committedH);
      });
      return;
    }
    if (el.is("a", NS_SM)) {
      const h = Number(el.attrs.h);
      this.enqueueWork(async () => {
        if (!this.isCurrent(conn)) return;
        await this.onAck(h);
        this.acks.answered(conn, h, this.flushedSeq);
      });
      return;
    }
    if (!this.smActive || this.halted) return;
    if (el.name !== "message" && el.name !== "presence" && el.name !== "iq") return;
    // Checked again when its turn comes: the lock may be lost while earlier stanzas are handled.
    this.enqueueWork(() => (this.isCurrent(conn) ? this.handleInboundPrepared(el) : undefined));
  }

  /** Runs the prepare step (if any) and the stanza transaction, retrying when the read went stale. */
  private async handleInboundPrepared(stanza: Element): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      let prepared: PreparedStanza | undefined;
      try {
        prepared = this.opts.prepare ? await this.opts.prepare(stanza, this.store) : undefined;
      } catch (err) {
        prepared = { data: { error: err instanceof Error ? err.message : String(err) } };
      }
      const plugins = this.opts.plugins?.length
        ? await preparePlugins(this.opts.plugins, stanza, this, this.log)
        : [];
      if (this.halted) return;
      const outcome = await this.handleInbound(stanza, prepared, attempt < 5, plugins);
      if (outcome !== "stale") return;
      this.emit("prepare-retry", stanza, attempt);
    }
  }

  private enqueueWork(fn: () => Promise<void> | void): void {
    this.chain = this.chain.then(fn).catch((err: unknown) => {
      this.log({ event: "work-failed", error: err instanceof Error ? err.message : String(err) });
    });
  }

  /** One stanza, one transaction: handlers + inbound h. A throw rolls back and h stays. */
  private async handleInbound(
    stanza: Element,
    prepared?: PreparedStanza,
    mayRetry = false,
    plugins: PluginPrepared<StanzaContext>[] = [],
  ): Promise<"done" | "stale"> {
    if (this.halted) return "done";
    const inspected = this.failures.inspect(stanza);
    try {
      if (inspected.poison) {
        // A poison stanza: keep it (quarantine) and count it, so the session can move on.
        const h = await this.txWriteAsync((tx) =>
          commitPoisonStanza(tx, {
            accountId: this.accountId,
            committedH: this.committedH,
            outbox: this.outbox,
            stanza,
            inspected,
          }),
        );
        this.failures.forget(inspected);
        this.committedH = h;
        this.emit("stanza-quarantined", stanza);
        this.flush();
        return "done";
      }
      const h = await this.txWriteAsync((tx) =>
        commitStanza(tx, {
          accountId: this.accountId,
          committedH: this.committedH,
          context: (t, state) => this.context(t, state),
          stanza,
          prepared,
          mayRetry,
          plugins,
          onStanza: this.opts.onStanza,
        }),
      );
      this.committedH = h;
      const from = stanza.attrs.from;
      if (from) this.roomPinger?.seen(bare(from));
      this.emit("stanza", stanza);
      this.opts.afterCommit?.(stanza);
    } catch (err) {
      if (err instanceof PreparedStale) return "stale"; // rolled back; prepare again
      // Not acknowledged in each case below: the server keeps the stanza and replays it.
      if (err instanceof FencedOutError || err instanceof SessionLockError) return "done";
      // A damaged database takes no more writes (the store refuses them): stop like a locked one.
      if (err instanceof StoreLockTimeoutError || err instanceof DatabaseCorruptError) {
        this.onStoreUnavailable(err);
        return "done";
      }
      if (err instanceof ContinuityError) {
        this.onContinuityLost(err);
        return "done";
      }
      this.log({
        event: "stanza-rolled-back",
        stanza: stanza.name,
        error: err instanceof Error ? err.message : String(err),
      });
      this.failures.record(stanza, inspected);
      // h counts positions, so nothing after this stanza may be counted: stop, drop the TCP
      // connection (the stream stays resumable) and resume; the server replays from this stanza.
      this.halted = true;
      this.emit("stanza-failed", stanza, err instanceof Error ? err : new Error(String(err)));
      setImmediate(() => void this.reconnectForReplay());
      return "done";
    }
    this.flush();
    return "done";
  }

  /**
   * The database stayed locked past our deadline (another process stopped inside a transaction),
   * or it is damaged and refuses writes: nothing more can be counted. Drop the socket without closing the stream; the server replays
   * what we did not acknowledge. Seen by callers as a lost connection.
   */
  private onStoreUnavailable(err: StoreLockTimeoutError | DatabaseCorruptError): void {
    this.halted = true;
    const conn = this.conn;
    this.log({ event: "store-unavailable", error: err.message });
    this.emit("store-unavailable", err);
    if (!conn) return;
    this.discard(conn);
    this.emit("offline");
    this.emit("connection-lost");
  }

  /**
   * h continuity cannot be proven: forget the stream (its h may be wrong either way), open a MAM
   * gap, and start a new stream, whose catch-up fetches whatever the server might have dropped.
   */
  private onContinuityLost(err: ContinuityError): void {
    this.halted = true;
    this.log({ event: "h-continuity-lost", stored: err.stored, expected: err.expected });
    try {
      this.forgetStreamAndOpenGap();
    } catch (e) {
      this.fence.noteError(e);
      return;
    }
    this.emit("continuity-lost", { stored: err.stored, expected: err.expected });
    setImmediate(() => void this.reconnectForReplay());
  }

  private forgetStreamAndOpenGap(): void {
    this.txWrite((tx) => {
      const st = loadAccountState(tx, this.accountId);
      st.sm.streamId = null;
      st.mam.gapOpen = true;
      saveAccountState(tx, this.accountId, st);
    });
  }

  /**
   * The server says our counter is ahead of what it sent (Prosody/ejabberd end the stream with
   * "...acknowledged more stanzas than sent..."): the stream's h is not to be trusted, so the
   * next connect must not resume it. MAM fetches what the server may have dropped.
   */
  private onServerCounterComplaint(err: Error): void {
    const text = `${err.message} ${(err as { text?: string }).text ?? ""}`;
    if (!/acknowledged more|handled more/i.test(text)) return;
    this.log({ event: "server-counter-complaint", error: text.trim() });
    try {
      this.forgetStreamAndOpenGap();
    } catch (e) {
      this.fence.noteError(e);
    }
  }

  private async reconnectForReplay(): Promise<void> {
    const attempts = this.connectAttempts;
    try {
      // Nobody waits on this drop (unlike an iOS background or an NSE yield): give the server
      // longer to acknowledge what we sent, so nothing is resent that it already has.
      await this.dropConnection(5000);
      // The app suspended (or closed) meanwhile: it reconnects when it wants, and the server
      // replays then. Or it already connected again (suspend then connect(), or its reconnect
      // after a loss): that stream replays; a second connect would race it for the same
      // session (ejabberd: one resume fails, the other is replaced by a new session).
      if (this.offlineWanted || this.connectAttempts !== attempts || this.conn) {
        this.log({
          event: "replay-reconnect-skipped",
          reason: this.offlineWanted ? "offline wanted" : "connected again meanwhile",
        });
        return;
      }
      await this.connect();
    } catch (err) {
      this.log({
        event: "replay-reconnect-failed",
        error: err instanceof Error ? err.message : String(err),
      });
      this.emit("replay-reconnect-failed", err);
    }
  }

  private async onAck(h: number): Promise<void> {
    if (!Number.isFinite(h)) return;
    const sent = await this.txWriteAsync((tx) => {
      const state = loadAccountState(tx, this.accountId);
      const ids = applyAck(tx, state, this.outbox, h);
      saveAccountState(tx, this.accountId, state);
      return ids;
    });
    for (const originId of sent) this.emit("message-sent", { originId });
    this.emit("acked", h);
  }

  /** XEP-0198 negotiation on `c`; what the server answers is committed here (onResumed...). */
  private registerStreamManagement(c: XmppConnection): void {
    useStreamManagement(c, {
      serverCapsVer: (ver) => {
        this.streamCapsVer = ver;
      },
      storedStream: () => {
        const { sm } = this.store.read((tx) => loadAccountState(tx, this.accountId));
        return sm.streamId && sm.boundJid
          ? { streamId: sm.streamId, boundJid: sm.boundJid, inboundH: sm.inboundH }
          : null;
      },
      resumed: (h) => {
        this.smActive = true;
        this.halted = false;
        this.enqueueWork(() => this.failConnectOnError(() => this.onResumed(h)));
      },
      resumeFailed: (h) =>
        this.enqueueWork(() => this.failConnectOnError(() => this.onResumeFailed(h))),
      enabled: (element, boundJid) => {
        this.smActive = true;
        this.halted = false;
        this.enqueueWork(() => this.failConnectOnError(() => this.onEnabled(element, boundJid)));
      },
      idle: () => this.idle(),
      log: this.log,
    });
  }

  /** A negotiation step that cannot be stored (fenced out, database taken) fails connect(). */
  private async failConnectOnError(step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (err) {
      const conn = this.conn;
      if (conn) {
        this.discard(conn);
      }
      this.emit("connect-failed", err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  }

  private async onResumed(h: number): Promise<void> {
    let sent: string[] = [];
    const state = await this.txWriteAsync((tx) => {
      const st = loadAccountState(tx, this.accountId);
      sent = commitResumed(tx, st, this.outbox, h, this.log);
      saveAccountState(tx, this.accountId, st);
      return st;
    });
    this.committedH = state.sm.inboundH;
    this.flushedSeq = h;
    this.smActive = true;
    this.lastConnect = "resumed";
    for (const originId of sent) this.emit("message-sent", { originId });
    this.startTicks();
    this.flush(true); // resend what the server did not get, in order
    // Rooms may have dropped us while the stream slept (XEP-0410): ask each; rejoin if so.
    this.write((ctx) => selfPingRooms(ctx));
    this.emit("online", "resumed");
  }

  /** The previous stream is gone: handlers waiting on it can never be answered. */
  private async onResumeFailed(h: number | null): Promise<void> {
    await this.txWriteAsync((tx) => {
      const st = loadAccountState(tx, this.accountId);
      if (h !== null && Number.isFinite(h)) {
        this.outbox.queue.removeThrough(tx, h);
      }
      invalidatePendingHandlers(this.context(tx, st), this.log);
      st.sm.streamId = null;
      st.mam.gapOpen = true;
      saveAccountState(tx, this.accountId, st);
    });
    this.emit("resume-failed");
  }

  private async onEnabled(enabled: Element, boundJid: string): Promise<void> {
    await this.txWriteAsync((tx) => {
      const st = loadAccountState(tx, this.accountId);
      // A new stream (no resume was possible or tried): handlers still waiting belong to a dead
      // stream (onResumeFailed already ran them if a resume was tried).
      invalidatePendingHandlers(this.context(tx, st), this.log);
      // Stanzas never acked on the old stream are renumbered onto the new one (Outbox).
      const leftovers = this.outbox.takeForNewStream(tx);
      const hadStream = st.sm.enabledAt !== null;
      st.sm = newStreamState(enabled, boundJid, tx.now);
      const ctx = this.context(tx, st);
      for (const stanza of leftovers) this.outbox.enqueue(tx, st, stanza);
      // A catch-up orders the MAM query, XEP-0013 and initial presence (startNewStreamCatchup).
      if (hadStream || st.mam.gapOpen) startNewStreamCatchup(ctx, bare(boundJid));
      else {
        // A first stream with no gap: in sync from now (a later catch-up by time starts here).
        st.mam.syncedAt ??= tx.now;
        ctx.send(initialPresence(this.ownInfo));
      }
      setupNewStream(ctx, bare(boundJid), { serverCapsVer: this.streamCapsVer });
      saveAccountState(tx, this.accountId, st);
    });
    this.committedH = 0;
    this.flushedSeq = 0;
    this.smActive = true;
    this.lastConnect = "new";
    this.startTicks();
    this.flush();
    this.emit("online", "new");
  }

  /**
   * Forget a connection that failed or was lost: whatever it still delivers is ignored (not
   * counted; the server replays it on resume), and the session is offline.
   */
  /**
   * abandon() and destroy the socket at once, without closing the stream: the server keeps the
   * session for whoever resumes it (us later, or the process that now holds the lock).
   */
  private discard(conn: XmppConnection): void {
    this.abandon(conn);
    try {
      conn.entity.socket?.destroy();
    } catch {
      /* already gone */
    }
  }

  private abandon(conn: XmppConnection): void {
    this.droppedConns.add(conn);
    this.fence.release(conn);
    if (this.conn !== conn) return;
    this.conn = null;
    this.smActive = false;
    this.stopTicks();
  }

  private onSocketGone(): void {
    this.smActive = false;
    this.stopTicks();
    this.emit("offline");
  }

  private liveness: LinkLiveness | null = null;
  private roomPinger: RoomSelfPinger | null = null;

  private startTicks(): void {
    this.stopTicks();
    const conn = this.conn;
    if (conn && this.opts.liveness !== false) {
      this.liveness = new LinkLiveness(
        {
          bytesRead: () => conn.entity.socket?.bytesRead ?? 0,
          requestAck: () => this.acks.request(conn),
          dead: (silentMs) => this.onLinkDead(conn, silentMs),
        },
        this.opts.liveness,
      );
      this.liveness.start();
    }
    if (this.opts.roomSelfPing !== false) {
      this.roomPinger = new RoomSelfPinger(
        {
          joinedRooms: () => this.store.read((tx) => joinedRoomJids(tx, this.accountId)),
          ping: (rooms) => this.write((ctx) => selfPingRooms(ctx, rooms)),
        },
        this.opts.roomSelfPing,
      );
      // Serialized with stanza handling, and only while this connection is the online one.
      this.roomPinger.start((check) =>
        this.enqueueWork(() => {
          if (this.smActive && this.isCurrent(conn)) check();
        }),
      );
    }
    this.tickTimer = setInterval(
      () => this.enqueueWork(() => this.tick()),
      this.opts.tickMs ?? 1000,
    );
    this.tickTimer.unref();
  }

  private stopTicks(): void {
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.tickTimer = null;
    this.liveness?.stop();
    this.liveness = null;
    this.roomPinger?.stop();
    this.roomPinger = null;
  }

  /**
   * Nothing came back on an idle link after a probe: drop it as if it had been reset, without
   * closing the stream (the server keeps the session; the app resumes on a new connection).
   */
  private onLinkDead(conn: XmppConnection, silentMs: number): void {
    if (!this.isCurrent(conn)) return;
    this.log({ event: "link-dead", silentMs });
    this.emit("link-dead", { silentMs });
    try {
      conn.entity.socket?.destroy();
    } catch {
      /* already gone */
    }
  }

  /** One tick of connected time: expired IQ handlers get a synthetic remote-server-timeout. */
  private tick(): void {
    if (!this.smActive || !this.isCurrent(this.conn)) return;
    this.write((ctx) => fireExpiredHandlers(ctx, this.log));
  }

  /** Runs a stored handler; an unknown name is reported, not thrown (the session continues). */
  callSafely(
    ctx: ProtocolContext,
    descriptor: HandlerDescriptor,
    args: Record<string, unknown>,
  ): void {
    callHandlerSafely(ctx, descriptor, args, this.log);
  }
}
