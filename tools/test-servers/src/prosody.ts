import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeLocalhostCert } from "./certs.js";
import { requireInstalled } from "./ensure.js";
import type { ProsodyOptions, XmppTestServer } from "./types.js";
import {
  freePorts,
  isAlive,
  killPid,
  readIfExists,
  tail,
  trackPid,
  untrackPid,
  waitForPort,
} from "./util.js";

/** Starts a real Prosody 0.12 (with mod_cloud_notify) on free loopback ports and a fresh data dir. */
export async function startProsody(opts: ProsodyOptions = {}): Promise<XmppTestServer> {
  requireInstalled(["prosody"]);
  const dir = mkdtempSync(join(tmpdir(), "lichen-prosody-"));
  mkdirSync(join(dir, "data"));
  mkdirSync(join(dir, "certs"));
  const cert = makeLocalhostCert(join(dir, "certs"));
  const [c2sPort, componentPort, httpPort] = (await freePorts(3)) as [number, number, number];
  const componentDomain = opts.componentDomain ?? "push.localhost";
  const componentSecret = opts.componentSecret ?? "pushsecret";
  const configPath = join(dir, "prosody.cfg.lua");
  const logPath = join(dir, "prosody.log");
  const errPath = join(dir, "prosody.err");
  // An operator's push configuration replaces every built-in push line (see ProsodyOptions).
  const push = opts.pushConfig?.(componentPort);
  writeFileSync(
    configPath,
    `-- Lichen test Prosody (loopback only)
pidfile = "${dir}/prosody.pid"
data_path = "${dir}/data"
log = { debug = "${logPath}"; error = "${errPath}"; }
run_as_root = true
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { ${c2sPort} }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { }
${push ? "" : `component_ports = { ${componentPort} }\ncomponent_interface = "127.0.0.1"\n`}http_ports = { ${httpPort} }
http_interfaces = { "127.0.0.1" }
https_ports = { }
admin_interfaces = { }
certificates = "${dir}/certs"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
allow_registration = false
modules_enabled = {
  "roster"; "saslauth"; ${opts.tls ? '"tls"; ' : ""}"disco"; "ping"; "time"; "version";
  "carbons"; "pep"; "private"; "blocklist"; "register";
  ${push ? "" : '"smacks"; '}"mam"; "csi_simple"; ${push ? "" : '"cloud_notify"; '}"posix";${opts.bookmarks ? ' "bookmarks";' : ""}
}
modules_disabled = { "s2s"${opts.tls ? "" : '; "tls"'}${opts.offlineStorage === false ? '; "offline"' : ""} }
smacks_hibernation_time = ${opts.smacksHibernationSeconds ?? 60}
archive_expires_after = "1d"
default_archive_policy = true
${push ? "" : "push_notification_with_body = false\npush_notification_with_sender = false\n"}push_max_errors = ${opts.pushMaxErrors ?? 16}
http_host = "localhost"
http_external_url = "http://localhost:${httpPort}/"
${opts.extraConfig ?? ""}
${push?.global ?? ""}

VirtualHost "localhost"
  ssl = { key = "${cert.keyPath}"; certificate = "${cert.certPath}"; }
${push?.virtualHost ?? ""}

Component "upload.localhost" "http_file_share"
  http_file_share_size_limit = 10*1024*1024

Component "conference.localhost" "muc"
  modules_enabled = { "muc_mam" }

${
  push?.component ??
  `Component "${componentDomain}"
  component_secret = "${componentSecret}"`
}
`,
  );
  const prosodyctl = (...args: string[]) =>
    execFileSync("prosodyctl", ["--config", configPath, ...args], {
      stdio: "pipe",
      timeout: 60_000,
    }).toString();

  let pid = 0;
  const launch = async () => {
    const child = spawn("prosody", ["--config", configPath, "-F"], {
      stdio: ["ignore", "ignore", "ignore"],
      detached: false,
    });
    if (!child.pid) throw new Error("prosody could not be spawned");
    pid = child.pid;
    trackPid(pid);
    let exited: string | null = null;
    child.once("exit", (code, signal) => {
      exited = `exited with ${code ?? signal}`;
    });
    const check = () => {
      if (exited) {
        throw new Error(
          `prosody ${exited} during start-up. Log:\n${tail(readIfExists(errPath) + readIfExists(logPath))}`,
        );
      }
    };
    await waitForPort(c2sPort, true, "prosody c2s", 30_000, check);
    await waitForPort(componentPort, true, "prosody component", 30_000, check);
  };
  const halt = async () => {
    if (pid && isAlive(pid)) await killPid(pid, 5000);
    untrackPid(pid);
  };
  await launch();

  return {
    kind: "prosody",
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
      prosodyctl("register", username, "localhost", password);
    },
    async logText() {
      return readIfExists(logPath) + readIfExists(errPath);
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
