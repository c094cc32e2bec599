// Runtime validation at every process boundary (IPC rows, state blobs, outbox rows), with the
// JSON Schemas generated from this package's types (src/generated, by tools/codegen).
import { createRequire } from "node:module";
import type { Ajv, ErrorObject, ValidateFunction } from "ajv";
import { schemas } from "./generated/schemas.js";
import { ACCOUNT_STATE_VERSION } from "./types/state.js";
import type {
  AccountState,
  HandlerDescriptor,
  IpcMessage,
  NotificationContent,
  ProcessLockRecord,
  PushRegistration,
  ShareOutboxItem,
  StreamManagementState,
} from "./types/index.js";

/** One problem, with the JSON path of the field (e.g. "/sm/inboundH"). */
export interface SchemaIssue {
  path: string;
  message: string;
}

export type ValidationResult<T> = { ok: true; value: T } | { ok: false; errors: SchemaIssue[] };

export class SchemaValidationError extends Error {
  override readonly name = "SchemaValidationError";
  constructor(
    readonly schema: string,
    readonly errors: SchemaIssue[],
  ) {
    super(
      `invalid ${schema}: ${errors.map((e) => `${e.path || "(root)"} ${e.message}`).join("; ")}`,
    );
  }
}

type SchemaName = keyof typeof schemas;

// Created at the first schema compiled here, and only then is ajv loaded (a process given
// precompiled validators never loads it: its modules are a good part of a short process's start).
let ajv: Ajv | null = null;
function compiler(): Ajv {
  if (!ajv) {
    const require = createRequire(import.meta.url);
    const { Ajv: AjvClass } = require("ajv") as typeof import("ajv");
    // ajv-formats is CommonJS with a default export.
    const formats = require("ajv-formats") as { default: (ajv: Ajv) => Ajv };
    ajv = new AjvClass({ allErrors: true, strict: false });
    formats.default(ajv);
  }
  return ajv;
}
const compiled = new Map<string, ValidateFunction>();

/**
 * Install validators compiled ahead of time (ajv standalone code from these same schemas), keyed
 * "Name" or "Name#Definition" like validatorKeys(). Compiling a schema at first use costs tens of
 * milliseconds each (most of a short-lived process's start: the NSE); a bundler that generated
 * them calls this before anything is validated. Keys not given are still compiled on first use.
 */
export function usePrecompiledValidators(validators: Record<string, ValidateFunction>): void {
  for (const [key, fn] of Object.entries(validators)) compiled.set(key, fn);
}

/**
 * Every validator key this module asks for, with its schema reference, for a tool that
 * precompiles them (ajv standalone: add every schema, then one export per reference): "Name" for
 * each schema, "Name#Variant" for the variants of its unions (validated one by one, see runUnion)
 * and "AccountState#StreamManagementState".
 */
export function validatorKeys(): { key: string; ref: string }[] {
  const keys = new Map<string, string>();
  for (const name of Object.keys(schemas) as SchemaName[]) {
    const root = schemas[name] as unknown as {
      $id: string;
      anyOf?: { $ref?: string }[];
      definitions?: Record<string, { anyOf?: { $ref?: string }[] }>;
    };
    keys.set(name, root.$id);
    for (const s of [root, ...Object.values(root.definitions ?? {})]) {
      for (const { $ref } of s.anyOf ?? []) {
        if (!$ref?.startsWith("#/definitions/")) continue;
        keys.set(`${name}#${$ref.slice("#/definitions/".length)}`, `${root.$id}${$ref}`);
      }
    }
  }
  const state = schemas.AccountState as unknown as { $id: string };
  keys.set("AccountState#StreamManagementState", `${state.$id}#/definitions/StreamManagementState`);
  return [...keys].map(([key, ref]) => ({ key, ref }));
}

function validatorFor(name: SchemaName, definition?: string): ValidateFunction {
  const key = definition ? `${name}#${definition}` : name;
  let fn = compiled.get(key);
  if (!fn) {
    const root = schemas[name] as unknown as { $id: string };
    const c = compiler();
    if (!c.getSchema(root.$id)) c.addSchema(root);
    fn = definition
      ? c.compile({ $ref: `${root.$id}#/definitions/${definition}` })
      : c.getSchema(root.$id)!;
    compiled.set(key, fn);
  }
  return fn;
}

function issues(errors: ErrorObject[] | null | undefined): SchemaIssue[] {
  return (errors ?? []).map((e) => ({
    path:
      e.keyword === "additionalProperties"
        ? `${e.instancePath}/${(e.params as { additionalProperty: string }).additionalProperty}`
        : e.keyword === "required"
          ? `${e.instancePath}/${(e.params as { missingProperty: string }).missingProperty}`
          : e.instancePath,
    message:
      e.keyword === "additionalProperties"
        ? "is not an allowed property"
        : e.keyword === "required"
          ? "is required"
          : (e.message ?? "is invalid"),
  }));
}

function run<T>(name: SchemaName, value: unknown, definition?: string): ValidationResult<T> {
  const fn = validatorFor(name, definition);
  return fn(value) ? { ok: true, value: value as T } : { ok: false, errors: issues(fn.errors) };
}

