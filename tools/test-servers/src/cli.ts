#!/usr/bin/env node
import { parseArgs } from "node:util";
import { ensureInstalled } from "./ensure.js";
import { startEjabberd } from "./ejabberd.js";
import { startProsody } from "./prosody.js";
import { startRedis } from "./redis.js";

const HELP = `lichen-test-servers — real XMPP servers and Redis on loopback, for tests

Usage:
  lichen-test-servers ensure            install Prosody, ejabberd, Redis with apt-get if missing (root)
  lichen-test-servers start <kind>      start prosody | ejabberd | redis on free ports,
                                        print their ports as JSON, run until Ctrl-C
  lichen-test-servers --help            this help
`;

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { help: { type: "boolean", short: "h" }, tls: { type: "boolean" } },
  });
  const [command, kind] = positionals;
  if (values.help || !command) {
    process.stdout.write(HELP);
    return values.help ? 0 : 1;
  }
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
      process.stderr.write(`unknown server kind: ${kind ?? "(none)"}\n\n${HELP}`);
      return 1;
    }
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    await stop();
    return 0;
  }
  process.stderr.write(`unknown command: ${command}\n\n${HELP}`);
  return 1;
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
