// XEP-0454 file crypto (no servers): the fragment format, the 16-byte IVs older senders used, and
// what a wrong key, an altered or a truncated file give — a typed error, no plaintext left behind.
import { createCipheriv, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  decryptFile,
  encryptFile,
  fromAesgcmUrl,
  newAesgcmFragment,
  parseFragment,
  toAesgcmUrl,
} from "../src/media/aesgcm.js";

const dir = mkdtempSync(join(tmpdir(), "lichen-aesgcm-"));
const path = (name: string) => join(dir, name);

describe("XEP-0454 aesgcm files", () => {
  it("a fragment is 12 bytes of IV then 32 of key in hex; the link round-trips", () => {
    const fragment = newAesgcmFragment();
    expect(fragment).toMatch(/^[0-9a-f]{88}$/);
    const { iv, key } = parseFragment(fragment);
    expect([iv.length, key.length]).toEqual([12, 32]);
    expect(iv.toString("hex")).toBe(fragment.slice(0, 24));
    const url = toAesgcmUrl("https://upload.example/a/b%20c.pdf", fragment);
    expect(url).toBe(`aesgcm://upload.example/a/b%20c.pdf#${fragment}`);
    expect(fromAesgcmUrl(url)).toEqual({
      fetchUrl: "https://upload.example/a/b%20c.pdf",
      fragment,
    });
  });

  it("malformed fragments and links are a MediaError bad-url", () => {
    for (const bad of ["", "zz", "0".repeat(87), "0".repeat(90), `${"0".repeat(87)}g`])
      expect(() => parseFragment(bad)).toThrow(expect.objectContaining({ code: "bad-url" }));
    expect(() => fromAesgcmUrl("aesgcm://host/file")).toThrow(
      expect.objectContaining({ code: "bad-url" }),
    );
  });

  it("encrypts to ciphertext + 16-byte tag and decrypts it; a 16-byte IV (older senders) is read too", async () => {
    const plain = randomBytes(70_000);
    writeFileSync(path("plain"), plain);
    const fragment = newAesgcmFragment();
    await encryptFile(path("plain"), path("enc"), fragment);
    const enc = readFileSync(path("enc"));
    expect(enc.length).toBe(plain.length + 16);
    expect(enc.subarray(0, 1000).equals(plain.subarray(0, 1000))).toBe(false);
    await decryptFile(path("enc"), path("dec"), fragment);
    expect(readFileSync(path("dec")).equals(plain)).toBe(true);

    const iv16 = randomBytes(16);
    const key = randomBytes(32);
    const cipher = createCipheriv("aes-256-gcm", key, iv16);
    writeFileSync(
      path("enc16"),
      Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]),
    );
    const legacy = iv16.toString("hex") + key.toString("hex");
    expect(legacy).toHaveLength(96);
    await decryptFile(path("enc16"), path("dec16"), legacy);
    expect(readFileSync(path("dec16")).equals(plain)).toBe(true);
  });

  it("an altered file, a wrong key or a truncated file: decrypt-failed, no plaintext written", async () => {
    const plain = randomBytes(200_000);
    writeFileSync(path("p2"), plain);
    const fragment = newAesgcmFragment();
    await encryptFile(path("p2"), path("e2"), fragment);
    const enc = readFileSync(path("e2"));
    const altered = Buffer.from(enc);
    altered[100_000] = altered[100_000]! ^ 0x80;
    writeFileSync(path("altered"), altered);
    const wrongKey = fragment.slice(0, 24) + newAesgcmFragment().slice(24);
    writeFileSync(path("short"), enc.subarray(0, 10));
    for (const [src, frag] of [
      ["altered", fragment],
      ["e2", wrongKey],
      ["short", fragment],
    ] as const) {
      const out = path(`out-${src}`);
      await expect(decryptFile(path(src), out, frag)).rejects.toMatchObject({
        code: "decrypt-failed",
      });
      expect(existsSync(out)).toBe(false);
    }
  });
});
