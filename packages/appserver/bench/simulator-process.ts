import { spawn } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { SignJWT } from "jose";
import type { AppServerConfigInput } from "#src/config.js";
import { apnsPayload } from "#src/providers/apns.js";
import { cpuOf, type CpuSample } from "./cpu-ipc.js";

export interface SimulatorProcess {
  origin: string;
  /** App config for the appserver (signing key 0). */
  appConfig: Extract<NonNullable<AppServerConfigInput["apps"]>[string], { type: "apns" }>;
  /** For the bare baseline: a provider token of signing key 1 (reused, as a provider does). */
  jwt: string;
  topic: string;
  /** The payload the appserver sends for an alert push. */
  body: string;
  pid: number;
  /** CPU time (µs) the simulator process has used so far. */
  cpu(): Promise<CpuSample>;
  stop(): Promise<void>;
}

interface ChildInfo {
  url: string;
  topic: string;
  keys: { keyId: string; teamId: string; privateKeyPem: string }[];
}

/** Starts the APNs simulator (tools/push-simulators) in a child process; stop() ends it by PID. */
export async function startSimulatorProcess(
  mode: "plain" | "soak" = "plain",
): Promise<SimulatorProcess> {
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL("./simulator-child.js", import.meta.url)), mode],
    {
      stdio: ["pipe", "pipe", "inherit", "ipc"],
    },
  );
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const info = await new Promise<ChildInfo>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once("line", (l) => resolve(JSON.parse(l) as ChildInfo));
    child.once("exit", (code) =>
      reject(new Error(`simulator process exited (${code}) before it was ready`)),
    );
  });
  const [k0, k1] = info.keys as [ChildInfo["keys"][0], ChildInfo["keys"][0]];
  const jwt = await new SignJWT({})
    .setProtectedHeader({ alg: "ES256", kid: k1.keyId })
    .setIssuer(k1.teamId)
    .setIssuedAt()
    .sign(createPrivateKey(k1.privateKeyPem));
  return {
    origin: info.url,
    appConfig: {
      type: "apns",
      topic: info.topic,
      teamId: k0.teamId,
      keyId: k0.keyId,
      privateKeyPem: k0.privateKeyPem,
      endpoint: info.url,
    },
    jwt,
    topic: info.topic,
    body: apnsPayload("alert"),
    pid: child.pid!,
    cpu: () => cpuOf(child),
    stop: async () => {
      child.stdin!.end();
      const t = setTimeout(() => process.kill(child.pid!, "SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
