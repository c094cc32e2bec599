#!/usr/bin/env node
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { Command, CommanderError } from "commander";
import {
  ADMIN_TOKEN_FILE,
  ADMIN_URL_FILE,
  checkConfigFile,
  ConfigError,
  loadConfigFile,
  TokenHasher,
} from "@lichen/appserver";
import { runDaemon } from "./daemon.js";
import { importFpush } from "./import-fpush.js";

/** The package version, for --version (package.json is one level above src/ and dist/ alike). */
const VERSION = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;

const program = new Command();
program
  .name("lichen-push")
  .description(
    "Privacy-friendly XEP-0357 push appserver (XEP-0114 component): rate limits, blacklists, APNs/FCM, multi-node sync.",
  )
  .version(VERSION, "-V, --version", "print the version")
  .configureOutput({
    outputError: (str, write) => write(`lichen-push: ${str.replace(/^error: /, "")}`),
  })
  .showHelpAfterError()
  .exitOverride()
  .addHelpText(
    "after",
    `
Examples:
  lichen-push start                          demo: simulators + local data dir, no external services
  lichen-push start --config push.yaml       production: YAML config (env LICHEN_PUSH_<PATH> overrides)
  lichen-push check-config push.yaml         validate a config and exit (non-zero on errors)

Environment overrides use "__" between path segments, e.g.
  LICHEN_PUSH_COMPONENT__SECRET=... LICHEN_PUSH_REDIS__URL=redis://127.0.0.1:6379`,
  );

program
  .command("start")
  .description("run the appserver until SIGINT/SIGTERM (graceful shutdown persists queued pushes)")
  .option("-c, --config <file>", "YAML config file; without it, run the embedded demo setup")
  .action(async (opts: { config?: string }) => {
    await runDaemon({ configFile: opts.config });
  });

program
  .command("check-config")
  .description(
    "validate a config file (and environment overrides) and each app's credentials (key files parsed, a test JWT signed); print every problem by field",
  )
  .argument("<file>", "YAML config file")
  .action(async (file: string) => {
    const r = await checkConfigFile(file);
    if (!r.config) throw new ConfigError(r.issues, file);
    const cfg = r.config;
    process.stdout.write(
      `${file}: ok (component ${cfg.component.domain} via ${cfg.component.service}; apps: ${Object.keys(cfg.apps).join(", ")}${cfg.redis ? "; redis sync on" : ""})\n`,
    );
  });

