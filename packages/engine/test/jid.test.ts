// Who may answer an IQ (RFC 6120 §8.1.2.1), as the protocol layer decides it before running a handler.
import { describe, expect, it } from "vitest";
import { bare, isExpectedIqSender, normalizeJid } from "../src/jid.js";

const OWN = "alice@example.org";

describe("isExpectedIqSender", () => {
  it("a request to our server (no to, or our bare JID) is answered without from, from our bare JID or our domain", () => {
    for (const peer of [null, OWN, "Alice@Example.org"]) {
      expect(isExpectedIqSender(undefined, peer, OWN)).toBe(true);
      expect(isExpectedIqSender("", peer, OWN)).toBe(true);
      expect(isExpectedIqSender(OWN, peer, OWN)).toBe(true);
      expect(isExpectedIqSender("example.org", peer, OWN)).toBe(true);
      expect(isExpectedIqSender("ALICE@example.ORG", peer, OWN)).toBe(true);
      // Another user, another resource of someone else, or another domain cannot answer it.
      expect(isExpectedIqSender("mallory@example.org", peer, OWN)).toBe(false);
      expect(isExpectedIqSender("evil.example", peer, OWN)).toBe(false);
      expect(isExpectedIqSender("mallory@example.org/alice", peer, OWN)).toBe(false);
    }
  });

  it("a request to a peer is answered only by that JID (local part and domain case-insensitive, resource exact)", () => {
    const peer = "bob@example.org/desk";
    expect(isExpectedIqSender("bob@example.org/desk", peer, OWN)).toBe(true);
    expect(isExpectedIqSender("BOB@Example.Org/desk", peer, OWN)).toBe(true);
    expect(isExpectedIqSender("bob@example.org/Desk", peer, OWN)).toBe(false);
    expect(isExpectedIqSender("bob@example.org/phone", peer, OWN)).toBe(false);
    expect(isExpectedIqSender("bob@example.org", peer, OWN)).toBe(false);
    expect(isExpectedIqSender(undefined, peer, OWN)).toBe(false); // that would be our server
    expect(isExpectedIqSender(OWN, peer, OWN)).toBe(false);
    // Services (upload, MUC rooms) are peers too.
    expect(isExpectedIqSender("upload.example.org", "upload.example.org", OWN)).toBe(true);
    expect(isExpectedIqSender("example.org", "upload.example.org", OWN)).toBe(false);
    expect(isExpectedIqSender("room@muc.example.org", "room@muc.example.org", OWN)).toBe(true);
    expect(isExpectedIqSender("room@muc.example.org/nick", "room@muc.example.org", OWN)).toBe(
      false,
    );
  });

  it("bare and normalizeJid", () => {
    expect(bare("a@b/c/d")).toBe("a@b");
    expect(bare(undefined)).toBe("");
    expect(normalizeJid("A@B.org/Res/X")).toBe("a@b.org/Res/X");
    expect(normalizeJid("B.ORG")).toBe("b.org");
  });
});
