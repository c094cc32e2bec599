// The MAM page logic shared by the account archive and room archives (no server needed: the
// catch-ups themselves are tested against Prosody and ejabberd in mam.test.ts and muc.test.ts).
import { describe, expect, it } from "vitest";
import { handleMamPage, mamPage, type MamArchive } from "../src/mam.js";

const answer = (fin: string) => `<iq type="result" id="q1" xmlns="jabber:client">${fin}</iq>`;
const FIN = (attrs: string, last?: string) =>
  `<fin xmlns="urn:xmpp:mam:2"${attrs}><set xmlns="http://jabber.org/protocol/rsm">` +
  (last ? `<first>a</first><last>${last}</last>` : "") +
  `</set></fin>`;

function recorder(): MamArchive & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    failed: (c) => calls.push(`failed:${c}`),
    advance: (l) => calls.push(`advance:${l}`),
    complete: (l) => calls.push(`complete:${l}`),
    next: (l) => calls.push(`next:${l}`),
  };
}

describe("mamPage", () => {
  it("reads complete and the last id from <fin/>, by namespace, not by text", () => {
    expect(mamPage(answer(FIN(' complete="true"', "x9")))).toEqual({ complete: true, last: "x9" });
    expect(mamPage(answer(FIN(" complete='1'", "x9")))).toEqual({ complete: true, last: "x9" });
    expect(mamPage(answer(FIN("", "x9")))).toEqual({ complete: false, last: "x9" });
    expect(mamPage(answer(FIN(' complete="false"')))).toEqual({ complete: false, last: null });
    // A <last/> or complete outside the MAM <fin/> (e.g. in a forwarded body) does not count.
    expect(
      mamPage(
        answer(
          `<x xmlns="urn:example"><fin complete="true"/><last>evil</last></x>` + FIN("", "x9"),
        ),
      ),
    ).toEqual({ complete: false, last: "x9" });
  });

  it("an answer that is not XML or has no <fin/> has no page to continue from", () => {
    expect(mamPage("<iq type='result'><fin")).toEqual({ complete: false, last: null });
    expect(mamPage(answer(""))).toEqual({ complete: false, last: null });
  });
});

describe("handleMamPage (one page handler for the account archive and rooms)", () => {
  const page = (fin: string, forward: boolean, type = "result") => ({
    type,
    stanza: answer(fin),
    forward,
  });

  it("forward: a page that is not the last asks for the next after its last id", () => {
    const a = recorder();
    handleMamPage(page(FIN("", "x1"), true), a);
    expect(a.calls).toEqual(["advance:x1", "next:x1"]);
  });

  it("forward: the page marked complete, or an empty page, ends the catch-up", () => {
    const a = recorder();
    handleMamPage(page(FIN(' complete="true"', "x2"), true), a);
    handleMamPage(page(FIN(""), true), a);
    expect(a.calls).toEqual(["advance:x2", "complete:x2", "complete:null"]);
  });

  it("the newest page alone (not forward) is one page", () => {
    const a = recorder();
    handleMamPage(page(FIN("", "x3"), false), a);
    expect(a.calls).toEqual(["advance:x3", "complete:x3"]);
  });

  it("an error answer (or a timeout) leaves the mark alone and reports the condition", () => {
    const a = recorder();
    handleMamPage({ type: "error", condition: "remote-server-timeout", forward: true }, a);
    expect(a.calls).toEqual(["failed:remote-server-timeout"]);
  });
});
