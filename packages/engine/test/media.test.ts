// XEP-0363 upload / XEP-0066 OOB / XEP-0454 aesgcm:// against the servers' own upload services
// (Prosody mod_http_file_share, ejabberd mod_http_upload), real HTTP. Alice shares through the
// outbox (AppController); bob is a second Lichen account that stores the URL and downloads it.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { listShareOutbox, openStore, tables, type Store } from "@lichen/store";
import { startTestPeer, type TestPeer } from "@lichen/test-servers";
import { and, eq } from "drizzle-orm";
import { xml } from "@xmpp/client-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AppController,
  DurableSession,
  ensureAccount,
  downloadAttachment,
  MediaError,
  NS_UPLOAD,
  shareToOutbox,
  type ShareInput,
  type UploadRetryPolicy,
} from "../src/index.js";
import { accountConfig, SERVERS, until, useEngineEnv } from "./helpers.js";

const T = 90_000;
/** xmpp.js's IQ callee (untyped): `element` is the query child; the returned one the answer's. */
interface IqCallee {
  get(
    ns: string,
    name: string,
    handler: (ctx: { element: ReturnType<typeof xml> }) => Promise<ReturnType<typeof xml>>,
  ): void;
}
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const mediaProc = join(import.meta.dirname, "fixtures", "media-proc.mjs");