/** Calls the running daemon's /admin/ API (address and token from its config and data folder). */
async function admin(configFile: string, method: string, path: string): Promise<unknown> {
  const cfg = loadConfigFile(configFile);
  const tokenFile = join(cfg.dataDir, ADMIN_TOKEN_FILE);
  let token: string;
  try {
    token = readFileSync(tokenFile, "utf8").trim();
  } catch (e) {
    throw new Error(
      `cannot read the admin token ${tokenFile} (has the daemon started?): ${(e as Error).message}`,
    );
  }
  let base: string;
  try {
    base = readFileSync(join(cfg.dataDir, ADMIN_URL_FILE), "utf8").trim();
  } catch (e) {
    throw new Error(
      `cannot read ${join(cfg.dataDir, ADMIN_URL_FILE)} (has the daemon started?): ${(e as Error).message}`,
    );
  }
  const url = `${base}${path}`;
  let res: Response;
  try {
    res = await fetch(url, { method, headers: { authorization: `Bearer ${token}` } });
  } catch (e) {
    throw new Error(`daemon not reachable at ${url}: ${(e as Error).message}`);
  }
  const body = (await res.json()) as unknown;
  if (!res.ok) throw new Error(`${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

interface DomainRow {
  domain: string;
  state: string;
  badTokens: number;
  activeTokens: number;
  threshold: number;
  blockedUntil?: number;
}

function printDomain(d: DomainRow): void {
  const until = d.blockedUntil ? ` until ${new Date(d.blockedUntil).toISOString()}` : "";
  process.stdout.write(
    `${d.domain}\t${d.state}${until}\tbad tokens ${d.badTokens} (threshold ${d.threshold}, active tokens ${d.activeTokens})\n`,
  );
}

const CONFIG_OPT = ["-c, --config <file>", "the daemon's YAML config file", "push.yaml"] as const;

program
  .command("domains")
  .description("list domains that are restricted or blocked (or one domain) on the running daemon")
  .argument("[domain]", "show only this domain")
  .option(...CONFIG_OPT)
  .option("--json", "print JSON")
  .action(async (domain: string | undefined, opts: { config: string; json?: boolean }) => {
    const r = await admin(
      opts.config,
      "GET",
      `domains${domain ? `/${encodeURIComponent(domain)}` : ""}`,
    );
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return;
    }
    const rows = domain ? [r as DomainRow] : (r as { domains: DomainRow[] }).domains;
    if (rows.length === 0) process.stdout.write("no domain is restricted or blocked\n");
    rows.forEach(printDomain);
  });

program
  .command("unblock-domain")
  .description("lift a domain's block and restriction (forgets its invalid-token count)")
  .argument("<domain>")
  .option(...CONFIG_OPT)
  .action(async (domain: string, opts: { config: string }) => {
    printDomain(
      (await admin(
        opts.config,
        "POST",
        `domains/${encodeURIComponent(domain)}/unblock`,
      )) as DomainRow,
    );
  });

program
  .command("block-domain")
  .description(
    "block a domain: no provider traffic, its pushes get wait errors (registrations kept)",
  )
  .argument("<domain>")
  .option(...CONFIG_OPT)
  .option("--for <duration>", "how long, e.g. 6h (default: blacklist.domain.block)")
  .action(async (domain: string, opts: { config: string; for?: string }) => {
    const q = opts.for ? `?for=${encodeURIComponent(opts.for)}` : "";
    printDomain(
      (await admin(
        opts.config,
        "POST",
        `domains/${encodeURIComponent(domain)}/block${q}`,
      )) as DomainRow,
    );
  });

/**
 * The hash a log line shows, from a hash or a raw token given on the command line (hashed here
 * with the daemon's secret: the raw token never leaves this process and is never printed).
 */
function tokenHash(configFile: string, tokenOrHash: string): string {
  if (/^[0-9a-f]{32}$/.test(tokenOrHash)) return tokenOrHash;
  const cfg = loadConfigFile(configFile);
  let secret = cfg.tokens.hashSecret;
  if (!secret) {
    const f = join(cfg.dataDir, "hash-secret");
    try {
      secret = readFileSync(f, "utf8").trim();
    } catch (e) {
      throw new Error(`cannot read the hash secret ${f}: ${(e as Error).message}`);
    }
  }
  // APNs tokens (hex) are hashed lower-cased, like the appserver does; others as given.
  return new TokenHasher(secret).hash(tokenOrHash, /^[0-9a-fA-F]+$/.test(tokenOrHash));
}

const iso = (ms: unknown) => (typeof ms === "number" ? new Date(ms).toISOString() : "-");

program
  .command("token")
  .description(
    "show (or --unblock) one token on the running daemon: by the hash a log line shows, or the raw token (hashed locally, never printed)",
  )
  .argument("<token-or-hash>")
  .option(...CONFIG_OPT)
  .option("--unblock", "lift its blacklist entry (and strikes)")
  .action(async (t: string, opts: { config: string; unblock?: boolean }) => {
    const hash = tokenHash(opts.config, t);
    const r = (await admin(
      opts.config,
      opts.unblock ? "POST" : "GET",
      `tokens/${hash}${opts.unblock ? "/unblock" : ""}`,
    )) as Record<string, unknown>;
    const lines = [
      `token ${hash}`,
      `  blacklisted: ${r.blocked ? `yes, until ${iso(r.blockedUntil)} (strikes ${String(r.strikes)})` : "no"}`,
      `  last delivery: ${r.lastDelivery ? `${iso(r.lastDelivery)} (${String(r.domain)})` : "none known to this node"}`,
      `  rate limit: ${r.nextSendAllowed ? `next send not before ${iso(r.nextSendAllowed)}` : "free"}${r.queuedDue ? `; a push queued for ${iso(r.queuedDue)}` : ""}`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  });

program
  .command("tokens")
  .description("list the tokens the running daemon has blacklisted (hashes, latest block first)")
  .option(...CONFIG_OPT)
  .action(async (opts: { config: string }) => {
    const r = (await admin(opts.config, "GET", "tokens")) as {
      blocked: number;
      tokens: { token: string; blockedUntil: number; strikes: number }[];
    };
    if (r.tokens.length === 0) process.stdout.write("no token is blacklisted\n");
    for (const t of r.tokens) {
      process.stdout.write(
        `${t.token}\tblocked until ${iso(t.blockedUntil)}\tstrikes ${t.strikes}\n`,
      );
    }
    if (r.blocked > r.tokens.length)
      process.stdout.write(`(${r.blocked - r.tokens.length} more not shown)\n`);
  });

program
  .command("queued")
  .description("list the pushes the running daemon holds for later (token hashes only)")
  .option(...CONFIG_OPT)
  .action(async (opts: { config: string }) => {
    const r = (await admin(opts.config, "GET", "queued")) as {
      queued: { token: string; app: string; domain: string; due: number; retries?: number }[];
    };
    if (r.queued.length === 0) process.stdout.write("no queued pushes\n");
    for (const q of r.queued) {
      process.stdout.write(
        `${q.token}\t${q.app}\t${q.domain}\tdue ${iso(q.due)}${q.retries ? `\tretry ${q.retries}` : ""}\n`,
      );
    }
  });

program
  .command("import-fpush")
  .description(
    "convert fpush's settings.json into a lichen-push config; prints what has no equivalent",
  )
  .argument("<settings.json>", "fpush's config file")
  .option("-o, --out <file>", "write the config here (default: stdout)")
  .action((file: string, opts: { out?: string }) => {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new Error(`cannot read ${file}: ${(e as Error).message}`);
    }
    const outDir = opts.out ? dirname(resolve(opts.out)) : process.cwd();
    let r;
    try {
      r = importFpush(text, { outDir });
    } catch (e) {
      throw new Error(`${file}: ${(e as Error).message}`);
    }
    if (opts.out) writeFileSync(opts.out, r.yaml, { mode: 0o600 });
    else process.stdout.write(r.yaml);
    for (const n of r.notes) process.stderr.write(`note: ${n}\n`);
    process.stderr.write(
      `${opts.out ? `wrote ${opts.out}; ` : ""}next: lichen-push check-config ${opts.out ?? "<file>"}\n`,
    );
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  if (e instanceof CommanderError) {
    // Commander printed the message (naming an unknown option) or the help/version already.
    // Help and version exit 0; bad usage exits 2, as in the other Lichen CLIs.
    process.exit(
      e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.exitCode === 0
        ? 0
        : 2,
    );
  }
  if (e instanceof ConfigError) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`lichen-push: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
