import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import http2 from "node:http2";
import { fileURLToPath } from "node:url";
import { until } from "@lichen/test-kit";
import { importPKCS8, SignJWT } from "jose";
import { afterEach, describe, expect, it } from "vitest";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));

function requireBuilt(): void {
  if (!existsSync(CLI)) {
    throw new Error(
      `${CLI} is missing: build first (npx turbo run build --filter=@lichen/push-simulators)`,
    );
  }
}

/** The first JSON line the CLI prints. */
interface CliInfo {
  simulator: string;
  url: string;
  app: Record<string, unknown>;
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0))
    if (c.pid && c.exitCode === null) process.kill(c.pid, "SIGKILL");
});

/** Starts the CLI and resolves with its first stdout line (parsed) and a way to read later lines. */
function run(args: string[]): Promise<{ child: ChildProcess; info: CliInfo; lines: string[] }> {
  requireBuilt();
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  const lines: string[] = [];
  let buf = "";
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    child.stdout?.on("data", (c: Buffer) => {
      buf += c.toString();
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (lines.length === 1)
          resolve({ child, info: JSON.parse(lines[0] ?? "") as CliInfo, lines });
      }
    });
    child.once("exit", (code) =>
      reject(new Error(`CLI exited with ${code} before printing: ${stderr}`)),
    );
  });
}

function exitCode(child: ChildProcess): Promise<number | null> {
  return new Promise((r) =>
    child.exitCode !== null ? r(child.exitCode) : child.once("exit", (c) => r(c)),
  );
}

describe("lichen-push-sim CLI", { timeout: 60_000 }, () => {
  it("--help prints usage and exits 0; a bad command exits 2", () => {
    requireBuilt();
    const help = spawnSync(process.execPath, [CLI, "--help"], { encoding: "utf8" });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/Usage: lichen-push-sim <apns\|fcm>/);
    const bad = spawnSync(process.execPath, [CLI, "gcm"], { encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/expected exactly one command/);
    const port = spawnSync(process.execPath, [CLI, "apns", "--port", "x"], { encoding: "utf8" });
    expect(port.status).toBe(2);
  });

  it("apns: prints credentials that work, logs requests, stops on SIGTERM", async () => {
    const { child, info, lines } = await run(["apns", "--topic", "im.lichen.cli", "--log"]);
    expect(info).toMatchObject({
      simulator: "apns",
      app: { type: "apns", topic: "im.lichen.cli" },
    });
    const app = info.app as {
      teamId: string;
      keyId: string;
      privateKeyPem: string;
      endpoint: string;
    };
    const jwt = await new SignJWT({ iss: app.teamId, iat: Math.floor(Date.now() / 1000) })
      .setProtectedHeader({ alg: "ES256", kid: app.keyId })
      .sign(await importPKCS8(app.privateKeyPem, "ES256"));
    const session = http2.connect(app.endpoint);
    const token = "ab".repeat(32);
    const status = await new Promise<number>((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": `/3/device/${token}`,
        authorization: `bearer ${jwt}`,
        "apns-topic": "im.lichen.cli",
        "apns-push-type": "alert",
      });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("error", reject);
      req.end(JSON.stringify({ aps: { alert: "x" } }));
    });
    session.destroy();
    expect(status).toBe(200);
    await until(() => lines.length >= 2, "two delivery-log lines", 10_000, 20);
    expect(JSON.parse(lines[1] ?? "")).toMatchObject({ token, status: 200 });
    child.kill("SIGTERM");
    expect(await exitCode(child)).toBe(0);
  });

  it("fcm: prints a service account whose assertion the token endpoint accepts", async () => {
    const { child, info } = await run(["fcm", "--project", "cli-proj"]);
    const app = info.app as {
      projectId: string;
      clientEmail: string;
      privateKeyPem: string;
      tokenUri: string;
    };
    expect(app.projectId).toBe("cli-proj");
    const iat = Math.floor(Date.now() / 1000);
    const assertion = await new SignJWT({
      scope: "https://www.googleapis.com/auth/firebase.messaging",
    })
      .setProtectedHeader({ alg: "RS256" })
      .setIssuer(app.clientEmail)
      .setAudience(app.tokenUri)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 3600)
      .sign(await importPKCS8(app.privateKeyPem, "RS256"));
    const res = await fetch(app.tokenUri, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer",
        assertion,
      }),
    });
    expect(res.status).toBe(200);
    child.kill("SIGTERM");
    expect(await exitCode(child)).toBe(0);
  });
});
