// The share extension's side (never touches the network) and the main app's outbox sender.
import { randomUUID } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import type { FileReference, ShareContent, ShareOutboxItem } from "@lichen/schema";
import {
  addShareOutboxItem,
  Ipc,
  listShareOutbox,
  setShareOutboxState,
  tables,
  type ShareOutboxEntry,
  type Store,
  type StoreTx,
} from "@lichen/store";
import { eq } from "drizzle-orm";
import xml, { type Element } from "@xmpp/xml";
import { newAesgcmFragment } from "./media/aesgcm.js";
import { MediaError } from "./media/errors.js";
import type { MediaTransfers } from "./media/transfers.js";
import { acceptUpload, getAttachment } from "./media/upload.js";
import type { DurableSession } from "./session.js";
import { isChatEncrypted } from "./messages.js";
import { EncryptionFailedError, EncryptionRequiredError } from "./outgoing.js";
import { bare } from "./jid.js";

/** A file the user shared: copied into the shared container, the outbox row references the copy. */
export interface SharedFile {
  sourcePath: string;
  mimeType: string;
  fileName?: string;
}

type FileKinds = "image" | "file" | "audiovisual";
/** What the share extension hands in: file-bearing kinds name a source file instead of a reference. */
export type ShareInput =
  | Exclude<ShareContent, { kind: FileKinds }>
  | { kind: "image"; file: SharedFile; caption?: string }
  | { kind: "file"; file: SharedFile }
  | { kind: "audiovisual"; file: SharedFile; durationMs?: number };

export interface ShareOptions {
  store: Store;
  accountId: string;
  /** Bare JID of the chat. */
  to: string;
  content: ShareInput;
  /** The shared container's attachment directory (file references are relative to it). */
  attachmentDir: string;
  /** IPC of the share process, to wake the main app; one is opened (and closed) if omitted. */
  ipc?: Ipc;
}

/**
 * Share extension: copy files into the shared container, then write the outbox row and the
 * "outbox-changed" signal to the main app in one transaction. No network, ever.
 */
export function shareToOutbox(opts: ShareOptions): ShareOutboxItem {
  const id = randomUUID();
  let copiedDir: string | null = null;
  let content: ShareContent;
  const input = opts.content;
  if (input.kind === "image" || input.kind === "file" || input.kind === "audiovisual") {
    copiedDir = join(opts.attachmentDir, id);
    mkdirSync(copiedDir, { recursive: true });
    const fileName = input.file.fileName ?? basename(input.file.sourcePath);
    const target = join(copiedDir, fileName);
    if (!existsSync(input.file.sourcePath)) {
      rmSync(copiedDir, { recursive: true, force: true });
      throw new MediaError(
        "missing-file",
        `nothing to share: ${input.file.sourcePath} does not exist`,
      );
    }
    copyFileSync(input.file.sourcePath, target);
    const ref: FileReference = {
      path: join(id, fileName),
      mimeType: input.file.mimeType,
      size: statSync(target).size,
      fileName,
    };
    content = { ...input, file: ref } as ShareContent;
  } else {
    content = input;
  }
  const ipc = opts.ipc ?? new Ipc(opts.store, { role: "share" });
  try {
    return opts.store.write((tx) => {
      const item: ShareOutboxItem = {
        v: 1,
        id,
        accountId: opts.accountId,
        to: opts.to,
        createdAt: tx.now,
        content,
      };
      addShareOutboxItem(tx, item);
      // Part of this transaction: the main app is woken only if the row committed.
      ipc.send({
        type: "outbox-changed",
        destination: "main",
        data: { itemIds: [id] },
        ttlMs: 24 * 3600_000,
      });
      return item;
    });
  } catch (err) {
    // Nothing references the copy: remove it, so a failed share leaves no orphan files.
    if (copiedDir) rmSync(copiedDir, { recursive: true, force: true });
    throw err;
  } finally {
    if (!opts.ipc) ipc.close();
  }
}

