#!/usr/bin/env node
// The bin npm links at `npm ci`, before anything is built: without dist/ it says what to do
// (a bin pointing into a missing dist/ made `npx lichen-chat` fall through to the public registry).
// Built-ins through process.getBuiltinModule, not `import`: an ES module import of a built-in
// builds a facade over all its exports (node:fs's loads its stream classes), a cost at every start.
const { existsSync } = process.getBuiltinModule("node:fs");
const v8 = process.getBuiltinModule("node:v8");

// The bundle (scripts/bundle.mjs, part of the build) starts in a fraction of the time of the
// module graph in dist/ (the NSE's cold start); dist/cli.js is the same program unbundled.
const bundle = new URL("../dist/bundle/cli.js", import.meta.url);
const cli = new URL("../dist/cli.js", import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write("lichen-chat: not built yet; run `npm run build` in the repository root\n");
  process.exit(1);
}
// The NSE process lives for seconds per push under a memory limit: V8's compilers beyond the
// interpreter (TurboFan, Sparkplug) cost it ~5 MB of peak RSS (nse_peak_rss_mb in the engine
// benchmark: 60 -> 55 MB) and pay off only in long-running processes (NSE_V8_FLAGS in
// nse-loader.mjs). Set before any code is loaded; the command is the first argument that is not a
// global option (--db <path>, --account <jid>, --verbose).
const args = process.argv.slice(2);
let i = 0;
while (i < args.length && args[i].startsWith("-"))
  i += args[i] === "--db" || args[i] === "--account" ? 2 : 1; // the global options with a value
if (args[i] === "nse" && existsSync(new URL("../dist/bundle/nse.cjs.cache", import.meta.url))) {
  // The NSE's own bundle: CommonJS, compiled from V8's code cache (scripts/bundle.mjs).
  const { NSE_V8_FLAGS, loadNseBundleCached } = await import("./nse-loader.mjs");
  v8.setFlagsFromString(NSE_V8_FLAGS);
  const code = await loadNseBundleCached().exports.main(process.argv);
  // As dist/cli.js: let pipes drain, then exit (a suspended session may leave sockets or timers).
  await Promise.all(
    [process.stdout, process.stderr].map((s) => new Promise((r) => s.write("", () => r()))),
  );
  process.exit(code);
}
if (args[i] === "nse") v8.setFlagsFromString("--no-opt --no-sparkplug");
await import((existsSync(bundle) ? bundle : cli).href);
