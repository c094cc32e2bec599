import { readFileSync } from "node:fs";
import type { AppConfig } from "./config.js";
import { createProvider } from "./providers/index.js";
import type {
  ProviderAppConfig,
  ProviderOptions,
  ProviderPush,
  ProviderResult,
  PushKind,
} from "./providers/types.js";
import type { AppSender, PushJob, SendOutcome } from "./push-service.js";

function readPem(
  inline: string | undefined,
  file: string | undefined,
  field: string,
): string | undefined {
  if (inline !== undefined) return inline;
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`${field}: cannot read ${file}: ${(e as Error).message}`);
  }
}

/** The provider-level config of an app (keys read from files where the config names files). */
export function providerConfig(name: string, app: AppConfig): ProviderAppConfig {
  const caPem = readPem(app.caPem, app.caFile, `apps.${name}.caFile`);
  if (app.type === "apns" && app.certificateFile !== undefined) {
    let pfx: Buffer;
    try {
      pfx = readFileSync(app.certificateFile);
    } catch (e) {
      throw new Error(
        `apps.${name}.certificateFile: cannot read ${app.certificateFile}: ${(e as Error).message}`,
      );
    }
    return {
      type: "apns",
      name,
      topic: app.topic,
      certificate: {
        pfx,
        ...(app.certificatePassphrase !== undefined
          ? { passphrase: app.certificatePassphrase }
          : {}),
      },
      endpoint: app.endpoint,
      connections: app.connections,
      requestTimeoutMs: app.requestTimeout,
      ...(caPem ? { caPem } : {}),
      ...(app.alert ? { alert: app.alert } : {}),
      ...(app.additionalData ? { additionalData: app.additionalData } : {}),
    };
  }
  const privateKeyPem = readPem(
    app.privateKeyPem,
    app.privateKeyFile,
    `apps.${name}.privateKeyFile`,
  )!;
  if (app.type === "apns") {
    return {
      type: "apns",
      name,
      topic: app.topic,
      teamId: app.teamId!,
      keyId: app.keyId!,
      privateKeyPem,
      endpoint: app.endpoint,
      connections: app.connections,
      requestTimeoutMs: app.requestTimeout,
      ...(caPem ? { caPem } : {}),
      ...(app.alert ? { alert: app.alert } : {}),
      ...(app.additionalData ? { additionalData: app.additionalData } : {}),
    };
  }
  return {
    type: "fcm",
    name,
    projectId: app.projectId,
    clientEmail: app.clientEmail,
    privateKeyPem,
    tokenUri: app.tokenUri,
    endpoint: app.endpoint,
    requestTimeoutMs: app.requestTimeout,
    ...(caPem ? { caPem } : {}),
    ...(app.additionalData ? { additionalData: app.additionalData } : {}),
  };
}

/** The pipeline's view of a provider's classification. */
function sendOutcome(r: ProviderResult): SendOutcome {
  switch (r.outcome) {
    case "delivered":
      return DELIVERED;
    case "invalid-token":
      return { kind: "invalid-token", reason: `${r.status} ${r.reason}` };
    case "rate-limited":
      return {
        kind: "rate-limited",
        reason: `${r.status} ${r.reason}`,
        ...(r.retryAfterMs ? { retryAfterMs: r.retryAfterMs } : {}),
      };
    case "transient":
      return {
        kind: "transient",
        reason: `${r.status} ${r.reason}`,
        ...(r.retryAfterMs ? { retryAfterMs: r.retryAfterMs } : {}),
      };
    case "misconfigured":
      return { kind: "misconfigured", reason: `${r.status} ${r.reason}` };
  }
}

const DELIVERED: SendOutcome = { kind: "delivered" };

/**
 * The sender of one app: decides the push's shape (kind, ttl, collapse id; never content) and maps
 * the provider's classification onto the pipeline's outcomes.
 */
export function createProviderSender(
  name: string,
  app: AppConfig,
  opts: ProviderOptions = {},
): AppSender {
  const provider = createProvider(providerConfig(name, app), opts);
  const ttlSeconds = Math.round(app.ttl / 1000);
  const kindOf = (job: PushJob): PushKind =>
    app.pushType === "auto" ? (job.important ? "alert" : "background") : app.pushType;
  const collapseId = app.collapseId;
  const pushOf = (job: PushJob): ProviderPush => {
    // no pushId: the APNs provider makes the apns-id itself (one random UUID, not one made here
    // and then checked against the UUID pattern there)
    const push: ProviderPush = { token: job.token, kind: kindOf(job), ttlSeconds };
    if (collapseId) push.collapseId = collapseId;
    return push;
  };
  const sendWith = provider.sendWith?.bind(provider);
  return {
    caseInsensitiveTokens: app.type === "apns",
    ttlMs: app.ttl,
    // the providers time their requests out themselves (FCM: the OAuth token fetch, then the send)
    attemptTimeoutMs: app.type === "fcm" ? 2 * app.requestTimeout : app.requestTimeout,
    send(job: PushJob): Promise<SendOutcome> {
      return provider.send(pushOf(job)).then(sendOutcome);
    },
    ...(sendWith
      ? {
          sendWith(job: PushJob, done: (o: SendOutcome) => void): void {
            sendWith(pushOf(job), (r) => done(sendOutcome(r)));
          },
        }
      : {}),
    close: () => provider.close(),
  };
}
