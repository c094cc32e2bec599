// Pure parts of the CLI, without servers: catch-up progress throttling, share options, settings.
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore, tables } from "@lichen/store";
import { describe, expect, it } from "vitest";
import { runCli } from "./helpers.js";
import {
  CatchupProgress,
  CliError,
  TransferProgressLines,
  lastMessages,
  logLine,
  normalizeService,
  parseBareJid,
  readAccountSettings,
  readAllAccountSettings,
  settingsPath,
  shareInput,
  writeAccountSettings,
  writeAllAccountSettings,
} from "../src/index.js";

describe("CatchupProgress", () => {
  it("reports at most every 500 ms while the gap is open, then the total once", () => {
    let now = 1_000;
    const lines: string[] = [];
    const p = new CatchupProgress(
      (l) => lines.push(l),
      () => now,
    );
    p.messageStored(); // no gap: a live message is not counted
    expect(lines).toEqual([]);
    p.gap(true);
    for (let i = 0; i < 150; i++) {
      p.messageStored();
      now += 10; // 150 messages over 1.5 s
    }
    expect(lines).toEqual([
      "catching up… 1 message",
      "catching up… 51 messages",
      "catching up… 101 messages",
    ]);
    now += 500;
    p.tick();
    expect(lines.at(-1)).toBe("catching up… 150 messages");
    p.tick(); // nothing new: no repeat
    expect(lines).toHaveLength(4);
    p.gap(false);
    expect(lines.at(-1)).toBe("caught up: 150 messages");
    expect(p.catchingUp).toBe(false);
    // A new gap counts from zero.
    p.gap(true);
    p.messageStored();
    expect(lines.at(-1)).toBe("catching up… 1 message");
  });

  it("says nothing for a catch-up that found nothing", () => {
    const lines: string[] = [];
    const p = new CatchupProgress(
      (l) => lines.push(l),
      () => 0,
    );
    p.gap(true);
    p.tick();
    p.gap(false);
    expect(lines).toEqual([]);
  });
});

describe("TransferProgressLines", () => {
  it("reports each further 10 % once, and the end; without a total each further MiB", () => {
    const lines: string[] = [];
    const p = new TransferProgressLines((l) => lines.push(l), "upload a.jpg");
    const total = 4 * 1048576;
    for (let done = 0; done <= total; done += 65536) p.update(done, total);
    expect(lines).toHaveLength(11); // 0 %, 10 %, …, 100 %
    expect(lines[0]).toBe("upload a.jpg: 0.0/4.0 MB (0%)");
    expect(lines.at(-1)).toBe("upload a.jpg: 4.0/4.0 MB (100%)");
    const open: string[] = [];
    const q = new TransferProgressLines((l) => open.push(l), "download #3");
    for (let done = 0; done <= 3 * 1048576; done += 65536) q.update(done, null);
    expect(open).toEqual([
      "download #3: 0.0 MB",
      "download #3: 1.0 MB",
      "download #3: 2.0 MB",
      "download #3: 3.0 MB",
    ]);
  });
});

