// The BUILT lichen-chat sending and fetching a file against real Prosody (mod_http_file_share):
// `send --file` with progress lines, `tail` showing the file, `download` refused then done.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startProsody, type XmppTestServer } from "@lichen/test-servers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loginArgs, requireBuiltCli, runCli } from "./helpers.js";

const T = 90_000;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("lichen-chat send --file / download (Prosody)", () => {
  let server: XmppTestServer;
  let dir: string;
  beforeAll(async () => {
    requireBuiltCli();
    server = await startProsody();
    await server.registerUser("alice", "alicepw");
    await server.registerUser("bob", "bobpw");
    dir = mkdtempSync(join(tmpdir(), "lichen-chat-media-"));
  }, T);
  afterAll(async () => {
    await server?.stop();
  }, T);

  it(
    "send --file uploads with progress lines and sends the URL once; tail shows the file; download refuses too large, then fetches it intact",
    async () => {
      const alice = join(dir, "alice.db");
      const bob = join(dir, "bob.db");
      expect((await runCli(alice, loginArgs("alice", server.c2sPort))).code).toBe(0);
      expect((await runCli(bob, loginArgs("bob", server.c2sPort))).code).toBe(0);
      const photo = randomBytes(2 * 1024 * 1024);
      const file = join(dir, "photo.jpg");
      writeFileSync(file, photo);

      const sent = await runCli(alice, [
        "send",
        "bob@localhost",
        "--file",
        file,
        "--mime",
        "image/jpeg",
      ]);
      expect(sent.stderr).toMatch(/upload photo\.jpg: 2\.0\/2\.0 MB \(100%\)/);
      expect(sent.stderr).toMatch(/upload photo\.jpg: [01]\.\d\/2\.0 MB \([1-9]\d%\)/);
      expect(sent.code).toBe(0);
      const originId = sent.stdout.trim();
      expect(originId).toMatch(/^[0-9a-f-]{36}$/);

      // Bob's app wakes in the background (resume: the message waited in his hibernated stream).
      expect((await runCli(bob, ["background"])).code).toBe(0);
      const tail = JSON.parse(
        (await runCli(bob, ["tail", "alice@localhost", "--json"])).stdout,
      ) as {
        id: number;
        originId: string;
        body: string;
        file?: { state: string };
      }[];
      const got = tail.filter((m) => m.originId === originId);
      expect(got).toHaveLength(1);
      expect(got[0]!.file?.state).toBe("remote");
      expect(got[0]!.body).toMatch(/^http:\/\/localhost:\d+\/.*photo\.jpg$/);
      const human = (await runCli(bob, ["tail", "alice@localhost"])).stdout;
      expect(human).toContain(`not downloaded: lichen-chat download ${got[0]!.id}`);

      const refused = await runCli(bob, ["download", String(got[0]!.id), "--max-bytes", "1000000"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(
        /download refused or failed: refused: the file has 2097152 bytes, the limit is 1000000/,
      );
      const wrong = await runCli(bob, ["download", String(got[0]!.id), "--accept", "video/*"]);
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toMatch(/content type image\/jpeg is not one of video\/\*/);

      const ok = await runCli(bob, ["download", String(got[0]!.id), "--accept", "image/*"]);
      expect(ok.stderr).toMatch(new RegExp(`download #${got[0]!.id}: 2\\.0/2\\.0 MB \\(100%\\)`));
      expect(ok.code).toBe(0);
      expect(sha(readFileSync(ok.stdout.trim()))).toBe(sha(photo));
      expect((await runCli(bob, ["tail", "alice@localhost"])).stdout).toMatch(
        /\[file image\/jpeg 2\.0 MB, downloaded\]/,
      );
    },
    T,
  );
});
