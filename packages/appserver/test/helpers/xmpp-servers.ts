// Interim launcher for real Prosody 0.12 / ejabberd 23.01 on free loopback ports (recipe in
// shared/notes/real-servers-recipe.md), used until @lichen/test-servers is available.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  writeFileSync,
  existsSync,
} from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestXmppServer {
  kind: "prosody" | "ejabberd";
  domain: string;
  c2sPort: number;
  componentPort: number;
  componentDomain: string;
  componentSecret: string;
  logFile: string;
  /** Current content of the server's log. */
  log(): string;
  registerUser(user: string, password: string): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, "127.0.0.1");
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

async function waitPort(
  port: number,
  open: boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await portOpen(port)) !== open) {
    if (Date.now() > deadline)
      throw new Error(
        `${what}: port ${port} not ${open ? "open" : "closed"} after ${timeoutMs} ms`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}

function requireBinary(bin: string): void {
  try {
    execFileSync("which", [bin], { stdio: "ignore" });
  } catch {
    throw new Error(
      `${bin} is not installed: the appserver tests need real servers (apt-get install prosody prosody-modules ejabberd redis-server)`,
    );
  }
}

export async function startProsody(): Promise<TestXmppServer> {
  requireBinary("prosody");
  const dir = mkdtempSync(join(tmpdir(), "lichen-prosody-"));
  mkdirSync(join(dir, "data"));
  const [c2s, comp, http] = [await freePort(), await freePort(), await freePort()];
  const cfg = join(dir, "prosody.cfg.lua");
  const logFile = join(dir, "prosody.log");
  writeFileSync(
    cfg,
    `pidfile = "${dir}/prosody.pid"
data_path = "${dir}/data"
log = { debug = "${logFile}"; error = "${dir}/prosody.err"; }
run_as_root = true
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { ${c2s} }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { }
component_ports = { ${comp} }
component_interface = "127.0.0.1"
http_ports = { ${http} }
http_interfaces = { "127.0.0.1" }
https_ports = { }
admin_interfaces = { }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "carbons"; "smacks"; "mam"; "cloud_notify"; "posix"; }
modules_disabled = { "s2s"; "tls" }
smacks_hibernation_time = 60
push_notification_with_body = false
push_notification_with_sender = false
VirtualHost "localhost"
Component "push.localhost"
  component_secret = "pushsecret"
`,
  );
  let proc: ChildProcess | undefined;
  const launch = async () => {
    proc = spawn("prosody", ["--config", cfg, "-F"], { stdio: "ignore" });
    await waitPort(c2s, true, "prosody");
    await waitPort(comp, true, "prosody component port");
  };
  const kill = async () => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    process.kill(p.pid!, "SIGTERM");
    await exited;
  };
  await launch();
  return {
    kind: "prosody",
    domain: "localhost",
    c2sPort: c2s,
    componentPort: comp,
    componentDomain: "push.localhost",
    componentSecret: "pushsecret",
    logFile,
    log: () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : ""),
    registerUser: async (u, pw) => {
      execFileSync("prosodyctl", ["--config", cfg, "register", u, "localhost", pw], {
        stdio: "ignore",
      });
    },
    restart: async () => {
      await kill();
      await launch();
    },
    stop: kill,
  };
}

export async function startEjabberd(): Promise<TestXmppServer> {
  requireBinary("ejabberdctl");
  const dir = mkdtempSync(join(tmpdir(), "lichen-ejabberd-"));
  for (const d of ["spool", "logs"]) mkdirSync(join(dir, d));
  const [c2s, comp] = [await freePort(), await freePort()];
  const node = `lichen${process.pid}x${c2s}@localhost`;
  writeFileSync(
    join(dir, "ejabberdctl.cfg"),
    `ERLANG_NODE=${node}\nERL_EPMD_ADDRESS=127.0.0.1\nERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -kernel inet_dist_use_interface {127,0,0,1}"\nEJABBERD_PID_PATH=${dir}/ejabberd.pid\n`,
  );
  copyFileSync("/etc/ejabberd/inetrc", join(dir, "inetrc"));
  writeFileSync(
    join(dir, "ejabberd.yml"),
    `hosts:
  - localhost
loglevel: info
log_rotate_count: 0
listen:
  - port: ${c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
  - port: ${comp}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:
      push.localhost:
        password: "pushsecret"
auth_method: internal
auth_password_format: plain
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
shaper_rules:
  c2s_shaper: none
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_offline: {}
  mod_client_state: {}
  mod_stream_mgmt:
    resend_on_timeout: if_offline
    resume_timeout: 60
  mod_push:
    include_body: false
    include_sender: false
  mod_push_keepalive: {}
`,
  );
  execFileSync("chown", ["-R", "ejabberd:ejabberd", dir]);
  const ctl = (...args: string[]) =>
    execFileSync(
      "ejabberdctl",
      [
        "--config-dir",
        dir,
        "--config",
        join(dir, "ejabberd.yml"),
        "--spool",
        join(dir, "spool"),
        "--logs",
        join(dir, "logs"),
        ...args,
      ],
      { stdio: "pipe", timeout: 120_000 },
    ).toString();
  const logFile = join(dir, "logs", "ejabberd.log");
  const launch = async () => {
    ctl("start");
    await waitPort(c2s, true, "ejabberd", 90_000);
    ctl("started");
    if (existsSync(logFile) && readFileSync(logFile, "utf8").includes("[critical]")) {
      throw new Error(`ejabberd logged a critical error, see ${logFile}`);
    }
  };
  const stop = async () => {
    try {
      ctl("stop");
      ctl("stopped");
    } catch {
      // already stopped
    }
    await waitPort(c2s, false, "ejabberd stop", 30_000);
  };
  void chmodSync;
  void chownSync;
  await launch();
  return {
    kind: "ejabberd",
    domain: "localhost",
    c2sPort: c2s,
    componentPort: comp,
    componentDomain: "push.localhost",
    componentSecret: "pushsecret",
    logFile,
    log: () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : ""),
    registerUser: async (u, pw) => {
      ctl("register", u, "localhost", pw);
    },
    restart: async () => {
      await stop();
      await launch();
    },
    stop,
  };
}
