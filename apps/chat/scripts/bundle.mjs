// Bundles the built CLI (dist/cli.js) into dist/bundle/ with esbuild, one chunk per command, so a
// process loads a few files instead of several hundred modules. The NSE is a fresh process per
// push with a time and memory budget: resolving and compiling the module graph of the engine,
// store, drizzle, xmpp.js and ajv was most of its start (the engine benchmark's
// nse_cold_start_p50_ms). bin/lichen-chat.mjs runs the bundle when it exists.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { schemas, validatorKeys } from "@lichen/schema";
import { Ajv } from "ajv";
import addFormatsModule from "ajv-formats";
import standaloneCode from "ajv/dist/standalone/index.js";
import { build } from "esbuild";

const root = new URL("..", import.meta.url);
const { version } = JSON.parse(readFileSync(new URL("package.json", root), "utf8"));

// Chunk names change with their content: start from an empty folder.
rmSync(new URL("dist/bundle", root), { recursive: true, force: true });

// @lichen/schema compiles a JSON Schema validator at its first use, tens of ms each (more than
// all the module loading in the NSE): the bundle gets them precompiled (ajv standalone code, the
// same ajv options as packages/schema/src/validate.ts), installed before the CLI runs.
const addFormats = addFormatsModule.default ?? addFormatsModule;
const ajv = new Ajv({ allErrors: true, strict: false, code: { source: true, esm: true } });
addFormats(ajv);
// Without the annotations (description, title, $comment): they do not change what validates, and
// the standalone code embeds the schemas, descriptions and all, as source the NSE has to load.
const withoutAnnotations = (v) =>
  Array.isArray(v)
    ? v.map(withoutAnnotations)
    : v && typeof v === "object"
      ? Object.fromEntries(
          Object.entries(v)
            .filter(
              ([k]) =>
                !["description", "title", "$comment"].includes(k) || typeof v[k] !== "string",
            )
            .map(([k, x]) => [k, withoutAnnotations(x)]),
        )
      : v;
for (const schema of Object.values(schemas)) ajv.addSchema(withoutAnnotations(schema));
const keys = validatorKeys();
const work = new URL("dist/bundle-entry/", root);
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
writeFileSync(
  new URL("validators.js", work),
  standaloneCode(ajv, Object.fromEntries(keys.map((k, i) => [`v${i}`, k.ref]))),
);
writeFileSync(
  new URL("cli.js", work),
  [
    'import { usePrecompiledValidators } from "@lichen/schema";',
    'import * as v from "./validators.js";',
    `usePrecompiledValidators({ ${keys.map((k, i) => `${JSON.stringify(k.key)}: v.v${i}`).join(", ")} });`,
    'await import("../cli.js");',
  ].join("\n"),
);
// The NSE's entry (bin/lichen-chat.mjs loads it with require() for the `nse` command): the same
// program as one CommonJS file. An ES module graph costs the NSE's cold start tens of ms more than
// require(): each `import` of a Node built-in builds an ES module facade over all its exports
// (node:crypto's even loads WebCrypto), and every chunk goes through the ESM loader. The commands
// stay lazy: esbuild evaluates a dynamically imported module only when it is first imported.
writeFileSync(
  new URL("nse.js", work),
  [
    'import { usePrecompiledValidators } from "@lichen/schema";',
    'import * as v from "./validators.js";',
    'export { main } from "../program.js";',
    // For scripts/nse-code-cache.mjs: evaluates the nse command's modules without running it.
    'export async function warmUp() { await import("../commands/nse.js"); }',
    `usePrecompiledValidators({ ${keys.map((k, i) => `${JSON.stringify(k.key)}: v.v${i}`).join(", ")} });`,
  ].join("\n"),
);

await build({
  absWorkingDir: new URL(".", root).pathname,
  entryPoints: ["dist/bundle-entry/cli.js"],
  outdir: "dist/bundle",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // Native addon (and its loader): loaded from node_modules at run time.
  external: ["better-sqlite3"],
  // CommonJS dependencies bundled into ESM still call require() for Node's built-ins.
  banner: {
    js: 'import { createRequire as __lichenCreateRequire } from "node:module"; const require = __lichenCreateRequire(import.meta.url);',
  },
  define: { LICHEN_CHAT_VERSION: JSON.stringify(version) },
  // Less source for V8 to parse at start; names are kept (readable stacks and profiles).
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: "linked",
  logLevel: "warning",
});

// commander loads node:child_process when it is loaded, for executable subcommands lichen-chat does
// not have: compiling that built-in was ~10% of the NSE's start CPU. Load it at first use instead.
const lazyChildProcessInCommander = {
  name: "lazy-child-process-in-commander",
  setup(b) {
    b.onLoad({ filter: /[\\/]commander[\\/]lib[\\/]command\.js$/ }, (args) => {
      const eager = "const childProcess = require('node:child_process');";
      const source = readFileSync(args.path, "utf8");
      if (!source.includes(eager))
        throw new Error(`${args.path}: no "${eager}" to make lazy (commander changed?)`);
      const lazy =
        "const childProcess = { spawn: (...a) => require('node:child_process').spawn(...a) };";
      return { contents: source.replace(eager, lazy), loader: "js" };
    });
  },
};

await build({
  absWorkingDir: new URL(".", root).pathname,
  entryPoints: { nse: "dist/bundle-entry/nse.js" },
  plugins: [lazyChildProcessInCommander],
  outdir: "dist/bundle",
  outExtension: { ".js": ".cjs" },
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node20",
  external: ["better-sqlite3"],
  // import.meta is empty in CommonJS; the code uses import.meta.url to find its package files.
  banner: { js: 'var __lichenImportMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
  define: {
    LICHEN_CHAT_VERSION: JSON.stringify(version),
    "import.meta.url": "__lichenImportMetaUrl",
  },
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: "linked",
  logLevel: "warning",
});
// Its V8 code cache, made in a process with the NSE's V8 flags.
execFileSync(process.execPath, [new URL("nse-code-cache.mjs", import.meta.url).pathname], {
  stdio: "inherit",
});
