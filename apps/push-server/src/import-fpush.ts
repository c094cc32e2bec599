import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseDuration } from "@lichen/appserver";

/** The outcome of converting fpush's settings.json: a lichen-push config and what did not map. */
export interface FpushImport {
  yaml: string;
  /** One line per field without an equivalent, or needing the operator (never secrets). */
  notes: string[];
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Json) : undefined;
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

const APP_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

/** YAML for nested maps of scalars: JSON strings/numbers/booleans are valid YAML scalars. */
function toYaml(v: Json, indent = ""): string {
  return Object.entries(v)
    .filter(([, x]) => x !== undefined)
    .map(([k, x]) => {
      const key = /^[A-Za-z0-9_.:-]+$/.test(k) ? k : JSON.stringify(k);
      const o = obj(x);
      return o
        ? `${indent}${key}:\n${toYaml(o, `${indent}  `)}`
        : `${indent}${key}: ${JSON.stringify(x)}\n`;
    })
    .join("");
}

/**
 * Converts fpush's settings.json (component, pushModules, timeout) into a lichen-push config.
 * Both fpush blacklist spellings are read (normalBlacklisting/extendedBlacklisting and
 * invalidToken.initalBlocking/extendedBlocking). An FCM module's service-account JSON is read when
 * `readFiles`, its private key written as a 0600 PEM into `outDir` (the config names the file).
 */
