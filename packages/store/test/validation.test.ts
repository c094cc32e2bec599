import { describe, expect, it } from "vitest";
import { SchemaValidationError as SchemaPackageValidationError } from "@lichen/schema";
import {
  SchemaValidationError,
  freshAccountState,
  validateAccountState,
  validateIpcMessage,
  validateShareOutboxItem,
} from "../src/index.js";

function errorOf(fn: () => unknown): SchemaValidationError {
  try {
    fn();
  } catch (e) {
    return e as SchemaValidationError;
  }
  throw new Error("expected a SchemaValidationError");
}

describe("validation with the schema package's validators", () => {
  it("returns valid values and names the first bad field in dotted form", () => {
    const state = freshAccountState(5);
    expect(validateAccountState(state)).toEqual(state);
    const e = errorOf(() => validateAccountState({ ...state, sm: { ...state.sm, inboundH: -1 } }));
    expect(e).toBeInstanceOf(SchemaValidationError);
    expect(e).toBeInstanceOf(SchemaPackageValidationError); // catching either class works
    expect(e.typeName).toBe("AccountState");
    expect(e.field).toBe("sm.inboundH");
    expect(e.message).toMatch(/^invalid AccountState: sm\.inboundH must be >= 0/);
    expect(e.errors[0]).toMatchObject({ path: "/sm/inboundH" });
  });

  it("reports missing and extra properties and union tags by field", () => {
    const { omemo: _omit, ...noOmemo } = freshAccountState(1);
    expect(errorOf(() => validateAccountState(noOmemo)).field).toBe("omemo");
    expect(errorOf(() => validateAccountState({ ...freshAccountState(1), extra: 1 })).field).toBe(
      "extra",
    );
    const ipc = errorOf(() =>
      validateIpcMessage({
        v: 1,
        id: "x",
        source: "main",
        destination: "nse",
        createdAt: 1,
        expiresAt: 2,
        type: "reboot",
        data: {},
      }),
    );
    expect(ipc.field).toBe("type");
    const share = errorOf(() =>
      validateShareOutboxItem({
        v: 1,
        id: "s",
        accountId: "a",
        to: "b@x",
        createdAt: 1,
        content: { kind: "geo", latitude: 100, longitude: 0 },
      }),
    );
    expect(share.field).toBe("content.latitude");
  });
});
