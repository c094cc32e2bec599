import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireInstalled } from "./ensure.js";
import type { RedisTestServer } from "./types.js";
import { freePort, isAlive, killPid, trackPid, untrackPid, waitForPort } from "./util.js";

/** Starts a real redis-server on a free loopback port, without persistence. */
export async function startRedis(): Promise<RedisTestServer> {
  requireInstalled(["redis"]);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "lichen-redis-"));
  let pid = 0;
  const launch = async () => {
    const child = spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir,
      ],
      { stdio: "ignore" },
    );
    if (!child.pid) throw new Error("redis-server could not be spawned");
    pid = child.pid;
    trackPid(pid);
    let exited: string | null = null;
    child.once("exit", (code, signal) => (exited = String(code ?? signal)));
    await waitForPort(port, true, "redis-server", 20_000, () => {
      if (exited) throw new Error(`redis-server exited during start-up (${exited})`);
    });
  };
  const halt = async () => {
    if (pid && isAlive(pid)) await killPid(pid, 3000);
    untrackPid(pid);
  };
  await launch();
  return {
    host: "127.0.0.1",
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return pid;
    },
    async stop() {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await halt();
      await launch();
    },
  };
}
