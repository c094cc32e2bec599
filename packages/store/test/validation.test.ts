import { describe, expect, it } from "vitest";
import { SchemaValidationError } from "../src/index.js";
import { adaptValidator } from "../src/validation.js";

// The schema package's generated validators replace the store's hand-written ones when they land;
// whatever style they use, store callers must see the value or a SchemaValidationError naming the field.
const fallback = (v: unknown) => {
  throw new Error(`fallback used for ${JSON.stringify(v)}`);
};
const styles: Record<string, (v: unknown) => unknown> = {
  throws: (v) => {
    if ((v as { n: number }).n < 0)
      throw Object.assign(new Error("must be >= 0"), { field: "sm.inboundH" });
  },
  boolean: (v) => (v as { n: number }).n >= 0,
  errorArray: (v) =>
    (v as { n: number }).n >= 0 ? [] : [{ instancePath: "/sm/inboundH", message: "must be >= 0" }],
  okObject: (v) =>
    (v as { n: number }).n >= 0
      ? { ok: true }
      : { ok: false, errors: [{ path: "sm.inboundH", message: "must be >= 0" }] },
  ajvObject: (v) =>
    (v as { n: number }).n >= 0
      ? { valid: true }
      : { valid: false, errors: [{ instancePath: "/sm/inboundH", message: "must be >= 0" }] },
};

describe("adaptValidator", () => {
  for (const [style, fn] of Object.entries(styles)) {
    it(`accepts a validator that ${style}`, () => {
      const v = adaptValidator("validateAccountState", fn, fallback);
      expect(v({ n: 1 })).toEqual({ n: 1 });
      let err: unknown;
      try {
        v({ n: -1 });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SchemaValidationError);
      expect((err as SchemaValidationError).typeName).toBe("AccountState");
      if (style !== "boolean") {
        expect((err as SchemaValidationError).field).toBe("sm.inboundH");
        expect((err as Error).message).toBe("invalid AccountState: sm.inboundH must be >= 0");
      }
    });
  }

  it("uses the fallback when the schema package has no such function", () => {
    expect(() => adaptValidator("validateX", undefined, fallback)(1)).toThrow(
      "fallback used for 1",
    );
  });
});
