import { describe, expect, it } from "vitest";
import * as schema from "../src/index.js";
import { loadSchemaVectors as loadVectors } from "@lichen/test-kit";

// Every committed vector: decode (validate into the TS type) -> encode (JSON) -> decode again must
// give the same value and the same verdict. The Swift side runs the same loop in VectorTests.swift.
const vectors = loadVectors().map((v) => ({
  id: `${v.type}/${v.kind}/${v.name}`,
  type: v.type,
  valid: v.kind === "valid",
  text: v.text,
}));

const decoders: Record<string, (v: unknown) => unknown> = {
  "handler-descriptor": schema.assertHandlerDescriptor,
  "account-state": schema.assertAccountState,
  "ipc-message": schema.assertIpcMessage,
  "process-lock-record": schema.assertProcessLockRecord,
  "share-outbox-item": schema.assertShareOutboxItem,
  "notification-content": schema.assertNotificationContent,
  "push-registration": schema.assertPushRegistration,
};

describe("vector round trip through the TS types", () => {
  it("has a decoder for every vector type", () => {
    expect(new Set(vectors.map((v) => v.type))).toEqual(new Set(Object.keys(decoders)));
  });

  it.each(vectors.filter((v) => v.valid).map((v) => [v.id, v] as const))("%s", (_id, v) => {
    const decode = decoders[v.type]!;
    const first = decode(JSON.parse(v.text));
    const encoded = JSON.stringify(first);
    const second = decode(JSON.parse(encoded));
    expect(second).toEqual(first);
    // Nothing added or lost against the vector itself (key order aside).
    expect(JSON.parse(encoded)).toEqual(JSON.parse(v.text));
  });

  it.each(vectors.filter((v) => !v.valid).map((v) => [v.id, v] as const))("%s", (_id, v) => {
    const decode = decoders[v.type]!;
    const value: unknown = JSON.parse(v.text);
    expect(() => decode(value)).toThrow(schema.SchemaValidationError);
    // The verdict survives a JSON round trip (no value that only fails before serialization).
    expect(() => decode(JSON.parse(JSON.stringify(value)))).toThrow(schema.SchemaValidationError);
  });
});

describe("times and counters are non-negative integers", () => {
  const base = schema.defaultAccountState(1_764_000_000_000);
  it.each([
    ["sm.enabledAt", { ...base, sm: { ...base.sm, enabledAt: 1.5 } }, "/sm/enabledAt"],
    [
      "features.discoveredAt",
      { ...base, features: { ...base.features, discoveredAt: -3.25 } },
      "/features/discoveredAt",
    ],
    ["mam.completedAt", { ...base, mam: { ...base.mam, completedAt: -1 } }, "/mam/completedAt"],
    [
      "mam.lastTimestamp",
      { ...base, mam: { ...base.mam, lastTimestamp: 0.5 } },
      "/mam/lastTimestamp",
    ],
    ["mam.syncedAt", { ...base, mam: { ...base.mam, syncedAt: -2 } }, "/mam/syncedAt"],
    [
      "sm.maxResumeSeconds",
      { ...base, sm: { ...base.sm, maxResumeSeconds: -1 } },
      "/sm/maxResumeSeconds",
    ],
  ])("%s", (_n, state, path) => {
    const r = schema.validateAccountState(state);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.map((e) => e.path)).toContain(path);
  });

  it("accepts what the engine writes: null, 0 and Date.now()-style integers", () => {
    for (const t of [null, 0, 1_764_000_000_123])
      expect(
        schema.validateAccountState({
          ...base,
          sm: { ...base.sm, enabledAt: t },
          features: { ...base.features, discoveredAt: t },
          mam: { ...base.mam, completedAt: t, lastTimestamp: t, syncedAt: t },
        }).ok,
      ).toBe(true);
  });
});
