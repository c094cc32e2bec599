import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { openStore, type Store } from "@lichen/store";
import {
  startEjabberd,
  startFlakyLink,
  startProsody,
  type FlakyLink,
  type XmppTestServer,
} from "@lichen/test-servers";
import { afterAll, beforeAll } from "vitest";
import { DurableSession, ensureAccount, type SessionOptions } from "../src/index.js";

export const fixture = join(import.meta.dirname, "fixtures", "engine-proc.mjs");

export interface ProcEvent {
  event: string;
  [k: string]: unknown;
}

/** A Lichen process (child) whose JSON-line events can be awaited. */
export class LichenProcess {
  readonly child: ChildProcess;
  readonly events: ProcEvent[] = [];
  private waiters: { pred: (e: ProcEvent) => boolean; resolve: (e: ProcEvent) => void }[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = "";

  constructor(opts: Record<string, unknown>) {
    this.child = spawn(process.execPath, [fixture, JSON.stringify(opts)], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child.stderr!.on("data", (d) => (this.stderr += String(d)));
    createInterface({ input: this.child.stdout! }).on("line", (line) => {
      let e: ProcEvent;
      try {
        e = JSON.parse(line) as ProcEvent;
      } catch {
        return;
      }
      this.events.push(e);
      this.waiters = this.waiters.filter((w) => (w.pred(e) ? (w.resolve(e), false) : true));
    });
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code, signal) => resolve({ code, signal })),
    );
  }

  waitFor(pred: (e: ProcEvent) => boolean, what: string, timeoutMs = 30_000): Promise<ProcEvent> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `timed out waiting for ${what}; events: ${JSON.stringify(this.events.slice(-10))}; stderr: ${this.stderr.slice(-2000)}`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.push({ pred, resolve: (e) => (clearTimeout(timer), resolve(e)) });
      void this.exited.then((x) => {
        if (!this.events.find(pred)) {
          clearTimeout(timer);
          reject(
            new Error(
              `process exited (${x.code ?? x.signal}) before ${what}; stderr: ${this.stderr.slice(-2000)}`,
            ),
          );
        }
      });
    });
  }

  command(line: string): void {
    this.child.stdin!.write(line + "\n");
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}

/** Polling and the seeded PRNG come from the shared test kit. */
export { until, prng } from "@lichen/test-kit";

/** The peer ("bob"): a plain xmpp.js client from @lichen/test-servers. */
export { startTestPeer as startPeer } from "@lichen/test-servers";

/** Both real servers, for `describe.each(SERVERS)`. */
export const SERVERS = [
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const;

type StartServer = (o?: { tls?: boolean }) => Promise<XmppTestServer>;
type SessionConfig = Omit<SessionOptions, "store">;

/** Connection settings of a test user (password `<user>pw`, resource "phone"). */
export function accountConfig(server: XmppTestServer, user = "alice"): SessionConfig {
  return {
    accountId: user,
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: "localhost",
    username: user,
    password: `${user}pw`,
    resource: "phone",
  };
}

export interface EngineEnv {
  readonly server: XmppTestServer;
  /** The main app's store (alice's account exists). */
  readonly store: Store;
  readonly db: string;
  readonly dir: string;
  config(user?: string): SessionConfig;
  /** A session of alice on `store` (or on another store handle, as another process). */
  session(o?: Partial<SessionOptions>): DurableSession;
}

/**
 * The usual test world, set up in beforeAll and torn down in afterAll: a real server with `users`
 * registered, a fresh database with alice's account.
 */
export function useEngineEnv(
  start: StartServer,
  o: { users?: string[]; tls?: boolean; prefix?: string } = {},
): EngineEnv {
  let server: XmppTestServer | undefined;
  let store: Store | undefined;
  let dir = "";
  beforeAll(async () => {
    server = await start(o.tls ? { tls: true } : {});
    for (const u of o.users ?? ["alice", "bob"]) await server.registerUser(u, `${u}pw`);
    dir = mkdtempSync(join(tmpdir(), o.prefix ?? "lichen-engine-"));
    store = openStore({ path: join(dir, "lichen.db"), role: "main" });
    ensureAccount(store, { id: "alice", jid: "alice@localhost", resource: "phone" });
  }, 180_000);
  afterAll(async () => {
    store?.close();
    await server?.stop();
  }, 180_000);
  const env: EngineEnv = {
    get server() {
      if (!server) throw new Error("the test server is not started (beforeAll failed?)");
      return server;
    },
    get store() {
      if (!store) throw new Error("the store is not open (beforeAll failed?)");
      return store;
    },
    get db() {
      return join(dir, "lichen.db");
    },
    get dir() {
      return dir;
    },
    config: (user = "alice") => accountConfig(env.server, user),
    session: (s = {}) => new DurableSession({ store: env.store, ...env.config(), ...s }),
  };
  return env;
}

/**
 * Alice through a TCP relay that counts bytes (started in beforeAll, closed in afterAll): `config()`
 * connects through it; `stored(prefix)` counts alice's stored messages whose body starts so.
 */
export function useCountingLink(
  env: EngineEnv,
  shape: { bytesPerSecond?: number; delayMs?: number } = {},
): {
  readonly link: FlakyLink;
  config(): SessionConfig;
  stored(prefix: string): number;
} {
  let link: FlakyLink | undefined;
  beforeAll(async () => {
    link = await startFlakyLink({ port: env.server.c2sPort, ...shape });
  });
  afterAll(async () => {
    await link?.close();
  });
  const get = () => {
    if (!link) throw new Error("the link is not started (beforeAll failed?)");
    return link;
  };
  return {
    get link() {
      return get();
    },
    config: () => ({ ...env.config(), service: `xmpp://127.0.0.1:${get().port}` }),
    stored: (prefix) =>
      (
        env.store.sqlite
          .prepare("SELECT count(*) AS n FROM messages WHERE account_id = 'alice' AND body LIKE ?")
          .get(`${prefix}%`) as { n: number }
      ).n,
  };
}
