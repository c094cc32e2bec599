// The real push chain on loopback: a user's XMPP server (started by the caller), the real
// `lichen-push` daemon as an XEP-0114 component of it, and the APNs simulator it pushes to.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { AppController, ensurePush } from "@lichen/engine";
import {
  generateApnsKey,
  startApnsSimulator,
  type ApnsDelivery,
  type ApnsSimulator,
} from "@lichen/push-simulators";
import { openStore } from "@lichen/store";
import { lichenPushComponent, startLichenPush, type LichenPushDaemon } from "@lichen/test-kit";
import type { XmppTestServer } from "@lichen/test-servers";

export interface PushChain {
  readonly apns: ApnsSimulator;
  /** The daemon's component domain (the `jid` of a client's XEP-0357 enable). */
  readonly appServerJid: string;
  /** The daemon's app name for APNs alert pushes (the `pushModule` of the enable). */
  readonly pushModule: string;
  /** The daemon's app name for silent (content-available) pushes of the same topic. */
  readonly silentPushModule: string;
  /** Every APNs delivery is passed to these (DeviceSimulator.deliver). */
  onDelivery(listener: (d: ApnsDelivery) => void): void;
  /** The daemon's stdout and stderr so far (its JSON log). */
  daemonLog(): string;
  stop(): Promise<void>;
}

const require = createRequire(import.meta.url);
const LICHEN_PUSH = join(
  dirname(require.resolve("@lichen/push-server/package.json")),
  "dist",
  "cli.js",
);
const LICHEN_CHAT = join(dirname(require.resolve("@lichen/chat/package.json")), "dist", "cli.js");

/**
 * Starts the APNs simulator and the real `lichen-push` daemon connected to `server`'s component
 * port; resolves once the daemon's /healthz says it is online (test-kit's startLichenPush).
 * `rateLimitWindow` is the appserver's per-token window (default "250ms": tests send messages
 * back to back).
 */
export async function startPushChain(
  server: Pick<XmppTestServer, "componentPort" | "componentDomain" | "componentSecret">,
  opts: { rateLimitWindow?: string; topic?: string; timeoutMs?: number } = {},
): Promise<PushChain> {
  const topic = opts.topic ?? "im.lichen.devicesim";
  const key = generateApnsKey();
  const listeners: ((d: ApnsDelivery) => void)[] = [];
  const apns = await startApnsSimulator({
    keys: [{ keyId: key.keyId, teamId: key.teamId, publicKey: key.publicKeyPem }],
    topics: [topic],
    onDelivery: (d) => {
      for (const l of listeners) l(d);
    },
  });
  const dir = mkdtempSync(join(tmpdir(), "lichen-device-chain-"));
  const keyFile = join(dir, "apns.p8");
  writeFileSync(keyFile, key.privateKeyPem);
  const ios = {
    topic,
    teamId: key.teamId,
    keyId: key.keyId,
    privateKeyFile: keyFile,
    endpoint: apns.url,
  };
  let daemon: LichenPushDaemon;
  try {
    daemon = await startLichenPush({
      cli: LICHEN_PUSH,
      configFile: join(dir, "push.yaml"),
      config: {
        component: { ...lichenPushComponent(server), reconnectInitialDelay: "200ms" },
        // The same app, silent: content-available pushes that wake the main app (no NSE).
        apps: { ios, "ios-silent": { ...ios, pushType: "background" } },
        dataDir: dir,
        rateLimitWindow: opts.rateLimitWindow ?? "250ms",
        http: { host: "127.0.0.1", port: 0 },
      },
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    });
  } catch (err) {
    await apns.stop();
    throw err;
  }
  const stop = async () => {
    await daemon.stop();
    await apns.stop();
  };
  return {
    apns,
    appServerJid: server.componentDomain,
    pushModule: "ios",
    silentPushModule: "ios-silent",
    onDelivery: (l) => listeners.push(l),
    daemonLog: () => daemon.logLines().join("\n"),
    stop,
  };
}

/**
 * A new phone's first run: `lichen-chat login` (the real CLI), then the app enables push on its
 * own server for `token` (XEP-0357, through the SDK: `ensurePush`) and goes to the background,
 * leaving a resumable stream. Resolves when the server acknowledged the enable.
 */
export async function setUpAccount(opts: {
  db: string;
  jid: string;
  password: string;
  service: string;
  token: string;
  chain: Pick<PushChain, "appServerJid" | "pushModule">;
  /** Default: the chain's alert app; its silentPushModule for content-available pushes. */
  pushModule?: string;
}): Promise<void> {
  const login = spawn(
    process.execPath,
    [
      LICHEN_CHAT,
      "--db",
      opts.db,
      "login",
      "--jid",
      opts.jid,
      "--password",
      opts.password,
      "--service",
      opts.service,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let err = "";
  login.stderr!.on("data", (d) => (err += String(d)));
  login.stdout!.on("data", () => {});
  const code = await new Promise<number | null>((r) => login.once("exit", (c) => r(c)));
  if (code !== 0) throw new Error(`lichen-chat login failed (exit ${code}): ${err.trim()}`);
  // The same session config lichen-chat builds from its account file.
  const { readAccountSettings, sessionConfig } = await import("@lichen/chat");
  const settings = readAccountSettings(opts.db);
  const store = openStore({ path: opts.db, role: "main" });
  const app = new AppController(store, sessionConfig(settings), { reconnect: false });
  try {
    await app.foreground();
    const enabled = new Promise((r) => app.session!.once("push-enabled", r));
    app.session!.write((ctx) =>
      ensurePush(ctx, {
        appServerJid: opts.chain.appServerJid,
        node: opts.token,
        pushModule: opts.pushModule ?? opts.chain.pushModule,
      }),
    );
    await enabled;
  } finally {
    await app.close();
    store.close();
  }
}