/** The message body (and extra payload) an outbox item is sent as; `upload`: a file goes first. */
export function outboxMessage(
  content: ShareContent,
): { body: string; extra: Element[] } | { upload: true } {
  switch (content.kind) {
    case "text":
      return { body: content.text, extra: [] };
    case "url":
      return {
        body: content.title ? `${content.title}\n${content.url}` : content.url,
        // XEP-0066 out-of-band data: clients render it as a link/preview.
        extra: [xml("x", { xmlns: "jabber:x:oob" }, xml("url", {}, content.url))],
      };
    case "geo": {
      // RFC 5870 geo URI, as Conversations and Monal send locations.
      const uri = `geo:${content.latitude},${content.longitude}${
        content.accuracyMeters !== undefined ? `;u=${content.accuracyMeters}` : ""
      }`;
      return { body: uri, extra: [] };
    }
    case "contact":
      // With a vCard: the card travels as a .vcf file (upload), the name as its OOB description.
      if (content.vcard) return { upload: true };
      return {
        body: content.jid ? `${content.displayName} xmpp:${content.jid}` : content.displayName,
        extra: [],
      };
    default:
      return { upload: true };
  }
}

/** The file an outbox item uploads: the shared copy, or the contact's vCard written next to it. */
function uploadFileOf(
  item: ShareOutboxItem,
  attachmentDir: string,
): { localPath: string; fileName: string; mimeType: string } {
  const c = item.content;
  if (c.kind === "image" || c.kind === "file" || c.kind === "audiovisual")
    return { localPath: c.file.path, fileName: c.file.fileName, mimeType: c.file.mimeType };
  if (c.kind !== "contact" || !c.vcard) throw new Error(`a ${c.kind} share has no file`);
  const fileName = `${c.displayName.replace(/[^\p{L}\p{N} ._-]/gu, "_").slice(0, 100) || "contact"}.vcf`;
  const localPath = join(item.id, fileName);
  mkdirSync(join(attachmentDir, item.id), { recursive: true });
  writeFileSync(join(attachmentDir, localPath), c.vcard);
  return { localPath, fileName, mimeType: "text/vcard" };
}

export interface SendOutboxOptions {
  /** Uploads files (XEP-0363); without it file items wait in the outbox. */
  media?: MediaTransfers;
  /** The shared container's attachment directory. */
  attachmentDir?: string;
  /**
   * Also send this chat's files as XEP-0454 aesgcm:// (encrypted) URLs. An end-to-end encrypted
   * chat (`chats.omemo`) always gets them, whatever this says.
   */
  encrypt?: (to: string) => boolean;
  /**
   * An item to an encrypted chat was encrypted and queued (`sent`), or failed for good: the items
   * behind it can go now (AppController sends the outbox again). Not called when the encryption
   * failed for a passing reason (offline, a timeout): the item waits for the next send.
   */
  onEncrypted?: (outcome: { id: string; sent: boolean; error?: Error }) => void;
}

/** Outbox items this process is encrypting (per session): a second send must not start them again. */
const encrypting = new WeakMap<DurableSession, Set<string>>();

function outboxState(tx: StoreTx, id: string): string | undefined {
  return tx
    .select({ state: tables.shareOutbox.state })
    .from(tables.shareOutbox)
    .where(eq(tables.shareOutbox.id, id))
    .get()?.state;
}

/**
 * An item to an end-to-end encrypted chat: the session's encryption plugin encrypts it (async:
 * device lists and bundles come from the network) and, in one transaction, stores and queues the
 * message, writes its own state (ratchets) and marks the row sent. Nothing goes out in the clear.
 */
async function sendEncryptedItem(
  store: Store,
  session: DurableSession,
  entry: ShareOutboxEntry,
  body: string,
  onEncrypted: SendOutboxOptions["onEncrypted"],
): Promise<void> {
  const id = entry.item.id;
  try {
    const sent = await session.sendEncrypted({
      to: entry.item.to,
      body,
      originId: id,
      commit: (ctx) => {
        // Deleted, failed or sent by another run meanwhile: leave it.
        if (outboxState(ctx.tx, id) !== "pending") return false;
        setShareOutboxState(ctx.tx, id, "sent");
        return true;
      },
    });
    onEncrypted?.({ id, sent });
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    const final =
      error instanceof EncryptionFailedError || error instanceof EncryptionRequiredError;
    const reason = final
      ? `${(error as EncryptionFailedError | EncryptionRequiredError).code}: ${error.message}`
      : `waiting to encrypt (tried again when next online): ${error.message}`;
    store.write((tx) => {
      if (outboxState(tx, id) === "pending")
        setShareOutboxState(tx, id, final ? "failed" : "pending", reason);
    });
    if (final) onEncrypted?.({ id, sent: false, error });
  } finally {
    encrypting.get(session)?.delete(id);
  }
}

