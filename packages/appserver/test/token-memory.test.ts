import { execFile } from "node:child_process";
import { statSync } from "node:fs";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const fixture = new URL("./fixtures/key-memory.mjs", import.meta.url);
const built = new URL("../dist/token.js", import.meta.url);
const source = new URL("../src/token.ts", import.meta.url);

// The rate limiter holds one key per recent token (1M in the benchmark): a key that is a slice of
// the 64-char hex digest keeps the whole digest alive (~60 MB more per million). Measured in a
// process of its own, after full GCs, against the sliced form as the control.
const KEYS = 200_000;
/** Bytes per key between the flat form (~49 with 64-bit pointers) and the sliced one (~111). */
const LIMIT = 80;

describe("TokenHasher.hash keys in memory", () => {
  it(`a key is a flat 32-char string: retained heap per key < ${LIMIT} bytes (the sliced form is above)`, async () => {
    expect(
      statSync(built).mtimeMs,
      "dist/token.js is older than src/token.ts: run npm run build -w @lichen/appserver",
    ).toBeGreaterThanOrEqual(statSync(source).mtimeMs);
    const { stdout } = await run(process.execPath, ["--expose-gc", fixture.pathname, `${KEYS}`], {
      timeout: 30_000,
    });
    const m = JSON.parse(stdout) as { production: number; sliced: number };
    const figures = `bytes per key: TokenHasher.hash ${m.production.toFixed(1)}, digest("hex").slice(0, 32) ${m.sliced.toFixed(1)}`;
    // the measurement tells the two forms apart (else this test could not fail)
    expect(m.sliced, figures).toBeGreaterThan(LIMIT);
    expect(m.production, figures).toBeLessThan(LIMIT);
  });
});