/** Discriminated unions: pick the variant by its tag first, so errors are that variant's. */
function runUnion<T>(name: SchemaName, tagField: string, value: unknown): ValidationResult<T> {
  const root = schemas[name] as unknown as {
    anyOf: { $ref: string }[];
    definitions: Record<string, { properties: Record<string, { const?: string }> }>;
  };
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { ok: false, errors: [{ path: "", message: "must be an object" }] };
  }
  const tag = (value as Record<string, unknown>)[tagField];
  const variants = root.anyOf.map((r) => r.$ref.slice("#/definitions/".length));
  const tags = variants.map((v) => root.definitions[v]?.properties[tagField]?.const);
  const i = tags.indexOf(tag as string);
  if (i < 0) {
    return {
      ok: false,
      errors: [
        {
          path: `/${tagField}`,
          message: `must be one of ${tags.map((t) => JSON.stringify(t)).join(", ")} (got ${JSON.stringify(tag)})`,
        },
      ],
    };
  }
  return run<T>(name, value, variants[i]);
}

export const validateHandlerDescriptor = (v: unknown) =>
  run<HandlerDescriptor>("HandlerDescriptor", v);
export const validateAccountState = (v: unknown) => run<AccountState>("AccountState", v);
export const validateStreamManagementState = (v: unknown) =>
  run<StreamManagementState>("AccountState", v, "StreamManagementState");
export const validateIpcMessage = (v: unknown) => runUnion<IpcMessage>("IpcMessage", "type", v);
export const validateProcessLockRecord = (v: unknown) =>
  run<ProcessLockRecord>("ProcessLockRecord", v);
export const validateShareOutboxItem = (v: unknown): ValidationResult<ShareOutboxItem> => {
  const outer = run<ShareOutboxItem>("ShareOutboxItem", v);
  if (outer.ok) return outer;
  // Report the content variant's own errors rather than anyOf noise.
  const content = (v as { content?: unknown } | null)?.content;
  const inner = runUnionIn("ShareOutboxItem", "ShareContent", "kind", content);
  const rest = outer.errors.filter((e) => !e.path.startsWith("/content"));
  return {
    ok: false,
    errors: [
      ...rest,
      ...(inner.ok ? [] : inner.errors.map((e) => ({ ...e, path: `/content${e.path}` }))),
    ],
  };
};
export const validateNotificationContent = (v: unknown) =>
  runUnion<NotificationContent>("NotificationContent", "kind", v);
export const validatePushRegistration = (v: unknown) =>
  run<PushRegistration>("PushRegistration", v);

function runUnionIn(
  name: SchemaName,
  union: string,
  tagField: string,
  value: unknown,
): ValidationResult<unknown> {
  const root = schemas[name] as unknown as {
    definitions: Record<
      string,
      { anyOf?: { $ref: string }[]; properties?: Record<string, { const?: string }> }
    >;
  };
  const variants = (root.definitions[union]?.anyOf ?? []).map((r) =>
    r.$ref.slice("#/definitions/".length),
  );
  const tags = variants.map((v) => root.definitions[v]?.properties?.[tagField]?.const);
  const tag =
    value && typeof value === "object" ? (value as Record<string, unknown>)[tagField] : undefined;
  const i = tags.indexOf(tag as string);
  if (i < 0)
    return {
      ok: false,
      errors: [
        {
          path: `/${tagField}`,
          message: `must be one of ${tags.map((t) => JSON.stringify(t)).join(", ")} (got ${JSON.stringify(tag)})`,
        },
      ],
    };
  return run(name, value, variants[i]);
}

function asserting<T>(schema: string, fn: (v: unknown) => ValidationResult<T>): (v: unknown) => T {
  return (v) => {
    const r = fn(v);
    if (!r.ok) throw new SchemaValidationError(schema, r.errors);
    return r.value;
  };
}
export const assertHandlerDescriptor = asserting("HandlerDescriptor", validateHandlerDescriptor);
export const assertAccountState = asserting("AccountState", validateAccountState);
export const assertIpcMessage = asserting("IpcMessage", validateIpcMessage);
export const assertProcessLockRecord = asserting("ProcessLockRecord", validateProcessLockRecord);
export const assertShareOutboxItem = asserting("ShareOutboxItem", validateShareOutboxItem);
export const assertNotificationContent = asserting(
  "NotificationContent",
  validateNotificationContent,
);
export const assertPushRegistration = asserting("PushRegistration", validatePushRegistration);

/** A fresh account state (new account, or after invalidation). */
export function defaultAccountState(now: number, unackedQueue = "initial"): AccountState {
  return {
    stateVersion: ACCOUNT_STATE_VERSION,
    sm: {
      streamId: null,
      location: null,
      boundJid: null,
      maxResumeSeconds: null,
      inboundH: 0,
      outboundSent: 0,
      outboundAcked: 0,
      unackedQueue,
      enabledAt: null,
    },
    features: { server: [], account: [], discoveredAt: null },
    rosterVersion: null,
    mam: {
      lastStanzaId: null,
      lastTimestamp: null,
      gapOpen: false,
      completedAt: null,
      syncedAt: null,
    },
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

/**
 * State invalidation: a blob of another stateVersion (or a corrupt one) keeps only what must never
 * be lost — the stream-management counters and the unacked-queue reference, when they validate —
 * and everything else starts from defaults (rediscovered on the next connect).
 */
export function migrateAccountState(old: unknown, now: number): AccountState {
  const current = validateAccountState(old);
  if (current.ok && current.value.stateVersion === ACCOUNT_STATE_VERSION) return current.value;
  const fresh = defaultAccountState(now);
  const sm = (old as { sm?: unknown } | null)?.sm;
  const smOk = validateStreamManagementState(sm);
  if (smOk.ok) fresh.sm = smOk.value;
  // A gap may exist when the counters were lost: let MAM close it.
  fresh.mam.gapOpen = !smOk.ok;
  return fresh;
}