export function importFpush(
  text: string,
  o: { outDir: string; readFiles?: boolean } = { outDir: "." },
): FpushImport {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`not JSON: ${(e as Error).message}`);
  }
  const root = obj(raw);
  if (!root) throw new Error("not an fpush settings object");
  const notes: string[] = [];
  const note = (s: string) => notes.push(s);
  const dur = (v: unknown, what: string): string | undefined => {
    if (v === undefined) return undefined;
    const s = typeof v === "number" ? `${v}s` : str(v)?.replace(/\s+/g, "");
    if (s !== undefined && parseDuration(s) !== undefined) return s;
    note(`${what}: duration ${JSON.stringify(v)} not understood; lichen-push's default kept`);
    return undefined;
  };

  const c = obj(root.component);
  if (!c)
    throw new Error(
      "component: missing (componentHostname, componentKey, serverHostname, serverPort)",
    );
  const component: Json = {
    service: `xmpp://${str(c.serverHostname) ?? "127.0.0.1"}:${typeof c.serverPort === "number" ? c.serverPort : 5347}`,
    domain: str(c.componentHostname),
    secret: str(c.componentKey),
  };
  const reconnect = dur(obj(root.timeout)?.xmppconnectionError, "timeout.xmppconnectionError");
  if (reconnect) component.reconnectInitialDelay = reconnect;

  const apps: Json = {};
  let defaultApp: string | undefined;
  for (const [id, m0] of Object.entries(obj(root.pushModules) ?? {})) {
    const m = obj(m0) ?? {};
    const where = `pushModules.${id}`;
    if (!APP_NAME.test(id)) {
      note(
        `${where}: the module name is not a valid lichen-push app name ([A-Za-z0-9_.:-]{1,64}); skipped`,
      );
      continue;
    }
    const type = str(m.type)?.toLowerCase();
    if (type === "apple") {
      const a = obj(m.apns) ?? {};
      const env = str(a.environment)?.toLowerCase() ?? "production";
      const endpoint =
        env === "sandbox" ? "https://api.sandbox.push.apple.com" : "https://api.push.apple.com";
      const certFile = str(a.certFilePath);
      // fpush authenticates with the push certificate (.p12): lichen-push does too
      apps[id] = certFile
        ? {
            type: "apns",
            topic: str(a.topic) ?? "SET-ME",
            certificateFile: certFile,
            ...(typeof a.certPassword === "string" && a.certPassword !== ""
              ? { certificatePassphrase: a.certPassword }
              : {}),
            endpoint,
          }
        : {
            type: "apns",
            topic: str(a.topic) ?? "SET-ME",
            teamId: "SET-ME",
            keyId: "SET-ME",
            privateKeyFile: `/etc/lichen-push/AuthKey_${id}.p8`,
            endpoint,
          };
      const app = apps[id] as Json;
      if (typeof a.requestTimeout === "number") app.requestTimeout = `${a.requestTimeout}s`;
      if (certFile)
        note(
          `${where}.apns.certFilePath: → apps.${id}.certificateFile (the passphrase is in the output file: keep it owner-only); check-config opens it and checks topic, environment and expiry`,
        );
      else
        note(
          `${where}.apns: no certFilePath; set apps.${id}.certificateFile, or teamId, keyId and privateKeyFile of an APNs key (.p8) (placeholders written)`,
        );
      const extra = obj(a.additionalData);
      if (extra && !("aps" in extra)) app.additionalData = extra;
      else if (a.additionalData !== undefined)
        note(
          `${where}.apns.additionalData: not a JSON object without an "aps" key; dropped (set apps.${id}.additionalData by hand)`,
        );
      if (a.poolIdleTimeout !== undefined)
        note(`${where}.apns.poolIdleTimeout: no equivalent (connections are kept open); dropped`);
    } else if (type === "google") {
      const f = obj(m.fcm) ?? {};
      const path = str(f.fcmSecretPath);
      const app: Json = {
        type: "fcm",
        projectId: "SET-ME",
        clientEmail: "SET-ME",
        privateKeyFile: join(o.outDir, `${id}-fcm-key.pem`),
        tokenUri: "https://oauth2.googleapis.com/token",
        endpoint: "https://fcm.googleapis.com",
      };
      let sa: Json | undefined;
      if (path && o.readFiles !== false) {
        try {
          sa = obj(JSON.parse(readFileSync(path, "utf8")));
        } catch (e) {
          note(
            `${where}.fcm.fcmSecretPath: cannot read ${path} (${(e as Error).message}); fill apps.${id}.projectId, clientEmail and the key file by hand`,
          );
        }
      }
      const key = str(sa?.private_key);
      if (sa && key) {
        app.projectId = str(sa.project_id) ?? "SET-ME";
        app.clientEmail = str(sa.client_email) ?? "SET-ME";
        if (str(sa.token_uri)) app.tokenUri = str(sa.token_uri);
        // The service account's key, as the PEM file the config names (owner-only, like the JSON).
        const out = app.privateKeyFile as string;
        writeFileSync(out, key, { mode: 0o600 });
        chmodSync(out, 0o600);
        note(
          `${where}.fcm: service account ${path} → apps.${id} (private key written to ${out}, mode 0600)`,
        );
      } else if (sa) {
        note(`${where}.fcm.fcmSecretPath: ${path} has no private_key; fill apps.${id} by hand`);
      }
      apps[id] = app;
    } else {
      note(
        `${where}: module type ${JSON.stringify(m.type)} has no lichen-push equivalent (apple and google only); skipped`,
      );
      continue;
    }
    if (m.is_default_module === true || m.isDefaultModule === true) {
      if (defaultApp) note(`${where}: a second default module; ${defaultApp} stays the default`);
      else defaultApp = id;
    }
    // fpush's limits are per module: each becomes its app's own rateLimit / blacklist
    const app = apps[id] as Json;
    const rl = obj(m.ratelimit);
    if (rl) {
      const window =
        rl.enabled === false ? "0s" : dur(rl.ratelimitTime, `${where}.ratelimit.ratelimitTime`);
      const hardLimit = dur(rl.hardRatelimitTime, `${where}.ratelimit.hardRatelimitTime`);
      if (window || hardLimit)
        app.rateLimit = { ...(window ? { window } : {}), ...(hardLimit ? { hardLimit } : {}) };
      if (rl.enabled === false)
        note(`${where}.ratelimit.enabled false: → apps.${id}.rateLimit.window 0s (no spacing)`);
    }
    const bl = obj(m.blacklist);
    if (!bl)
      // fpush fills a missing section with its defaults; which ones depends on its release
      note(
        `${where}: no blacklist section: lichen-push's defaults apply — a dead token blocked 24h, then 5d, extended 10m per push while blocked — the same as fpush's defaults since its invalidToken/pushError settings (Nov 2022); fpush's first release (normalBlacklisting/extendedBlacklisting) blocked 600s then 1200s: to keep that, set apps.${id}.blacklist.firstBlock 600s and repeatBlock 1200s. fpush's default pushError blocks (10m, then 20m after provider errors) have no equivalent (lichen-push retries and answers wait)`,
      );
    if (bl) {
      const inv = obj(bl.invalidToken);
      const firstBlock = dur(
        bl.normalBlacklisting ?? inv?.initalBlocking ?? inv?.initialBlocking,
        `${where}.blacklist`,
      );
      const repeatBlock = dur(
        bl.extendedBlacklisting ?? inv?.extendedBlocking,
        `${where}.blacklist`,
      );
      const hitExtension = dur(bl.blockExtension, `${where}.blacklist.blockExtension`);
      if (firstBlock || repeatBlock || hitExtension)
        app.blacklist = {
          ...(firstBlock ? { firstBlock } : {}),
          ...(repeatBlock ? { repeatBlock } : {}),
          ...(hitExtension ? { hitExtension } : {}),
        };
      if (bl.pushError !== undefined)
        note(
          `${where}.blacklist.pushError: no equivalent (lichen-push never blocks a token for a provider error; it retries and answers wait)`,
        );
    }
  }
  if (Object.keys(apps).length === 0) note("no push module could be converted: add apps by hand");
  const cfg: Json = {
    component,
    apps,
    ...(defaultApp ? { defaultApp } : {}),
    dataDir: "/var/lib/lichen-push",
  };
  const header =
    "# lichen-push config converted from fpush settings.json by `lichen-push import-fpush`.\n" +
    "# Check it with `lichen-push check-config`; every field: examples/push.yaml.\n";
  return { yaml: header + toYaml(cfg), notes };
}
