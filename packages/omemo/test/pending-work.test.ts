import type { XmppTestServer } from "@lichen/test-servers";
import { afterEach, expect, it } from "vitest";
import { openDevice, type Device } from "./helpers.js";

// No server: these rows are refused before any network work. The session never connects.
const offline = { c2sPort: 1 } as XmppTestServer;
const opened: Device[] = [];
afterEach(async () => {
  for (const d of opened.splice(0)) await d.close();
});

const queue = (d: Device, key: string, handler: string) =>
  d.store.sqlite
    .prepare(
      "INSERT INTO omemo_pending_work (account_id, key, handler, created_at) VALUES ('dave', ?, ?, 0)",
    )
    .run(key, handler);

it("corrupt or unknown queued OMEMO work is moved to quarantine with the reason, never run", async () => {
  const dave = openDevice(offline, "dave", "phone");
  opened.push(dave);
  queue(dave, "not json", "{");
  queue(dave, "unknown", JSON.stringify({ v: 1, name: "omemo.somethingElse", bound: {} }));
  queue(
    dave,
    "bad device id",
    JSON.stringify({ v: 1, name: "omemo.repairSession", bound: { jid: "x@y", deviceId: "7" } }),
  );
  expect(await dave.omemo.runPendingWork()).toBe(0);
  expect(dave.store.sqlite.prepare("SELECT * FROM omemo_pending_work").all()).toEqual([]);
  expect(
    dave.store.sqlite
      .prepare(
        "SELECT row_key, raw, error FROM quarantine WHERE table_name = 'omemo_pending_work' ORDER BY row_key",
      )
      .all(),
  ).toEqual([
    {
      row_key: "bad device id",
      raw: expect.stringContaining('"deviceId":"7"'),
      error: "not an OMEMO work item this version knows",
    },
    { row_key: "not json", raw: "{", error: "not an OMEMO work item this version knows" },
    {
      row_key: "unknown",
      raw: expect.stringContaining("omemo.somethingElse"),
      error: "not an OMEMO work item this version knows",
    },
  ]);
});

it("the NSE runs no queued work: the rows wait for the main app", async () => {
  const dave = openDevice(offline, "dave", "nse", { role: "nse" });
  opened.push(dave);
  const handler = JSON.stringify({
    v: 1,
    name: "omemo.repairSession",
    bound: { jid: "erin@localhost", deviceId: 7 },
  });
  queue(dave, "repair erin@localhost 7", handler);
  expect(await dave.omemo.runPendingWork()).toBe(0);
  expect(await dave.omemo.repairSession("erin@localhost", 7)).toBe(false);
  expect(dave.store.sqlite.prepare("SELECT key, handler FROM omemo_pending_work").all()).toEqual([
    { key: "repair erin@localhost 7", handler },
  ]);
});
