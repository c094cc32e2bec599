// The rule a failed upload PUT follows (no servers): retry with back-off, a new slot, or fail.
import { describe, expect, it } from "vitest";
import { MediaError, uploadFailureAction, uploadRetryDelay } from "../src/index.js";

const status = (s: number) => new MediaError("http-status", `HTTP ${s}`, s);
const broken = new MediaError("http-failed", "PUT localhost: socket hang up");

describe("uploadFailureAction", () => {
  it("a broken link is retried: the same slot when fresh, a new one when it was reused", () => {
    expect(uploadFailureAction(broken, false)).toEqual({ kind: "retry", newSlot: false });
    expect(uploadFailureAction(broken, true)).toEqual({ kind: "retry", newSlot: true });
  });

  it("5xx, 408 and 429 say 'later': retried on the same slot", () => {
    for (const s of [500, 502, 503, 504, 408, 429])
      for (const reused of [false, true])
        expect(uploadFailureAction(status(s), reused)).toEqual({ kind: "retry", newSlot: false });
  });

  it("any other 4xx fails the row, except a reused slot's refusal, which asks a new slot", () => {
    for (const s of [400, 401, 403, 404, 409, 410])
      expect(uploadFailureAction(status(s), false)).toEqual({ kind: "fail" });
    for (const s of [400, 403, 404, 409])
      expect(uploadFailureAction(status(s), true)).toEqual({ kind: "new-slot" });
    // Too large is final even on a reused slot: a new slot would be refused the same way.
    expect(uploadFailureAction(status(413), true)).toEqual({ kind: "fail" });
  });

  it("errors that are not HTTP (missing file, bad slot) fail the row", () => {
    expect(uploadFailureAction(new MediaError("missing-file", "gone"), true)).toEqual({
      kind: "fail",
    });
    expect(uploadFailureAction(new MediaError("bad-slot", "ftp:"), false)).toEqual({
      kind: "fail",
    });
  });
});

describe("uploadRetryDelay", () => {
  it("doubles from initialDelayMs up to maxDelayMs, half of it jitter", () => {
    const policy = { initialDelayMs: 1000, maxDelayMs: 5000 };
    expect([0, 1, 2, 3, 4].map((a) => uploadRetryDelay(a, { ...policy, random: () => 0 }))).toEqual(
      [500, 1000, 2000, 2500, 2500],
    );
    expect(uploadRetryDelay(1, { ...policy, random: () => 0.999999 })).toBe(2000);
    // Defaults: about 2 s first.
    expect(uploadRetryDelay(0, { random: () => 0.5 })).toBe(1500);
  });
});
