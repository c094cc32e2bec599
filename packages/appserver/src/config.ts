import { readFileSync } from "node:fs";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { z } from "zod";
import { checkCredentials } from "./credentials.js";

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;
const UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "20s", "10m", "24h", "5d", "250ms" or a plain number of milliseconds. */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v === "number" && Number.isFinite(v) && v >= 0) return Math.round(v);
  if (typeof v !== "string") return undefined;
  const m = DURATION.exec(v.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNIT[m[2]!]!);
}

const duration = (def: string) =>
  z
    .union([z.number(), z.string()])
    .default(def)
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({
          code: "custom",
          message: `expected a duration like "20s", "10m", "24h" or milliseconds, got ${JSON.stringify(v)}`,
        });
        return z.NEVER;
      }
      return ms;
    });

const optionalDuration = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `expected a duration like "20s", "10m", "24h" or milliseconds, got ${JSON.stringify(v)}`,
    });
    return z.NEVER;
  }
  return ms;
});

/**
 * Per-app overrides of the global rateLimit and blacklist.token timings (fpush has them per push
 * module); unset fields take the global value.
 */
const appPolicy = {
  rateLimit: z
    .strictObject({ window: optionalDuration.optional(), hardLimit: optionalDuration.optional() })
    .optional(),
  blacklist: z
    .strictObject({
      firstBlock: optionalDuration.optional(),
      repeatBlock: optionalDuration.optional(),
      hitExtension: optionalDuration.optional(),
    })
    .optional(),
};

const appName = z
  .string()
  .regex(/^[A-Za-z0-9_.:-]{1,64}$/, "app names are 1-64 chars of [A-Za-z0-9_.:-]");

const pem = z.string().regex(/-----BEGIN [A-Z ]+-----/, "expected a PEM block (-----BEGIN ...)");

/** How the appserver shapes pushes of one app (both providers). */
const pushShape = {
  /**
   * alert: always a generic alert with mutable-content, replaced by the Notification Service
   * Extension (Monal-style; default). background: content-available only. auto: alert when the
   * server's summary carried a message body, background otherwise.
   */
  pushType: z.enum(["alert", "background", "auto"]).default("alert"),
  /** How long the provider keeps an undelivered push (apns-expiration / FCM ttl). */
  ttl: duration("7d"),
  /** Collapse id so that pending pushes of one app replace each other on the device. */
  collapseId: z.string().max(64).optional(),
  requestTimeout: duration("10s"),
};

const ApnsAppSchema = z.strictObject({
  type: z.literal("apns"),
  /** Bundle id (apns-topic). */
  topic: z.string().min(1),
  // Token authentication (a .p8 key): teamId, keyId and the key inline or as a file ...
  teamId: z.string().min(1).optional(),
  keyId: z.string().min(1).optional(),
  privateKeyPem: pem.optional(),
  privateKeyFile: z.string().min(1).optional(),
  // ... or certificate authentication: the push certificate and its key as a .p12 (PKCS#12).
  certificateFile: z.string().min(1).optional(),
  certificatePassphrase: z.string().optional(),
  /** https://api.push.apple.com, https://api.sandbox.push.apple.com, or a simulator's origin. */
  endpoint: z
    .string()
    .regex(/^https?:\/\/[^/\s]+$/, 'expected an origin like "https://api.push.apple.com"'),
  caPem: pem.optional(),
  caFile: z.string().min(1).optional(),
  connections: z.number().int().min(1).max(64).default(2),
  alert: z.strictObject({ title: z.string(), body: z.string() }).optional(),
  /**
   * Fixed extra keys of every push's payload, beside `aps` (fpush's additionalData), e.g. a
   * marker the app's Notification Service Extension looks for. Never message content.
   */
  additionalData: z
    .record(z.string(), z.json())
    .refine((d) => !("aps" in d), "the aps key is the appserver's")
    .refine(
      (d) => Buffer.byteLength(JSON.stringify(d)) <= 2048,
      "at most 2048 bytes of JSON (APNs payloads are limited to 4096)",
    )
    .optional(),
  ...pushShape,
  ...appPolicy,
});

