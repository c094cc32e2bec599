import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { which } from "./util.js";

export type ServerKind = "prosody" | "ejabberd" | "redis" | "profanity";

/** Debian packages each kind of test server needs. */
const PACKAGES: Record<ServerKind, string[]> = {
  prosody: ["prosody", "prosody-modules", "lua-unbound", "lua-sec"],
  ejabberd: ["ejabberd"],
  redis: ["redis-server"],
  // Not a server: the third-party OMEMO client of the @lichen/omemo interop test, driven by tmux.
  profanity: ["profanity", "tmux"],
};

/** What is missing for each kind, as human-readable items. */
export function missingFor(kind: ServerKind): string[] {
  const missing: string[] = [];
  switch (kind) {
    case "prosody":
      if (!which("prosody")) missing.push("prosody (binary)");
      if (!which("prosodyctl")) missing.push("prosodyctl (binary)");
      if (!existsSync("/usr/lib/prosody/modules/mod_cloud_notify/mod_cloud_notify.lua"))
        missing.push("mod_cloud_notify (prosody-modules)");
      break;
    case "ejabberd":
      if (!which("ejabberdctl")) missing.push("ejabberdctl (binary)");
      if (!existsSync("/etc/ejabberd/inetrc")) missing.push("/etc/ejabberd/inetrc");
      break;
    case "redis":
      if (!which("redis-server")) missing.push("redis-server (binary)");
      break;
    case "profanity":
      if (!which("profanity")) missing.push("profanity (binary)");
      if (!which("tmux")) missing.push("tmux (binary)");
      break;
  }
  if (!which("openssl")) missing.push("openssl (binary)");
  return missing;
}

function installCommand(kinds: ServerKind[]): string {
  const pkgs = [...new Set(kinds.flatMap((k) => PACKAGES[k])), "openssl"];
  return `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${pkgs.join(" ")}`;
}

/**
 * Throws a clear error when a server is not installed. Tests call this through the start
 * functions, so a missing server fails the test instead of silently skipping it.
 */
export function requireInstalled(kinds: ServerKind[]): void {
  const missing = kinds.flatMap((k) => missingFor(k));
  if (missing.length > 0) {
    throw new Error(
      `Lichen tests need real servers, but these are missing: ${missing.join(", ")}.\n` +
        `Install them with:\n  ${installCommand(kinds)}\n` +
        `(or run \`node tools/test-servers/bin/ensure-installed.mjs\` as root).`,
    );
  }
}

/**
 * Makes sure Prosody (+ mod_cloud_notify), ejabberd and Redis are installed. Installs them with
 * apt-get when missing and running as root; otherwise throws with the command to run.
 * Never starts their system services (tests start their own instances on free ports).
 */
export function ensureInstalled(
  opts: { install?: boolean; kinds?: ServerKind[]; log?: (line: string) => void } = {},
): void {
  const kinds = opts.kinds ?? (["prosody", "ejabberd", "redis", "profanity"] as ServerKind[]);
  const log = opts.log ?? (() => {});
  const missingKinds = kinds.filter((k) => missingFor(k).length > 0);
  if (missingKinds.length === 0) return;
  const isRoot = process.getuid?.() === 0;
  if (opts.install === false || !isRoot || !which("apt-get")) {
    requireInstalled(kinds);
    return;
  }
  const pkgs = [...new Set(missingKinds.flatMap((k) => PACKAGES[k])), "openssl"];
  log(`installing ${pkgs.join(" ")} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
  execFileSync("apt-get", ["install", "-y", "-qq", ...pkgs], { stdio: "inherit", env });
  stopSystemServices(log);
  requireInstalled(kinds);
}

/** Package post-install scripts may start system-wide daemons; tests want only their own. */
function stopSystemServices(log: (line: string) => void): void {
  const attempts: [string, string[]][] = [
    ["service", ["prosody", "stop"]],
    ["service", ["ejabberd", "stop"]],
    ["service", ["redis-server", "stop"]],
  ];
  for (const [cmd, args] of attempts) {
    try {
      execFileSync(cmd, args, { stdio: "ignore", timeout: 30_000 });
      log(`${cmd} ${args.join(" ")}: done`);
    } catch {
      // not running or no init system: nothing to stop
    }
  }
}
