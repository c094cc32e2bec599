import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  applyEnvOverrides,
  validateConfig,
  type AppServerConfig,
  type AppServerConfigInput,
} from "@lichen/appserver";
import {
  generateApnsKey,
  generateFcmServiceAccount,
  startApnsSimulator,
  startFcmSimulator,
  type ApnsSimulator,
  type FcmSimulator,
} from "@lichen/push-simulators";

/** The demo's moving parts: simulators, maybe a local Prosody, and the config pointing at them. */
export interface Demo {
  config: AppServerConfig;
  /** What runs where, the accounts and the commands to try, as data (the JSON log's fields). */
  info(httpPort: number): DemoInfo;
  stop(): Promise<void>;
}

export interface DemoAccount {
  jid: string;
  password: string;
}

export interface DemoInfo {
  apns: { url: string; topic: string; app: string };
  fcm: { url: string; app: string };
  /** The local Prosody, or null when waiting for an XMPP server at `component.service`. */
  prosody: { c2s: string; domain: string; pid: number; accounts: DemoAccount[] } | null;
  component: { service: string; domain: string };
  http: { metrics: string; healthz: string };
  dataDir: string;
  /** Shell lines that log alice in, enable push and make bob write to her (with a local Prosody). */
  commands: string[];
}

interface LocalXmpp {
  c2sPort: number;
  pid: number;
  componentPort: number;
  componentDomain: string;
  componentSecret: string;
  registerUser(u: string, p: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A local Prosody through @lichen/test-servers when that (test tooling) package is installed and the
 * server binaries are there; undefined otherwise.
 */
async function localProsody(): Promise<LocalXmpp | undefined> {
  const specifier = "@lichen/test-servers";
  try {
    const m = (await import(specifier)) as { startProsody(): Promise<LocalXmpp> };
    const p = await m.startProsody();
    for (const a of DEMO_ACCOUNTS) await p.registerUser(a.jid.split("@")[0]!, a.password);
    return p;
  } catch {
    return undefined;
  }
}

export const DEMO_APNS_TOPIC = "im.lichen.demo";

/** The accounts the local Prosody gets (domain localhost). */
export const DEMO_ACCOUNTS: readonly DemoAccount[] = [
  { jid: "alice@localhost", password: "alicepw" },
  { jid: "bob@localhost", password: "bobpw" },
];

/**
 * How to run lichen-chat here: the built CLI of this checkout when it is there (a monorepo clone),
 * otherwise the installed bin.
 */
function chatCommand(): string {
  const cli = fileURLToPath(new URL("../../chat/dist/cli.js", import.meta.url));
  return existsSync(cli) ? `node ${cli}` : "lichen-chat";
}

function demoCommands(c2s: string, componentDomain: string): string[] {
  const chat = chatCommand();
  const [alice, bob] = DEMO_ACCOUNTS as [DemoAccount, DemoAccount];
  // A fresh random device token each run: what an iPhone would register.
  const token = randomBytes(32).toString("hex");
  return [
    `${chat} --db alice.db login --jid ${alice.jid} --password ${alice.password} --service ${c2s}`,
    `${chat} --db alice.db push enable --appserver ${componentDomain} --node ${token} --module ios`,
    `${chat} --db bob.db login --jid ${bob.jid} --password ${bob.password} --service ${c2s}`,
    `${chat} --db bob.db send ${alice.jid} "hello alice"`,
  ];
}

/** The banner `lichen-push start` prints on a terminal in demo mode. */
export function demoBanner(i: DemoInfo): string {
  const lines = [
    "",
    "Lichen push appserver demo — Ctrl-C to stop (stops everything listed here)",
    "",
    `  push appserver  lichen-push (pid ${process.pid}), XMPP component ${i.component.domain} via ${i.component.service}`,
    i.prosody
      ? `  XMPP server     Prosody (pid ${i.prosody.pid}), clients on ${i.prosody.c2s} (plain TCP), domain ${i.prosody.domain}`
      : `  XMPP server     none started: waiting for one at ${i.component.service} (component ${i.component.domain})`,
    `  APNs simulator  ${i.apns.url}, topic ${i.apns.topic} (app "${i.apns.app}", the default)`,
    `  FCM simulator   ${i.fcm.url} (app "${i.fcm.app}": push enable --module ${i.fcm.app})`,
    `  metrics         ${i.http.metrics}   health ${i.http.healthz}`,
    `  data            ${i.dataDir}`,
  ];
  if (i.prosody) {
    lines.push(
      "",
      `Accounts: ${i.prosody.accounts.map((a) => `${a.jid} / ${a.password}`).join(", ")}`,
      "",
      "Try it in another terminal (alice enables push, then bob writes to her while her app is suspended):",
      ...i.commands.map((c) => `  ${c}`),
      "",
      'Each push shows here as "push delivered" (token hashed), and the APNs simulator receives it.',
    );
  }
  lines.push("");
  return lines.join("\n");
}

/**
 * Demo setup for `lichen-push start` without a config: APNs and FCM simulators in-process (fresh
 * keys), SQLite in ./lichen-push-data, and an XMPP server: a local Prosody when possible, otherwise
 * xmpp://127.0.0.1:5347 (domain push.localhost, secret pushsecret), retried with back-off.
 * Environment overrides (LICHEN_PUSH_...) apply as with a config file.
 */
export async function startDemo(env: NodeJS.ProcessEnv): Promise<Demo> {
  const apnsKey = generateApnsKey();
  const apns: ApnsSimulator = await startApnsSimulator({
    keys: [{ keyId: apnsKey.keyId, teamId: apnsKey.teamId, publicKey: apnsKey.publicKeyPem }],
    topics: [DEMO_APNS_TOPIC],
  });
  const sa = generateFcmServiceAccount();
  const fcm: FcmSimulator = await startFcmSimulator({
    projectId: sa.projectId,
    clientEmail: sa.clientEmail,
    serviceAccountPublicKey: sa.publicKeyPem,
  });
  const xmpp = env.LICHEN_PUSH_COMPONENT__SERVICE ? undefined : await localProsody();
  const raw: AppServerConfigInput = {
    component: {
      service: xmpp ? `xmpp://127.0.0.1:${xmpp.componentPort}` : "xmpp://127.0.0.1:5347",
      domain: xmpp?.componentDomain ?? "push.localhost",
      secret: xmpp?.componentSecret ?? "pushsecret",
    },
    apps: {
      ios: {
        type: "apns",
        topic: DEMO_APNS_TOPIC,
        teamId: apnsKey.teamId,
        keyId: apnsKey.keyId,
        privateKeyPem: apnsKey.privateKeyPem,
        endpoint: apns.url,
      },
      android: {
        type: "fcm",
        projectId: sa.projectId,
        clientEmail: sa.clientEmail,
        privateKeyPem: sa.privateKeyPem,
        tokenUri: fcm.tokenUri,
        endpoint: fcm.url,
      },
    },
    defaultApp: "ios",
    dataDir: "./lichen-push-data",
    http: { host: "127.0.0.1", port: 9464 },
  };
  const config = validateConfig(
    applyEnvOverrides(raw as Record<string, unknown>, env),
    "(demo defaults)",
  );
  return {
    config,
    info: (httpPort) => {
      const http = `http://127.0.0.1:${httpPort}`;
      const c2s = xmpp ? `xmpp://127.0.0.1:${xmpp.c2sPort}` : "";
      return {
        apns: { url: apns.url, topic: DEMO_APNS_TOPIC, app: "ios" },
        fcm: { url: fcm.url, app: "android" },
        prosody: xmpp
          ? { c2s, domain: "localhost", pid: xmpp.pid, accounts: [...DEMO_ACCOUNTS] }
          : null,
        component: { service: config.component.service, domain: config.component.domain },
        http: { metrics: `${http}/metrics`, healthz: `${http}/healthz` },
        dataDir: config.dataDir,
        commands: xmpp ? demoCommands(c2s, config.component.domain) : [],
      };
    },
    stop: async () => {
      await xmpp?.stop();
      await apns.stop();
      await fcm.stop();
    },
  };
}
