#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { startApnsSimulator } from "./apns.js";
import { generateApnsKey, generateFcmServiceAccount } from "./credentials.js";
import { startFcmSimulator } from "./fcm.js";

/** The package version, for --version (package.json is one level above src/ and dist/ alike). */
const VERSION = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;

const HELP = `Usage: lichen-push-sim <apns|fcm> [options]

Starts an APNs (HTTP/2) or FCM v1 simulator on 127.0.0.1 with fresh credentials, prints one JSON
line (url and the credentials an appserver app config needs), then one JSON line per request when
--log is given, and runs until SIGTERM or SIGINT.

Options:
  --port <n>          port to listen on (default: a free port)
  --topic <bundle>    APNs topic to accept (repeatable; default im.lichen.app)
  --tls               APNs: TLS with a self-signed certificate (printed as caPem)
  --max-streams <n>   APNs: SETTINGS_MAX_CONCURRENT_STREAMS (default 1000)
  --project <id>      FCM project id (default lichen-sim)
  --log               print every request's outcome as a JSON line
  -V, --version       print the version
  -h, --help          show this help

Example:
  lichen-push-sim apns --port 2197 --topic im.lichen.app
`;

function fail(msg: string): never {
  process.stderr.write(`lichen-push-sim: ${msg}\n\n${HELP}`);
  process.exit(2);
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        port: { type: "string" },
        topic: { type: "string", multiple: true },
        tls: { type: "boolean" },
        "max-streams": { type: "string" },
        project: { type: "string" },
        log: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    });
  } catch (e) {
    fail((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const kind = positionals[0];
  if (positionals.length !== 1 || (kind !== "apns" && kind !== "fcm")) {
    fail("expected exactly one command: apns or fcm");
  }
  const int = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 65_535) fail(`--${name} must be an integer 0..65535`);
    return n;
  };
  const port = int("port", values.port);
  const line = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
  const onResponse = values.log ? line : undefined;

  let stop: () => Promise<void>;
  if (kind === "apns") {
    const key = generateApnsKey();
    const topics = values.topic ?? ["im.lichen.app"];
    const maxStreams = int("max-streams", values["max-streams"]);
    const sim = await startApnsSimulator({
      ...(port === undefined ? {} : { port }),
      tls: values.tls ?? false,
      keys: [{ keyId: key.keyId, teamId: key.teamId, publicKey: key.publicKeyPem }],
      topics,
      ...(maxStreams === undefined ? {} : { maxConcurrentStreams: maxStreams }),
      ...(onResponse ? { onResponse } : {}),
    });
    line({
      simulator: "apns",
      url: sim.url,
      app: {
        type: "apns",
        topic: topics[0],
        teamId: key.teamId,
        keyId: key.keyId,
        privateKeyPem: key.privateKeyPem,
        endpoint: sim.url,
        ...(sim.caPem ? { caPem: sim.caPem } : {}),
      },
    });
    stop = () => sim.stop();
  } else {
    const sa = generateFcmServiceAccount({ projectId: values.project ?? "lichen-sim" });
    const sim = await startFcmSimulator({
      ...(port === undefined ? {} : { port }),
      projectId: sa.projectId,
      clientEmail: sa.clientEmail,
      serviceAccountPublicKey: sa.publicKeyPem,
      ...(onResponse ? { onResponse } : {}),
    });
    line({
      simulator: "fcm",
      url: sim.url,
      app: {
        type: "fcm",
        projectId: sa.projectId,
        clientEmail: sa.clientEmail,
        privateKeyPem: sa.privateKeyPem,
        tokenUri: sim.tokenUri,
        endpoint: sim.url,
      },
    });
    stop = () => sim.stop();
  }
  const shutdown = (): void => {
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

main().catch((e: unknown) => {
  process.stderr.write(`lichen-push-sim: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
