import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createInterface } from "node:readline";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import {
  DurableSession,
  ensureAccount,
  listRoster,
  xml,
  type Element,
  type SessionOptions,
  type SessionPlugin,
} from "@lichen/engine";
import { openStore, type Store } from "@lichen/store";
import type { XmppTestServer } from "@lichen/test-servers";
import { Omemo, type OmemoOptions } from "../src/index.js";
import { until as untilTrue } from "@lichen/test-kit";

export { until } from "@lichen/test-kit";

/** One Lichen device: its own database, a session with the OMEMO plugin. */
export interface Device {
  store: Store;
  db: string;
  session: DurableSession;
  /** The session's options without the store (e.g. for an NSE run on the same account). */
  config: Omit<SessionOptions, "store">;
  omemo: Omemo;
  jid: string;
  /** Bodies of stored messages of this chat, oldest first, with the encrypted flag. */
  messages(chat: string): { body: string; encrypted: number; direction: string }[];
  close(): Promise<void>;
}

export function openDevice(
  server: XmppTestServer,
  user: string,
  resource: string,
  o: {
    db?: string;
    role?: "app" | "nse";
    before?: SessionPlugin[];
    omemo?: OmemoOptions;
    /** STARTTLS with this CA (a server started with `tls: true`). */
    ca?: string;
  } = {},
): Device {
  const db = o.db ?? join(mkdtempSync(join(tmpdir(), "lichen-omemo-")), "l.db");
  const store = openStore({ path: db, role: "main" });
  const jid = `${user}@localhost`;
  ensureAccount(store, { id: user, jid, resource });
  const omemo = new Omemo({ role: o.role ?? "app", requestTimeoutMs: 60_000, ...o.omemo });
  const config: Omit<SessionOptions, "store"> = {
    accountId: user,
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: "localhost",
    username: user,
    password: `${user}pw`,
    resource,
    ...(o.ca ? { tls: { ca: o.ca } } : {}),
    plugins: [...(o.before ?? []), omemo],
    logger: (e) => {
      // Plugin failures are bugs in these tests: make them visible.
      if (e.event === "plugin-prepare-failed" || e.event === "stanza-rolled-back")
        console.error(user, resource, JSON.stringify(e));
    },
  };
  const session = new DurableSession({ store, ...config });
  return {
    store,
    db,
    session,
    config,
    omemo,
    jid,
    messages: (chat) =>
      store.sqlite
        .prepare(
          "SELECT body, encrypted, direction FROM messages WHERE account_id = ? AND chat_jid = ? ORDER BY sent_at / 1000, id",
        )
        .all(user, chat) as { body: string; encrypted: number; direction: string }[],
    close: async () => {
      await session.close();
      store.close();
    },
  };
}

/**
 * An IQ that publishes `payload` as the item "current" of our PEP `node` by hand, as another
 * client would; `open`: with publish-options that open the node to all (Conversations does).
 */
export function publishIq(node: string, payload: Element, o: { open?: boolean } = {}): Element {
  const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
  const field = (name: string, value: string, type?: string) =>
    xml("field", { var: name, ...(type ? { type } : {}) }, xml("value", {}, value));
  const options = xml(
    "publish-options",
    {},
    xml(
      "x",
      { xmlns: "jabber:x:data", type: "submit" },
      field("FORM_TYPE", `${NS_PUBSUB}#publish-options`, "hidden"),
      field("pubsub#access_model", "open"),
    ),
  );
  return xml(
    "iq",
    { type: "set" },
    xml(
      "pubsub",
      { xmlns: NS_PUBSUB },
      xml("publish", { node }, xml("item", { id: "current" }, payload)),
      ...(o.open ? [options] : []),
    ),
  );
}

/** Connects and publishes the device's identity (bundle + device list). */
export async function online(d: Device): Promise<Device> {
  await d.session.connect();
  await d.omemo.publish();
  return d;
}

/** A mutual presence subscription between two online devices' accounts, through the engine. */
export async function subscribeMutually(a: Device, b: Device): Promise<void> {
  const subscription = (d: Device, other: Device) =>
    listRoster(d.store, d.session.accountId).find((r) => r.jid === other.jid)?.subscription;
  a.session.answerSubscription(b.jid, "subscribe");
  await untilTrue(
    () => b.store.sqlite.prepare("SELECT 1 FROM subscription_requests").get() !== undefined,
    `${b.jid} sees ${a.jid}'s request`,
  );
  b.session.answerSubscription(a.jid, "approve", { subscribeBack: true });
  await untilTrue(() => subscription(a, b) === "to" || subscription(a, b) === "both", "a → b");
  a.session.answerSubscription(b.jid, "approve");
  await untilTrue(
    () => subscription(a, b) === "both" && subscription(b, a) === "both",
    "mutual subscription",
  );
}

/** What {@link useServer} gives a describe block (filled in its beforeAll). */
export interface ServerEnv {
  server: XmppTestServer;
  /** Closed after the block. */
  devices: Device[];
  /** Other things to stop after the block (peers, third-party clients), after the devices. */
  stops: (() => unknown)[];
}

/**
 * A real server for one describe block: started before it with `users` registered (password
 * `<user>pw`), then `setUp` (the block's shared devices and peers: push them to `devices` and
 * `stops`); after it, every device is closed, every stop run and the server stopped.
 */
export function useServer(
  start: () => Promise<XmppTestServer>,
  users: string[],
  o: { timeoutMs?: number; setUp?: (env: ServerEnv) => Promise<void> } = {},
): ServerEnv {
  const timeoutMs = o.timeoutMs ?? 180_000;
  const env: ServerEnv = {
    server: undefined as unknown as XmppTestServer,
    devices: [],
    stops: [],
  };
  beforeAll(async () => {
    env.server = await start();
    for (const u of users) await env.server.registerUser(u, `${u}pw`);
    await o.setUp?.(env);
  }, timeoutMs);
  afterAll(async () => {
    for (const d of env.devices) await d.close().catch(() => {});
    for (const stop of env.stops) await stop();
    await (env.server as XmppTestServer | undefined)?.stop();
  }, timeoutMs);
  return env;
}

/**
 * A fixture process (test/fixtures/*.mjs) given its options as one JSON argument; it prints one
 * JSON event per line. `waitFor(event)` waits for an event by name; `kill()` SIGKILLs it and
 * waits for its exit (what the durability tests do mid-work).
 */
export function spawnFixture(fixture: string, options: Record<string, unknown>) {
  const child = spawn(process.execPath, [fixture, JSON.stringify(options)]);
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += String(d)));
  const events: { event: string }[] = [];
  createInterface({ input: child.stdout }).on("line", (l) => events.push(JSON.parse(l)));
  const exited = new Promise((r) => child.once("exit", r));
  return {
    events,
    waitFor: (event: string, what: string) =>
      untilTrue(() => events.some((e) => e.event === event) || undefined, `${what} (${stderr})`),
    kill: async () => {
      child.kill("SIGKILL");
      await exited;
    },
  };
}
