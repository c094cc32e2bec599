/**
 * IPC between the processes sharing the database: one row per message in `ipc_messages` plus a wake
 * signal, so a receiver never polls the DB in a tight loop.
 *
 * Row format (usable from Swift): seq, id, name (= message type), source, destination (role or
 * "*"), data (JSON), response_to, created_at, expires_at, delivered_to.
 * - A direct message is deleted in the same transaction that reads it: exactly one process of that
 *   role gets it. A broadcast stays until it expires and records each consuming role in
 *   `delivered_to`, so every other role gets it exactly once.
 * - Expired rows are deleted by every send and every drain.
 * - A row that fails validation is moved to `quarantine` with the error naming the field, and
 *   reported through `onError` and the store logger; it is never silently dropped.
 * - Wake signal on Node: after commit the sender rewrites `<wakeDir>/<role>.wake`; receivers watch
 *   the directory (inotify). `PRAGMA data_version` is polled every `pollMs` as the fallback. On iOS
 *   a Darwin notification plays the role of the wake file.
 */
import fs from "node:fs";
import path from "node:path";
import { randomUUID } from "node:crypto";
import type { IpcDestination, IpcMessage, IpcMessageType, ProcessRole } from "@lichen/schema";
import type { Store, StoreTx } from "./store.js";
import { IpcTimeoutError, StoreError, StoreLockTimeoutError } from "./errors.js";
import { SchemaValidationError, validateIpcMessage } from "./validation.js";

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type EnvelopeKeys =
  "v" | "id" | "source" | "createdAt" | "expiresAt" | "responseTo" | "destination";

/** What a caller passes to send(): type + data + destination; the envelope is filled in. */
export type IpcOutgoing = DistributiveOmit<IpcMessage, EnvelopeKeys> & {
  destination: IpcDestination;
  /** Time to live in ms (default: the Ipc's defaultTtlMs, 2000). */
  ttlMs?: number;
};
/** A response: like IpcOutgoing, but it always goes back to the request's source. */
export type IpcReply = DistributiveOmit<IpcMessage, EnvelopeKeys> & { ttlMs?: number };

export type IpcHandler<M extends IpcMessage = IpcMessage> = (msg: M) => void | Promise<void>;
export interface IpcErrorEvent {
  event: "ipc.quarantined" | "ipc.handler-failed" | "ipc.orphan-response" | "ipc.drain-failed";
  message: string;
  seq?: number;
  id?: string;
  field?: string;
}

export interface IpcOptions {
  role: ProcessRole;
  /** Directory holding the wake files (default: "<db path>.ipc"). Every process must use the same. */
  wakeDir?: string;
  /** data_version polling period, the fallback wake-up, ms (default 100). */
  pollMs?: number;
  /** Time to live of sent messages (default 2000 ms, like Monal's MSG_TIMEOUT). */
  defaultTtlMs?: number;
  /** Epoch-ms clock for created/expires (default: the store's clock). */
  clock?: () => number;
}

interface Pending {
  resolve: (m: IpcMessage) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface IpcRow {
  seq: number;
  id: string;
  name: string;
  source: string;
  destination: string;
  data: string;
  response_to: string | null;
  created_at: number;
  expires_at: number;
  delivered_to: string;
}

const ROLES: readonly ProcessRole[] = ["main", "nse", "share"];

export class Ipc {
  readonly role: ProcessRole;
  readonly wakeDir: string;
  readonly pollMs: number;
  readonly defaultTtlMs: number;
  private readonly clock: () => number;
  private readonly handlers = new Map<string, Set<IpcHandler>>();
  private readonly errorHandlers = new Set<(e: IpcErrorEvent) => void>();
  private readonly pending = new Map<string, Pending>();
  /** Ids of requests this process sent (until they expire), so it never consumes its own. */
  private readonly sent = new Map<string, number>();
  private watcher: fs.FSWatcher | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private lastDataVersion = -1;
  private drainScheduled = false;
  private started = false;
  private closed = false;

