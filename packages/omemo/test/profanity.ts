// Drives Profanity 0.13 (Debian; libsignal-protocol-c inside) in a private tmux server, as the
// third-party OMEMO peer of the interop test.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export class Profanity {
  /** Own tmux server socket: other users of tmux on the machine are never touched. */
  private readonly socket = `lichen-omemo-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  private readonly config: string;
  private readonly data: string;

  constructor(
    readonly dir: string,
    readonly jid: string,
    password: string,
    port: number,
  ) {
    this.config = join(dir, "config");
    this.data = join(dir, "data");
    mkdirSync(join(this.config, "profanity"), { recursive: true });
    mkdirSync(join(this.data, "profanity"), { recursive: true });
    // Profanity 0.13 reads its accounts from the data directory, not the config one.
    writeFileSync(
      join(this.data, "profanity", "accounts"),
      [
        `[${jid}]`,
        "enabled=true",
        `jid=${jid}`,
        `password=${password}`,
        "server=127.0.0.1",
        `port=${port}`,
        "tls.policy=trust",
        "resource=profanity",
        "",
      ].join("\n"),
    );
  }

  private tmux(...args: string[]): string {
    return execFileSync("tmux", ["-L", this.socket, ...args], { encoding: "utf8" });
  }

  start(): void {
    const env = `HOME=${this.dir} XDG_CONFIG_HOME=${this.config} XDG_DATA_HOME=${this.data}`;
    this.tmux(
      "new-session",
      "-d",
      "-s",
      "pf",
      "-x",
      "220",
      "-y",
      "50",
      `env ${env} TERM=xterm profanity -l DEBUG -a ${this.jid}`,
    );
  }

  /** Types a line and Enter. */
  type(line: string): void {
    this.tmux("send-keys", "-t", "pf", "-l", line);
    this.tmux("send-keys", "-t", "pf", "Enter");
  }

  pane(): string {
    try {
      return this.tmux("capture-pane", "-p", "-t", "pf", "-S", "-200");
    } catch (e) {
      return `(no pane: ${(e as Error).message})`;
    }
  }

  /** The device id `/omemo gen` wrote (null before). */
  deviceId(): number | null {
    const f = join(this.data, "profanity", "omemo", this.jid.replace("@", "_at_"), "identity.txt");
    if (!existsSync(f)) return null;
    const m = /device_id=(\d+)/.exec(readFileSync(f, "utf8"));
    return m ? Number(m[1]) : null;
  }

  /** The end of Profanity's own log (debug level), for failure messages. */
  logTail(lines = 30): string {
    const f = join(this.data, "profanity", "logs", "profanity.log");
    if (!existsSync(f)) return "(no log)";
    return readFileSync(f, "utf8")
      .trimEnd()
      .split("\n")
      .slice(-lines)
      .map((l) => l.slice(0, 300))
      .join("\n");
  }

  stop(): void {
    spawnSync("tmux", ["-L", this.socket, "kill-server"]);
  }
}
