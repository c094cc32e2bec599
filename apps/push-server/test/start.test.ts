// `npm start` (tools/start.mjs) as a newcomer meets it: started as a process, its printed
// instructions followed word for word with the built lichen-chat (log in, push enable, a message
// from bob), the push delivery seen in its log, then Ctrl-C — and nothing it started still runs.
// Twice: with stdout a pipe (JSON lines) and on a terminal (a pseudo-terminal through script(1):
// the banner and readable lines; Ctrl-C typed as ^C so the terminal sends SIGINT).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { until } from "@lichen/test-kit";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const START = join(ROOT, "tools", "start.mjs");
const CHAT = join(ROOT, "apps", "chat", "dist", "cli.js");
// The format must follow stdout here: never inherit an override.
const { LICHEN_LOG_FORMAT: _ignored, ...baseEnv } = process.env;
// A free port instead of the demo's fixed 9464 (other runs may hold it).
const env = { ...baseEnv, LICHEN_PUSH_HTTP__PORT: "0" };

// eslint-disable-next-line no-control-regex -- a terminal's colours and line endings
const plain = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, "").replace(/\r/g, "");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Runs one printed command line through a shell, in `cwd`, as a user would paste it. */
function follow(command: string, cwd: string): void {
  const r = spawnSync("sh", ["-c", command], { cwd, encoding: "utf8", env, timeout: 60_000 });
  expect(r.status, `${command}\n${r.stderr}`).toBe(0);
}

function started(tty: boolean, cwd: string): { child: ChildProcess; output: () => string } {
  const child = tty
    ? // `exec`: script(1) runs the command through $SHELL; dash (Debian's sh) does not replace
      // itself with the last command, and dies of the terminal's SIGINT itself (exit 130).
      spawn("script", ["-qfec", `exec ${JSON.stringify(process.execPath)} ${START}`, "/dev/null"], {
        cwd,
        env: { ...env, SHELL: "/bin/sh" }, // as on a CI runner without a login shell
        stdio: ["pipe", "pipe", "pipe"],
      })
    : spawn(process.execPath, [START], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  return { child, output: () => plain(out) };
}

describe("npm start (tools/start.mjs)", () => {
  it.each([
    ["stdout a pipe: JSON lines", false],
    ["on a terminal: banner and readable lines", true],
  ] as const)(
    "%s; the printed commands get a push delivered and logged; Ctrl-C stops everything",
    async (_what, tty) => {
      for (const f of [START, CHAT, join(ROOT, "apps", "push-server", "dist", "cli.js")])
        if (!existsSync(f)) throw new Error(`${f} is missing: run "npm run build" first`);
      if (tty && spawnSync("script", ["--version"]).error)
        throw new Error(
          "script(1) (util-linux) is needed for the terminal case: apt-get install util-linux",
        );
      const cwd = mkdtempSync(join(tmpdir(), "lichen-start-"));
      const { child, output } = started(tty, cwd);
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      const pids: number[] = [];
      try {
        let commands: string[];
        if (tty) {
          await until(
            () => output().includes("Ctrl-C to stop") || child.exitCode !== null,
            "the banner",
            90_000,
          );
          const text = output();
          expect(text).toMatch(/Accounts: alice@localhost \/ alicepw, bob@localhost \/ bobpw/);
          expect(text).toMatch(/APNs simulator {2}http:\/\/127\.0\.0\.1:\d+/);
          expect(text).not.toMatch(/^\{"level"/m); // readable, not JSON
          pids.push(Number(/lichen-push \(pid (\d+)\)/.exec(text)?.[1]));
          pids.push(Number(/Prosody \(pid (\d+)\)/.exec(text)?.[1]));
          commands = text
            .split("\n")
            .filter((l) => l.startsWith(`  node ${CHAT} `))
            .map((l) => l.trim());
        } else {
          await until(
            () => output().includes('"msg":"demo mode') || child.exitCode !== null,
            "the demo line",
            90_000,
          );
          const line = output()
            .split("\n")
            .find((l) => l.includes('"msg":"demo mode'))!;
          const demo = JSON.parse(line) as {
            pid: number;
            demo: { prosody: { pid: number; accounts: unknown[] }; commands: string[] };
          };
          expect(demo.demo.prosody.accounts).toEqual([
            { jid: "alice@localhost", password: "alicepw" },
            { jid: "bob@localhost", password: "bobpw" },
          ]);
          pids.push(demo.pid, demo.demo.prosody.pid);
          commands = demo.demo.commands;
        }
        pids.push(child.pid!);
        for (const pid of pids) expect(pid).toBeGreaterThan(0);
        expect(commands.map((c) => c.split(" ").slice(4, 6).join(" "))).toEqual([
          "login --jid",
          "push enable",
          "login --jid",
          "send alice@localhost",
        ]);
        await until(() => output().includes("component online"), "component online", 60_000);
        for (const c of commands) follow(c, cwd);
        // The log line, not the banner's mention of it.
        const deliveryLine = tty ? /INFO.*push delivered/ : /"msg":"push delivered"/;
        await until(() => deliveryLine.test(output()), "the delivery in the log", 60_000);
        const delivered = output()
          .split("\n")
          .find((l) => deliveryLine.test(l))!;
        if (!tty)
          expect(JSON.parse(delivered)).toMatchObject({ level: 30, app: "ios", alert: true });

        if (tty)
          child.stdin!.write("\x03"); // Ctrl-C on the terminal: SIGINT to its processes
        else child.kill("SIGINT");
        expect(await exited).toBe(0);
        await until(() => pids.every((p) => !alive(p)), "every process it started gone", 30_000);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        for (const p of pids) if (p > 0 && alive(p)) process.kill(p, "SIGKILL");
      }
    },
  );
});
