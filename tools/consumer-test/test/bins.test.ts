// Issue 11, item 13: every workspace bin is a file in the repository (not in dist/), so `npm ci`
// links it and `npx <bin>` finds it locally instead of asking the public registry; before a build
// it explains what to run.
import { spawnSync } from "node:child_process";
import { accessSync, constants, copyFileSync, mkdirSync, mkdtempSync, readdirSync } from "node:fs";
import { existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { packageJson } from "@lichen/test-kit";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..", "..", "..");
const WANTED = [
  "lichen-chat",
  "lichen-push",
  "lichen-push-sim",
  "lichen-store",
  "lichen-test-servers",
];

function workspaceBins(): { bin: string; file: string }[] {
  const found: { bin: string; file: string }[] = [];
  for (const group of ["packages", "apps", "tools"])
    for (const ws of readdirSync(join(ROOT, group))) {
      const dir = join(ROOT, group, ws);
      if (!existsSync(join(dir, "package.json"))) continue;
      for (const [bin, file] of Object.entries(packageJson(dir).bin ?? {}))
        found.push({ bin, file: join(dir, file) });
    }
  return found;
}

describe("workspace bins", () => {
  const bins = workspaceBins().filter((b) => WANTED.includes(b.bin));

  it("are executable files outside dist/", () => {
    expect(bins.map((b) => b.bin).sort()).toEqual(WANTED);
    for (const b of bins) {
      expect(b.file, b.bin).not.toMatch(/[/\\]dist[/\\]/);
      accessSync(b.file, constants.X_OK);
    }
  });

  it("say to run the build when dist/ is missing (exit 1), instead of a stack trace", () => {
    const tmp = mkdtempSync(join(tmpdir(), "lichen-bins-"));
    try {
      for (const b of bins) {
        // The same file in a package without dist/.
        const copy = join(tmp, b.bin, basename(dirname(b.file)), basename(b.file));
        mkdirSync(dirname(copy), { recursive: true });
        copyFileSync(b.file, copy);
        const r = spawnSync(process.execPath, [copy, "--version"], { encoding: "utf8" });
        expect(r.status, b.bin).toBe(1);
        expect(r.stderr, b.bin).toContain(`${b.bin}: not built yet; run \`npm run build\``);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
