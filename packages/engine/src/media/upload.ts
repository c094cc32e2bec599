// XEP-0363 upload as durable state: each step is one transaction on the `attachments` row, and
// every IQ answer runs a stored handler, so whichever process receives it (main app or NSE)
// moves the upload on. pending → (disco) → requesting → slot → uploading → sent | failed.
// The PUT itself runs in the main app (MediaTransfers); this module is the stanza side.
import type { ShareOutboxItem } from "@lichen/schema";
import {
  listIqHandlers,
  listShareOutbox,
  setShareOutboxState,
  tables,
  type StoreTx,
} from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import parseXml from "@xmpp/xml/lib/parse.js";
import { and, eq } from "drizzle-orm";
import type { ProtocolContext } from "../context.js";
import type { HandlerRegistry } from "../handlers.js";
import { bare } from "../jid.js";
import { MediaError } from "./errors.js";
import { checkHttpUrl } from "./http.js";

export const NS_UPLOAD = "urn:xmpp:http:upload:0";
export const NS_OOB = "jabber:x:oob";
const NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items";
const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";
/** XEP-0363 §5: the only headers a client may copy from the slot to its PUT. */
const ALLOWED_PUT_HEADERS = new Set(["authorization", "cookie", "expires"]);
/**
 * How long we reuse a slot after an interrupted PUT. XEP-0363 gives slots no stated lifetime;
 * Prosody's upload tokens last 300 s, so stay inside that and ask a new one afterwards.
 */
export const SLOT_REUSE_MS = 240_000;

export type AttachmentRow = typeof tables.attachments.$inferSelect;
type AttachmentPatch = Partial<Omit<AttachmentRow, "id" | "accountId" | "createdAt">>;

export function getAttachment(tx: StoreTx, id: string): AttachmentRow | undefined {
  return tx.select().from(tables.attachments).where(eq(tables.attachments.id, id)).get();
}

export function updateAttachment(tx: StoreTx, id: string, patch: AttachmentPatch): void {
  tx.update(tables.attachments)
    .set({ ...patch, updatedAt: tx.now })
    .where(eq(tables.attachments.id, id))
    .run();
}

/** An outgoing file accepted into the DB (id = the share outbox item id); false if already there. */
export function acceptUpload(
  tx: StoreTx,
  accountId: string,
  u: {
    id: string;
    localPath: string;
    fileName: string;
    mimeType: string;
    size: number;
    aesgcmKey?: string;
  },
): boolean {
  return (
    tx
      .insert(tables.attachments)
      .values({
        id: u.id,
        accountId,
        direction: "out",
        localPath: u.localPath,
        fileName: u.fileName,
        mimeType: u.mimeType,
        size: u.size,
        aesgcmKey: u.aesgcmKey ?? null,
        state: "pending",
        createdAt: tx.now,
        updatedAt: tx.now,
      })
      .onConflictDoNothing()
      .run().changes === 1
  );
}

/** The upload failed for good: the attachment and its outbox row keep the error for the user. */
export function failUpload(ctx: ProtocolContext, id: string, err: MediaError): void {
  updateAttachment(ctx.tx, id, { state: "failed", error: `${err.code}: ${err.message}` });
  setShareOutboxState(ctx.tx, id, "failed", `${err.code}: ${err.message}`);
  ctx.afterCommit(() =>
    ctx.session.emit("attachment-changed", { id, state: "failed", error: err }),
  );
}

function uploadsIn(tx: StoreTx, accountId: string, state: AttachmentRow["state"]): AttachmentRow[] {
  return tx
    .select()
    .from(tables.attachments)
    .where(
      and(
        eq(tables.attachments.accountId, accountId),
        eq(tables.attachments.direction, "out"),
        eq(tables.attachments.state, state),
      ),
    )
    .all();
}

function ownDomain(ctx: ProtocolContext): string {
  const own = bare(ctx.state.sm.boundJid ?? "");
  return own.split("@")[1] ?? own;
}

function discoveryInFlight(ctx: ProtocolContext): boolean {
  return listIqHandlers(ctx.tx, ctx.accountId).some(
    (h) => h.handler.name === "lichen.upload.items" || h.handler.name === "lichen.upload.info",
  );
}

