#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Command, CommanderError } from "commander";
import {
  ADMIN_TOKEN_FILE,
  ADMIN_URL_FILE,
  checkConfigFile,
  ConfigError,
  loadConfigFile,
} from "@lichen/appserver";
import { runDaemon } from "./daemon.js";

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
