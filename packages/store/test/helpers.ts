import { afterEach, beforeEach } from "vitest";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** A fresh temp directory per test, removed by the returned cleanup. */
export function tempDir(prefix = "lichen-store-"): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Poll `cond` until true or the deadline passes (for cross-process state; no fixed sleeps). */
export async function waitFor(
  cond: () => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A fresh temp directory per test plus the stores opened in it, closed and removed after each test
 * (registers vitest hooks; call at the top of a test file or describe block).
 */
export function useTempStores(): { readonly dir: string; track: <T extends Closable>(s: T) => T } {
  let current: { dir: string; cleanup: () => void } | undefined;
  let open: Closable[] = [];
  beforeEach(() => {
    current = tempDir();
    open = [];
  });
  afterEach(() => {
    for (const s of open) s.close();
    current?.cleanup();
  });
  return {
    get dir() {
      if (!current) throw new Error("useTempStores: dir read outside a test");
      return current.dir;
    },
    track: (s) => {
      open.push(s);
      return s;
    },
  };
}

interface Closable {
  close(): void;
}