/**
 * For every pending upload: discover the service (once; the answer is cached in
 * `upload_services`) or request its slot. Runs in the caller's transaction.
 */
export function requestUploadSlots(ctx: ProtocolContext): void {
  const pending = uploadsIn(ctx.tx, ctx.accountId, "pending");
  if (pending.length === 0) return;
  const service = ctx.tx
    .select()
    .from(tables.uploadServices)
    .where(eq(tables.uploadServices.accountId, ctx.accountId))
    .get();
  if (!service?.jid) {
    if (discoveryInFlight(ctx)) return;
    const domain = ownDomain(ctx);
    ctx.sendIq(
      xml("iq", { type: "get", to: domain }, xml("query", { xmlns: NS_DISCO_ITEMS })),
      ctx.session.registry.descriptor("lichen.upload.items", {}),
      { timeoutTicks: 30 },
    );
    return;
  }
  for (const a of pending) {
    if (service.maxSize !== null && (a.size ?? 0) > service.maxSize) {
      failUpload(
        ctx,
        a.id,
        new MediaError(
          "file-too-large",
          `${a.size} bytes is more than the upload service takes (${service.maxSize})`,
        ),
      );
      continue;
    }
    ctx.sendIq(
      xml(
        "iq",
        { type: "get", to: service.jid },
        xml("request", {
          xmlns: NS_UPLOAD,
          filename: a.fileName ?? "file",
          // XEP-0454: the service stores the ciphertext, 16 bytes of GCM tag longer.
          size: String((a.size ?? 0) + (a.aesgcmKey ? 16 : 0)),
          "content-type": a.aesgcmKey
            ? "application/octet-stream"
            : (a.mimeType ?? "application/octet-stream"),
        }),
      ),
      ctx.session.registry.descriptor(
        "lichen.upload.slot",
        { attachmentId: a.id },
        "lichen.upload.invalidated",
      ),
      { timeoutTicks: 60 },
    );
    updateAttachment(ctx.tx, a.id, { state: "requesting", error: null });
  }
}

export interface Slot {
  putUrl: string;
  getUrl: string;
  headers: Record<string, string>;
}

/** Reads a slot answer; anything we would not PUT to (non-HTTP, other host than the GET) throws. */
export function parseSlot(iq: Element | null): Slot {
  const slot = iq?.getChild("slot", NS_UPLOAD);
  const putUrl = slot?.getChild("put")?.attrs.url as string | undefined;
  const getUrl = slot?.getChild("get")?.attrs.url as string | undefined;
  if (!slot || !putUrl || !getUrl)
    throw new MediaError("bad-slot", "the slot answer has no <put url> or <get url>");
  const put = checkHttpUrl(putUrl, "slot PUT URL");
  const get = checkHttpUrl(getUrl, "slot GET URL");
  // Where we upload must be where the receivers download from: a slot that sends the file to
  // another host than the one named in the message would leak it to a third party.
  if (put.host !== get.host)
    throw new MediaError(
      "bad-slot",
      `slot PUT host ${put.host} differs from its GET host ${get.host}`,
    );
  const headers: Record<string, string> = {};
  for (const h of slot.getChild("put")?.getChildren("header") ?? []) {
    const name = String(h.attrs.name ?? "").toLowerCase();
    // Newlines would let a hostile service inject headers of its own.
    if (ALLOWED_PUT_HEADERS.has(name)) headers[name] = h.getText().replace(/[\r\n]/g, "");
  }
  return { putUrl, getUrl, headers };
}

function errorText(stanza: unknown): string {
  const iq = typeof stanza === "string" ? parseXml(stanza) : null;
  const text = iq?.getChild("error")?.getChildText("text", "urn:ietf:params:xml:ns:xmpp-stanzas");
  return text ? ` (${text.slice(0, 300)})` : "";
}

