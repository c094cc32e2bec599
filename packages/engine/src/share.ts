// The share extension's side (never touches the network) and the main app's outbox sender.
import { randomUUID } from "node:crypto";
import { copyFileSync, mkdirSync, rmSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import type { FileReference, ShareContent, ShareOutboxItem } from "@lichen/schema";
import {
  addShareOutboxItem,
  Ipc,
  listShareOutbox,
  setShareOutboxState,
  type ShareOutboxEntry,
  type Store,
} from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import type { DurableSession } from "./session.js";

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

/** The message body (and extra payload) an outbox item is sent as; null: cannot be sent yet. */
export function outboxMessage(
  content: ShareContent,
): { body: string; extra: Element[] } | { pending: string } {
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
      return {
        body: content.jid ? `${content.displayName} xmpp:${content.jid}` : content.displayName,
        extra: [],
      };
    default:
      // Files need an HTTP upload (XEP-0363) first; the row stays pending, nothing is lost.
      return { pending: "waiting for file upload support (XEP-0363)" };
  }
}

/**
 * Main app: send every pending outbox item. Each item is sent in one transaction that stores the
 * outgoing message, queues the stanza and marks the row sent; the item id is the origin-id, so a
 * crash between commit and socket write resends it exactly once (stream management).
 */
export function sendShareOutbox(store: Store, session: DurableSession): ShareOutboxEntry[] {
  const pending = store.write((tx) => listShareOutbox(tx, ["pending", "sending"]));
  const sent: ShareOutboxEntry[] = [];
  for (const entry of pending) {
    if (entry.item.accountId !== session.accountId) continue;
    const msg = outboxMessage(entry.item.content);
    session.write((ctx) => {
      if ("pending" in msg) {
        if (entry.error !== msg.pending)
          setShareOutboxState(ctx.tx, entry.item.id, "pending", msg.pending);
        return;
      }
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
  return sent;
}