/**
 * Main app: send the outbox in order. A text-like item is sent in one transaction that stores the
 * outgoing message, queues the stanza and marks the row sent; the item id is the origin-id, so a
 * crash between commit and socket write resends it exactly once (stream management). An item to
 * an end-to-end encrypted chat is encrypted by the session's plugin first (asynchronously: later
 * items wait until `onEncrypted`); without such a plugin it fails with `encryption-required`. A
 * file item is accepted as an upload (its row `sending`; XEP-0454 encrypted for an encrypted chat)
 * and later items wait behind it until it is sent or failed; a missing or empty file fails the
 * row with its error, kept for the user.
 */
export function sendShareOutbox(
  store: Store,
  session: DurableSession,
  opts: SendOutboxOptions = {},
): ShareOutboxEntry[] {
  const pending = store.write((tx) => listShareOutbox(tx, ["pending", "sending"]));
  const sent: ShareOutboxEntry[] = [];
  let uploadWaiting = false;
  for (const entry of pending) {
    if (entry.item.accountId !== session.accountId) continue;
    const e2e =
      entry.state === "pending" &&
      store.read((tx) => isChatEncrypted(tx, session.accountId, entry.item.to));
    // No plugin can encrypt (e.g. the app runs without OMEMO): an encrypted chat's item fails,
    // kept with the reason, before anything is uploaded or sent in the clear.
    if (e2e && !session.canEncrypt) {
      const refused = new EncryptionRequiredError(bare(entry.item.to));
      store.write((tx) =>
        setShareOutboxState(tx, entry.item.id, "failed", `${refused.code}: ${refused.message}`),
      );
      continue;
    }
    const msg = outboxMessage(entry.item.content);
    if ("upload" in msg) {
      const { media, attachmentDir } = opts;
      if (!media || !attachmentDir) {
        const why = "waiting for a media uploader (XEP-0363): none is configured";
        if (entry.error !== why)
          store.write((tx) => setShareOutboxState(tx, entry.item.id, "pending", why));
        uploadWaiting = true;
        break;
      }
      const waiting = session.write((ctx) => {
        if (getAttachment(ctx.tx, entry.item.id)) return true;
        const file = uploadFileOf(entry.item, attachmentDir);
        const path = join(attachmentDir, file.localPath);
        const problem = !existsSync(path)
          ? new MediaError("missing-file", `the shared file is missing: ${file.localPath}`)
          : statSync(path).size === 0
            ? new MediaError("empty-file", `the shared file is empty (0 bytes): ${file.localPath}`)
            : null;
        if (problem) {
          setShareOutboxState(
            ctx.tx,
            entry.item.id,
            "failed",
            `${problem.code}: ${problem.message}`,
          );
          ctx.afterCommit(() =>
            session.emit("attachment-changed", {
              id: entry.item.id,
              state: "failed",
              error: problem,
            }),
          );
          return false;
        }
        acceptUpload(ctx.tx, session.accountId, {
          id: entry.item.id,
          ...file,
          size: statSync(path).size,
          // XEP-0454: the key stays in this row (never logged) until the message carrying it is
          // queued encrypted; the upload service only ever gets ciphertext.
          ...(e2e || opts.encrypt?.(entry.item.to) ? { aesgcmKey: newAesgcmFragment() } : {}),
        });
        setShareOutboxState(ctx.tx, entry.item.id, "sending");
        return true;
      });
      if (waiting) {
        uploadWaiting = true;
        break; // later items wait: the outbox goes out in order
      }
      continue;
    }
    if (e2e) {
      let running = encrypting.get(session);
      if (!running) encrypting.set(session, (running = new Set()));
      if (!running.has(entry.item.id)) {
        running.add(entry.item.id);
        // The body only: an OOB element would carry a shared URL in the clear.
        // A write refused there (session closed) leaves the row pending for the next send.
        sendEncryptedItem(store, session, entry, msg.body, opts.onEncrypted).catch(() => {});
      }
      break; // later items wait for it: the outbox goes out in order
    }
    session.write((ctx) => {
      session.queueMessage(ctx, {
        to: entry.item.to,
        body: msg.body,
        originId: entry.item.id,
        extra: msg.extra,
      });
      setShareOutboxState(ctx.tx, entry.item.id, "sent");
      sent.push(entry);
    });
  }
  if (uploadWaiting) opts.media?.resume();
  return sent;
}
