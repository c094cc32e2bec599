import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { makeLocalhostCert } from "./certs.js";
import { requireInstalled } from "./ensure.js";
import type { EjabberdOptions, XmppTestServer } from "./types.js";
import {
  delay,
  freePorts,
  isAlive,
  killPid,
  readIfExists,
  tail,
  trackPid,
  untrackPid,
  waitForPort,
} from "./util.js";

const execFileAsync = promisify(execFile);
let instanceCounter = 0;

/**
 * Starts a real ejabberd 23.01 on free loopback ports with a fresh spool. Each instance gets its
 * own Erlang node name, so several can run at once (they share epmd on 127.0.0.1:4369).
 */
export async function startEjabberd(opts: EjabberdOptions = {}): Promise<XmppTestServer> {
  // The free ports are asked for before ejabberd binds them: a parallel test (or any process) can
  // take one in between, and ejabberd then stops with eaddrinuse (seen in CI). New ports, again.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startEjabberdOnce(opts);
    } catch (err) {
      if (attempt >= 3 || !/eaddrinuse/i.test(String((err as Error).message))) throw err;
    }
  }
}

async function startEjabberdOnce(opts: EjabberdOptions): Promise<XmppTestServer> {
  requireInstalled(["ejabberd"]);
  const dir = mkdtempSync(join(tmpdir(), "lichen-ejabberd-"));
  for (const sub of ["spool", "logs", "upload"]) mkdirSync(join(dir, sub));
  const cert = makeLocalhostCert(dir);
  const [c2sPort, componentPort, httpPort] = (await freePorts(3)) as [number, number, number];
  const componentDomain = opts.componentDomain ?? "push.localhost";
  const componentSecret = opts.componentSecret ?? "pushsecret";
  const nodeName = `lichen${process.pid}n${++instanceCounter}p${c2sPort}@localhost`;
  const pidPath = join(dir, "ejabberd.pid");
  writeFileSync(
    join(dir, "ejabberdctl.cfg"),
    [
      `ERLANG_NODE=${nodeName}`,
      `ERL_EPMD_ADDRESS=127.0.0.1`,
      `ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -kernel inet_dist_use_interface {127,0,0,1}"`,
      `EJABBERD_PID_PATH=${pidPath}`,
      "",
    ].join("\n"),
  );
  copyFileSync("/etc/ejabberd/inetrc", join(dir, "inetrc"));
  if (opts.includeConfig)
    writeFileSync(join(dir, "include.yml"), opts.includeConfig(componentPort));
  writeFileSync(
    join(dir, "ejabberd.yml"),
    `# Lichen test ejabberd (loopback only)
${opts.includeConfig ? `include_config_file:\n  - ${join(dir, "include.yml")}\n` : ""}hosts:
  - localhost
loglevel: info
log_rotate_count: 0
certfiles:
  - ${cert.pemPath}
listen:
  - port: ${c2sPort}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
    starttls: ${opts.tls ? "true" : "false"}
    starttls_required: false
${
  opts.includeConfig
    ? ""
    : `  - port: ${componentPort}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:
      ${componentDomain}:
        password: "${componentSecret}"
`
}  - port: ${httpPort}
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /upload: mod_http_upload
auth_method: internal
auth_password_format: plain
acl:
  local:
    user_regexp: ""
  loopback:
    ip:
      - 127.0.0.0/8
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  muc_create:
    allow: local
  pubsub_createnode:
    allow: local
shaper_rules:
  c2s_shaper: none
  s2s_shaper: none
modules:
  mod_adhoc: {}
  mod_blocking: {}
  mod_privacy: {}
  mod_caps: {}
  mod_carboncopy: {}
  mod_disco: {}
  mod_last: {}
  mod_ping: {}
  mod_private: {}
  mod_roster:
    versioning: true
  mod_version: {}
${opts.offlineStorage === false ? "" : "  mod_offline: {}\n"}  mod_client_state: {}
  mod_stream_mgmt:
    resend_on_timeout: if_offline
    resume_timeout: ${opts.resumeTimeoutSeconds ?? 60}
  mod_mam:
    db_type: mnesia
    assume_mam_usage: true
    default: always
${
  opts.includeConfig
    ? ""
    : `  mod_push:
    include_body: false
    include_sender: false
  mod_push_keepalive: {}
`
}  mod_pubsub:
    access_createnode: pubsub_createnode
    plugins:
      - flat
      - pep
  mod_muc:
    host: conference.localhost
    access:
      - allow
    access_create: muc_create
    access_persistent: muc_create
    access_mam:
      - allow
    default_room_options:
      mam: true
  mod_http_upload:
    put_url: "http://localhost:${httpPort}/upload"
    docroot: ${dir}/upload
    max_size: 10485760
    host: upload.localhost
`,
  );
  // As root, ejabberdctl runs the VM as user "ejabberd": it must own its files.
  if (process.getuid?.() === 0) {
    await execFileAsync("chown", ["-R", "ejabberd:ejabberd", dir]);
  }
  const logPath = join(dir, "logs", "ejabberd.log");
  const errorLogPath = join(dir, "logs", "error.log");
  const ctl = async (...args: string[]) => {
    const { stdout } = await execFileAsync(
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
      { timeout: 120_000 },
    );
    return stdout;
  };
  const readPid = (): number => {
    const text = readIfExists(pidPath).trim();
    return text ? Number(text) : 0;
  };
  let pid = 0;
  const criticalCheck = () => {
    const log = readIfExists(logPath);
    if (log.includes("[critical]")) {
      throw new Error(`ejabberd logged a critical error during start-up:\n${tail(log, 40)}`);
    }
  };
  const launch = async () => {
    await ctl("start");
    await waitForPort(c2sPort, true, "ejabberd c2s", 90_000, criticalCheck);
    await waitForPort(componentPort, true, "ejabberd component", 30_000, criticalCheck);
    await ctl("started");
    pid = readPid();
    if (pid) trackPid(pid);
  };
  const halt = async () => {
    try {
      await ctl("stop");
    } catch {
      // not running any more: fall through to the PID check
    }
    // Not `ejabberdctl stopped`: once the node is down it runs `epmd -kill` when epmd lists no
    // name, and a parallel test's ejabberd that has just been started but has not registered its
    // name yet then dies silently in boot (no log at all; "c2s port still closed after 90000 ms").
    // Waiting for the VM's own exit is what `stopped` waits for, without touching shared epmd.
    if (pid) {
      const deadline = Date.now() + 60_000;
      while (isAlive(pid) && Date.now() < deadline) await delay(100);
      if (isAlive(pid)) await killPid(pid, 5000);
    } else {
      await ctl("stopped").catch(() => {}); // no PID file: only ejabberdctl can tell
    }
    untrackPid(pid);
    await waitForPort(c2sPort, false, "ejabberd stop", 30_000);
  };
  try {
    await launch();
  } catch (err) {
    const p = readPid();
    if (p) await killPid(p, 2000);
    throw err;
  }

  return {
    kind: "ejabberd",
    host: "127.0.0.1",
    domain: "localhost",
    c2sPort,
    componentPort,
    httpPort,
    componentDomain,
    componentSecret,
    mucDomain: "conference.localhost",
    caCertPath: cert.certPath,
    dataDir: dir,
    get pid() {
      return pid;
    },
    async registerUser(username, password) {
      await ctl("register", username, "localhost", password);
    },
    async logText() {
      return readIfExists(logPath) + (existsSync(errorLogPath) ? readIfExists(errorLogPath) : "");
    },
    async restart() {
      await halt();
      await launch();
    },
    async stop() {
      await halt();
      if (process.env.KEEP_TEST_SERVERS !== "1") rmSync(dir, { recursive: true, force: true });
    },
  };
}