export function registerUploadHandlers(registry: HandlerRegistry): void {
  if (registry.has("lichen.upload.items")) return;
  registry.define("lichen.upload.items", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const iq =
      args.type === "result" && typeof args.stanza === "string" ? parseXml(args.stanza) : null;
    const jids = (iq?.getChild("query", NS_DISCO_ITEMS)?.getChildren("item") ?? [])
      .map((i) => i.attrs.jid as string | undefined)
      .filter((j): j is string => !!j && !j.includes("@"));
    // The server itself may be the service (some put it on the domain): ask it too.
    for (const jid of [ownDomain(ctx), ...jids]) {
      ctx.sendIq(
        xml("iq", { type: "get", to: jid }, xml("query", { xmlns: NS_DISCO_INFO })),
        ctx.session.registry.descriptor("lichen.upload.info", { jid }),
        { timeoutTicks: 30 },
      );
    }
  });
  registry.define("lichen.upload.info", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const iq =
      args.type === "result" && typeof args.stanza === "string" ? parseXml(args.stanza) : null;
    const query = iq?.getChild("query", NS_DISCO_INFO);
    const known = ctx.tx
      .select()
      .from(tables.uploadServices)
      .where(eq(tables.uploadServices.accountId, ctx.accountId))
      .get();
    if (!known?.jid && query?.getChildren("feature").some((f) => f.attrs.var === NS_UPLOAD)) {
      const maxSize = query
        .getChildren("x", "jabber:x:data")
        .flatMap((x) => x.getChildren("field"))
        .find((f) => f.attrs.var === "max-file-size")
        ?.getChildText("value");
      const row = {
        accountId: ctx.accountId,
        jid: String(args.jid),
        maxSize: maxSize && /^\d+$/.test(maxSize) ? Number(maxSize) : null,
        discoveredAt: ctx.tx.now,
      };
      ctx.tx
        .insert(tables.uploadServices)
        .values(row)
        .onConflictDoUpdate({ target: tables.uploadServices.accountId, set: row })
        .run();
      requestUploadSlots(ctx);
      return;
    }
    if (known?.jid || discoveryInFlight(ctx)) return;
    // Every candidate answered and none uploads: fail what waits (a retry discovers again).
    for (const a of uploadsIn(ctx.tx, ctx.accountId, "pending"))
      failUpload(
        ctx,
        a.id,
        new MediaError("no-upload-service", "the server offers no HTTP upload (XEP-0363)"),
      );
  });
  registry.define("lichen.upload.slot", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const id = String(args.attachmentId);
    const a = getAttachment(ctx.tx, id);
    if (a?.state !== "requesting") return; // a late answer: the upload moved on
    if (args.type !== "result") {
      failUpload(
        ctx,
        id,
        new MediaError(
          "slot-refused",
          `the upload service refused the slot: ${String(args.condition ?? "error")}${errorText(args.stanza)}`,
        ),
      );
      return;
    }
    let slot: Slot;
    try {
      slot = parseSlot(typeof args.stanza === "string" ? parseXml(args.stanza) : null);
    } catch (err) {
      if (!(err instanceof MediaError)) throw err;
      failUpload(ctx, id, err);
      return;
    }
    updateAttachment(ctx.tx, id, {
      state: "slot",
      putUrl: slot.putUrl,
      putHeaders: JSON.stringify(slot.headers),
      url: slot.getUrl,
      slotExpiresAt: ctx.tx.now + SLOT_REUSE_MS,
    });
    ctx.afterCommit(() => ctx.session.emit("attachment-changed", { id, state: "slot" }));
  });
  // The stream carrying the slot request is gone: ask again on the next one.
  registry.define("lichen.upload.invalidated", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const id = String(args.attachmentId);
    if (getAttachment(ctx.tx, id)?.state === "requesting")
      updateAttachment(ctx.tx, id, { state: "pending" });
  });
}

/** The share outbox item an upload belongs to (null: deleted by the user meanwhile). */
export function outboxItemOf(tx: StoreTx, id: string): ShareOutboxItem | null {
  return listShareOutbox(tx, ["pending", "sending"]).find((e) => e.item.id === id)?.item ?? null;
}

/** XEP-0066 out-of-band data for a sent file. */
export function oobElement(url: string, desc?: string): Element {
  return xml("x", { xmlns: NS_OOB }, xml("url", {}, url), ...(desc ? [xml("desc", {}, desc)] : []));
}
