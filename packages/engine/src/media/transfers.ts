// The main app's side of media: runs the PUT of every upload that has a slot (again after a kill:
// the slot is reused while valid, a new one asked for otherwise; a PUT broken while the app runs
// is retried with back-off), then queues the message in the transaction that marks the upload
// sent, so it goes out exactly once. Downloads are on demand.
import { EventEmitter } from "node:events";
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { ShareOutboxItem } from "@lichen/schema";
import { setShareOutboxState, tables, type Store } from "@lichen/store";
import { and, eq, inArray } from "drizzle-orm";
import type { DurableSession } from "../session.js";
import { isChatEncrypted } from "../messages.js";
import { EncryptionFailedError, EncryptionRequiredError } from "../outgoing.js";
import { decryptFile, encryptFile, fromAesgcmUrl, toAesgcmUrl } from "./aesgcm.js";
import { MediaError } from "./errors.js";
import {
  checkHttpUrl,
  httpGetResumable,
  httpHead,
  httpPut,
  type GetLimits,
  type HttpOptions,
  type TransferProgress,
} from "./http.js";
import {
  DEFAULT_UPLOAD_ATTEMPTS,
  uploadFailureAction,
  uploadRetryDelay,
  type RetryTimers,
  type UploadRetryPolicy,
} from "./retry.js";
import {
  failUpload,
  getAttachment,
  oobElement,
  outboxItemOf,
  requestUploadSlots,
  updateAttachment,
  type AttachmentRow,
} from "./upload.js";

export interface MediaTransferEvents {
  progress: [{ id: string; direction: "up" | "down" } & TransferProgress];
  /** The file is uploaded and its message queued (sent once, with the URL as body and in OOB). */
  uploaded: [{ id: string; url: string }];
  failed: [{ id: string; error: MediaError }];
  /**
   * A PUT broke (network, 5xx, 408/429): it runs again after `delayMs` (`attempt` counts from 1).
   * The row stays `uploading` meanwhile.
   */
  retrying: [{ id: string; attempt: number; delayMs: number; error: MediaError }];
}

export interface MediaTransferOptions {
  /** The shared container's attachment directory (paths in rows are relative to it). */
  attachmentDir: string;
  /** Extra trusted CA certificates for https upload services. */
  ca?: HttpOptions["ca"];
  /** Retries of a PUT broken while the app runs (back-off, bounded; timers injectable). */
  retry?: UploadRetryPolicy;
}

