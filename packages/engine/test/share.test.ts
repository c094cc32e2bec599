import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

import { join } from "node:path";
import { promisify } from "node:util";
import type { ShareOutboxItem } from "@lichen/schema";
import { listShareOutbox, openStore, tables } from "@lichen/store";
import { startProsody } from "@lichen/test-servers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { AppController, outboxMessage, sendShareOutbox, shareToOutbox } from "../src/index.js";
import { startPeer, until, useEngineEnv } from "./helpers.js";

const T = 120_000;
const run = promisify(execFile);
const shareProc = join(import.meta.dirname, "fixtures", "share-proc.mjs");

/** Runs the share extension in its own process, as iOS does. */
async function shareFromOtherProcess(args: Record<string, unknown>): Promise<ShareOutboxItem> {
  const { stdout } = await run(process.execPath, [shareProc, JSON.stringify(args)]);
  return (JSON.parse(stdout.trim()) as { item: ShareOutboxItem }).item;
}

describe("share extension → outbox → main app", () => {
  const env = useEngineEnv(startProsody, { prefix: "lichen-share-" });

  it(
    "items shared while the app is frozen are sent on foreground; while running, at once; exactly once",
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const app = new AppController(env.store, env.config());
      try {
        // Frozen main app: the share process only writes the row.
        const geo = await shareFromOtherProcess({
          db: env.db,
          attachmentDir: join(env.dir, "attachments"),
          to: "bob@localhost",
          content: { kind: "geo", latitude: 48.85, longitude: 2.35, accuracyMeters: 10 },
        });
        expect(env.store.read((tx) => listShareOutbox(tx)).map((e) => e.item.id)).toEqual([geo.id]);

        await app.foreground();
        await until(() => bob.received.find((m) => m.body === "geo:48.85,2.35;u=10"), "geo");

        // Running main app: woken by the outbox-changed IPC the share process committed.
        const url = await shareFromOtherProcess({
          db: env.db,
          attachmentDir: join(env.dir, "attachments"),
          to: "bob@localhost",
          content: { kind: "url", url: "https://example.org/a", title: "A page" },
        });
        const got = await until(
          () => bob.received.find((m) => m.body === "A page\nhttps://example.org/a"),
          "url share",
        );
        expect(got.id).toBe(url.id); // the outbox id is the message/origin id
        expect(
          env.store.read((tx) => listShareOutbox(tx, ["sent"]).map((e) => e.item.id)).sort(),
        ).toEqual([geo.id, url.id].sort());
        // Stored as outgoing messages, once each, even if the outbox is sent again.
        expect(app.sendOutbox()).toBe(0);
        const rows = env.store.read((tx) =>
          tx.select().from(tables.messages).where(eq(tables.messages.direction, "out")).all(),
        );
        expect(rows.filter((r) => r.originId === url.id || r.originId === geo.id)).toHaveLength(2);
        await app.session!.idle();
        expect(bob.received.filter((m) => m.id === url.id)).toHaveLength(1);
      } finally {
        await app.close();
        await bob.stop();
      }
    },
    T,
  );

  it(
    "a shared file is copied into the container; without a media uploader it waits (not lost)",
    async () => {
      const src = join(env.dir, "photo.jpg");
      writeFileSync(src, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
      const item = await shareFromOtherProcess({
        db: env.db,
        attachmentDir: join(env.dir, "attachments"),
        to: "bob@localhost",
        content: { kind: "image", file: { sourcePath: src, mimeType: "image/jpeg" } },
      });
      expect(item.content).toMatchObject({
        kind: "image",
        file: { mimeType: "image/jpeg", size: 7, fileName: "photo.jpg" },
      });
      const ref = (item.content as { file: { path: string } }).file.path;
      expect(readFileSync(join(env.dir, "attachments", ref))).toEqual(readFileSync(src));
      // The upload itself is media.test.ts's; a session without MediaTransfers keeps the row.
      const session = env.session();
      try {
        await session.connect();
        expect(sendShareOutbox(env.store, session)).toEqual([]);
        const entry = env.store.read((tx) =>
          listShareOutbox(tx).find((e) => e.item.id === item.id),
        );
        expect(entry?.state).toBe("pending");
        expect(entry?.error).toMatch(/XEP-0363/);
      } finally {
        await session.close();
      }
      env.store.write((tx) =>
        tx.delete(tables.shareOutbox).where(eq(tables.shareOutbox.id, item.id)).run(),
      );
    },
    T,
  );

  it(
    "a share into an end-to-end encrypted chat without a plugin that encrypts fails with encryption-required, nothing sent",
    async () => {
      const item = await shareFromOtherProcess({
        db: env.db,
        attachmentDir: join(env.dir, "attachments"),
        to: "carol@localhost",
        content: { kind: "text", text: "never in the clear" },
      });
      env.store.write((tx) =>
        tx
          .insert(tables.chats)
          .values({ accountId: "alice", jid: "carol@localhost", omemo: true, createdAt: tx.now })
          .run(),
      );
      const session = env.session(); // no plugins: nothing can encrypt
      try {
        await session.connect();
        expect(session.canEncrypt).toBe(false);
        expect(sendShareOutbox(env.store, session)).toEqual([]);
        const entry = env.store.read((tx) =>
          listShareOutbox(tx, ["failed"]).find((e) => e.item.id === item.id),
        );
        expect(entry?.error).toMatch(/^encryption-required: carol@localhost is an end-to-end/);
        expect(
          env.store.read((tx) =>
            tx.select().from(tables.messages).where(eq(tables.messages.originId, item.id)).all(),
          ),
        ).toEqual([]);
      } finally {
        await session.close();
      }
    },
    T,
  );

  it("a share of invalid content is refused with the field named and writes nothing", () => {
    const before = env.store.read((tx) => tx.select().from(tables.shareOutbox).all().length);
    const share = openStore({ path: env.db, role: "share" });
    try {
      expect(() =>
        shareToOutbox({
          store: share,
          accountId: "alice",
          to: "bob@localhost",
          content: { kind: "geo", latitude: 123, longitude: 0 },
          attachmentDir: join(env.dir, "attachments"),
        }),
      ).toThrow(/latitude/);
    } finally {
      share.close();
    }
    expect(env.store.read((tx) => tx.select().from(tables.shareOutbox).all().length)).toBe(before);
    expect(outboxMessage({ kind: "text", text: "hi" })).toEqual({ body: "hi", extra: [] });
  });
});
