/**
 * Runtime validation of every JSON column and IPC row, at the process boundary.
 *
 * @lichen/schema is the single source of truth. When it exports generated validators
 * (`validateAccountState`, `validateIpcMessage`, ... throwing `SchemaValidationError`) they are
 * used; until then these hand-written checks cover the same contract so that a bad row always gets
 * a clear error naming the field.
 */
import * as schemaPkg from "@lichen/schema";
import {
  ACCOUNT_STATE_VERSION,
  type AccountState,
  type HandlerDescriptor,
  type IpcMessage,
  type NotificationContent,
  type ShareOutboxItem,
  type StreamManagementState,
} from "@lichen/schema";

/** A value does not match the contract; `field` is a JSON path such as `sm.inboundH`. */
export class SchemaValidationError extends Error {
  override readonly name = "SchemaValidationError";
  constructor(
    readonly typeName: string,
    readonly field: string,
    readonly problem: string,
  ) {
    super(`invalid ${typeName}: ${field || "(root)"} ${problem}`);
  }
}

type Validator<T> = (value: unknown) => T;

/**
 * Use the schema package's validator of that name when it exists, else our fallback. Whatever style
 * it has (throws, returns boolean, an array of errors, or { ok | valid, errors }), callers always get
 * the value back or a SchemaValidationError of this package naming the field.
 */
function pick<T>(name: string, fallback: Validator<T>): Validator<T> {
  return adaptValidator(name, (schemaPkg as Record<string, unknown>)[name], fallback);
}