const globalTimers: RetryTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export class MediaTransfers extends EventEmitter<MediaTransferEvents> {
  private readonly store: Store;
  private readonly running = new Map<string, Promise<void>>();
  /** Failed attempts per upload since the last resume, and the retry each one waits for. */
  private readonly attempts = new Map<string, number>();
  private readonly retryTimers = new Map<string, unknown>();
  private readonly timers: RetryTimers;
  private stopped = false;

  constructor(
    private readonly session: DurableSession,
    private readonly opts: MediaTransferOptions,
  ) {
    super();
    this.store = session.store;
    this.timers = opts.retry?.timers ?? globalTimers;
    // Slots granted (in this process's transactions) are uploaded at once.
    session.on("attachment-changed", ({ id, state }) => {
      if (state === "slot") this.put(id);
    });
    // Online again (a new connection or foreground): every upload gets a new retry budget and
    // waiting retries run now.
    session.on("online", () => {
      this.stopped = false;
      this.cancelRetries();
      this.attempts.clear();
      this.resume();
    });
  }

  /**
   * Move every unfinished upload on: ask slots for pending ones, PUT those with a valid slot
   * (an upload killed mid-PUT is restarted), re-ask expired ones. Safe to call any time.
   */
  resume(): void {
    const toPut = this.session.write((ctx) => {
      const rows = ctx.tx
        .select()
        .from(tables.attachments)
        .where(
          and(
            eq(tables.attachments.accountId, this.session.accountId),
            eq(tables.attachments.direction, "out"),
            inArray(tables.attachments.state, ["slot", "uploading"]),
          ),
        )
        .all();
      const ready: string[] = [];
      for (const a of rows) {
        if (this.running.has(a.id)) continue;
        if ((a.slotExpiresAt ?? 0) > ctx.tx.now) ready.push(a.id);
        // Too old to trust: a new slot (same file, same message id).
        else updateAttachment(ctx.tx, a.id, { state: "pending", putUrl: null, putHeaders: null });
      }
      if (this.session.online) requestUploadSlots(ctx);
      return ready;
    });
    for (const id of toPut) this.put(id);
  }

  /**
   * Stop retrying (the app goes to the background): waiting retries are dropped, their rows stay
   * `uploading` for the next resume. A PUT already running finishes or breaks on its own.
   */
  stop(): void {
    this.stopped = true;
    this.cancelRetries();
  }

  /** Uploads waiting for a retry (ids). */
  get waitingRetries(): string[] {
    return [...this.retryTimers.keys()];
  }

  private cancelRetries(): void {
    for (const h of this.retryTimers.values()) this.timers.clearTimeout(h);
    this.retryTimers.clear();
  }

  /** Resolves when every upload this process runs has finished (or failed). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()]);
  }

  private put(id: string): void {
    if (this.running.has(id)) return;
    // A write refused (session closed or fenced out meanwhile): the row stays as it was and the
    // next resume() continues it; reported, never an unhandled rejection.
    const run = this.runPut(id)
      .catch((err: unknown) =>
        this.emit("failed", {
          id,
          error: new MediaError("http-failed", `upload interrupted: ${String(err)}`),
        }),
      )
      .then(() => undefined)
      .finally(() => this.running.delete(id));
    this.running.set(id, run);
  }

  private async runPut(id: string): Promise<void> {
    const a = this.session.write((ctx) => {
      const row = getAttachment(ctx.tx, id);
      if (!row || (row.state !== "slot" && row.state !== "uploading")) return null;
      updateAttachment(ctx.tx, id, { state: "uploading" });
      return row;
    });
    if (!a?.putUrl || !a.localPath) return;
    try {
      const source = join(this.opts.attachmentDir, a.localPath);
      if (!existsSync(source))
        throw new MediaError("missing-file", `the shared file is gone: ${a.localPath}`);
      const body = a.aesgcmKey ? await this.encrypted(a, source) : source;
      const bodySize = statSync(body).size;
      // Killed after the PUT finished but before the message was queued: the file is there
      // (a second PUT to the slot would be refused as a conflict), so only the message is left.
      if (a.state === "uploading" && a.url && (await this.alreadyUploaded(a.url, bodySize))) {
        await this.complete(a);
        return;
      }
      await httpPut(
        checkHttpUrl(a.putUrl, "slot PUT URL"),
        body,
        JSON.parse(a.putHeaders ?? "{}") as Record<string, string>,
        a.aesgcmKey ? "application/octet-stream" : (a.mimeType ?? "application/octet-stream"),
        {
          ...(this.opts.ca ? { ca: this.opts.ca } : {}),
          onProgress: (p) => this.emit("progress", { id, direction: "up", ...p }),
        },
      );
      this.attempts.delete(id);
      await this.complete(a);
    } catch (err) {
      const error =
        err instanceof MediaError ? err : new MediaError("http-failed", (err as Error).message);
      // A PUT after a restart or a retry went to a slot granted before: see uploadFailureAction.
      const action = uploadFailureAction(error, a.state === "uploading");
      if (action.kind === "new-slot") return this.askNewSlot(id);
      if (action.kind === "fail") {
        // A refused PUT (4xx) or a missing file will not get better: the error for the user.
        this.attempts.delete(id);
        this.session.write((ctx) => failUpload(ctx, id, error));
        this.emit("failed", { id, error });
        return;
      }
      this.scheduleRetry(id, error, action.newSlot);
    }
  }

  /** The slot is no use any more: the upload asks a new one (the answer starts the PUT). */
  private askNewSlot(id: string): void {
    this.session.write((ctx) => {
      if (getAttachment(ctx.tx, id)?.state !== "uploading") return;
      updateAttachment(ctx.tx, id, { state: "pending", putUrl: null, putHeaders: null });
      if (this.session.online) requestUploadSlots(ctx);
    });
  }

  /**
   * A broken PUT: the row stays `uploading` and the upload runs again after a back-off — the same
   * slot (a HEAD first tells a PUT that did finish), or a new one (`newSlot`, see
   * uploadFailureAction). Past `maxAttempts` it waits for the next resume instead.
   */
  private scheduleRetry(id: string, error: MediaError, newSlot: boolean): void {
    const policy = this.opts.retry ?? {};
    const attempt = (this.attempts.get(id) ?? 0) + 1;
    this.attempts.set(id, attempt);
    if (this.stopped || attempt > (policy.maxAttempts ?? DEFAULT_UPLOAD_ATTEMPTS)) {
      this.emit("failed", { id, error });
      return;
    }
    const delayMs = uploadRetryDelay(attempt - 1, policy);
    const previous = this.retryTimers.get(id);
    if (previous !== undefined) this.timers.clearTimeout(previous);
    this.retryTimers.set(
      id,
      this.timers.setTimeout(() => {
        this.retryTimers.delete(id);
        if (this.stopped) return;
        try {
          if (newSlot) this.askNewSlot(id);
          else this.put(id);
        } catch (err) {
          // The session closed meanwhile: the row stays `uploading` for the next resume.
          this.emit("failed", {
            id,
            error: new MediaError("http-failed", `upload retry not run: ${String(err)}`),
          });
        }
      }, delayMs),
    );
    this.emit("retrying", { id, attempt, delayMs, error });
  }

  private async alreadyUploaded(getUrl: string, size: number): Promise<boolean> {
    try {
      const head = await httpHead(checkHttpUrl(getUrl, "slot GET URL"), {
        ...(this.opts.ca ? { ca: this.opts.ca } : {}),
      });
      return head.status === 200 && head.size === size;
    } catch {
      return false; // unknown: upload again
    }
  }

  /** The ciphertext next to the file (made once: same key and IV, so a restart sends the same bytes). */
  private async encrypted(a: AttachmentRow, source: string): Promise<string> {
    const target = `${source}.aesgcm`;
    if (!existsSync(target) || statSync(target).size !== (a.size ?? 0) + 16) {
      await encryptFile(source, `${target}.part`, a.aesgcmKey ?? "");
      renameSync(`${target}.part`, target);
    }
    return target;
  }

  /**
   * PUT done: one transaction queues the message and marks upload and outbox row sent. In an end-to-end
   * encrypted chat the session's encryption plugin sends the aesgcm:// URL encrypted (that
   * transaction also holds its ratchet changes); a passing failure (offline, a timeout) leaves the
   * row `uploading`, and the next resume finds the file uploaded (HEAD) and tries again.
   */
  private async complete(a: AttachmentRow): Promise<void> {
    const url = a.aesgcmKey ? toAesgcmUrl(a.url ?? "", a.aesgcmKey) : (a.url ?? "");
    const encryptedTo = this.store.read((tx) => {
      const item = outboxItemOf(tx, a.id);
      return item && isChatEncrypted(tx, this.session.accountId, item.to) ? item : null;
    });
    if (encryptedTo) return this.completeEncrypted(a, encryptedTo, url);
    const sent = this.session.write((ctx) => {
      const row = getAttachment(ctx.tx, a.id);
      if (row?.state !== "uploading") return false; // another process finished it
      const item = outboxItemOf(ctx.tx, a.id);
      if (item && isChatEncrypted(ctx.tx, ctx.accountId, item.to)) {
        // Encryption was turned on for the chat this very moment: never a plain link into it.
        const refused = new EncryptionRequiredError(item.to);
        failUpload(ctx, a.id, new MediaError("encryption-required", refused.message));
        return false;
      }
      updateAttachment(ctx.tx, a.id, { state: "sent", url, transferred: a.size ?? 0 });
      if (!item) return false;
      const content = item.content;
      const desc =
        content.kind === "image"
          ? content.caption
          : content.kind === "contact"
            ? content.displayName
            : undefined;
      this.session.queueMessage(ctx, {
        to: item.to,
        body: url,
        originId: item.id,
        // XEP-0454 files go without OOB: an aesgcm:// URL means nothing to a plain client.
        extra: a.aesgcmKey ? [] : [oobElement(url, desc)],
      });
      setShareOutboxState(ctx.tx, a.id, "sent");
      return true;
    });
    if (sent) this.emit("uploaded", { id: a.id, url });
  }

  /** The uploaded file's link into an end-to-end encrypted chat: only ever sent encrypted. */
  private async completeEncrypted(
    a: AttachmentRow,
    item: ShareOutboxItem,
    url: string,
  ): Promise<void> {
    // Uploaded in the clear (encryption turned on for the chat during the upload): the service
    // holds the plain file, so its link is not sent into the encrypted chat.
    const refusal = !a.aesgcmKey
      ? new MediaError(
          "encryption-required",
          `${new EncryptionRequiredError(item.to).message}; the file was uploaded unencrypted`,
        )
      : !this.session.canEncrypt
        ? new MediaError("encryption-required", new EncryptionRequiredError(item.to).message)
        : null;
    if (refusal) {
      this.session.write((ctx) => {
        if (getAttachment(ctx.tx, a.id)?.state === "uploading") failUpload(ctx, a.id, refusal);
      });
      this.emit("failed", { id: a.id, error: refusal });
      return;
    }
    try {
      const sent = await this.session.sendEncrypted({
        to: item.to,
        body: url,
        originId: item.id,
        commit: (ctx) => {
          if (getAttachment(ctx.tx, a.id)?.state !== "uploading") return false; // finished elsewhere
          updateAttachment(ctx.tx, a.id, { state: "sent", url, transferred: a.size ?? 0 });
          return setShareOutboxState(ctx.tx, a.id, "sent");
        },
      });
      if (sent) this.emit("uploaded", { id: a.id, url });
    } catch (err) {
      if (err instanceof EncryptionFailedError || err instanceof EncryptionRequiredError) {
        const error = new MediaError("encryption-failed", `${err.code}: ${err.message}`);
        this.session.write((ctx) => {
          if (getAttachment(ctx.tx, a.id)?.state === "uploading") failUpload(ctx, a.id, error);
        });
        this.emit("failed", { id: a.id, error });
        return;
      }
      // Offline or a timeout: the row stays `uploading`; the next resume sends the link.
      this.emit("failed", {
        id: a.id,
        error: new MediaError(
          "http-failed",
          `uploaded; the encrypted message waits for the next connection: ${String(err)}`,
        ),
      });
    }
  }
}

