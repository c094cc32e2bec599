// Sharing into an OMEMO chat (issue 13): the share extension writes only the outbox row; the main
// app encrypts it like sendMessage — a text or a link as an OMEMO message, a file as XEP-0454
// (AES-256-GCM ciphertext uploaded through XEP-0363, its aesgcm:// link in an OMEMO message) — and
// the servers never see the plaintext: not on the wire, not in the archive, not in the upload.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  downloadAttachment,
  MediaTransfers,
  sendShareOutbox,
  shareToOutbox,
  xml,
  type Element,
  type ShareInput,
} from "@lichen/engine";
import { openStore, tables } from "@lichen/store";
import { startEjabberd, startProsody, startTestPeer } from "@lichen/test-servers";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { FALLBACK_BODY, NS_OMEMO } from "../src/index.js";
import { online, openDevice, spawnFixture, until, useServer, type Device } from "./helpers.js";

const T = 120_000;
const NS_MAM = "urn:xmpp:mam:2";
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const uploadProc = join(import.meta.dirname, "fixtures", "share-upload-proc.mjs");

/** Every regular file under `dir` (the server's data directory). */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : e.isFile() ? [join(dir, e.name)] : [],
  );
}

describe.each([
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("sharing into an OMEMO chat on %s", (_name, start) => {
  const env = useServer(start, ["alice", "bob", "carol", "dave"]);
  const attachmentDir = mkdtempSync(join(tmpdir(), "lichen-omemo-share-"));
  let alice: Device;
  let bob: Device;
  let media: MediaTransfers;
  /** Bob's live stanzas that carry OMEMO (what his server delivered). */
  const wire: string[] = [];

  /** The share extension: its own store handle (role share), no network, no crypto. */
  function share(to: string, content: ShareInput) {
    const s = openStore({ path: alice.db, role: "share" });
    try {
      return shareToOutbox({ store: s, accountId: "alice", to, content, attachmentDir });
    } finally {
      s.close();
    }
  }
  /** The main app sending its outbox; again whenever an item went out (the AppController does). */
  const sendOutbox = (): void => {
    sendShareOutbox(alice.store, alice.session, {
      media,
      attachmentDir,
      onEncrypted: () => sendOutbox(),
    });
  };
  const outboxRow = (id: string) =>
    alice.store.read((tx) =>
      tx.select().from(tables.shareOutbox).where(eq(tables.shareOutbox.id, id)).get(),
    );
  const settled = (id: string) =>
    until(() => {
      const r = outboxRow(id);
      return r?.state === "sent" || r?.state === "failed" ? r : null;
    }, `outbox item ${id} settles`);
  /** Bob's stored message with this origin-id (the outbox item id). */
  const bobMessage = (originId: string) =>
    bob.store.read((tx) =>
      tx.select().from(tables.messages).where(eq(tables.messages.originId, originId)).get(),
    );

  /** What bob's server archived of alice's messages (MAM, read by a plain client as bob). */
  async function archived(): Promise<Element[]> {
    const peer = await startTestPeer(env.server.c2sPort, "bob", "bobpw", { resource: "archive" });
    try {
      const queryid = `q-${randomBytes(4).toString("hex")}`;
      await peer.xmpp.iqCaller.request(
        xml(
          "iq",
          { type: "set" },
          xml(
            "query",
            { xmlns: NS_MAM, queryid },
            xml(
              "x",
              { xmlns: "jabber:x:data", type: "submit" },
              xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, NS_MAM)),
              xml("field", { var: "with" }, xml("value", {}, alice.jid)),
            ),
          ),
        ),
      );
      return (
        peer.received
          .map((m) => m.stanza as Element)
          .filter((m) => m.getChild("result", NS_MAM)?.attrs.queryid === queryid)
          .map((m) => m.getChild("result", NS_MAM)!.getChild("forwarded")!.getChild("message")!)
          // Alice's messages (bob's receipts to her are archived too).
          .filter((m) => String(m.attrs.from).split("/")[0] === alice.jid)
      );
    } finally {
      await peer.stop();
    }
  }

  it(
    "a shared text and link go out OMEMO-encrypted and bob reads them; no devices → a stored failure",
    async () => {
      alice = openDevice(env.server, "alice", "phone");
      bob = openDevice(env.server, "bob", "laptop");
      env.devices.push(alice, bob);
      await online(alice);
      await online(bob);
      media = new MediaTransfers(alice.session, { attachmentDir });
      bob.session.on("stanza", (el) => {
        if (el.is("message") && el.getChild("encrypted", NS_OMEMO)) wire.push(el.toString());
      });
      alice.omemo.setChatEncrypted(bob.jid, true);
      alice.omemo.setChatEncrypted("carol@localhost", true); // carol never published a device

      const text = share(bob.jid, { kind: "text", text: "shared secret text" });
      const link = share(bob.jid, {
        kind: "url",
        url: "https://example.org/private/page",
        title: "a private page",
      });
      const toCarol = share("carol@localhost", { kind: "text", text: "carol cannot read this" });
      const after = share(bob.jid, { kind: "text", text: "after the failure" });
      sendOutbox();

      expect(await settled(text.id)).toMatchObject({ state: "sent", error: null });
      expect(await settled(link.id)).toMatchObject({ state: "sent", error: null });
      // The recipient has no device: the item fails with the reason, kept for the app; nothing
      // is stored or queued for it, and the items behind it still go.
      const failed = await settled(toCarol.id);
      expect(failed.state).toBe("failed");
      expect(failed.error).toMatch(/^no-devices: .*carol@localhost/);
      expect(await settled(after.id)).toMatchObject({ state: "sent" });
      expect(
        alice.store.read((tx) =>
          tx.select().from(tables.messages).where(eq(tables.messages.originId, toCarol.id)).get(),
        ),
      ).toBeUndefined();

      // Bob decrypted them, in order; alice stored them as encrypted outgoing messages.
      await until(() => bob.messages(alice.jid).length === 3, "bob has the three shares");
      expect(bob.messages(alice.jid)).toEqual([
        { body: "shared secret text", encrypted: 1, direction: "in" },
        { body: "a private page\nhttps://example.org/private/page", encrypted: 1, direction: "in" },
        { body: "after the failure", encrypted: 1, direction: "in" },
      ]);
      expect(bobMessage(text.id)?.body).toBe("shared secret text"); // the item id is the origin-id
      expect(alice.messages(bob.jid).map((m) => [m.body, m.encrypted])).toEqual([
        ["shared secret text", 1],
        ["a private page\nhttps://example.org/private/page", 1],
        ["after the failure", 1],
      ]);

      // What the server delivered and archived: the OMEMO fallback body and ciphertext only.
      expect(wire).toHaveLength(3);
      for (const stanza of wire) {
        expect(stanza).toContain(FALLBACK_BODY);
        expect(stanza).not.toMatch(/shared secret|example\.org|after the failure/);
        expect(stanza).not.toContain("jabber:x:oob"); // the link is not in the clear either
      }
      const archive = await archived();
      expect(archive.length).toBeGreaterThanOrEqual(3);
      for (const m of archive) {
        expect(m.getChildText("body")).toBe(FALLBACK_BODY);
        expect(m.getChild("encrypted", NS_OMEMO)).toBeDefined();
        expect(m.toString()).not.toMatch(/shared secret|example\.org|after the failure/);
      }
    },
    T,
  );

  it(
    "a shared file goes up as AES-256-GCM ciphertext, its aesgcm:// link OMEMO-encrypted; bob decrypts it, a tampered file is a stored failure",
    async () => {
      const secret = randomBytes(200_000);
      const src = join(attachmentDir, "..", `secret-${randomBytes(3).toString("hex")}.pdf`);
      writeFileSync(src, secret);
      const uploaded = new Promise<string>((resolve) =>
        media.once("uploaded", ({ url }) => resolve(url)),
      );
      media.on("uploaded", () => sendOutbox());
      const item = share(bob.jid, {
        kind: "file",
        file: { sourcePath: src, mimeType: "application/pdf" },
      });
      wire.length = 0;
      sendOutbox();
      expect(await settled(item.id)).toMatchObject({ state: "sent", error: null });
      const url = await uploaded;
      // XEP-0454: 12-byte IV then 32-byte key, in hex, in the fragment.
      expect(url).toMatch(/^aesgcm:\/\/localhost:\d+\/.+#[0-9a-f]{24}[0-9a-f]{64}$/);
      const upload = alice.store.read((tx) =>
        tx.select().from(tables.attachments).where(eq(tables.attachments.id, item.id)).get(),
      );
      expect(upload).toMatchObject({ state: "sent", url });
      expect(url.endsWith(upload!.aesgcmKey!)).toBe(true);

      // Bob got the link in an OMEMO message, stored it decrypted with a remote attachment row.
      await until(() => bobMessage(item.id)?.body === url, "bob stores the decrypted link");
      expect(bobMessage(item.id)?.encrypted).toBe(true);
      const row = () =>
        bob.store.read((tx) =>
          tx
            .select()
            .from(tables.attachments)
            .where(and(eq(tables.attachments.url, url), eq(tables.attachments.direction, "in")))
            .get(),
        );
      expect(row()?.state).toBe("remote");
      expect(wire).toHaveLength(1);
      expect(wire[0]).toContain(FALLBACK_BODY);
      expect(wire[0]).not.toMatch(/aesgcm|jabber:x:oob|localhost:\d+\//);
      const archive = await archived();
      expect(archive.some((m) => m.toString().includes("aesgcm"))).toBe(false);
      expect(archive.every((m) => m.getChildText("body") === FALLBACK_BODY)).toBe(true);

      // The upload service holds ciphertext + tag only (served over HTTP and on its disk).
      const httpUrl = url.replace(/^aesgcm:/, "http:").replace(/#.*$/, "");
      const served = Buffer.from(await (await fetch(httpUrl)).arrayBuffer());
      expect(served.length).toBe(secret.length + 16);
      expect(served.equals(secret)).toBe(false);
      expect(served.includes(secret.subarray(1000, 1064))).toBe(false);
      const onDisk = filesUnder(env.server.dataDir).filter(
        (f) => statSync(f).size === served.length && readFileSync(f).equals(served),
      );
      expect(onDisk).toHaveLength(1);

      const got = await downloadAttachment({
        store: bob.store,
        attachment: { id: row()!.id },
        attachmentDir: join(attachmentDir, "bob"),
        maxBytes: 1024 * 1024,
        acceptTypes: [],
      });
      expect(sha(readFileSync(got.path))).toBe(sha(secret));

      // Someone alters the stored file (one byte of the ciphertext): the GCM tag check fails,
      // the download is a typed, stored failure and no unauthenticated plaintext is left.
      const tampered = Buffer.from(served);
      tampered[5000] = tampered[5000]! ^ 0x01;
      writeFileSync(onDisk[0]!, tampered);
      bob.store.write((tx) =>
        tx
          .update(tables.attachments)
          .set({ state: "remote", localPath: null })
          .where(eq(tables.attachments.id, row()!.id))
          .run(),
      );
      const bad = join(attachmentDir, "bob-tampered");
      await expect(
        downloadAttachment({
          store: bob.store,
          attachment: { id: row()!.id },
          attachmentDir: bad,
          maxBytes: 1024 * 1024,
          acceptTypes: [],
        }),
      ).rejects.toMatchObject({ code: "decrypt-failed" });
      expect(row()).toMatchObject({
        state: "failed",
        error: expect.stringMatching(/^decrypt-failed: AES-GCM decryption failed/),
      });
      expect(filesUnder(bad)).toEqual([]);
    },
    T,
  );
  it(
    "an encrypted upload killed mid-PUT resumes with the same key and ciphertext and is sent once, encrypted",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "lichen-omemo-share-kill-"));
      const files = join(dir, "attachments");
      const db = join(dir, "dave.db");
      // Dave's account row and chat setting; the main app runs in a child process first.
      const dave = openDevice(env.server, "dave", "phone", { db });
      env.devices.push(dave);
      dave.omemo.setChatEncrypted(bob.jid, true);
      const movie = randomBytes(3 * 1024 * 1024);
      const src = join(dir, "movie.mp4");
      writeFileSync(src, movie);
      const s = openStore({ path: db, role: "share" });
      const item = shareToOutbox({
        store: s,
        accountId: "dave",
        to: bob.jid,
        content: { kind: "audiovisual", file: { sourcePath: src, mimeType: "video/mp4" } },
        attachmentDir: files,
      });
      s.close();

      const child = spawnFixture(uploadProc, {
        db,
        port: env.server.c2sPort,
        user: "dave",
        attachmentDir: files,
        blockAtBytes: 1024 * 1024,
      });
      try {
        await child.waitFor("blocked", "PUT under way");
      } finally {
        await child.kill();
      }
      const upload = () =>
        dave.store.read((tx) =>
          tx.select().from(tables.attachments).where(eq(tables.attachments.id, item.id)).get(),
        );
      const killed = upload()!;
      expect(killed.state).toBe("uploading");
      expect(killed.aesgcmKey).toMatch(/^[0-9a-f]{88}$/);
      const ciphertext = readFileSync(join(files, `${killed.localPath}.aesgcm`));
      expect(ciphertext.length).toBe(movie.length + 16);

      // The app again (this process): it resumes the upload (same slot on Prosody, a new one
      // on ejabberd, whose slots are single-use) and sends the link encrypted, once.
      await online(dave);
      const daveMedia = new MediaTransfers(dave.session, { attachmentDir: files });
      const again = (): void => {
        sendShareOutbox(dave.store, dave.session, {
          media: daveMedia,
          attachmentDir: files,
          onEncrypted: again,
        });
      };
      daveMedia.on("uploaded", again);
      again();
      await until(() => upload()?.state === "sent", "the resumed upload is sent");
      expect(upload()?.aesgcmKey).toBe(killed.aesgcmKey);
      const url = upload()!.url!;
      expect(url.endsWith(`#${killed.aesgcmKey}`)).toBe(true);
      const served = Buffer.from(
        await (await fetch(url.replace(/^aesgcm:/, "http:").replace(/#.*$/, ""))).arrayBuffer(),
      );
      expect(sha(served)).toBe(sha(ciphertext)); // the same bytes as before the kill

      await until(() => bobMessage(item.id)?.body === url, "bob gets the link, decrypted");
      await dave.session.idle();
      await bob.session.syncBarrier();
      expect(
        bob.store.read((tx) =>
          tx.select().from(tables.messages).where(eq(tables.messages.originId, item.id)).all(),
        ),
      ).toHaveLength(1);
      const row = bob.store.read((tx) =>
        tx
          .select()
          .from(tables.attachments)
          .where(and(eq(tables.attachments.url, url), eq(tables.attachments.direction, "in")))
          .get(),
      )!;
      const got = await downloadAttachment({
        store: bob.store,
        attachment: { id: row.id },
        attachmentDir: join(dir, "bob"),
        maxBytes: 4 * 1024 * 1024,
        acceptTypes: [],
      });
      expect(sha(readFileSync(got.path))).toBe(sha(movie));
    },
    T,
  );
});
