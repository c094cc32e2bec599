// A received file (XEP-0066 OOB, or an aesgcm:// body as XEP-0454 senders send it) is recorded
// with the message, in its transaction: URL and what the sender told; the bytes are fetched only
// when the user asks (downloadAttachment).
import { randomUUID } from "node:crypto";
import { tables } from "@lichen/store";
import type { Element } from "@xmpp/xml";
import type { ProtocolContext } from "../context.js";
import { NS_OOB } from "./upload.js";

/** Call when the message row was inserted (`messageRowId`: what insertMessageRow returned). */
export function recordReceivedFile(
  ctx: ProtocolContext,
  m: Element,
  body: string,
  messageRowId: number,
): void {
  const oob = m.getChild("x", NS_OOB);
  const oobUrl = oob?.getChildText("url")?.trim();
  const trimmed = body.trim();
  const url = oobUrl || (/^aesgcm:\/\/\S+#[0-9a-fA-F]+$/.test(trimmed) ? trimmed : null);
  if (!url || url.length > 4096) return;
  const sizeText = oob?.getChildText("size"); // not in XEP-0066, but some senders add it
  ctx.tx
    .insert(tables.attachments)
    .values({
      id: randomUUID(),
      accountId: ctx.accountId,
      direction: "in",
      messageRowId,
      fileName: oob?.getChildText("desc")?.slice(0, 200) ?? null,
      size: sizeText && /^\d+$/.test(sizeText) ? Number(sizeText) : null,
      state: "remote",
      url,
      createdAt: ctx.tx.now,
      updatedAt: ctx.tx.now,
    })
    .run();
}