export interface DownloadOptions extends GetLimits {
  store: Store;
  /** The attachment id, or the message row id it belongs to. */
  attachment: { id: string } | { messageRowId: number };
  attachmentDir: string;
  ca?: HttpOptions["ca"];
  onProgress?: (p: TransferProgress) => void;
}

export interface DownloadedFile {
  id: string;
  /** Absolute path of the (decrypted) file. */
  path: string;
  size: number;
  mimeType: string;
}

/**
 * Download a received file on demand into `<attachmentDir>/in/<id>/`: bounded (maxBytes), its
 * content type checked, resumed with Range after an interruption, decrypted when aesgcm://.
 * A refusal leaves the row `remote` with the error; the partial file of a broken link is kept
 * for the next try.
 */
export async function downloadAttachment(opts: DownloadOptions): Promise<DownloadedFile> {
  const { store } = opts;
  const row = store.write((tx) => {
    const where =
      "id" in opts.attachment
        ? eq(tables.attachments.id, opts.attachment.id)
        : eq(tables.attachments.messageRowId, opts.attachment.messageRowId);
    const r = tx
      .select()
      .from(tables.attachments)
      .where(and(where, eq(tables.attachments.direction, "in")))
      .get();
    if (r && r.state !== "downloaded")
      updateAttachment(tx, r.id, { state: "downloading", error: null });
    return r;
  });
  if (!row?.url)
    throw new MediaError("not-found", "no received file for this message (no OOB or aesgcm URL)");
  const encrypted = row.url.startsWith("aesgcm://");
  if (row.state === "downloaded" && row.localPath)
    return {
      id: row.id,
      path: join(opts.attachmentDir, row.localPath),
      size: row.size ?? 0,
      mimeType: row.mimeType ?? "application/octet-stream",
    };
  let fetchUrl: URL;
  let fragment: string | null = null;
  try {
    if (encrypted) {
      // The host decides http vs https the way checkHttpUrl does (plain http to loopback only).
      const probe = fromAesgcmUrl(row.url);
      const host = new URL(probe.fetchUrl).hostname;
      const plain = /^(localhost|127\.\d+\.\d+\.\d+)$/.test(host);
      const parsed = fromAesgcmUrl(row.url, plain);
      fetchUrl = checkHttpUrl(parsed.fetchUrl, "file URL");
      fragment = parsed.fragment;
    } else {
      fetchUrl = checkHttpUrl(row.url, "file URL");
    }
  } catch (err) {
    const error = err instanceof MediaError ? new MediaError("bad-url", err.message) : err;
    store.write((tx) => updateAttachment(tx, row.id, { state: "failed", error: String(error) }));
    throw error;
  }
  const name = safeName(decodeURIComponent(basename(fetchUrl.pathname)) || "file");
  const rel = join("in", row.id, name);
  const finalPath = join(opts.attachmentDir, rel);
  const partPath = `${finalPath}.part`;
  mkdirSync(dirname(finalPath), { recursive: true });
  const have = existsSync(partPath) ? statSync(partPath).size : 0;
  try {
    const got = await httpGetResumable(
      fetchUrl,
      partPath,
      have,
      // The ciphertext carries a 16-byte tag on top of the file.
      {
        maxBytes: opts.maxBytes + (encrypted ? 16 : 0),
        acceptTypes: encrypted ? [] : opts.acceptTypes,
      },
      {
        ...(opts.ca ? { ca: opts.ca } : {}),
        onProgress: (p) => {
          opts.onProgress?.(p);
        },
      },
    );
    if (fragment) {
      await decryptFile(partPath, finalPath, fragment);
      rmSync(partPath);
    } else {
      renameSync(partPath, finalPath);
    }
    const size = statSync(finalPath).size;
    const mimeType = encrypted ? (row.mimeType ?? "application/octet-stream") : got.contentType;
    store.write((tx) =>
      updateAttachment(tx, row.id, {
        state: "downloaded",
        localPath: rel,
        size,
        mimeType,
        transferred: got.size,
      }),
    );
    return { id: row.id, path: finalPath, size, mimeType };
  } catch (err) {
    const error = err instanceof MediaError ? err : new MediaError("http-failed", String(err));
    // Refused (too large, wrong type, HTTP error): drop the partial file; a broken link keeps it.
    if (error.code !== "http-failed") rmSync(partPath, { force: true });
    store.write((tx) =>
      updateAttachment(tx, row.id, {
        // An altered file or a wrong key (GCM tag mismatch) is a stored failure, not a pending file.
        state: error.code === "decrypt-failed" ? "failed" : "remote",
        error: `${error.code}: ${error.message}`,
        transferred: existsSync(partPath) ? statSync(partPath).size : 0,
      }),
    );
    throw error;
  }
}

function safeName(name: string): string {
  // A file name from the network must not climb out of the download directory.
  const cleaned = name.replace(/[/\\\0]/g, "_").replace(/^\.+/, "_");
  return cleaned.slice(0, 200) || "file";
}
