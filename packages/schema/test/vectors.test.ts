import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv } from "ajv";
import addFormatsModule from "ajv-formats";
import { describe, expect, it } from "vitest";
import * as schema from "../src/index.js";
import { loadSchemaVectors as loadVectors, schemasDir } from "@lichen/test-kit";

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ??
  addFormatsModule) as (a: Ajv) => Ajv;

// The committed JSON Schema files, as a Swift or other consumer would load them.
const ajv = addFormats(new Ajv({ allErrors: true, strict: false }));
const schemaFiles = readdirSync(schemasDir).filter((f) => f.endsWith(".schema.json"));
const byKebab = new Map(
  schemaFiles.map((f) => [
    f.replace(".schema.json", ""),
    ajv.compile(JSON.parse(readFileSync(join(schemasDir, f), "utf8"))),
  ]),
);

const cases = loadVectors().map((v) => ({
  type: v.type,
  kind: v.kind,
  name: v.name,
  value: JSON.parse(v.text) as unknown,
}));

const validators: Record<string, (v: unknown) => schema.ValidationResult<unknown>> = {
  "handler-descriptor": schema.validateHandlerDescriptor,
  "account-state": schema.validateAccountState,
  "ipc-message": schema.validateIpcMessage,
  "process-lock-record": schema.validateProcessLockRecord,
  "share-outbox-item": schema.validateShareOutboxItem,
  "notification-content": schema.validateNotificationContent,
  "push-registration": schema.validatePushRegistration,
};

describe("test vectors against the generated JSON Schemas", () => {
  it("cover every root type with valid and invalid vectors", () => {
    expect(schemaFiles).toHaveLength(7);
    for (const k of byKebab.keys()) {
      expect(
        cases.some((c) => c.type === k && c.kind === "valid"),
        `${k} valid`,
      ).toBe(true);
      expect(
        cases.some((c) => c.type === k && c.kind === "invalid"),
        `${k} invalid`,
      ).toBe(true);
    }
  });

  it.each(cases.map((c) => [`${c.type}/${c.kind}/${c.name}`, c] as const))("%s", (_n, c) => {
    const validate = byKebab.get(c.type)!;
    expect(validate(c.value), JSON.stringify(validate.errors)).toBe(c.kind === "valid");
    // The package's validators agree with the raw schema.
    expect(validators[c.type]!(c.value).ok).toBe(c.kind === "valid");
  });
});

describe("validators", () => {
  it("name the field in errors", () => {
    const r = schema.validateAccountState({
      ...schema.defaultAccountState(1),
      sm: { ...schema.defaultAccountState(1).sm, inboundH: 1.5 },
    });
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.errors).toContainEqual({ path: "/sm/inboundH", message: "must be integer" });
    expect(() => schema.assertAccountState({})).toThrow(/\/sm is required/);
  });

  it("report the IPC variant's own errors, and unknown types clearly", () => {
    const r = schema.validateIpcMessage({
      v: 1,
      id: "1",
      type: "sync-error",
      source: "nse",
      destination: "main",
      createdAt: 1,
      expiresAt: 2,
      data: { accountId: "a", code: "x" },
    });
    expect(r).toEqual({ ok: false, errors: [{ path: "/data/message", message: "is required" }] });
    const u = schema.validateIpcMessage({ type: "reboot" });
    expect(u.ok).toBe(false);
    if (!u.ok)
      expect(u.errors[0]!.message).toMatch(/must be one of .*"disconnect-all".*got "reboot"/);
    expect(() => schema.assertIpcMessage(null)).toThrow(schema.SchemaValidationError);
  });

  it("report the share content variant's errors under /content", () => {
    const r = schema.validateShareOutboxItem({
      v: 1,
      id: "o",
      accountId: "a",
      to: "b@x",
      createdAt: 1,
      content: { kind: "geo", latitude: 100, longitude: 0 },
    });
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.errors).toContainEqual({ path: "/content/latitude", message: "must be <= 90" });
  });
});

describe("migrateAccountState (state invalidation)", () => {
  const valid = {
    ...schema.defaultAccountState(5),
    rosterVersion: "v9",
    sm: {
      ...schema.defaultAccountState(5).sm,
      streamId: "s1",
      inboundH: 7,
      outboundSent: 3,
      unackedQueue: "q1",
    },
  };

  it("keeps a current, valid state as is", () => {
    expect(schema.migrateAccountState(valid, 99)).toEqual(valid);
  });

  it("on a version bump keeps only the SM counters and the unacked queue", () => {
    const m = schema.migrateAccountState({ ...valid, stateVersion: 0 }, 99);
    expect(m.sm).toEqual(valid.sm);
    expect(m.rosterVersion).toBeNull();
    expect(m.stateVersion).toBe(schema.ACCOUNT_STATE_VERSION);
    expect(m.updatedAt).toBe(99);
  });

  it("on a corrupt blob resets everything and opens a MAM gap", () => {
    const m = schema.migrateAccountState({ sm: { inboundH: "lots" } }, 99);
    expect(m.sm.inboundH).toBe(0);
    expect(m.mam.gapOpen).toBe(true);
    expect(schema.validateAccountState(m).ok).toBe(true);
  });
});