describe.each(SERVERS)("media (XEP-0363 + OOB) on %s", (kind, start) => {
  const env = useEngineEnv(start, { users: ["alice", "bob", "mallory"], prefix: "lichen-media-" });
  let bobStore: Store;
  let bob: DurableSession;
  const attachments = () => join(env.dir, "lichen.db.attachments");
  const bobFiles = () => join(env.dir, "bob-files");

  beforeAll(async () => {
    bobStore = openStore({ path: join(env.dir, "bob.db"), role: "main" });
    ensureAccount(bobStore, { id: "bob", jid: "bob@localhost", resource: "phone" });
    bob = new DurableSession({ store: bobStore, ...accountConfig(env.server, "bob") });
    await bob.connect();
  }, 60_000);
  afterAll(async () => {
    await bob?.close();
    bobStore?.close();
  });

  /** The share extension: its own store handle (role share), no network. */
  function share(content: ShareInput) {
    const s = openStore({ path: env.db, role: "share" });
    try {
      return shareToOutbox({
        store: s,
        accountId: "alice",
        to: "bob@localhost",
        content,
        attachmentDir: attachments(),
      });
    } finally {
      s.close();
    }
  }

  /** Bob's received file rows for a message body. */
  function bobAttachment(url: string) {
    return bobStore.read((tx) =>
      tx
        .select()
        .from(tables.attachments)
        .where(and(eq(tables.attachments.url, url), eq(tables.attachments.direction, "in")))
        .get(),
    );
  }
  const bobMessages = (originId: string) =>
    bobStore.read((tx) =>
      tx.select().from(tables.messages).where(eq(tables.messages.originId, originId)).all(),
    );
  const outboxRow = (id: string) =>
    env.store.read((tx) =>
      tx.select().from(tables.shareOutbox).where(eq(tables.shareOutbox.id, id)).get(),
    );
  /** The outbox row once it is sent or failed (`what` describes the wait on failure). */
  const outboxSettled = (id: string, what: string | (() => string)) =>
    until(() => {
      const r = outboxRow(id);
      return r?.state === "sent" || r?.state === "failed" ? r : null;
    }, what);
  /** Bob got the share's message exactly once (after alice's session and bob's are idle); its URL. */
  async function bobGotOnce(app: AppController, id: string): Promise<string> {
    const url = await until(() => bobMessages(id)[0]?.body, "bob got the message");
    await app.session!.idle();
    await bob.syncBarrier();
    expect(bobMessages(id)).toHaveLength(1);
    return url;
  }
  /** Bob downloads the attachment of `url`: the same bytes as were shared. */
  async function bobDownloadsIntact(url: string, bytes: Buffer, acceptTypes: string[] = []) {
    const got = await downloadAttachment({
      store: bobStore,
      attachment: { id: bobAttachment(url)!.id },
      attachmentDir: bobFiles(),
      maxBytes: 10 * 1024 * 1024,
      acceptTypes,
    });
    expect(sha(readFileSync(got.path))).toBe(sha(bytes));
  }
  /** Alice's cached XEP-0363 discovery points at `jid` (a peer playing the upload service). */
  const pointUploadServiceAt = (jid: string) =>
    env.store.write((tx) =>
      tx
        .insert(tables.uploadServices)
        .values({ accountId: "alice", jid, maxSize: null, discoveredAt: tx.now })
        .onConflictDoUpdate({ target: tables.uploadServices.accountId, set: { jid } })
        .run(),
    );
  /** Forget the cached discovery: the server's real upload service again. */
  const forgetUploadService = () => env.store.write((tx) => tx.delete(tables.uploadServices).run());

  let imageUrl = "";
  let image: Buffer = Buffer.alloc(0);

  it(
    "a 5 MB image shared while offline is uploaded and sent once online; bob stores the URL and downloads it intact on demand",
    async () => {
      image = randomBytes(5 * 1024 * 1024);
      const src = join(env.dir, "photo.jpg");
      writeFileSync(src, image);
      const item = share({
        kind: "image",
        file: { sourcePath: src, mimeType: "image/jpeg" },
        caption: "sunset",
      });
      expect(outboxRow(item.id)?.state).toBe("pending"); // offline: only the row and the copy

      const app = new AppController(env.store, env.config(), { reconnect: false });
      const progress: number[] = [];
      app.on("session", () => app.media!.on("progress", (p) => void progress.push(p.done)));
      try {
        await app.foreground();
        const sent = await until(() => outboxRow(item.id)?.state === "sent", "outbox row sent");
        expect(sent).toBe(true);
        const out = env.store.read((tx) =>
          tx.select().from(tables.attachments).where(eq(tables.attachments.id, item.id)).get(),
        );
        expect(out?.state).toBe("sent");
        imageUrl = out?.url ?? "";
        expect(imageUrl).toMatch(/^http:\/\/localhost:\d+\//);
        expect(progress.at(-1)).toBe(image.length);
        expect(progress.length).toBeGreaterThan(2);

        // Bob: the message (body = URL) and the file row (URL, remote) in one transaction.
        const row = await until(() => bobAttachment(imageUrl), "bob's attachment row");
        expect(row.state).toBe("remote");
        const msgs = bobMessages(item.id);
        expect(msgs).toHaveLength(1);
        expect(msgs[0]?.body).toBe(imageUrl);
        expect(row.messageRowId).toBe(msgs[0]?.id);
        expect(row.fileName).toBe("sunset"); // the OOB <desc>

        // Sending the outbox again sends nothing: one message, one upload.
        expect(app.sendOutbox()).toBe(0);
        await app.session!.idle();
        expect(
          env.store.read((tx) =>
            tx.select().from(tables.messages).where(eq(tables.messages.originId, item.id)).all(),
          ),
        ).toHaveLength(1);

        const downProgress: number[] = [];
        const got = await downloadAttachment({
          store: bobStore,
          attachment: { messageRowId: msgs[0]!.id },
          attachmentDir: bobFiles(),
          maxBytes: 10 * 1024 * 1024,
          acceptTypes: ["image/*"],
          onProgress: (p) => void downProgress.push(p.done),
        });
        expect(sha(readFileSync(got.path))).toBe(sha(image));
        expect(got.mimeType).toMatch(/^image\/jpeg/);
        expect(downProgress.at(-1)).toBe(image.length);
        expect(bobAttachment(imageUrl)?.state).toBe("downloaded");
      } finally {
        await app.close();
      }
    },
    T,
  );

  it(
    "a download too large or of the wrong type is refused with a clear error, the row kept",
    async () => {
      expect(imageUrl, "needs the first test's upload").not.toBe("");
      const id = bobAttachment(imageUrl)!.id;
      // Back to remote as if not yet downloaded (same URL, fresh directory).
      bobStore.write((tx) =>
        tx
          .update(tables.attachments)
          .set({ state: "remote", localPath: null })
          .where(eq(tables.attachments.id, id))
          .run(),
      );
      const dir = join(env.dir, "refused");
      const tooLarge = downloadAttachment({
        store: bobStore,
        attachment: { id },
        attachmentDir: dir,
        maxBytes: 1024 * 1024,
        acceptTypes: [],
      });
      await expect(tooLarge).rejects.toMatchObject({ name: "MediaError", code: "too-large" });
      await expect(tooLarge).rejects.toThrow(/limit is 1048576/);
      expect(bobAttachment(imageUrl)).toMatchObject({
        state: "remote",
        error: expect.stringMatching(/^too-large/),
      });
      const wrongType = downloadAttachment({
        store: bobStore,
        attachment: { id },
        attachmentDir: dir,
        maxBytes: 10 * 1024 * 1024,
        acceptTypes: ["video/*", "audio/ogg"],
      });
      await expect(wrongType).rejects.toMatchObject({ code: "wrong-type" });
      await expect(wrongType).rejects.toThrow(/image\/jpeg is not one of video\/\*, audio\/ogg/);
      expect(existsSync(join(dir, "in", id))).toBe(true);
      expect(bobAttachment(imageUrl)?.localPath).toBeNull();

      // Interrupted download: the partial file is continued (Range) and the result is intact.
      const part = join(dir, "in", id, `${decodeURIComponent(imageUrl.split("/").pop()!)}.part`);
      writeFileSync(part, image.subarray(0, 1234567));
      const firstProgress: number[] = [];
      const got = await downloadAttachment({
        store: bobStore,
        attachment: { id },
        attachmentDir: dir,
        maxBytes: 10 * 1024 * 1024,
        acceptTypes: ["image/jpeg"],
        onProgress: (p) => void firstProgress.push(p.done),
      });
      expect(sha(readFileSync(got.path))).toBe(sha(image));
      // Prosody's http_file_share honours Range (206): the download went on where it stopped;
      // ejabberd's mod_http_upload answers 200 with the whole file, which replaces the part.
      if (kind === "prosody") expect(firstProgress[0]).toBeGreaterThan(1234567);
    },
    T,
  );

  it(
    "aesgcm:// (XEP-0454) round trip: the service stores only ciphertext, bob decrypts",
    async () => {
      const secret = randomBytes(300_000);
      const src = join(env.dir, "secret.pdf");
      writeFileSync(src, secret);
      const item = share({ kind: "file", file: { sourcePath: src, mimeType: "application/pdf" } });
      const app = new AppController(env.store, env.config(), {
        reconnect: false,
        media: { encrypt: (to) => to === "bob@localhost" },
      });
      try {
        await app.foreground();
        const done = await outboxSettled(item.id, "encrypted file sent");
        expect(done).toMatchObject({ state: "sent", error: null });
        const url = await until(() => bobMessages(item.id)[0]?.body, "bob got the message");
        expect(url).toMatch(/^aesgcm:\/\/localhost:\d+\/.+#[0-9a-f]{88}$/);
        const row = bobAttachment(url);
        expect(row?.state).toBe("remote");
        // What the upload service holds is not the file.
        const stored = Buffer.from(
          await (await fetch(url.replace(/^aesgcm:/, "http:").replace(/#.*$/, ""))).arrayBuffer(),
        );
        expect(stored.length).toBe(secret.length + 16);
        expect(stored.subarray(0, 64).equals(secret.subarray(0, 64))).toBe(false);
        const got = await downloadAttachment({
          store: bobStore,
          attachment: { id: row!.id },
          attachmentDir: bobFiles(),
          maxBytes: 1024 * 1024,
          acceptTypes: ["application/pdf"],
        });
        expect(sha(readFileSync(got.path))).toBe(sha(secret));
        // A tampered key fails authentication: a typed error, nothing written as downloaded.
        const bad = url.replace(/.$/, (c) => (c === "0" ? "1" : "0"));
        bobStore.write((tx) =>
          tx
            .update(tables.attachments)
            .set({ url: bad, state: "remote" })
            .where(eq(tables.attachments.id, row!.id))
            .run(),
        );
        await expect(
          downloadAttachment({
            store: bobStore,
            attachment: { id: row!.id },
            attachmentDir: join(env.dir, "tampered"),
            maxBytes: 1024 * 1024,
            acceptTypes: [],
          }),
        ).rejects.toMatchObject({ code: "decrypt-failed" });
      } finally {
        await app.close();
      }
    },
    T,
  );

  it(
    "an upload killed midway (SIGKILL during the PUT) restarts on the next run and is sent once",
    async () => {
      const file = randomBytes(3 * 1024 * 1024);
      const src = join(env.dir, "movie.mp4");
      writeFileSync(src, file);
      const item = share({
        kind: "audiovisual",
        file: { sourcePath: src, mimeType: "video/mp4" },
        durationMs: 1000,
      });
      const child = spawn(
        process.execPath,
        [
          mediaProc,
          JSON.stringify({ db: env.db, service: env.config().service, blockAtBytes: 1024 * 1024 }),
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      child.stderr.on("data", (d) => (stderr += String(d)));
      const lines: string[] = [];
      createInterface({ input: child.stdout }).on("line", (l) => lines.push(l));
      const exited = new Promise((r) => child.once("exit", r));
      try {
        await until(
          () => lines.some((l) => l.includes('"blocked"')),
          () => `child blocked mid-PUT; stderr ${stderr}`,
        );
      } finally {
        child.kill("SIGKILL");
        await exited;
      }
      expect(lines.some((l) => l.includes('"uploaded"'))).toBe(false);
      const killed = env.store.read((tx) =>
        tx.select().from(tables.attachments).where(eq(tables.attachments.id, item.id)).get(),
      );
      expect(killed?.state).toBe("uploading");
      expect(outboxRow(item.id)?.state).toBe("sending");

      const app = new AppController(env.store, env.config(), { reconnect: false, leaseMs: 2000 });
      const failures: string[] = [];
      app.on("session", () => app.media!.on("failed", (f) => void failures.push(f.error.message)));
      try {
        await app.foreground();
        const done = await outboxSettled(
          item.id,
          () => `restarted upload sent or failed (transfer errors: ${failures.join("; ")})`,
        );
        expect(done).toMatchObject({ state: "sent", error: null });
        const url = await bobGotOnce(app, item.id);
        await bobDownloadsIntact(url, file, ["video/*"]);
      } finally {
        await app.close();
      }
    },
    T,
  );

  it(
    "a chat made end-to-end encrypted during the upload: the link is not sent in the clear, the row fails with encryption-required",
    async () => {
      const src = join(env.dir, "secret.bin");
      writeFileSync(src, randomBytes(256 * 1024));
      const item = share({ kind: "file", file: { sourcePath: src, mimeType: "application/zip" } });
      const encrypted = (on: boolean) =>
        env.store.write((tx) =>
          tx
            .update(tables.chats)
            .set({ omemo: on })
            .where(and(eq(tables.chats.accountId, "alice"), eq(tables.chats.jid, "bob@localhost")))
            .run(),
        );
      const app = new AppController(env.store, env.config(), { reconnect: false });
      // (The chat row exists: the first test's message.) Turned on while the PUT runs.
      app.on("session", () => app.media!.on("progress", () => encrypted(true)));
      try {
        await app.foreground();
        const row = await until(() => {
          const r = outboxRow(item.id);
          return r?.state === "failed" ? r : null;
        }, "outbox row failed");
        expect(row.error).toMatch(/^encryption-required: bob@localhost is an end-to-end encrypted/);
        await app.session!.idle();
        await bob.syncBarrier();
        expect(bobMessages(item.id)).toHaveLength(0);
        expect(
          env.store.read((tx) =>
            tx.select().from(tables.messages).where(eq(tables.messages.originId, item.id)).all(),
          ),
        ).toHaveLength(0);
      } finally {
        await app.close();
        encrypted(false);
      }
    },
    T,
  );

  describe("a PUT broken while the app runs", () => {
    // The real upload service behind an HTTP proxy that breaks PUTs on demand. Mallory relays
    // alice's slot requests to the service and points the slot's URLs at the proxy.
    let relay: TestPeer;
    let proxy: Server;
    let proxyPort = 0;
    let breakPuts = 0; // how many of the next PUTs the proxy breaks midway
    let puts = 0;
    let slotRequests = 0;
    beforeAll(async () => {
      proxy = createServer((req, res) => {
        const isPut = req.method === "PUT";
        if (isPut) puts++;
        const breakThis = isPut && breakPuts > 0;
        if (breakThis) breakPuts--;
        const upstream = httpRequest(
          {
            host: "127.0.0.1",
            port: env.server.httpPort,
            method: req.method,
            path: req.url,
            headers: req.headers,
          },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        upstream.on("error", () => res.destroy());
        if (breakThis) {
          // A quarter of a megabyte through, the link dies: both sides see a reset.
          let seen = 0;
          req.on("data", (chunk: Buffer) => {
            seen += chunk.length;
            if (seen >= 256 * 1024) {
              upstream.destroy();
              req.socket.destroy();
            }
          });
        }
        req.pipe(upstream);
      });
      await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
      proxyPort = (proxy.address() as AddressInfo).port;
      relay = await startTestPeer(env.server.c2sPort, "mallory", "mallorypw", {
        resource: "relay",
      });
      // Answered through xmpp.js's IQ callee: an async answer from a plain "stanza" listener
      // would lose to the callee's own service-unavailable.
      const callee = (relay.xmpp as unknown as { iqCallee: IqCallee }).iqCallee;
      callee.get(NS_UPLOAD, "request", async ({ element: request }) => {
        slotRequests++;
        const answer = (await relay.xmpp.iqCaller.request(
          xml("iq", { type: "get", to: "upload.localhost" }, xml("request", request.attrs)),
        )) as ReturnType<typeof xml>;
        const slot = answer.getChild("slot", NS_UPLOAD)!;
        for (const el of [slot.getChild("put")!, slot.getChild("get")!]) {
          const url = new URL(el.attrs.url!);
          url.port = String(proxyPort);
          el.attrs.url = url.toString();
        }
        return slot;
      });
      pointUploadServiceAt("mallory@localhost/relay");
    });
    afterAll(async () => {
      forgetUploadService();
      await relay?.stop();
      await new Promise((r) => proxy?.close(r));
    });

    /**
     * A 1 MiB file shared to bob, and alice's app with retry timers that record the delay asked
     * and run at once (no waiting in the test); the proxy breaks the next `breakNext` PUTs.
     * `retries` and `failures` are the media events the app reported.
     */
    function shareThroughBrokenLink(name: string, retry: UploadRetryPolicy, breakNext: number) {
      const file = randomBytes(1024 * 1024);
      const src = join(env.dir, name);
      writeFileSync(src, file);
      const item = share({ kind: "file", file: { sourcePath: src, mimeType: "application/zip" } });
      const delays: number[] = [];
      const timers = {
        setTimeout: (fn: () => void, ms: number) => {
          delays.push(ms);
          return setImmediate(fn);
        },
        clearTimeout: (h: unknown) => clearImmediate(h as NodeJS.Immediate),
      };
      const app = new AppController(env.store, env.config(), {
        reconnect: false,
        media: { retry: { timers, ...retry } },
      });
      const retries: string[] = [];
      const failures: string[] = [];
      app.on("session", () => {
        app.media!.on("retrying", (r) => void retries.push(`${r.attempt}:${r.error.code}`));
        app.media!.on("failed", (f) => void failures.push(`${f.id}:${f.error.code}`));
      });
      breakPuts = breakNext;
      puts = 0;
      slotRequests = 0;
      return { file, item, app, delays, retries, failures };
    }

    it(
      "the first PUT breaks midway: retried after a back-off without a resume, the message sent once",
      async () => {
        const { file, item, app, delays, retries } = shareThroughBrokenLink(
          "retry.zip",
          { initialDelayMs: 1000, random: () => 0.5 },
          1,
        );
        try {
          await app.foreground();
          const done = await outboxSettled(
            item.id,
            () =>
              `upload sent after a broken PUT (retries ${retries.join(", ")}, PUTs ${puts}, slots ${slotRequests})`,
          );
          expect(done).toMatchObject({ state: "sent", error: null });
          expect(breakPuts).toBe(0); // the proxy did break one
          expect(retries[0]).toBe("1:http-failed");
          expect(delays[0]).toBe(750); // initialDelayMs 1000, half of it jitter at 0.5
          expect(puts).toBeGreaterThanOrEqual(2);
          expect(slotRequests).toBeGreaterThanOrEqual(1); // ejabberd: a second one (single-use)
          const url = await bobGotOnce(app, item.id);
          expect(url).toContain(`:${proxyPort}/`);
          await bobDownloadsIntact(url, file);
        } finally {
          await app.close();
        }
      },
      T,
    );

    it(
      "every PUT breaks: the retries stop after maxAttempts (row kept uploading, nothing sent); the next foreground sends it once",
      async () => {
        const { file, item, app, delays, failures } = shareThroughBrokenLink(
          "gives-up.zip",
          { maxAttempts: 2 },
          1000,
        );
        try {
          await app.foreground();
          await until(
            () => failures.includes(`${item.id}:http-failed`),
            () => `gave up (PUTs ${puts}, retries ${delays.length})`,
          );
          expect(delays).toHaveLength(2); // two retries, then no more
          expect(app.media!.waitingRetries).toEqual([]);
          const row = env.store.read((tx) =>
            tx.select().from(tables.attachments).where(eq(tables.attachments.id, item.id)).get(),
          );
          expect(row?.state).toBe("uploading");
          expect(outboxRow(item.id)?.state).toBe("sending");
          await bob.syncBarrier();
          expect(bobMessages(item.id)).toHaveLength(0);

          // The link is back; the next foreground (`online`: a new retry budget) sends it.
          breakPuts = 0;
          await app.background();
          await app.foreground();
          const done = await outboxSettled(item.id, "sent after the resume");
          expect(done).toMatchObject({ state: "sent", error: null });
          const url = await bobGotOnce(app, item.id);
          await bobDownloadsIntact(url, file);
        } finally {
          breakPuts = 0;
          await app.close();
        }
      },
      T,
    );
  });

  describe("bad input", () => {
    // Mallory plays a hostile upload service: alice's cached discovery points at her.
    let mallory: TestPeer;
    let slot: (request: ReturnType<typeof xml>) => ReturnType<typeof xml>;
    let http: Server;
    let httpStatus = 413;
    let httpBase = "";
    beforeAll(async () => {
      mallory = await startTestPeer(env.server.c2sPort, "mallory", "mallorypw", {
        resource: "svc",
      });
      mallory.xmpp.on("stanza", (el: ReturnType<typeof xml>) => {
        if (el.name !== "iq" || el.attrs.type !== "get" || !el.getChild("request", NS_UPLOAD))
          return;
        const answer = slot(el);
        answer.attrs.to = el.attrs.from;
        answer.attrs.id = el.attrs.id;
        void mallory.xmpp.send(answer);
      });
      http = createServer((req, res) => {
        req.resume();
        res.writeHead(httpStatus).end();
      });
      await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
      httpBase = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      await mallory?.stop();
      await new Promise((r) => http?.close(r));
    });
    const slotOf = (put: string, get: string) =>
      xml(
        "iq",
        { type: "result" },
        xml("slot", { xmlns: NS_UPLOAD }, xml("put", { url: put }), xml("get", { url: get })),
      );

    async function sendAndExpectFailure(src: string, pattern: RegExp) {
      const item = share({ kind: "file", file: { sourcePath: src, mimeType: "application/zip" } });
      const app = new AppController(env.store, env.config(), { reconnect: false });
      try {
        await app.foreground();
        const row = await until(() => {
          const r = outboxRow(item.id);
          return r?.state === "failed" ? r : null;
        }, `outbox row failed with ${pattern}`);
        expect(row.error).toMatch(pattern);
        // Kept (not deleted) for the user to retry or delete; nothing sent to bob.
        await app.session!.idle();
        await bob.syncBarrier();
        expect(bobMessages(item.id)).toHaveLength(0);
        return item.id;
      } finally {
        await app.close();
      }
    }

    it(
      "slots with a non-HTTP URL or a PUT host other than the GET host, and 413/403 answers, fail the row with their error",
      async () => {
        pointUploadServiceAt("mallory@localhost/svc");
        const src = join(env.dir, "a.zip");
        writeFileSync(src, randomBytes(1000));
        slot = () => slotOf("ftp://localhost/a.zip", "ftp://localhost/a.zip");
        await sendAndExpectFailure(src, /^bad-slot: slot PUT URL must be https/);
        slot = () => slotOf(`${httpBase}/a.zip`, "http://localhost:9/a.zip");
        await sendAndExpectFailure(
          src,
          /^bad-slot: slot PUT host 127\.0\.0\.1:\d+ differs from its GET host localhost:9/,
        );
        slot = () => slotOf(`${httpBase}/a.zip`, `${httpBase}/a.zip`);
        httpStatus = 413;
        await sendAndExpectFailure(
          src,
          /^http-status: the upload service answered the PUT with HTTP 413 \(file too large\)/,
        );
        httpStatus = 403;
        await sendAndExpectFailure(src, /HTTP 403 \(forbidden\)/);
        slot = (req) =>
          xml(
            "iq",
            { type: "error" },
            xml(
              "error",
              { type: "modify" },
              xml("not-acceptable", { xmlns: "urn:ietf:params:xml:ns:xmpp-stanzas" }),
              xml(
                "text",
                { xmlns: "urn:ietf:params:xml:ns:xmpp-stanzas" },
                `no ${req.getChild("request")?.attrs.filename}`,
              ),
            ),
          );
        await sendAndExpectFailure(src, /^slot-refused: .*not-acceptable \(no a\.zip\)/);
        // The real service again for the rest.
        forgetUploadService();
      },
      T,
    );

    it(
      "a received OOB URL that is not http(s) is stored but its download refused (bad-url)",
      async () => {
        const id = `hostile-${Date.now()}`;
        await mallory.xmpp.send(
          xml(
            "message",
            { to: "bob@localhost", type: "chat", id },
            xml("body", {}, "file:///etc/passwd"),
            xml("x", { xmlns: "jabber:x:oob" }, xml("url", {}, "file:///etc/passwd")),
            xml("origin-id", { xmlns: "urn:xmpp:sid:0", id }),
          ),
        );
        const row = await until(() => bobAttachment("file:///etc/passwd"), "hostile OOB row");
        await expect(
          downloadAttachment({
            store: bobStore,
            attachment: { id: row.id },
            attachmentDir: bobFiles(),
            maxBytes: 1000,
            acceptTypes: [],
          }),
        ).rejects.toMatchObject({
          code: "bad-url",
          message: expect.stringMatching(/must be https/),
        });
        expect(bobAttachment("file:///etc/passwd")?.state).toBe("failed");
      },
      T,
    );

    it(
      "a zero-byte or missing shared file fails its row with the error; the items behind it still go",
      async () => {
        const empty = join(env.dir, "empty.bin");
        writeFileSync(empty, "");
        const zero = share({
          kind: "file",
          file: { sourcePath: empty, mimeType: "application/octet-stream" },
        });
        const gone = join(env.dir, "gone.bin");
        writeFileSync(gone, "x");
        const missing = share({
          kind: "file",
          file: { sourcePath: gone, mimeType: "application/octet-stream" },
        });
        rmSync(join(attachments(), missing.id), { recursive: true }); // deleted from the container
        const text = share({ kind: "text", text: "after the bad files" });
        expect(() =>
          share({ kind: "file", file: { sourcePath: join(env.dir, "nope"), mimeType: "a/b" } }),
        ).toThrow(MediaError);
        const app = new AppController(env.store, env.config(), { reconnect: false });
        try {
          await app.foreground();
          await until(() => bobMessages(text.id).length === 1, "the text behind the bad files");
          expect(outboxRow(zero.id)).toMatchObject({
            state: "failed",
            error: expect.stringMatching(/^empty-file: .*0 bytes/),
          });
          expect(outboxRow(missing.id)).toMatchObject({
            state: "failed",
            error: expect.stringMatching(/^missing-file: /),
          });
          expect(
            env.store.read((tx) => listShareOutbox(tx, ["failed"])).map((e) => e.item.id),
          ).toEqual(expect.arrayContaining([zero.id, missing.id]));
        } finally {
          await app.close();
        }
      },
      T,
    );

    it(
      "a contact with a vCard is sent as a .vcf file; without one as text",
      async () => {
        const vcard = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Carol\r\nEND:VCARD\r\n";
        const item = share({
          kind: "contact",
          displayName: "Carol",
          jid: "carol@localhost",
          vcard,
        });
        const plain = share({ kind: "contact", displayName: "Dave", jid: "dave@localhost" });
        const app = new AppController(env.store, env.config(), { reconnect: false });
        try {
          await app.foreground();
          const url = await until(() => bobMessages(item.id)[0]?.body, "vcard message");
          expect(url).toMatch(/Carol\.vcf$/);
          await until(
            () => bobMessages(plain.id).length === 1,
            "plain contact after it (order kept)",
          );
          expect(bobMessages(plain.id)[0]?.body).toBe("Dave xmpp:dave@localhost");
          expect(bobMessages(plain.id)[0]!.id).toBeGreaterThan(bobMessages(item.id)[0]!.id);
          const got = await downloadAttachment({
            store: bobStore,
            attachment: { id: bobAttachment(url)!.id },
            attachmentDir: bobFiles(),
            maxBytes: 10_000,
            acceptTypes: ["text/vcard", "text/x-vcard", "application/octet-stream", "text/plain"],
          });
          expect(readFileSync(got.path, "utf8")).toBe(vcard);
        } finally {
          await app.close();
        }
      },
      T,
    );
  });
});