describe("share options", () => {
  it("builds a contact, with its vCard read from a file; refuses a file that is no vCard", () => {
    const dir = mkdtempSync(join(tmpdir(), "lichen-units-vcard-"));
    const card = join(dir, "carol.vcf");
    writeFileSync(card, "BEGIN:VCARD\r\nFN:Carol\r\nEND:VCARD\r\n");
    expect(shareInput({ contact: "Carol", contactJid: "carol@localhost", vcard: card })).toEqual({
      kind: "contact",
      displayName: "Carol",
      jid: "carol@localhost",
      vcard: "BEGIN:VCARD\r\nFN:Carol\r\nEND:VCARD\r\n",
    });
    const notCard = join(dir, "x.txt");
    writeFileSync(notCard, "hello");
    expect(() => shareInput({ contact: "Carol", vcard: notCard })).toThrow(/not a vCard/);
    expect(() => shareInput({ text: "x", vcard: card })).toThrow(/only go with --contact/);
  });

  it("builds each content kind", () => {
    expect(shareInput({ text: "hi" })).toEqual({ kind: "text", text: "hi" });
    expect(shareInput({ url: "https://example.org/a b", title: "A" })).toEqual({
      kind: "url",
      url: "https://example.org/a%20b",
      title: "A",
    });
    expect(shareInput({ geo: "48.85, -2.35" })).toEqual({
      kind: "geo",
      latitude: 48.85,
      longitude: -2.35,
    });
    const dir = mkdtempSync(join(tmpdir(), "lichen-chat-unit-"));
    const photo = join(dir, "p.jpg");
    writeFileSync(photo, "x");
    expect(shareInput({ file: photo, mime: "image/jpeg", caption: "c" })).toMatchObject({
      kind: "image",
      caption: "c",
      file: { sourcePath: photo, mimeType: "image/jpeg", fileName: "p.jpg" },
    });
    expect(shareInput({ file: photo, mime: "video/mp4" }).kind).toBe("audiovisual");
    expect(shareInput({ file: photo, mime: "application/pdf" }).kind).toBe("file");
  });

  it("rejects ambiguous or malformed options with a clear message", () => {
    expect(() => shareInput({})).toThrow(/exactly one of .* \(got none\)/);
    expect(() => shareInput({ text: "a", url: "https://x" })).toThrow(/got --text, --url/);
    expect(() => shareInput({ geo: "91,0" })).toThrow(/LAT,LON/);
    expect(() => shareInput({ geo: "1;2" })).toThrow(/LAT,LON/);
    expect(() => shareInput({ url: "not a url" })).toThrow(/not an absolute URL/);
    expect(() => shareInput({ file: "/nonexistent/x", mime: "a/b" })).toThrow(/no such file/);
    expect(() => shareInput({ text: "a", mime: "a/b" })).toThrow(/--mime only goes with --file/);
  });
});