  constructor(
    readonly store: Store,
    opts: IpcOptions,
  ) {
    this.role = opts.role;
    this.wakeDir = opts.wakeDir ?? `${store.path}.ipc`;
    this.pollMs = opts.pollMs ?? 100;
    this.defaultTtlMs = opts.defaultTtlMs ?? 2000;
    this.clock = opts.clock ?? store.clock;
    fs.mkdirSync(this.wakeDir, { recursive: true });
  }

  /**
   * Queue a message. Inside a running write() it becomes part of that transaction (sent only if it
   * commits); the wake signal goes out after commit. Returns the message id.
   */
  send(msg: IpcOutgoing): string {
    return this.insert(msg, undefined);
  }

  /** Send and wait for the response (a message whose responseTo is this id). */
  request<T extends IpcMessage = IpcMessage>(
    msg: IpcOutgoing,
    opts: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.closed) return Promise.reject(new StoreError("Ipc is closed"));
    const timeoutMs = opts.timeoutMs ?? this.defaultTtlMs;
    const id = randomUUID();
    const promise = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(
          new IpcTimeoutError(
            `no response to ${msg.type} (${id}) from ${msg.destination} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (m: IpcMessage) => void, reject, timer });
    });
    const now = this.clock();
    for (const [sid, exp] of this.sent) if (exp <= now) this.sent.delete(sid);
    this.sent.set(id, now + (msg.ttlMs ?? timeoutMs));
    try {
      this.insert({ ...msg, ttlMs: msg.ttlMs ?? timeoutMs }, undefined, id);
    } catch (e) {
      const p = this.pending.get(id);
      if (p) clearTimeout(p.timer);
      this.pending.delete(id);
      throw e;
    }
    // Responses may arrive before start() was called by the owner; make sure we listen.
    if (!this.started) this.start();
    return promise;
  }

  /** Answer a request: goes to its source, with responseTo set. */
  respond(to: IpcMessage, msg: IpcReply): string {
    return this.insert({ ...msg, destination: to.source } as IpcOutgoing, to.id);
  }

  /** Handle non-response messages of a type ("*": all types). Returns an unsubscribe function. */
  on<T extends IpcMessageType | "*">(
    type: T,
    handler: IpcHandler<T extends IpcMessageType ? Extract<IpcMessage, { type: T }> : IpcMessage>,
  ): () => void {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(handler as IpcHandler);
    return () => set.delete(handler as IpcHandler);
  }

  /** Quarantined rows, failing handlers, orphan responses. */
  onError(handler: (e: IpcErrorEvent) => void): () => void {
    this.errorHandlers.add(handler);
    return () => this.errorHandlers.delete(handler);
  }

  /** Start listening (wake files + data_version polling) and deliver what is already waiting. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    const mine = `${this.role}.wake`;
    try {
      this.watcher = fs.watch(this.wakeDir, (_event, filename) => {
        if (filename === null || filename === mine) this.scheduleDrain();
      });
      this.watcher.on("error", (e) =>
        this.store.logger({ event: "ipc.watch-failed", error: String(e) }),
      );
    } catch (e) {
      // Polling still works; just slower.
      this.store.logger({ event: "ipc.watch-failed", error: String(e) });
    }
    this.pollTimer = setInterval(() => {
      if (this.store.closed) return;
      const v = this.store.dataVersion();
      if (v !== this.lastDataVersion) {
        this.lastDataVersion = v;
        this.scheduleDrain();
      }
    }, this.pollMs);
    this.scheduleDrain();
  }

  /** Stop listening; pending requests are rejected. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new StoreError(`Ipc closed while waiting for the response to ${id}`));
    }
    this.pending.clear();
  }

  /**
   * Read and consume every message for this role now, then dispatch them. Returns how many were
   * delivered. Called automatically after start(); public for tests and for callers that know
   * something arrived.
   */
  drain(): number {
    if (this.closed || this.store.closed) return 0;
    // Cheap check without the write lock: most wake-ups from data_version are other traffic.
    if (!this.hasWork()) return 0;
    const received = this.store.write((tx) => this.consume(tx));
    for (const msg of received) this.dispatch(msg);
    return received.length;
  }

  private draining = false;

  private async drainAsync(): Promise<void> {
    if (this.draining || this.closed || this.store.closed || !this.hasWork()) return;
    this.draining = true;
    let received: IpcMessage[];
    try {
      received = await this.store.writeAsync((tx) => this.consume(tx), {
        yieldFirst: false,
        deadlineAt: Date.now() + Math.max(250, this.pollMs * 5),
      });
    } catch (e) {
      if (e instanceof StoreLockTimeoutError) {
        this.lastDataVersion = -1; // try again at the next poll
        return;
      }
      throw e;
    } finally {
      this.draining = false;
    }
    for (const msg of received) this.dispatch(msg);
  }

  private hasWork(): boolean {
    const rows = this.store.read(
      (tx) =>
        tx.sqlite
          .prepare(
            `SELECT id, response_to, expires_at FROM ipc_messages
             WHERE destination = @role
                OR (destination = '*' AND source <> @role AND instr(delivered_to, @mark) = 0)
                OR expires_at <= @now`,
          )
          .all({ role: this.role, mark: `,${this.role},`, now: this.clock() }) as Pick<
          IpcRow,
          "id" | "response_to" | "expires_at"
        >[],
    );
    const now = this.clock();
    return rows.some((r) => r.expires_at <= now || this.isForMe(r));
  }

  /**
   * Rows are addressed to a role, and two processes may share one (a lingering NSE and the NSE
   * the OS started for the next push; macOS runs NSEs concurrently): a process never takes its
   * own request, and takes a response only if it is the one waiting for it.
   */
  private isForMe(row: Pick<IpcRow, "id" | "response_to">): boolean {
    if (this.sent.has(row.id)) return false;
    return row.response_to === null || this.pending.has(row.response_to);
  }

  /** Delete expired rows now (also done on every send and drain). Returns how many. */
  cleanExpired(): number {
    return this.store.write((tx) => this.deleteExpired(tx));
  }

  private deleteExpired(tx: StoreTx): number {
    return tx.sqlite.prepare("DELETE FROM ipc_messages WHERE expires_at <= ?").run(this.clock())
      .changes;
  }

  private insert(
    msg: IpcOutgoing,
    responseTo: string | undefined,
    id: string = randomUUID(),
  ): string {
    if (this.closed) throw new StoreError("Ipc is closed");
    const now = this.clock();
    const ttl = msg.ttlMs ?? this.defaultTtlMs;
    const full = {
      v: 1,
      id,
      source: this.role,
      destination: msg.destination,
      ...(responseTo !== undefined ? { responseTo } : {}),
      createdAt: now,
      expiresAt: now + ttl,
      type: msg.type,
      data: msg.data,
    };
    // Validate before writing: a bad message is the sender's bug and must fail at the sender.
    validateIpcMessage(full);
    this.store.write((tx) => {
      this.deleteExpired(tx);
      tx.sqlite
        .prepare(
          `INSERT INTO ipc_messages (id, name, source, destination, data, response_to, created_at, expires_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          id,
          full.type,
          full.source,
          full.destination,
          JSON.stringify(full.data),
          responseTo ?? null,
          now,
          now + ttl,
        );
      tx.afterCommit(() => this.wake(full.destination));
    });
    return id;
  }

