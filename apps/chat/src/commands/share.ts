import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, resolve } from "node:path";
import { shareToOutbox, type ShareInput } from "@lichen/engine";
import { type CliContext, openAccount } from "../context.js";
import { CliError, UsageError } from "../errors.js";
import { parseBareJid } from "../settings.js";

export interface ShareOptions {
  text?: string;
  url?: string;
  title?: string;
  geo?: string;
  file?: string;
  mime?: string;
  caption?: string;
  contact?: string;
  contactJid?: string;
  vcard?: string;
}

/** Turns the options into exactly one share content; every mistake is a clear CliError. */
export function shareInput(opts: ShareOptions): ShareInput {
  const given = (["text", "url", "geo", "file", "contact"] as const).filter(
    (k) => opts[k] !== undefined,
  );
  if (given.length !== 1)
    throw new UsageError(
      `give exactly one of --text, --url, --geo, --file, --contact (got ${given.length ? given.map((k) => `--${k}`).join(", ") : "none"})`,
    );
  if ((opts.contactJid !== undefined || opts.vcard !== undefined) && opts.contact === undefined)
    throw new UsageError("--contact-jid and --vcard only go with --contact");
  if (opts.contact !== undefined) {
    if (opts.contact.trim() === "") throw new CliError("--contact must not be empty");
    let vcard: string | undefined;
    if (opts.vcard !== undefined) {
      const path = resolve(opts.vcard);
      if (!existsSync(path) || !statSync(path).isFile())
        throw new CliError(`--vcard ${opts.vcard}: no such file`);
      vcard = readFileSync(path, "utf8");
      if (!/^BEGIN:VCARD/i.test(vcard.trimStart()))
        throw new CliError(`--vcard ${opts.vcard}: not a vCard (no BEGIN:VCARD)`);
    }
    return {
      kind: "contact",
      displayName: opts.contact,
      ...(opts.contactJid ? { jid: opts.contactJid } : {}),
      ...(vcard ? { vcard } : {}),
    };
  }
  if (opts.mime !== undefined && opts.file === undefined)
    throw new UsageError("--mime only goes with --file");
  if (opts.title !== undefined && opts.url === undefined)
    throw new UsageError("--title only goes with --url");
  if (opts.text !== undefined) {
    if (opts.text === "") throw new CliError("--text must not be empty");
    return { kind: "text", text: opts.text };
  }
  if (opts.url !== undefined) {
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new CliError(`--url "${opts.url}" is not an absolute URL`);
    }
    return { kind: "url", url: url.href, ...(opts.title ? { title: opts.title } : {}) };
  }
  if (opts.geo !== undefined) {
    const m = /^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$/.exec(opts.geo);
    const latitude = m ? Number(m[1]) : NaN;
    const longitude = m ? Number(m[2]) : NaN;
    if (!m || Math.abs(latitude) > 90 || Math.abs(longitude) > 180)
      throw new CliError(
        `--geo "${opts.geo}" must be LAT,LON in degrees (e.g. 48.85,2.35; |LAT| ≤ 90, |LON| ≤ 180)`,
      );
    return { kind: "geo", latitude, longitude };
  }
  const path = resolve(opts.file!);
  if (!existsSync(path) || !statSync(path).isFile())
    throw new CliError(`--file ${opts.file}: no such file`);
  if (!opts.mime || !/^[\w.+-]+\/[\w.+-]+$/.test(opts.mime))
    throw new UsageError("--file needs --mime TYPE (e.g. --mime image/jpeg)");
  const file = { sourcePath: path, mimeType: opts.mime, fileName: basename(path) };
  if (opts.mime.startsWith("image/"))
    return { kind: "image", file, ...(opts.caption ? { caption: opts.caption } : {}) };
  if (opts.mime.startsWith("audio/") || opts.mime.startsWith("video/"))
    return { kind: "audiovisual", file };
  return { kind: "file", file };
}

/**
 * Share extension: write one outbox item (files copied to `<db>.attachments`) and wake the main
 * app. Never connects; a running `lichen-chat app` sends it at once, otherwise the next foreground.
 */
export function share(ctx: CliContext, to: string, opts: ShareOptions): void {
  const { local, domain } = parseBareJid(to);
  const content = shareInput(opts);
  const { settings, store } = openAccount(ctx, "share");
  try {
    const item = shareToOutbox({
      store,
      accountId: settings.accountId,
      to: `${local}@${domain}`,
      content,
      attachmentDir: `${ctx.db}.attachments`,
    });
    ctx.out(JSON.stringify(item, null, 2));
  } finally {
    store.close();
  }
}
