// The bundle's precompiled JSON Schema validators (scripts/bundle.mjs, ajv standalone code) must
// give every committed vector the same verdict and the same errors as @lichen/schema compiling
// the schemas itself; and the bundle must not carry ajv's compiler (the NSE never loads it).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import * as schema from "@lichen/schema";
import { loadSchemaVectors } from "@lichen/test-kit";
import { describe, expect, it } from "vitest";

const chatRoot = join(import.meta.dirname, "..");
const generated = join(chatRoot, "dist", "bundle-entry", "validators.js");

const validators: Record<string, (v: unknown) => schema.ValidationResult<unknown>> = {
  "handler-descriptor": schema.validateHandlerDescriptor,
  "account-state": schema.validateAccountState,
  "ipc-message": schema.validateIpcMessage,
  "process-lock-record": schema.validateProcessLockRecord,
  "share-outbox-item": schema.validateShareOutboxItem,
  "notification-content": schema.validateNotificationContent,
  "push-registration": schema.validatePushRegistration,
};

const vectors = loadSchemaVectors().map((v) => ({
  id: v.id,
  type: v.type,
  value: JSON.parse(v.text) as unknown,
}));

/** The generated module, run as the bundle runs it (its require() calls need a require). */
async function loadGenerated(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), "lichen-validators-"));
  try {
    const file = join(dir, "validators.mjs");
    writeFileSync(
      file,
      `import { createRequire } from "node:module"; const require = createRequire(${JSON.stringify(generated)});\n` +
        readFileSync(generated, "utf8"),
    );
    return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("bundle: precompiled validators", () => {
  it("agree with the runtime-compiled ones on every vector (verdict and errors)", async () => {
    expect(vectors.length).toBeGreaterThan(10);
    expect(new Set(vectors.map((v) => v.type))).toEqual(new Set(Object.keys(validators)));
    // Compiled here by ajv at first use (this process installed nothing yet)...
    const runtime = vectors.map((v) => validators[v.type]!(v.value));
    expect(runtime.some((r) => r.ok)).toBe(true);
    expect(runtime.some((r) => !r.ok)).toBe(true);
    // ...then the generated code installed, as the bundle's entry does.
    const mod = await loadGenerated();
    const keys = schema.validatorKeys();
    expect(Object.keys(mod).filter((k) => /^v\d+$/.test(k))).toHaveLength(keys.length);
    schema.usePrecompiledValidators(
      Object.fromEntries(
        keys.map((k, i) => [
          k.key,
          mod[`v${i}`] as Parameters<typeof schema.usePrecompiledValidators>[0][string],
        ]),
      ),
    );
    vectors.forEach((v, i) => {
      expect({ id: v.id, result: validators[v.type]!(v.value) }).toEqual({
        id: v.id,
        result: runtime[i],
      });
    });
  });

  it("does not carry ajv's schema compiler", () => {
    const files = readdirSync(join(chatRoot, "dist", "bundle")).filter((f) => /\.c?js$/.test(f));
    expect(files).toContain("cli.js");
    expect(files).toContain("nse.cjs");
    for (const f of files) {
      const text = readFileSync(join(chatRoot, "dist", "bundle", f), "utf8");
      expect({
        f,
        compiler: text.includes("ajv/dist/compile") || text.includes("class Ajv"),
      }).toEqual({
        f,
        compiler: false,
      });
    }
  });
});

describe("bundle: the NSE's CommonJS bundle", () => {
  it("compiles from its V8 code cache under the NSE's V8 flags, and not under others", () => {
    // A cache V8 rejects (other flags, other Node) costs the NSE's cold start its compile time
    // without any other sign: the bin's loader reports it, in a fresh process as the bin runs it.
    const loader = pathToFileURL(join(chatRoot, "bin", "nse-loader.mjs")).href;
    const load = (flags: boolean) => {
      const r = spawnSync(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `import v8 from "node:v8";
           const l = await import(${JSON.stringify(loader)});
           if (${flags}) v8.setFlagsFromString(l.NSE_V8_FLAGS);
           const b = l.loadNseBundleCached();
           console.log(JSON.stringify({ rejected: b.cacheRejected, main: typeof b.exports.main }));`,
        ],
        { encoding: "utf8" },
      );
      expect(r.stderr).toBe("");
      return JSON.parse(r.stdout) as unknown;
    };
    expect(load(true)).toEqual({ rejected: false, main: "function" });
    expect(load(false)).toEqual({ rejected: true, main: "function" });
  });
});
