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
  /** Human-oriented lines for the startup log. */
  describe(httpPort: number): string[];
  stop(): Promise<void>;
}

interface LocalXmpp {
  c2sPort: number;
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
    await p.registerUser("alice", "alicepw");
    await p.registerUser("bob", "bobpw");
    return p;
  } catch {
    return undefined;
  }
}

export const DEMO_APNS_TOPIC = "im.lichen.demo";

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
    describe: (httpPort) => [
      `demo mode: APNs simulator ${apns.url} (topic ${DEMO_APNS_TOPIC}), FCM simulator ${fcm.url}`,
      xmpp
        ? `local Prosody: log in as alice@localhost / alicepw on 127.0.0.1:${xmpp.c2sPort} (plain TCP), enable push with <enable xmlns='urn:xmpp:push:0' jid='${config.component.domain}' node='<64 hex chars>'/>; add pushModule=android for FCM`
        : `waiting for an XMPP server's component port at ${config.component.service} (component ${config.component.domain}, secret ${config.component.secret === "pushsecret" ? "pushsecret" : "(from env)"})`,
      `metrics: http://127.0.0.1:${httpPort}/metrics, health: http://127.0.0.1:${httpPort}/healthz, data: ${config.dataDir}`,
    ],
    stop: async () => {
      await xmpp?.stop();
      await apns.stop();
      await fcm.stop();
    },
  };
}
