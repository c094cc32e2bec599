// `send --file` (the main app: share into the outbox, upload, send) and `download` (a received
// file, on demand), both with progress lines on stderr.
import { basename, resolve } from "node:path";
import { existsSync, statSync } from "node:fs";
import { AppController, downloadAttachment, MediaError, shareToOutbox } from "@lichen/engine";
import { tables } from "@lichen/store";
import { and, eq } from "drizzle-orm";
import { type CliContext, foregroundOrExplain, openAccount } from "../context.js";
import { CliError, UsageError } from "../errors.js";
import { TransferProgressLines } from "../progress.js";
import { parseBareJid } from "../settings.js";
import { shareInput } from "./share.js";

export interface SendFileOptions {
  file: string;
  mime?: string;
  caption?: string;
  /** XEP-0454: send an aesgcm:// URL (the service stores ciphertext only). */
  aesgcm?: boolean;
  timeoutMs: number;
}

/**
 * The main app sending a file: the file is accepted into the outbox (and copied to
 * `<db>.attachments`) first, so a failure later loses nothing; then foreground, upload with
 * progress, send the URL (body + OOB) once. Prints the message's origin-id.
 */
export async function sendFile(ctx: CliContext, to: string, opts: SendFileOptions): Promise<void> {
  const { local, domain } = parseBareJid(to);
  const path = resolve(opts.file);
  if (!existsSync(path) || !statSync(path).isFile())
    throw new CliError(`--file ${opts.file}: no such file`);
  const content = shareInput({
    file: opts.file,
    mime: opts.mime ?? "application/octet-stream",
    ...(opts.caption !== undefined ? { caption: opts.caption } : {}),
  });
  const { settings, store, config } = openAccount(ctx, "main");
  const peer = `${local}@${domain}`;
  const attachmentDir = `${ctx.db}.attachments`;
  const app = new AppController(store, config, {
    media: { attachmentDir, ...(opts.aesgcm ? { encrypt: (jid) => jid === peer } : {}) },
  });
  try {
    const item = shareToOutbox({
      store,
      accountId: settings.accountId,
      to: peer,
      content,
      attachmentDir,
    });
    const lines = new TransferProgressLines((l) => ctx.status(l), `upload ${basename(path)}`);
    const outcome = new Promise<string>((done, fail) => {
      app.on("session", (session) => {
        app.media!.on("progress", (p) => {
          if (p.id === item.id) lines.update(p.done, p.total);
        });
        app.media!.on("uploaded", (u) => {
          if (u.id === item.id) done(u.url);
        });
        session.on("attachment-changed", (c) => {
          if (c.id === item.id && c.state === "failed")
            fail(new CliError(`upload failed: ${c.error?.message ?? "unknown error"}`));
        });
      });
    });
    const how = await foregroundOrExplain(app, settings, { allowOffline: true });
    if (how === "offline") {
      ctx.status(
        `offline (${settings.service} unreachable): the file is in the outbox; it is uploaded and sent the next time lichen-chat gets online`,
      );
      ctx.out(item.id);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const url = await Promise.race([
      outcome,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new CliError(
                `the upload did not finish within ${opts.timeoutMs} ms; it stays in the outbox and goes on the next time lichen-chat gets online`,
              ),
            ),
          opts.timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    await app.session!.idle();
    ctx.status(`sent ${url}`);
    ctx.out(item.id);
  } finally {
    await app.close();
    store.close();
  }
}

export interface DownloadCliOptions {
  maxBytes: number;
  /** Comma-separated content types ("image/*,application/pdf"); empty: any. */
  accept?: string;
}

/**
 * Download the file of a received message (its id as `tail --json` prints it) into
 * `<db>.attachments/in/`; prints the local path. No XMPP connection: only HTTP.
 */
export async function download(
  ctx: CliContext,
  messageId: string,
  opts: DownloadCliOptions,
): Promise<void> {
  if (!/^\d+$/.test(messageId))
    throw new UsageError(
      `<message-id> must be a message row id (tail --json "id"), got ${messageId}`,
    );
  const { settings, store } = openAccount(ctx, "main");
  try {
    const row = store.read((tx) =>
      tx
        .select({ id: tables.attachments.id })
        .from(tables.attachments)
        .where(
          and(
            eq(tables.attachments.messageRowId, Number(messageId)),
            eq(tables.attachments.accountId, settings.accountId),
          ),
        )
        .get(),
    );
    if (!row) throw new CliError(`message ${messageId} has no received file`);
    const lines = new TransferProgressLines((l) => ctx.status(l), `download #${messageId}`);
    try {
      const got = await downloadAttachment({
        store,
        attachment: { id: row.id },
        attachmentDir: `${ctx.db}.attachments`,
        maxBytes: opts.maxBytes,
        acceptTypes: (opts.accept ?? "")
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean),
        onProgress: (p) => lines.update(p.done, p.total),
      });
      ctx.out(got.path);
    } catch (err) {
      if (err instanceof MediaError)
        throw new CliError(`download refused or failed: ${err.message}`);
      throw err;
    }
  } finally {
    store.close();
  }
}
