/**
 * Media benchmark (`npm run bench -- media`, issue 14): upload throughput through the engine
 * (share outbox → disco cache → slot IQ with a stored handler → streamed PUT with progress →
 * message queued) vs a bare HTTP PUT of the same bytes (in memory, one node:http request) to a
 * slot of the same service, in the same run, alternating, on Prosody (mod_http_file_share) and
 * ejabberd (mod_http_upload). FILE_MB per upload; medians over rounds. `upload_mb_per_s`,
 * `bare_put_mb_per_s` and `ratios.upload_vs_bare` are Prosody's; ejabberd's carry its prefix.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "@lichen/store";
import { startEjabberd, startProsody, startTestPeer } from "@lichen/test-servers";
import { xml } from "@xmpp/client";
import { ensureAccount } from "#src/accounts.js";
import { AppController } from "#src/modes.js";
import { shareToOutbox } from "#src/share.js";
import { median, round3 } from "./children.js";

interface BenchContext {
  log(msg: string): void;
  quick: boolean;
}

const FILE_MB = 8;
const NS_UPLOAD = "urn:xmpp:http:upload:0";

interface SlotAnswer {
  getChild(name: string, ns?: string): SlotAnswer | undefined;
  getChildren(name: string): SlotAnswer[];
  getText(): string;
  attrs: Record<string, string>;
}

/** The baseline: one PUT of an in-memory buffer, nothing else. */
function barePut(url: string, body: Buffer, slotHeaders: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: "PUT",
      headers: {
        ...slotHeaders,
        "content-length": String(body.length),
        "content-type": "application/octet-stream",
      },
    });
    req.once("error", reject);
    req.once("response", (res) => {
      res.resume();
      if ((res.statusCode ?? 0) < 300) resolve();
      else reject(new Error(`bare PUT: HTTP ${res.statusCode}`));
    });
    req.end(body);
  });
}

export default async function mediaBench(ctx: BenchContext) {
  const rounds = ctx.quick ? 2 : 7;
  const metrics: Record<string, number> = {};
  const ratios: Record<string, number> = {};
  const bytes = FILE_MB * 1024 * 1024;
  for (const [kind, start] of [
    ["prosody", startProsody],
    ["ejabberd", startEjabberd],
  ] as const) {
    const server = await start();
    const dir = mkdtempSync(join(tmpdir(), "lichen-bench-media-"));
    const store = openStore({ path: join(dir, "lichen.db"), role: "main" });
    try {
      for (const u of ["alice", "bob"]) await server.registerUser(u, `${u}pw`);
      ensureAccount(store, { id: "alice", jid: "alice@localhost", resource: "phone" });
      const bob = await startTestPeer(server.c2sPort, "bob", "bobpw");
      const app = new AppController(
        store,
        {
          accountId: "alice",
          service: `xmpp://127.0.0.1:${server.c2sPort}`,
          domain: "localhost",
          username: "alice",
          password: "alicepw",
          resource: "phone",
        },
        { reconnect: false, media: { attachmentDir: join(dir, "attachments") } },
      );
      await app.foreground();
      const engineTimes: number[] = [];
      const bareTimes: number[] = [];
      // Round 0 warms both paths up (discovery cached, connections, JIT) and is not counted.
      for (let round = 0; round <= rounds; round++) {
        const content = randomBytes(bytes);
        const src = join(dir, `f${round}.bin`);
        writeFileSync(src, content);

        const item = shareToOutbox({
          store,
          accountId: "alice",
          to: "bob@localhost",
          content: {
            kind: "file",
            file: { sourcePath: src, mimeType: "application/octet-stream" },
          },
          attachmentDir: join(dir, "attachments"),
        });
        const t0 = performance.now();
        const uploaded = new Promise<void>((resolve, reject) => {
          const media = app.media!;
          const session = app.session!;
          const done = (err?: Error) => {
            media.off("uploaded", onUploaded);
            media.off("failed", onFailed);
            session.off("attachment-changed", onChanged);
            if (err) reject(err);
            else resolve();
          };
          const onUploaded = (u: { id: string }) => {
            if (u.id === item.id) done();
          };
          const onChanged = (a: { id: string; state: string; error?: Error }) => {
            if (a.id === item.id && a.state === "failed")
              done(new Error(`engine upload failed: ${a.error?.message}`));
          };
          const onFailed = (f: { id: string; error: Error }) => {
            if (f.id === item.id) done(new Error(`engine upload failed: ${f.error.message}`));
          };
          media.on("failed", onFailed);
          media.on("uploaded", onUploaded);
          session.on("attachment-changed", onChanged);
        });
        app.sendOutbox();
        await uploaded;
        const engineMs = performance.now() - t0;

        const answer = (await bob.xmpp.iqCaller.request(
          xml(
            "iq",
            { type: "get", to: "upload.localhost" },
            xml("request", {
              xmlns: NS_UPLOAD,
              filename: `bare${round}.bin`,
              size: String(bytes),
              "content-type": "application/octet-stream",
            }),
          ),
        )) as SlotAnswer;
        const putEl = answer.getChild("put") ?? answer.getChild("slot", NS_UPLOAD)?.getChild("put");
        const put = putEl?.attrs.url;
        if (!putEl || !put) throw new Error("no PUT URL in the bare slot answer");
        const headers = Object.fromEntries(
          putEl.getChildren("header").map((h) => [h.attrs.name ?? "", h.getText()]),
        );
        const t1 = performance.now();
        await barePut(put, content, headers);
        const bareMs = performance.now() - t1;
        rmSync(src);
        if (round === 0) continue;
        engineTimes.push(engineMs);
        bareTimes.push(bareMs);
        ctx.log(
          `${kind} round ${round}: engine ${engineMs.toFixed(0)} ms, bare PUT ${bareMs.toFixed(0)} ms`,
        );
      }
      const engineMbS = FILE_MB / (median(engineTimes) / 1000);
      const bareMbS = FILE_MB / (median(bareTimes) / 1000);
      const prefix = kind === "prosody" ? "" : `${kind}_`;
      metrics[`${prefix}upload_mb_per_s`] = round3(engineMbS);
      metrics[`${prefix}bare_put_mb_per_s`] = round3(bareMbS);
      ratios[`${prefix}upload_vs_bare`] = round3(engineMbS / bareMbS);
      await app.close();
      await bob.stop();
    } finally {
      store.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  metrics.file_mb = FILE_MB;
  metrics.rounds = rounds;
  return { metrics, ratios };
}