describe("account settings", () => {
  it("validates JIDs and service addresses", () => {
    expect(parseBareJid("Alice@LocalHost")).toEqual({ local: "Alice", domain: "localhost" });
    expect(() => parseBareJid("alice@localhost/phone")).toThrow(/--resource/);
    expect(() => parseBareJid("alice")).toThrow(CliError);
    expect(normalizeService("xmpp://127.0.0.1")).toBe("xmpp://127.0.0.1:5222");
    expect(normalizeService("xmpps://h:5999")).toBe("xmpps://h:5999");
    expect(() => normalizeService("http://h")).toThrow(/xmpp:\/\//);
  });

  it("round-trips through a 0600 file and explains every problem with the file name", () => {
    const db = join(mkdtempSync(join(tmpdir(), "lichen-chat-unit-")), "x.db");
    expect(() => readAccountSettings(db)).toThrow(/run "lichen-chat login/);
    const s = {
      v: 1 as const,
      accountId: "a@b",
      jid: "a@b",
      service: "xmpp://127.0.0.1:5222",
      password: "pw",
    };
    writeAccountSettings(db, s);
    expect(statSync(settingsPath(db)).mode & 0o777).toBe(0o600);
    expect(readAccountSettings(db)).toEqual(s);
    // Rewriting keeps the mode even if someone loosened it.
    chmodSync(settingsPath(db), 0o644);
    writeAccountSettings(db, s);
    expect(statSync(settingsPath(db)).mode & 0o777).toBe(0o600);
    const bad: [string, RegExp][] = [
      ["[]", /not a JSON object/],
      ['{"v":3}', /"v" must be 1 or 2/],
      ['{"v":2}', /"accounts" must be a non-empty array/],
      [JSON.stringify({ v: 2, accounts: [] }), /"accounts" must be a non-empty array/],
      [
        JSON.stringify({ v: 2, accounts: [{ ...s, v: undefined, jid: "x" }] }),
        /accounts\[0\]: .*not a bare JID/,
      ],
      [JSON.stringify({ v: 2, accounts: [s, s] }), /accounts\[1\]: a@b is listed twice/],
      [JSON.stringify({ ...s, password: "" }), /"password" must be a non-empty string/],
      [JSON.stringify({ ...s, jid: "nope" }), /not a bare JID/],
      [JSON.stringify({ ...s, resource: 5 }), /"resource"/],
      ["{", /are corrupt/],
    ];
    for (const [text, problem] of bad) {
      writeFileSync(settingsPath(db), text);
      expect(() => readAccountSettings(db)).toThrow(problem);
      expect(() => readAccountSettings(db)).toThrow(settingsPath(db));
    }
  });
});

describe("several accounts' settings", () => {
  it("one account stays a v1 file; several become { v: 2, accounts } read back in order", () => {
    const db = join(mkdtempSync(join(tmpdir(), "lichen-chat-unit-")), "x.db");
    const a = {
      v: 1 as const,
      accountId: "a@b",
      jid: "a@b",
      service: "xmpp://h:5222",
      password: "p",
    };
    const d = { ...a, accountId: "d@e", jid: "d@e", service: "xmpp://k:5222", resource: "phone" };
    writeAllAccountSettings(db, [a]);
    expect(JSON.parse(readFileSync(settingsPath(db), "utf8"))).toEqual(a);
    writeAllAccountSettings(db, [a, d]);
    const file = JSON.parse(readFileSync(settingsPath(db), "utf8")) as {
      v: number;
      accounts: unknown[];
    };
    expect(file.v).toBe(2);
    expect(file.accounts).toHaveLength(2);
    expect(statSync(settingsPath(db)).mode & 0o777).toBe(0o600);
    expect(readAllAccountSettings(db)).toEqual([a, d]);
    expect(readAccountSettings(db)).toEqual(a); // the first: login's
  });
});

describe("tail/history order", () => {
  it("lists a chat's last messages by the message's time, equal times in arrival order", () => {
    const store = openStore({
      path: join(mkdtempSync(join(tmpdir(), "lichen-chat-order-")), "c.db"),
      role: "main",
    });
    try {
      store.write((tx) => {
        tx.insert(tables.accounts)
          .values({ id: "alice", jid: "alice@localhost", createdAt: 1 })
          .run();
        // Arrival order (row id) differs from sending order: "late" came from the archive after
        // "b" and "c1" were received live, but was sent first. "c2" is a reply to our "c1" sent
        // at 3.5 s, with a whole-second delay stamp (3 s): same second, so arrival order.
        const rows: [string, number][] = [
          ["b", 2_000],
          ["c1", 3_500],
          ["late", 1_000],
          ["c2", 3_000],
          ["other chat", 1_500],
        ];
        for (const [body, sentAt] of rows)
          tx.insert(tables.messages)
            .values({
              accountId: "alice",
              chatJid: body === "other chat" ? "carol@localhost" : "bob@localhost",
              direction: "in",
              fromJid: "bob@localhost",
              body,
              sentAt,
              storedAt: 10_000,
            })
            .run();
      });
      const bodies = (n: number) =>
        lastMessages(store, "alice", "bob@localhost", n).map((m) => m.body);
      expect(bodies(10)).toEqual(["late", "b", "c1", "c2"]);
      expect(bodies(2)).toEqual(["c1", "c2"]); // the latest by time, not the last to arrive
    } finally {
      store.close();
    }
  });
});

describe("logLine", () => {
  const event = { time: Date.UTC(2026, 0, 2, 3, 4, 5, 6), event: "session.online", resumed: true };
  it("is a JSON line unless asked for readable lines (a terminal)", () => {
    expect(JSON.parse(logLine(event, "json"))).toEqual(event);
    expect(logLine({ ...event, why: "two words" }, "pretty")).toBe(
      '03:04:05.006 session.online resumed=true why="two words"',
    );
  });
});

describe("push enable input", () => {
  it("refuses a token or appserver the schema refuses before touching the database (exit 2, field named)", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "lichen-chat-push-unit-")), "none.db");
    const r = await runCli(db, ["push", "enable", "--appserver", "push.localhost", "--node", "ab"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/invalid push target: node .*8/);
    // A status without a database says how to get one (exit 1), like the other commands.
    const s = await runCli(db, ["push", "status"]);
    expect(s.code).toBe(1);
    expect(s.stderr).toContain("lichen-chat login");
  });
});