/** Exported for tests: wrap `candidate` (any validator style) or fall back when it is not a function. */
export function adaptValidator<T>(
  name: string,
  candidate: unknown,
  fallback: Validator<T>,
): Validator<T> {
  if (typeof candidate !== "function") return fallback;
  const typeName = name.replace(/^validate/, "");
  const fail = (err: unknown): never => {
    if (err instanceof SchemaValidationError) throw err;
    const e = (err ?? {}) as {
      field?: unknown;
      path?: unknown;
      instancePath?: unknown;
      message?: unknown;
    };
    const rawField = e.field ?? e.path ?? e.instancePath ?? "";
    const field = String(rawField)
      .replace(/^[#/$.]+/, "")
      .replaceAll("/", ".");
    const problem = typeof e.message === "string" ? e.message : "is invalid";
    const wrapped = new SchemaValidationError(typeName, field, problem);
    (wrapped as { cause?: unknown }).cause = err;
    throw wrapped;
  };
  return (value: unknown) => {
    let result: unknown;
    try {
      result = (candidate as (v: unknown) => unknown)(value);
    } catch (e) {
      return fail(e);
    }
    if (result === true || result === undefined || result === null) return value as T;
    if (result === false) return fail(undefined);
    if (Array.isArray(result)) return result.length === 0 ? (value as T) : fail(result[0]);
    if (result && typeof result === "object" && ("ok" in result || "valid" in result)) {
      const r = result as { ok?: boolean; valid?: boolean; value?: T; errors?: unknown[] };
      if (r.ok === true || r.valid === true) return (r.value ?? value) as T;
      return fail(r.errors?.[0]);
    }
    return result as T;
  };
}

class Checker {
  constructor(readonly typeName: string) {}
  fail(field: string, problem: string): never {
    throw new SchemaValidationError(this.typeName, field, problem);
  }
  object(v: unknown, field: string): Record<string, unknown> {
    if (v === null || typeof v !== "object" || Array.isArray(v))
      this.fail(field, "must be an object");
    return v as Record<string, unknown>;
  }
  only(o: Record<string, unknown>, field: string, allowed: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.fail(join(field, k), "is not an allowed property");
    }
  }
  string(
    v: unknown,
    field: string,
    opts: { nullable?: boolean; min?: number; max?: number } = {},
  ): void {
    if (v === null && opts.nullable) return;
    if (typeof v !== "string")
      this.fail(field, opts.nullable ? "must be a string or null" : "must be a string");
    if (opts.min !== undefined && v.length < opts.min)
      this.fail(field, `must have at least ${opts.min} characters`);
    if (opts.max !== undefined && v.length > opts.max)
      this.fail(field, `must have at most ${opts.max} characters`);
  }
  integer(
    v: unknown,
    field: string,
    opts: { nullable?: boolean; min?: number } = { min: 0 },
  ): void {
    if (v === null && opts.nullable) return;
    if (typeof v !== "number" || !Number.isInteger(v)) {
      this.fail(field, opts.nullable ? "must be an integer or null" : "must be an integer");
    }
    if (opts.min !== undefined && v < opts.min) this.fail(field, `must be >= ${opts.min}`);
  }
  number(v: unknown, field: string, min?: number, max?: number): void {
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(field, "must be a number");
    if (min !== undefined && v < min) this.fail(field, `must be >= ${min}`);
    if (max !== undefined && v > max) this.fail(field, `must be <= ${max}`);
  }
  boolean(v: unknown, field: string): void {
    if (typeof v !== "boolean") this.fail(field, "must be a boolean");
  }
  stringArray(v: unknown, field: string): void {
    if (!Array.isArray(v)) this.fail(field, "must be an array");
    v.forEach((s, i) => this.string(s, `${field}[${i}]`));
  }
  oneOf(v: unknown, field: string, values: readonly string[]): void {
    if (typeof v !== "string" || !values.includes(v))
      this.fail(field, `must be one of ${values.join(", ")}`);
  }
}

function join(base: string, key: string): string {
  return base ? `${base}.${key}` : key;
}

function checkSm(c: Checker, v: unknown, f: string): void {
  const o = c.object(v, f);
  c.only(o, f, [
    "streamId",
    "location",
    "boundJid",
    "maxResumeSeconds",
    "inboundH",
    "outboundSent",
    "outboundAcked",
    "unackedQueue",
    "enabledAt",
  ]);
  c.string(o.streamId, join(f, "streamId"), { nullable: true });
  c.string(o.location, join(f, "location"), { nullable: true });
  c.string(o.boundJid, join(f, "boundJid"), { nullable: true });
  c.integer(o.maxResumeSeconds, join(f, "maxResumeSeconds"), { nullable: true });
  c.integer(o.inboundH, join(f, "inboundH"));
  c.integer(o.outboundSent, join(f, "outboundSent"));
  c.integer(o.outboundAcked, join(f, "outboundAcked"));
  c.string(o.unackedQueue, join(f, "unackedQueue"), { min: 1 });
  c.integer(o.enabledAt, join(f, "enabledAt"), { nullable: true, min: 0 });
}

function fallbackStreamManagementState(value: unknown): StreamManagementState {
  checkSm(new Checker("StreamManagementState"), value, "");
  return value as StreamManagementState;
}

function fallbackAccountState(value: unknown): AccountState {
  const c = new Checker("AccountState");
  const o = c.object(value, "");
  c.only(o, "", [
    "stateVersion",
    "sm",
    "features",
    "rosterVersion",
    "mam",
    "push",
    "csi",
    "omemo",
    "updatedAt",
  ]);
  c.integer(o.stateVersion, "stateVersion");
  checkSm(c, o.sm, "sm");
  const features = c.object(o.features, "features");
  c.only(features, "features", ["server", "account", "discoveredAt"]);
  c.stringArray(features.server, "features.server");
  c.stringArray(features.account, "features.account");
  c.integer(features.discoveredAt, "features.discoveredAt", { nullable: true, min: 0 });
  c.string(o.rosterVersion, "rosterVersion", { nullable: true });
  const mam = c.object(o.mam, "mam");
  c.only(mam, "mam", ["lastStanzaId", "lastTimestamp", "gapOpen", "completedAt"]);
  c.string(mam.lastStanzaId, "mam.lastStanzaId", { nullable: true });
  c.integer(mam.lastTimestamp, "mam.lastTimestamp", { nullable: true, min: 0 });
  c.boolean(mam.gapOpen, "mam.gapOpen");
  c.integer(mam.completedAt, "mam.completedAt", { nullable: true, min: 0 });
  if (o.push !== null) c.object(o.push, "push");
  c.oneOf(o.csi, "csi", ["active", "inactive"]);
  const omemo = c.object(o.omemo, "omemo");
  c.only(omemo, "omemo", [
    "deviceId",
    "deviceListPublished",
    "bundlePublished",
    "preKeysNeedRefill",
  ]);
  c.integer(omemo.deviceId, "omemo.deviceId", { nullable: true, min: 0 });
  c.boolean(omemo.deviceListPublished, "omemo.deviceListPublished");
  c.boolean(omemo.bundlePublished, "omemo.bundlePublished");
  c.boolean(omemo.preKeysNeedRefill, "omemo.preKeysNeedRefill");
  c.integer(o.updatedAt, "updatedAt");
  return value as AccountState;
}

const IPC_TYPES = [
  "disconnect-all",
  "yielded",
  "push-arrived",
  "outbox-changed",
  "sync-error",
  "state-changed",
  "ping",
  "pong",
] as const;
const ROLES = ["main", "nse", "share"] as const;

function fallbackIpcMessage(value: unknown): IpcMessage {
  const c = new Checker("IpcMessage");
  const o = c.object(value, "");
  c.only(o, "", [
    "v",
    "id",
    "source",
    "destination",
    "responseTo",
    "createdAt",
    "expiresAt",
    "type",
    "data",
  ]);
  if (o.v !== 1) c.fail("v", "must be 1");
  c.string(o.id, "id", { min: 1, max: 200 });
  c.oneOf(o.source, "source", ROLES);
  c.oneOf(o.destination, "destination", [...ROLES, "*"]);
  if (o.responseTo !== undefined) c.string(o.responseTo, "responseTo");
  c.integer(o.createdAt, "createdAt");
  c.integer(o.expiresAt, "expiresAt");
  c.oneOf(o.type, "type", IPC_TYPES);
  const d = c.object(o.data, "data");
  switch (o.type) {
    case "disconnect-all":
      c.string(d.reason, "data.reason");
      break;
    case "yielded":
      c.integer(d.lockGeneration, "data.lockGeneration");
      c.integer(d.handledStanzas, "data.handledStanzas");
      break;
    case "push-arrived":
      c.string(d.pushId, "data.pushId");
      c.integer(d.receivedAt, "data.receivedAt");
      if (d.accountId !== undefined) c.string(d.accountId, "data.accountId");
      break;
    case "outbox-changed":
      c.stringArray(d.itemIds, "data.itemIds");
      break;
    case "sync-error":
      c.string(d.accountId, "data.accountId");
      c.string(d.code, "data.code");
      c.string(d.message, "data.message");
      break;
    case "state-changed":
      if (d.accountId !== undefined) c.string(d.accountId, "data.accountId");
      c.stringArray(d.areas, "data.areas");
      break;
    case "ping":
    case "pong":
      if (d.nonce !== undefined) c.string(d.nonce, "data.nonce");
      break;
  }
  return value as IpcMessage;
}

function fallbackHandlerDescriptor(value: unknown): HandlerDescriptor {
  const c = new Checker("HandlerDescriptor");
  const o = c.object(value, "");
  c.only(o, "", ["v", "name", "invalidation", "bound"]);
  if (o.v !== 1) c.fail("v", "must be 1");
  c.string(o.name, "name", { min: 1, max: 200 });
  if (o.invalidation !== undefined) c.string(o.invalidation, "invalidation", { min: 1, max: 200 });
  c.object(o.bound, "bound");
  return value as HandlerDescriptor;
}

function checkFile(c: Checker, v: unknown, f: string): void {
  const o = c.object(v, f);
  c.string(o.path, join(f, "path"), { min: 1, max: 4096 });
  c.string(o.mimeType, join(f, "mimeType"), { min: 1 });
  c.integer(o.size, join(f, "size"));
  c.string(o.fileName, join(f, "fileName"));
}

function fallbackShareOutboxItem(value: unknown): ShareOutboxItem {
  const c = new Checker("ShareOutboxItem");
  const o = c.object(value, "");
  c.only(o, "", ["v", "id", "accountId", "to", "createdAt", "content"]);
  if (o.v !== 1) c.fail("v", "must be 1");
  c.string(o.id, "id", { min: 1 });
  c.string(o.accountId, "accountId");
  c.string(o.to, "to");
  c.integer(o.createdAt, "createdAt");
  const k = c.object(o.content, "content");
  c.oneOf(k.kind, "content.kind", [
    "text",
    "url",
    "geo",
    "image",
    "file",
    "audiovisual",
    "contact",
  ]);
  switch (k.kind) {
    case "text":
      c.string(k.text, "content.text", { max: 100000 });
      break;
    case "url":
      c.string(k.url, "content.url", { min: 1 });
      break;
    case "geo":
      c.number(k.latitude, "content.latitude", -90, 90);
      c.number(k.longitude, "content.longitude", -180, 180);
      break;
    case "image":
    case "file":
    case "audiovisual":
      checkFile(c, k.file, "content.file");
      break;
    case "contact":
      c.string(k.displayName, "content.displayName");
      break;
  }
  return value as ShareOutboxItem;
}

function fallbackNotificationContent(value: unknown): NotificationContent {
  const c = new Checker("NotificationContent");
  const o = c.object(value, "");
  c.oneOf(o.kind, "kind", ["alert", "silent"]);
  if (o.kind === "alert") {
    c.string(o.title, "title", { max: 1000 });
    c.string(o.body, "body", { max: 4000 });
    c.string(o.threadId, "threadId");
    c.string(o.accountId, "accountId");
  } else {
    c.string(o.reason, "reason");
  }
  return value as NotificationContent;
}

export const validateAccountState = pick("validateAccountState", fallbackAccountState);
export const validateStreamManagementState = pick(
  "validateStreamManagementState",
  fallbackStreamManagementState,
);
export const validateIpcMessage = pick("validateIpcMessage", fallbackIpcMessage);
export const validateHandlerDescriptor = pick(
  "validateHandlerDescriptor",
  fallbackHandlerDescriptor,
);
export const validateShareOutboxItem = pick("validateShareOutboxItem", fallbackShareOutboxItem);
export const validateNotificationContent = pick(
  "validateNotificationContent",
  fallbackNotificationContent,
);

/** A fresh account state (nothing discovered, no resumable stream). */
export function freshAccountState(now: number, keepSm?: StreamManagementState): AccountState {
  return {
    stateVersion: ACCOUNT_STATE_VERSION,
    sm: keepSm ?? {
      streamId: null,
      location: null,
      boundJid: null,
      maxResumeSeconds: null,
      inboundH: 0,
      outboundSent: 0,
      outboundAcked: 0,
      unackedQueue: "default",
      enabledAt: null,
    },
    features: { server: [], account: [], discoveredAt: null },
    rosterVersion: null,
    mam: { lastStanzaId: null, lastTimestamp: null, gapOpen: false, completedAt: null },
    push: null,
    csi: "active",
    omemo: {
      deviceId: null,
      deviceListPublished: false,
      bundlePublished: false,
      preKeysNeedRefill: false,
    },
    updatedAt: now,
  };
}
