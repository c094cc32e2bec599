import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FakeComponentServer, loadConfigFile, pushIq } from "@lichen/appserver";
import {
  ApnsCertificateAuthority,
  generateApnsKey,
  generateFcmServiceAccount,
  startApnsSimulator,
} from "@lichen/push-simulators";
import { describe, expect, it } from "vitest";

/** GET on a new connection (no keep-alive reuse); resolves with the body. */
function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (body += d));
      res.on("end", () => resolve(body));
    }).on("error", reject);
  });
}

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function configFile(text: string): string {
  const f = join(mkdtempSync(join(tmpdir(), "lichen-push-cli-")), "push.yaml");
  writeFileSync(f, text);
  return f;
}

describe("lichen-push CLI", { timeout: 120_000 }, () => {
  it("--help lists the commands with examples", () => {
    const r = run(["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Usage: lichen-push/);
    expect(r.out).toMatch(/start/);
    expect(r.out).toMatch(/check-config/);
    expect(r.out).toMatch(/LICHEN_PUSH_COMPONENT__SECRET/);
  });

  it("check-config: ok for a valid file, field-named errors and exit 2 otherwise", () => {
    const keyFile = join(mkdtempSync(join(tmpdir(), "lichen-push-key-")), "AuthKey.p8");
    writeFileSync(keyFile, generateApnsKey().privateKeyPem);
    const app = `    topic: im.example\n    teamId: T\n    keyId: K\n    privateKeyFile: ${keyFile}\n    endpoint: https://api.push.apple.com\n`;
    const good = configFile(
      `component:\n  service: xmpp://127.0.0.1:5347\n  domain: push.example.org\n  secret: s\napps:\n  a:\n    type: apns\n${app}`,
    );
    const ok = run(["check-config", good]);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain("ok");
    const bad = configFile(
      `component:\n  service: localhost\n  domain: push.example.org\napps:\n  a:\n    type: webpush\n${app}rateLimit:\n  window: soon\n`,
    );
    const r = run(["check-config", bad]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/component\.service: /);
    expect(r.err).toMatch(/component\.secret: required field is missing/);
    expect(r.err).toMatch(/apps\.a\.type: /);
    expect(r.err).toMatch(/rateLimit\.window: expected a duration/);
    // env overrides can repair a file
    const fixed = run(["check-config", bad], {
      LICHEN_PUSH_COMPONENT__SERVICE: "xmpp://127.0.0.1:1",
      LICHEN_PUSH_COMPONENT__SECRET: "x",
      LICHEN_PUSH_APPS__A__TYPE: "apns",
      LICHEN_PUSH_RATE_LIMIT__WINDOW: "20s",
    });
    expect(fixed.err).toBe("");
    expect(fixed.code).toBe(0);
    expect(run(["check-config", "/nonexistent.yaml"]).err).toMatch(/cannot read file/);
    expect(run(["bogus"]).code).not.toBe(0);
  });

  it("check-config reports everything in one pass: schema errors, a missing key file, a garbage key, and the env variable behind a field", () => {
    const dir = mkdtempSync(join(tmpdir(), "lichen-push-keys-"));
    const garbage = join(dir, "garbage.p8");
    writeFileSync(
      garbage,
      "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    );
    const rsa = join(dir, "rsa.p8"); // a key of the wrong kind for APNs (FCM's)
    writeFileSync(rsa, generateFcmServiceAccount().privateKeyPem);
    const apns = (name: string, key: string) =>
      `  ${name}:\n    type: apns\n    topic: im.example\n    teamId: T\n    keyId: K\n    privateKeyFile: ${key}\n    endpoint: https://api.push.apple.com\n`;
    const ec = join(dir, "ec.pem"); // a key of the wrong kind for FCM (an APNs .p8)
    writeFileSync(ec, generateApnsKey().privateKeyPem);
    const fcm = (name: string, key: string) =>
      `  ${name}:\n    type: fcm\n    projectId: example-chat\n    clientEmail: sa@example-chat.iam.gserviceaccount.com\n    privateKeyFile: ${key}\n    tokenUri: https://oauth2.googleapis.com/token\n    endpoint: https://fcm.googleapis.com\n`;
    const f = configFile(
      `component:\n  service: xmpp://127.0.0.1:5347\n  domain: push.example.org\n  secret: s\napps:\n${apns("missing", join(dir, "nope.p8"))}${apns("garbage", garbage)}${apns("wrongkind", rsa)}${fcm("fcmgarbage", garbage)}${fcm("fcmwrongkind", ec)}rateLimit:\n  window: soon\n`,
    );
    const r = run(["check-config", f], { LICHEN_PUSH_COMPONENT__SECRT: "typo" });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/rateLimit\.window: expected a duration/);
    expect(r.err).toMatch(/apps\.missing\.privateKeyFile: cannot read .*nope\.p8: no such file/);
    expect(r.err).toMatch(/apps\.garbage\.privateKeyFile: not an APNs \.p8 key/);
    expect(r.err).toMatch(/apps\.wrongkind\.privateKeyFile: not an APNs \.p8 key/);
    expect(r.err).toMatch(
      /apps\.fcmgarbage\.privateKeyFile: not an RSA private key \(PKCS#8, the service account's private_key\) in .*garbage\.p8/,
    );
    expect(r.err).toMatch(/apps\.fcmwrongkind\.privateKeyFile: not an RSA private key .*ec\.pem/);
    expect(r.err).toMatch(/component\.secrt \(from LICHEN_PUSH_COMPONENT__SECRT\): unknown field/);
    // start refuses the same file before touching anything, with the exit status the systemd
    // unit does not restart on (a config error is not fixed by restarting every 5 s)
    const s = run(["start", "--config", f]);
    expect(s.code).toBe(2);
    const unit = readFileSync(new URL("../examples/lichen-push.service", import.meta.url), "utf8");
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(new RegExp(`^RestartPreventExitStatus=${s.code}$`, "m"));
    expect(s.err).toMatch(/apps\.garbage\.privateKeyFile: not an APNs \.p8 key/);
    expect(s.out).not.toContain("started");
  });

  it("import-fpush: fpush's settings.json → a lichen-push config (certificate, additionalData, per-module limits), with a note for everything without an equivalent", () => {
    const dir = mkdtempSync(join(tmpdir(), "lichen-push-fpush-"));
    const p12 = join(dir, "prod.p12");
    writeFileSync(
      p12,
      new ApnsCertificateAuthority().issue({
        topic: "G7YU7X7KRJ.SworIM",
        passphrase: "p12-password",
      }).p12,
    );
    const sa = generateFcmServiceAccount();
    const saFile = join(dir, "service-account.json");
    writeFileSync(
      saFile,
      JSON.stringify({
        type: "service_account",
        project_id: sa.projectId,
        client_email: sa.clientEmail,
        private_key: sa.privateKeyPem,
        token_uri: "https://oauth2.googleapis.com/token",
      }),
    );
    const settings = join(dir, "settings.json");
    writeFileSync(
      settings,
      JSON.stringify({
        component: {
          componentHostname: "push.example.org",
          componentKey: "fpush-secret",
          serverHostname: "localhost",
          serverPort: 5347,
        },
        pushModules: {
          monalProdiOS: {
            type: "apple",
            is_default_module: true,
            apns: {
              certFilePath: p12,
              certPassword: "p12-password",
              topic: "G7YU7X7KRJ.SworIM",
              environment: "production",
              additionalData: { sound: "default" },
            },
            ratelimit: { ratelimitTime: "20s", hardRatelimitTime: "600s", enabled: true },
            blacklist: { normalBlacklisting: "24h", extendedBlacklisting: "5d" },
          },
          monalAndroid: { type: "google", fcm: { fcmSecretPath: saFile } },
          demo: { type: "demo" },
        },
        timeout: { xmppconnectionError: "20s" },
      }),
    );
    const out = join(dir, "push.yaml");
    const r = run(["import-fpush", settings, "-o", out]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(
      /pushModules\.monalProdiOS\.apns\.certFilePath: → apps\.monalProdiOS\.certificateFile/,
    );
    expect(r.err).toMatch(/pushModules\.demo: module type "demo" has no lichen-push equivalent/);
    expect(r.err).toMatch(/pushModules\.monalAndroid\.fcm: service account .*private key written/);
    expect(r.err).not.toContain("p12-password");
    // a module without a blacklist section: which block times change, and how to keep fpush's old ones
    expect(r.err).toMatch(
      /note: pushModules\.monalAndroid: no blacklist section: lichen-push's defaults apply — a dead token blocked 24h, then 5d.*fpush's first release .* 600s then 1200s: to keep that, set apps\.monalAndroid\.blacklist\.firstBlock 600s and repeatBlock 1200s/,
    );
    expect(r.err).not.toMatch(/pushModules\.monalProdiOS: no blacklist section/);
    const yaml = readFileSync(out, "utf8");
    expect(yaml).toContain('defaultApp: "monalProdiOS"');
    // the certificate, its passphrase (the file is owner-only), the extra payload keys and the
    // module's own limits, checked through check-config's parse of the written file
    const c = run(["check-config", out]);
    expect(c.code, c.err).toBe(0);
    expect(loadConfigFile(out, {}).apps.monalProdiOS).toMatchObject({
      topic: "G7YU7X7KRJ.SworIM",
      certificateFile: p12,
      certificatePassphrase: "p12-password",
      additionalData: { sound: "default" },
      rateLimit: { window: 20_000, hardLimit: 600_000 },
      blacklist: { firstBlock: 86_400_000, repeatBlock: 432_000_000 },
    });
    expect(statSync(out).mode & 0o777).toBe(0o600);
    // credentials kept in the environment reach the imported (mixed-case) app names
    const e = run(["check-config", out], {
      LICHEN_PUSH_APPS__MONALPRODIOS__CERTIFICATE_PASSPHRASE: "wrong",
    });
    expect(e.code).toBe(2);
    expect(e.err).toMatch(
      /apps\.monalProdiOS\.certificateFile: .*(passphrase|password|mac verify)/i,
    );
    expect(run(["import-fpush", join(dir, "nope.json")]).err).toMatch(/cannot read/);
    writeFileSync(join(dir, "bad.json"), "{ not json");
    expect(run(["import-fpush", join(dir, "bad.json")]).err).toMatch(/bad\.json: not JSON/);
  });

  it("start --config: serves pushes, /healthz, SIGTERM → queued push persisted, exit 0", async () => {
    const key = generateApnsKey();
    const sim = await startApnsSimulator({
      keys: [{ keyId: key.keyId, teamId: key.teamId, publicKey: key.publicKeyPem }],
      topics: ["im.lichen.cli"],
    });
    const xmpp = new FakeComponentServer("push.localhost", "pushsecret");
    await xmpp.listen();
    const dir = mkdtempSync(join(tmpdir(), "lichen-push-daemon-"));
    const keyFile = join(dir, "apns.p8");
    writeFileSync(keyFile, key.privateKeyPem);
    const f = configFile(
      [
        "component:",
        `  service: ${xmpp.service}`,
        "  domain: push.localhost",
        "  secret: pushsecret",
        "apps:",
        "  ios:",
        "    type: apns",
        "    topic: im.lichen.cli",
        `    teamId: ${key.teamId}`,
        `    keyId: ${key.keyId}`,
        `    privateKeyFile: ${keyFile}`,
        `    endpoint: ${sim.url}`,
        `dataDir: ${dir}`,
        // long enough that no queued push falls due during the test, however slow the machine
        "rateLimit:",
        "  window: 10m",
        "http:",
        "  port: 0",
        "",
      ].join("\n"),
    );
    const child = spawn(process.execPath, [CLI, "start", "--config", f], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      await xmpp.waitConnected(30_000);
      const token = "ab".repeat(32);
      xmpp.send(pushIq({ id: "p1", token }));
      xmpp.send(pushIq({ id: "p2", token }));
      expect((await xmpp.waitFor("p1")).type).toBe("result");
      expect((await xmpp.waitFor("p2")).type).toBe("result");
      expect((await sim.waitForDeliveries(1, 30_000, token))[0]!.headers["apns-topic"]).toBe(
        "im.lichen.cli",
      );
      const port = Number(/"http":"127\.0\.0\.1:(\d+)"/.exec(out)?.[1]);
      const health = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(health.status).toBe(200);
      const h = (await health.json()) as { apps: Record<string, { state: string }> };
      expect(h.apps.ios!.state).toBe("ok");
      // operator commands reach the running daemon (address and token from its data folder)
      const d = run(["domains", "-c", f]);
      expect(d.err).toBe("");
      expect(d.out).toContain("no domain is restricted or blocked");
      const b = run(["block-domain", "spam.example", "--for", "1h", "-c", f]);
      expect(b.out).toMatch(/^spam\.example\tblocked until /);
      expect(run(["domains", "-c", f]).out).toMatch(/^spam\.example\tblocked/m);
      expect(run(["unblock-domain", "spam.example", "-c", f]).out).toMatch(/^spam\.example\tok/);
      // tokens and queued pushes, by raw token (hashed by the CLI) or hash; never printed raw
      const queued = run(["queued", "-c", f]);
      expect(queued.out).toMatch(/^[0-9a-f]{32}\tios\tlocalhost\tdue 20\d\d-/m);
      const shown = run(["token", token, "-c", f]);
      expect(shown.err).toBe("");
      expect(shown.out).toMatch(/^token [0-9a-f]{32}\n/);
      expect(shown.out).toContain("blacklisted: no");
      expect(shown.out).toMatch(/last delivery: 20\d\d-.* \(localhost\)/);
      expect(shown.out).toContain("a push queued for");
      expect(shown.out.split("\n")[0]).toBe(`token ${/^([0-9a-f]{32})/m.exec(queued.out)![1]}`);
      const dead = "cd".repeat(32);
      sim.script(dead, ["410"]);
      xmpp.send(pushIq({ id: "x1", token: dead }));
      expect((await xmpp.waitFor("x1")).raw).toContain("<error type='cancel'>");
      expect(run(["token", dead.toUpperCase(), "-c", f]).out).toMatch(
        /blacklisted: yes, until .* \(strikes 1\)/,
      );
      const listed = run(["tokens", "-c", f]);
      expect(listed.out).toMatch(/^[0-9a-f]{32}\tblocked until 20\d\d-.*\tstrikes 1$/m);
      expect(listed.out).not.toContain(dead);
      expect(run(["token", dead, "--unblock", "-c", f]).out).toContain("blacklisted: no");
      expect(run(["tokens", "-c", f]).out).toBe("no token is blacklisted\n");
      // accepted again (queued behind its 410 within the window: persisted at SIGTERM below)
      xmpp.send(pushIq({ id: "x2", token: dead }));
      expect((await xmpp.waitFor("x2")).type).toBe("result");
      expect(run(["token", dead, "-c", f]).out).toContain("a push queued for");
      for (const o of [queued, shown]) expect(o.out).not.toContain(token);
      // a second instance on the same data folder stops at the lock, before restoring anything
      const second = run(["start", "--config", f]);
      expect(second.code).not.toBe(0);
      expect(second.err + second.out).toContain("is in use by another lichen-push instance");
      expect(second.out).not.toContain("state restored");
      // On a fresh connection (httpGet): fetch would reuse the /healthz keep-alive socket, which
      // the daemon closed while the spawnSync calls above blocked this process ("other side
      // closed" in CI).
      expect(await httpGet(`http://127.0.0.1:${port}/metrics`)).toContain(
        'lichen_push_requests_total{outcome="queued"} 2',
      );
      process.kill(child.pid!, "SIGTERM");
      expect(await exited).toBe(0);
      expect(out).toContain('"persistedQueued":2');
      expect(out).not.toContain(token);
      // provider lines carry the app once (pino repeats a key bound twice)
      expect(out).toContain("APNs connected");
      for (const line of out.split("\n"))
        expect(line.split('"app":').length).toBeLessThanOrEqual(2);
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGKILL");
      await xmpp.close();
      await sim.stop();
    }
  });
});
