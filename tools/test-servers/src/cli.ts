#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ensureInstalled } from "./ensure.js";
import { startEjabberd } from "./ejabberd.js";
import { startProsody } from "./prosody.js";
import { startRedis } from "./redis.js";

/** The package version, for --version (package.json is one level above src/ and dist/ alike). */
const VERSION = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;

const HELP = `lichen-test-servers — real XMPP servers and Redis on loopback, for tests

Usage:
  lichen-test-servers ensure            install Prosody, ejabberd, Redis with apt-get if missing (root)
  lichen-test-servers start <kind>      start prosody | ejabberd | redis on free ports,
                                        print their ports as JSON, run until Ctrl-C
  lichen-test-servers --version         print the version
  lichen-test-servers --help            this help

Exit codes: 0 ok, 1 failure, 2 bad usage (unknown option, command or server kind).
`;

/** Bad usage: the message, then the help, on stderr; exit 2 like the other Lichen CLIs. */
function usage(message: string): number {
  process.stderr.write(`lichen-test-servers: ${message}\n\n${HELP}`);
  return 2;
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
        tls: { type: "boolean" },
      },
    });
  } catch (e) {
    return usage((e as Error).message); // names the unknown option
  }
  const { positionals, values } = parsed;
  const [command, kind] = positionals;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (!command) return usage("no command given");
  if (command === "ensure") {
    ensureInstalled({ log: (l) => process.stderr.write(`${l}\n`) });
    process.stderr.write("prosody, ejabberd and redis are installed\n");
    return 0;
  }
  if (command === "start") {
    let stop: () => Promise<void>;
    if (kind === "prosody" || kind === "ejabberd") {
      const s = await (kind === "prosody" ? startProsody : startEjabberd)({
        tls: values.tls ?? false,
      });
      stop = () => s.stop();
      const {
        host,
        domain,
        c2sPort,
        componentPort,
        httpPort,
        componentDomain,
        componentSecret,
        caCertPath,
        dataDir,
        pid,
      } = s;
      process.stdout.write(
        `${JSON.stringify({ kind, host, domain, c2sPort, componentPort, httpPort, componentDomain, componentSecret, caCertPath, dataDir, pid })}\n`,
      );
    } else if (kind === "redis") {
      const r = await startRedis();
      stop = () => r.stop();
      process.stdout.write(`${JSON.stringify({ kind, url: r.url, port: r.port, pid: r.pid })}\n`);
    } else {
      return usage(`unknown server kind: ${kind ?? "(none)"}`);
    }
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    await stop();
    return 0;
  }
  return usage(`unknown command: ${command}`);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(
      `lichen-test-servers: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    process.exit(1);
  },
);
