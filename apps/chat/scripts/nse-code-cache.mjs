// Writes dist/bundle/nse.cjs.cache: V8's code cache for the NSE bundle, which bin/lichen-chat.mjs
// hands to vm.Script. Parsing and compiling the 0.8 MB bundle was the largest single cost of the
// NSE's cold start. Run by scripts/bundle.mjs in its own process with the NSE's V8 flags: V8
// rejects a cache made under other flags (the bin then compiles from source, slower, same result).
import { writeFileSync } from "node:fs";
import v8 from "node:v8";
import { loadNseBundle, NSE_V8_FLAGS } from "../bin/nse-loader.mjs";

v8.setFlagsFromString(NSE_V8_FLAGS);
const { script, exports } = loadNseBundle({ cachedData: undefined });
// Evaluate the modules the NSE runs (the nse command and all it imports: engine, store, xmpp.js,
// drizzle): their top-level code is then compiled and goes into the cache, not only the bundle's
// outer function. Nothing connects or opens a database here.
await exports.warmUp();
writeFileSync(new URL("../dist/bundle/nse.cjs.cache", import.meta.url), script.createCachedData());
