// startLichenPush with the real built daemon. Its success path (a component online on a real
// Prosody or ejabberd) runs in apps/chat's push test and the device simulator's push chain; here,
// the two ways it fails to come up: a config it refuses, a component port that never answers.
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  lichenPushComponent,
  LichenPushStartError,
  startLichenPush,
  until,
  type LichenPushConfigOptions,
} from "../src/index.js";

const T = 60_000;
const CLI = join(import.meta.dirname, "..", "..", "..", "apps", "push-server", "dist", "cli.js");

describe("startLichenPush", () => {
  const dir = mkdtempSync(join(tmpdir(), "lichen-kit-push-"));
  // Accepts the daemon's component connection and never answers its stream header (reads it, so
  // that the daemon's close ends the socket).
  const sockets: Socket[] = [];
  const silent = createServer((s) => void sockets.push(s.on("error", () => {}).resume()));
  afterAll(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => silent.close(r));
  });

  /** `configFile` and the `config` startLichenPush writes to it. */
  function daemonConfig(name: string, componentPort: number, componentSecret: string) {
    const keyFile = join(dir, "apns.p8");
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    writeFileSync(keyFile, privateKey.export({ type: "pkcs8", format: "pem" }));
    const config: LichenPushConfigOptions = {
      component: lichenPushComponent({
        componentPort,
        componentDomain: "push.localhost",
        componentSecret,
      }),
      apps: {
        ios: {
          topic: "im.lichen.kit",
          teamId: "KITTEAM",
          keyId: "KITKEY",
          privateKeyFile: keyFile,
          endpoint: "http://127.0.0.1:9",
        },
      },
      dataDir: join(dir, name),
      http: { port: 0 },
    };
    return { configFile: join(dir, `${name}.yaml`), config };
  }

  it(
    "a config the daemon refuses: rejects at once with its log (the config error)",
    async () => {
      const err = await startLichenPush({ cli: CLI, ...daemonConfig("refused", 1, "") }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(LichenPushStartError);
      expect((err as Error).message).toMatch(/^lichen-push exited \(2\)/);
      expect((err as LichenPushStartError).log.join("\n")).toMatch(
        /invalid config .*refused\.yaml/,
      );
    },
    T,
  );

  it(
    "a component port that never answers: not online, the daemon stopped",
    async () => {
      await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
      const port = (silent.address() as { port: number }).port;
      // Given up once the daemon is connected (its component offline), not after a time.
      const connected = new AbortController();
      silent.once("connection", () => connected.abort());
      const err = await startLichenPush({
        cli: CLI,
        ...daemonConfig("silent", port, "s3cret"),
        signal: connected.signal,
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LichenPushStartError);
      expect((err as Error).message).toMatch(/^lichen-push not online \(\/healthz: /);
      expect((err as LichenPushStartError).log.join("\n")).toContain('"msg":"lichen-push started"');
      // Stopped before the rejection: its component connection is closed.
      expect(sockets.length).toBeGreaterThan(0);
      await until(() => sockets.every((s) => s.closed), "the daemon's connection closed");
    },
    T,
  );

  it("a missing daemon: says to build it", async () => {
    await expect(
      startLichenPush({ cli: join(dir, "nope.js"), configFile: join(dir, "x.yaml") }),
    ).rejects.toThrow(/nope\.js is missing: run "npm run build" first/);
  });
});
