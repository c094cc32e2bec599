// Offline replay of the OMEMO benchmark's stanzas through the engine's own receive path (no
// server, no network): each captured stanza is parsed from its text and handed to the session's
// inbound step (plugins' prepare, the stanza's transaction with dispatch, receipt, message row and
// h), as a connected session does, minus the socket writes. Both arms carry the OMEMO plugin, as
// in the benchmark: the OMEMO arm replays the first OMEMO block, the plain arm the first plain
// block, each on a fresh copy of the captured database; arms alternate, the first repetition of
// each is a warm-up. Prints CPU per message (main thread / other threads) and the ratio plain/omemo,
// i.e. what the benchmark's `omemo_vs_plain_cpu` would be without the network and the server.
//   LICHEN_BENCH_CAPTURE=/tmp/cap npm run bench -- omemo   (alice.db, stanzas.jsonl, stanzas-plain.jsonl)
//   node packages/omemo/bench/replay-engine.mjs /tmp/cap 21
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const { DurableSession } = await import("@lichen/engine");
const { openStore, loadAccountState } = await import("@lichen/store");
const { Omemo } = await import("@lichen/omemo");
const parse = (await import("@xmpp/xml/lib/parse.js")).default;
const { threadCpuMs } = await import("./thread-cpu.mjs");

const [cap, repsArg] = process.argv.slice(2);
if (!cap) {
  console.error("usage: replay-engine.mjs <capture dir> [repetitions]");
  process.exit(2);
}
const read = (f) =>
  readFileSync(join(cap, f), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
const texts = { omemo: read("stanzas.jsonl"), plain: read("stanzas-plain.jsonl") };
const results = { omemo: [], plain: [] };

async function run(arm) {
  const dir = mkdtempSync(join(tmpdir(), "lichen-engine-replay-"));
  copyFileSync(join(cap, "alice.db"), join(dir, "alice.db"));
  const store = openStore({ path: join(dir, "alice.db"), role: "main" });
  const session = new DurableSession({
    store,
    accountId: "alice",
    service: "xmpp://127.0.0.1:1",
    domain: "localhost",
    username: "alice",
    password: "x",
    resource: "phone",
    plugins: [new Omemo({ requestTimeoutMs: 60_000 })],
  });
  // As after a resume: the session's counter is the committed one.
  session.committedH = store.read((tx) => loadAccountState(tx, "alice").sm.inboundH);
  let stored = 0,
    failed = 0;
  session.on("message-stored", () => stored++);
  session.on("stanza-failed", () => failed++);
  const th0 = threadCpuMs();
  const c0 = process.cpuUsage(),
    t0 = performance.now();
  for (const text of texts[arm]) await session.handleInboundPrepared(parse(text));
  const c = process.cpuUsage(c0),
    t = performance.now() - t0;
  const th = threadCpuMs();
  const decryptFailures = store.sqlite
    .prepare("SELECT count(*) AS n FROM messages WHERE body LIKE 'could not decrypt%'")
    .get().n;
  store.close();
  rmSync(dir, { recursive: true, force: true });
  const n = texts[arm].length;
  results[arm].push({
    cpu: (c.user + c.system) / 1000 / n,
    wall: t / n,
    main: (th.main - th0.main) / n,
    others: (th.others - th0.others) / n,
    stored,
    failed: failed + decryptFailures,
  });
}

const reps = Number(repsArg ?? 11);
// LICHEN_REPLAY_ARM=omemo (or plain): that arm only, e.g. for a CPU profile of one arm.
const only = process.env.LICHEN_REPLAY_ARM;
for (let r = 0; r < reps; r++)
  for (const a of r % 2 ? ["plain", "omemo"] : ["omemo", "plain"])
    if (!only || only === a) await run(a);
const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const summary = {};
for (const a of only ? [only] : ["omemo", "plain"]) {
  const rs = results[a].slice(1);
  summary[a] = {
    cpu: med(rs.map((r) => r.cpu)),
    main: med(rs.map((r) => r.main)),
    others: med(rs.map((r) => r.others)),
    wall: med(rs.map((r) => r.wall)),
  };
  console.log(
    `${a}: ${texts[a].length} stanzas, ${results[a][0].stored} stored, ${results[a][0].failed} failed;`,
    `ms per message (median of ${rs.length}): cpu ${summary[a].cpu.toFixed(3)}`,
    `(main ${summary[a].main.toFixed(3)}, others ${summary[a].others.toFixed(3)}), wall ${summary[a].wall.toFixed(3)};`,
    "cpu per rep:",
    rs.map((r) => r.cpu.toFixed(3)).join(" "),
  );
}
if (!only)
  console.log(
    `plain/omemo: cpu ${(summary.plain.cpu / summary.omemo.cpu).toFixed(3)},`,
    `main thread ${(summary.plain.main / summary.omemo.main).toFixed(3)},`,
    `wall ${(summary.plain.wall / summary.omemo.wall).toFixed(3)}`,
  );
