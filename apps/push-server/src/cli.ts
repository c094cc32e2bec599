#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { ConfigError, loadConfigFile } from "@lichen/appserver";
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
  .description("validate a config file (and environment overrides); print the problems by field")
  .argument("<file>", "YAML config file")
  .action((file: string) => {
    const cfg = loadConfigFile(file);
    process.stdout.write(
      `${file}: ok (component ${cfg.component.domain} via ${cfg.component.service}; apps: ${Object.keys(cfg.apps).join(", ")}${cfg.redis ? "; redis sync on" : ""})\n`,
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
