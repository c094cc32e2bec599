// Loads the NSE's CommonJS bundle (dist/bundle/nse.cjs) through vm.Script with V8's code cache
// (dist/bundle/nse.cjs.cache, made at build time by scripts/nse-code-cache.mjs), as require()
// would but without compiling the bundle from source.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

/**
 * The V8 flags of the NSE process (see lichen-chat.mjs); the code cache is made under them.
 * --semi-space-growth-factor=1: the young generation stays at its initial size instead of
 * doubling under the sync's allocations (-1.7 MB peak RSS, same CPU, in the engine benchmark's
 * NSE run; the process lives for seconds, more scavenges cost it nothing measurable).
 */
export const NSE_V8_FLAGS = "--no-opt --no-sparkplug --semi-space-growth-factor=1";

export const nseBundlePath = fileURLToPath(new URL("../dist/bundle/nse.cjs", import.meta.url));
export const nseCachePath = `${nseBundlePath}.cache`;

/** `cachedData` undefined: compile from source. Returns whether V8 took the cache. */
export function loadNseBundle({ cachedData }) {
  const source = readFileSync(nseBundlePath, "utf8");
  const wrapper = "(function (exports, require, module, __filename, __dirname) {" + source + "\n})";
  const script = new vm.Script(wrapper, { filename: nseBundlePath, cachedData });
  const module = { exports: {} };
  script
    .runInThisContext()
    .call(
      module.exports,
      module.exports,
      createRequire(nseBundlePath),
      module,
      nseBundlePath,
      dirname(nseBundlePath),
    );
  return {
    script,
    exports: module.exports,
    cacheRejected: cachedData === undefined ? null : script.cachedDataRejected === true,
  };
}

/** With the build's code cache when it is there (a missing or rejected cache only costs time). */
export function loadNseBundleCached() {
  let cachedData;
  try {
    cachedData = readFileSync(nseCachePath);
  } catch {
    cachedData = undefined;
  }
  return loadNseBundle({ cachedData });
}