const FcmAppSchema = z.strictObject({
  type: z.literal("fcm"),
  projectId: z.string().min(1),
  clientEmail: z.string().min(1),
  privateKeyPem: pem.optional(),
  privateKeyFile: z.string().min(1).optional(),
  tokenUri: z.string().regex(/^https?:\/\//, "expected a URL"),
  endpoint: z
    .string()
    .regex(/^https?:\/\/[^/\s]+$/, 'expected an origin like "https://fcm.googleapis.com"'),
  caPem: pem.optional(),
  caFile: z.string().min(1).optional(),
  /** Fixed extra keys of every message's data map (strings, as FCM requires). */
  additionalData: z
    .record(
      z.string().refine((k) => k !== "kind" && !/^(google|gcm)/.test(k) && k !== "from", {
        message: "kind, from and keys starting with google or gcm are reserved",
      }),
      z.string(),
    )
    .optional(),
  ...pushShape,
  ...appPolicy,
});

/** One push app (an APNs topic or an FCM project), selected per push by the pushModule option. */
const AppSchema = z.discriminatedUnion("type", [ApnsAppSchema, FcmAppSchema]);

const DOMAIN_DEFAULTS = {
  window: 3_600_000,
  threshold: 50,
  ratio: 0.02,
  blockFactor: 4,
  block: 21_600_000,
  newTokensPerMinute: 10,
  healthyFor: 604_800_000,
};

export const ConfigSchema = z.strictObject({
  component: z.strictObject({
    /** The XMPP server's XEP-0114 component port, e.g. xmpp://127.0.0.1:5347. */
    service: z.string().regex(/^xmpp:\/\/[^/\s]+:\d+$/, 'expected "xmpp://HOST:PORT"'),
    /** The component's JID (a domain), e.g. push.example.org. */
    domain: z.string().min(1).max(253),
    secret: z.string().min(1),
    reconnectInitialDelay: duration("1s"),
    reconnectMaxDelay: duration("60s"),
  }),
  tokens: z
    .strictObject({
      minLength: z.number().int().min(1).default(64),
      maxLength: z.number().int().max(4096).default(512),
      /** Secret keying the token hashes; all nodes of a cluster must share it. */
      hashSecret: z.string().min(16).optional(),
    })
    .default({ minLength: 64, maxLength: 512 }),
  apps: z
    .record(appName, AppSchema)
    .refine((a) => Object.keys(a).length > 0, "at least one app is required"),
  /** App used when a request names no pushModule. Defaults to the first app. */
  defaultApp: appName.optional(),
  rateLimit: z
    .strictObject({
      window: duration("20s"),
      /** After a provider 429 for a token. */
      hardLimit: duration("600s"),
    })
    .default({ window: 20_000, hardLimit: 600_000 }),
  blacklist: z
    .strictObject({
      token: z
        .strictObject({
          firstBlock: duration("24h"),
          repeatBlock: duration("5d"),
          hitExtension: duration("10m"),
          memory: duration("30d"),
        })
        .default({
          firstBlock: 86_400_000,
          repeatBlock: 432_000_000,
          hitExtension: 600_000,
          memory: 2_592_000_000,
        }),
      domain: z
        .strictObject({
          window: duration("1h"),
          /** Floor: distinct invalid tokens per window from which a domain is restricted. */
          threshold: z.number().int().min(1).default(50),
          /** The threshold is max(threshold, ratio × the domain's active tokens). */
          ratio: z.number().min(0).max(1).default(0.02),
          /** Full block (no provider traffic, wait replies) from blockFactor × the threshold. */
          blockFactor: z.number().min(1).default(4),
          block: duration("6h"),
          /** Unknown tokens of a restricted domain tried per minute. */
          newTokensPerMinute: z.number().min(0).default(10),
          /** A token is healthy (and active for its domain) this long after a delivery. */
          healthyFor: duration("7d"),
        })
        .default(DOMAIN_DEFAULTS),
    })
    .default({
      token: {
        firstBlock: 86_400_000,
        repeatBlock: 432_000_000,
        hitExtension: 600_000,
        memory: 2_592_000_000,
      },
      domain: DOMAIN_DEFAULTS,
    }),
  /** Transient provider failures (5xx, timeouts): bounded retries, then a wait error. */
  retry: z
    .strictObject({
      attempts: z.number().int().min(1).max(10).default(3),
      initialDelay: duration("500ms"),
      maxDelay: duration("5s"),
      /** After this many consecutive transient failures an app pauses sending (circuit open). */
      circuitThreshold: z.number().int().min(1).default(20),
      circuitPause: duration("10s"),
      /**
       * After the attempts, a push is kept and retried later (back-off from laterInitialDelay,
       * doubling up to laterMaxDelay) for keepFor, never past the app's ttl; "0s": not kept.
       */
      laterInitialDelay: duration("30s"),
      laterMaxDelay: duration("10m"),
      keepFor: duration("1h"),
    })
    .default({
      attempts: 3,
      initialDelay: 500,
      maxDelay: 5000,
      circuitThreshold: 20,
      circuitPause: 10_000,
      laterInitialDelay: 30_000,
      laterMaxDelay: 600_000,
      keepFor: 3_600_000,
    }),
  storage: z
    .strictObject({
      /** SQLite file; relative paths are relative to dataDir. */
      sqlite: z.string().min(1).default("lichen-push.sqlite"),
    })
    .default({ sqlite: "lichen-push.sqlite" }),
  /** Directory for the SQLite file and a generated hash secret. */
  dataDir: z.string().min(1).default("./lichen-push-data"),
  redis: z
    .strictObject({
      url: z.string().regex(/^rediss?:\/\//, 'expected "redis://HOST:PORT"'),
      keyPrefix: z.string().default("lichen-push:"),
      /** Node name in logs and sync messages; defaults to a random id. */
      nodeId: z.string().min(1).max(64).optional(),
    })
    .optional(),
  http: z
    .strictObject({
      host: z.string().default("127.0.0.1"),
      port: z.number().int().min(0).max(65535).default(9464),
    })
    .default({ host: "127.0.0.1", port: 9464 }),
  log: z
    .strictObject({
      level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    })
    .default({ level: "info" }),
});

export type AppServerConfig = z.output<typeof ConfigSchema>;
export type AppServerConfigInput = z.input<typeof ConfigSchema>;
export type AppConfig = z.output<typeof AppSchema>;

/** A config that failed validation; `issues` name each offending field by its dotted path. */
export class ConfigError extends Error {
  constructor(
    public readonly issues: string[],
    source?: string,
  ) {
    super(`invalid config${source ? ` ${source}` : ""}:\n  ${issues.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

function pathOf(path: PropertyKey[]): string {
  return path.map((p) => String(p)).join(".") || "(root)";
}

/** Dotted config path → the environment variable that set it. */
export type EnvSources = Map<string, string>;

function annotate(issue: string, env: EnvSources | undefined): string {
  if (!env || env.size === 0) return issue;
  const path = issue.slice(0, issue.indexOf(":"));
  // The variable that set this field or one of its parents (a typo creates an unknown field).
  for (const [p, v] of env) {
    if (path === p || path.startsWith(`${p}.`) || p.startsWith(`${path}.`)) {
      return `${path} (from ${v})${issue.slice(path.length)}`;
    }
  }
  return issue;
}

const obj = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;

/**
 * Cross-field checks, run on the raw input so that they are reported together with the schema's
 * errors (one pass for the operator, not two).
 */
function crossIssues(raw: Record<string, unknown>): string[] {
  const out: string[] = [];
  const apps = obj(raw.apps);
  if (typeof raw.defaultApp === "string" && apps && !(raw.defaultApp in apps)) {
    out.push(`defaultApp: names no configured app (have: ${Object.keys(apps).join(", ")})`);
  }
  for (const [name, app] of Object.entries(apps ?? {})) {
    const a = obj(app);
    if (!a) continue;
    const hasKey = a.privateKeyPem !== undefined || a.privateKeyFile !== undefined;
    if (a.type === "apns" && a.certificateFile !== undefined) {
      if (hasKey || a.keyId !== undefined || a.teamId !== undefined)
        out.push(
          `apps.${name}.certificateFile: give either a certificate or a key (privateKeyFile/privateKeyPem, keyId, teamId), not both`,
        );
      if (typeof a.endpoint === "string" && !a.endpoint.startsWith("https:"))
        out.push(`apps.${name}.endpoint: certificate authentication needs https`);
      continue;
    }
    if (a.certificatePassphrase !== undefined)
      out.push(`apps.${name}.certificatePassphrase: only with certificateFile`);
    if ((a.privateKeyPem === undefined) === (a.privateKeyFile === undefined)) {
      out.push(
        a.type === "apns"
          ? `apps.${name}.privateKeyPem: give exactly one of privateKeyPem and privateKeyFile (a .p8 key), or certificateFile (a .p12)`
          : `apps.${name}.privateKeyPem: give exactly one of privateKeyPem and privateKeyFile`,
      );
    }
    if (a.type === "apns") {
      for (const f of ["keyId", "teamId"])
        if (a[f] === undefined) out.push(`apps.${name}.${f}: required with a .p8 key`);
    }
  }
  const t = obj(raw.tokens);
  if (
    t &&
    typeof t.minLength === "number" &&
    typeof t.maxLength === "number" &&
    t.minLength > t.maxLength
  )
    out.push("tokens.minLength: larger than tokens.maxLength");
  const c = obj(raw.component);
  if (c) {
    const lo = parseDuration(c.reconnectInitialDelay ?? "1s");
    const hi = parseDuration(c.reconnectMaxDelay ?? "60s");
    if (lo !== undefined && hi !== undefined && lo > hi)
      out.push("component.reconnectInitialDelay: larger than component.reconnectMaxDelay");
  }
  return out;
}

function schemaIssues(error: z.ZodError): string[] {
  return error.issues.flatMap((i) => {
    if (i.code === "unrecognized_keys") {
      return i.keys.map((k) => `${pathOf([...i.path, k])}: unknown field`);
    }
    if (i.code === "invalid_type" && i.message.includes("received undefined")) {
      return [`${pathOf(i.path)}: required field is missing`];
    }
    return [`${pathOf(i.path)}: ${i.message}`];
  });
}

/** Every problem of a parsed config object at once (schema and cross-field), annotated by source. */
export function configIssues(
  raw: unknown,
  env?: EnvSources,
): { config?: AppServerConfig; issues: string[] } {
  const r = ConfigSchema.safeParse(raw ?? {});
  const issues = [...(r.success ? [] : schemaIssues(r.error)), ...crossIssues(obj(raw) ?? {})].map(
    (i) => annotate(i, env),
  );
  return issues.length === 0 && r.success ? { config: r.data, issues } : { issues };
}

/** Validates a parsed config object; throws ConfigError naming every bad field. */
export function validateConfig(raw: unknown, source?: string, env?: EnvSources): AppServerConfig {
  const r = configIssues(raw, env);
  if (!r.config) throw new ConfigError(r.issues, source);
  return r.config;
}

const ENV_PREFIX = "LICHEN_PUSH_";

function camel(segment: string): string {
  return segment.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** A key compared regardless of case and underscores: how an env segment finds a file's key. */
const loose = (k: string) => k.toLowerCase().replaceAll("_", "");

/**
 * The key a segment of an env variable's path addresses in `obj`: the one key already there that
 * it spells regardless of case and underscores (LICHEN_PUSH_APPS__MONALPRODIOS__TOPIC →
 * apps.monalProdiOS, an app name an env variable cannot write in camelCase), else SNAKE_CASE →
 * camelCase.
 */
function envKey(segment: string, obj: Record<string, unknown>): string {
  const c = camel(segment);
  if (c in obj) return c;
  const found = Object.keys(obj).filter((k) => loose(k) === loose(segment));
  return found.length === 1 ? found[0]! : c;
}

/**
 * Applies environment overrides: LICHEN_PUSH_<PATH> where path segments are separated by "__".
 * A segment names a key already in the config regardless of case and underscores; any other
 * segment maps SNAKE_CASE to camelCase, e.g. LICHEN_PUSH_COMPONENT__SECRET, LICHEN_PUSH_REDIS__URL,
 * LICHEN_PUSH_APPS__DEFAULT__TOPIC. Values are read as YAML scalars (numbers, booleans, strings).
 */
export function applyEnvOverrides(
  raw: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  sources?: EnvSources,
): Record<string, unknown> {
  const out = structuredClone(raw);
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith(ENV_PREFIX) || v === undefined) continue;
    const segments = k.slice(ENV_PREFIX.length).split("__").filter(Boolean);
    if (segments.length === 0) continue;
    const path: string[] = [];
    let cur: Record<string, unknown> = out;
    for (const [i, segment] of segments.entries()) {
      const seg = envKey(segment, cur);
      path.push(seg);
      if (i === segments.length - 1) break;
      const next = cur[seg];
      if (typeof next !== "object" || next === null || Array.isArray(next)) cur[seg] = {};
      cur = cur[seg] as Record<string, unknown>;
    }
    sources?.set(path.join("."), k);
    let value: unknown = v;
    try {
      value = parseYaml(v);
    } catch {
      value = v;
    }
    if (value === null) value = v;
    cur[path[path.length - 1]!] = value;
  }
  return out;
}

/** Reads a YAML config file, applies env overrides and validates it. */
export function loadConfigFile(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): AppServerConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError([`cannot read file: ${(e as Error).message}`], file);
  }
  return parseConfigText(text, file, env);
}

/** Parses YAML text, applies env overrides and validates. */
export function parseConfigText(
  text: string,
  source = "(text)",
  env: NodeJS.ProcessEnv = {},
): AppServerConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    const msg = e instanceof YAMLParseError ? e.message.split("\n")[0] : (e as Error).message;
    throw new ConfigError([`YAML syntax: ${msg}`], source);
  }
  if (raw !== null && raw !== undefined && (typeof raw !== "object" || Array.isArray(raw))) {
    throw new ConfigError(["(root): expected a mapping of fields"], source);
  }
  const sources: EnvSources = new Map();
  const merged = applyEnvOverrides((raw ?? {}) as Record<string, unknown>, env, sources);
  return validateConfig(merged, source, sources);
}

/**
 * Everything check-config and start verify, reported at once: YAML, schema, cross-field checks and
 * each app's credentials (key files read and parsed, a test JWT signed).
 */
export async function checkConfigFile(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ config?: AppServerConfig; issues: string[] }> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    return { issues: [`cannot read file: ${(e as Error).message}`] };
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    const msg = e instanceof YAMLParseError ? e.message.split("\n")[0] : (e as Error).message;
    return { issues: [`YAML syntax: ${msg}`] };
  }
  if (raw !== null && raw !== undefined && !obj(raw))
    return { issues: ["(root): expected a mapping of fields"] };
  const sources: EnvSources = new Map();
  const merged = applyEnvOverrides(obj(raw) ?? {}, env, sources);
  const r = configIssues(merged, sources);
  const cred = (await checkCredentials(merged.apps)).map((i) => annotate(i, sources));
  const issues = [...r.issues, ...cred];
  return issues.length === 0 && r.config ? { config: r.config, issues } : { issues };
}