  private wake(destination: IpcDestination): void {
    const targets = destination === "*" ? ROLES.filter((r) => r !== this.role) : [destination];
    for (const role of targets) {
      try {
        fs.writeFileSync(path.join(this.wakeDir, `${role}.wake`), String(this.clock()));
      } catch (e) {
        this.store.logger({ event: "ipc.wake-failed", role, error: String(e) });
      }
    }
  }

  private consume(tx: StoreTx): IpcMessage[] {
    this.deleteExpired(tx);
    const rows = tx.sqlite
      .prepare(
        `SELECT * FROM ipc_messages
         WHERE destination = @role
            OR (destination = '*' AND source <> @role AND instr(delivered_to, @mark) = 0)
         ORDER BY seq`,
      )
      .all({ role: this.role, mark: `,${this.role},` }) as IpcRow[];
    const out: IpcMessage[] = [];
    const del = tx.sqlite.prepare("DELETE FROM ipc_messages WHERE seq = ?");
    const mark = tx.sqlite.prepare(
      "UPDATE ipc_messages SET delivered_to = delivered_to || ? WHERE seq = ?",
    );
    for (const row of rows) {
      if (!this.isForMe(row)) continue;
      let msg: IpcMessage;
      try {
        msg = this.fromRow(row);
      } catch (e) {
        const field = e instanceof SchemaValidationError ? e.field : undefined;
        const message = `malformed IPC row seq=${row.seq} id=${row.id}: ${(e as Error).message}`;
        tx.sqlite
          .prepare(
            "INSERT INTO quarantine (table_name, row_key, raw, error, at) VALUES ('ipc_messages', ?, ?, ?, ?)",
          )
          .run(String(row.id ?? row.seq), JSON.stringify(row), message, this.clock());
        del.run(row.seq);
        const event: IpcErrorEvent = {
          event: "ipc.quarantined",
          message,
          seq: row.seq,
          id: row.id,
          ...(field !== undefined ? { field } : {}),
        };
        tx.afterCommit(() => this.reportError(event));
        continue;
      }
      if (row.destination === "*") mark.run(`${this.role},`, row.seq);
      else del.run(row.seq);
      out.push(msg);
    }
    return out;
  }

