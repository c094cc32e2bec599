// Offline replay of the OMEMO benchmark's stanzas (no server, no network): each captured stanza
// goes through Omemo.prepare, then stillValid + apply in one write transaction, as the engine does,
// on a fresh copy of the captured database per repetition; arms alternate, the first repetition of
// each arm is a warm-up, and the median CPU and wall time per message are printed. This is the
// plugin's own work per message, which the full benchmark's ratios (dominated by the engine's
// shared work and the machine's load) cannot resolve.
//   LICHEN_BENCH_CAPTURE=/tmp/cap npm run bench -- omemo     (writes alice.db, stanzas.jsonl)
//   node packages/omemo/bench/replay-omemo.mjs /tmp/cap 21 <built dist dir>...
// An arm is a copy of packages/omemo/dist made before or after a change, placed under the
// repository (e.g. node_modules/.arms/before) so that its imports resolve.
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
const { DurableSession } = await import("@lichen/engine");
const { openStore } = await import("@lichen/store");
const parse = (await import("@xmpp/xml/lib/parse.js")).default;
const { threadCpuMs } = await import("./thread-cpu.mjs");
const [cap, repsArg, ...arms] = process.argv.slice(2);
const stanzas = readFileSync(join(cap, "stanzas.jsonl"), "utf8")
  .trim()
  .split("\n")
  .map((l) => JSON.parse(l));
const mods = {};
for (const a of arms) mods[a] = await import(resolve(a) + "/index.js");
const results = Object.fromEntries(arms.map((a) => [a, []]));
async function run(arm) {
  const dir = mkdtempSync(join(tmpdir(), "lichen-omemo-replay-"));
  copyFileSync(join(cap, "alice.db"), join(dir, "alice.db"));
  const store = openStore({ path: join(dir, "alice.db"), role: "main" });
  const omemo = new mods[arm].Omemo({ role: "nse" });
  const session = new DurableSession({
    store,
    accountId: "alice",
    service: "xmpp://127.0.0.1:1",
    domain: "localhost",
    username: "alice",
    password: "x",
    resource: "phone",
    plugins: [omemo],
  });
  const els = stanzas.map((s) => parse(s));
  let ok = 0,
    failed = 0;
  // Parsing (the engine's work) is left out of the measured span.
  const th0 = threadCpuMs();
  const c0 = process.cpuUsage(),
    t0 = performance.now();
  for (const el of els) {
    const p = await omemo.prepare(el, session);
    if (!p) continue;
    store.write((tx) => {
      if (p.stillValid && !p.stillValid(tx)) throw new Error("stale");
      p.apply?.({
        tx,
        accountId: "alice",
        state: { omemo: {} },
        afterCommit: (cb) => tx.afterCommit(cb),
        session,
      });
    });
    const body = p.stanza?.getChild("body")?.getText() ?? "";
    if (body.startsWith("could not decrypt")) {
      failed++;
      if (failed < 3) console.error(body);
    } else ok++;
  }
  const c = process.cpuUsage(c0),
    t = performance.now() - t0;
  const th = threadCpuMs();
  store.close();
  rmSync(dir, { recursive: true, force: true });
  const n = ok + failed;
  results[arm].push({
    cpuPerMsg: (c.user + c.system) / 1000 / n,
    wallPerMsg: t / n,
    mainPerMsg: (th.main - th0.main) / n,
    othersPerMsg: (th.others - th0.others) / n,
    ok,
    failed,
  });
}
const reps = Number(repsArg);
for (let r = 0; r < reps; r++) for (const a of r % 2 ? [...arms].reverse() : arms) await run(a);
const med = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
for (const a of arms) {
  const rs = results[a].slice(1); // first rep of each arm: warm-up
  console.log(
    a,
    `n=${results[a][0].ok}+${results[a][0].failed} failed`,
    "cpu ms/msg p50",
    med(rs.map((r) => r.cpuPerMsg)).toFixed(4),
    "wall",
    med(rs.map((r) => r.wallPerMsg)).toFixed(4),
    "main thread",
    med(rs.map((r) => r.mainPerMsg)).toFixed(3),
    "other threads",
    med(rs.map((r) => r.othersPerMsg)).toFixed(3),
    "all cpu:",
    rs.map((r) => r.cpuPerMsg.toFixed(3)).join(" "),
  );
}