  private fromRow(row: IpcRow): IpcMessage {
    let data: unknown;
    try {
      data = JSON.parse(row.data);
    } catch (e) {
      throw new SchemaValidationError(
        "IpcMessage",
        "data",
        `is not JSON (${(e as Error).message})`,
      );
    }
    return validateIpcMessage({
      v: 1,
      id: row.id,
      source: row.source,
      destination: row.destination,
      ...(row.response_to !== null ? { responseTo: row.response_to } : {}),
      createdAt: row.created_at,
      expiresAt: row.expires_at,
      type: row.name,
      data,
    });
  }

  private dispatch(msg: IpcMessage): void {
    if (msg.responseTo !== undefined) {
      const p = this.pending.get(msg.responseTo);
      if (p) {
        this.pending.delete(msg.responseTo);
        clearTimeout(p.timer);
        p.resolve(msg);
      } else {
        this.store.logger({
          event: "ipc.orphan-response",
          id: msg.id,
          responseTo: msg.responseTo,
          type: msg.type,
        });
      }
      return;
    }
    const targets = [...(this.handlers.get(msg.type) ?? []), ...(this.handlers.get("*") ?? [])];
    for (const h of targets) {
      try {
        const r = h(msg);
        if (r && typeof (r as Promise<void>).catch === "function") {
          (r as Promise<void>).catch((e: unknown) => this.handlerFailed(msg, e));
        }
      } catch (e) {
        this.handlerFailed(msg, e);
      }
    }
  }

  private handlerFailed(msg: IpcMessage, e: unknown): void {
    this.reportError({
      event: "ipc.handler-failed",
      message: `handler for ${msg.type} failed: ${String(e)}`,
      id: msg.id,
    });
  }

  private reportError(e: IpcErrorEvent): void {
    this.store.logger({ ...e, level: "error" });
    for (const h of this.errorHandlers) h(e);
  }

  private scheduleDrain(): void {
    if (this.drainScheduled || this.closed) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      if (this.closed || this.store.closed) return;
      try {
        this.lastDataVersion = this.store.dataVersion();
      } catch (e) {
        this.reportError({ event: "ipc.drain-failed", message: String(e) });
        return;
      }
      // Waits for the database without blocking the event loop: a process stopped inside a
      // transaction must not freeze this one. A drain that cannot start within a poll period is
      // retried by the next data_version change or wake-up.
      this.drainAsync().catch((e: unknown) =>
        this.reportError({ event: "ipc.drain-failed", message: String(e) }),
      );
    });
  }
}
