import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ApnsCertificateAuthority } from "@lichen/push-simulators";
import {
  ConfigError,
  checkConfigFile,
  loadConfigFile,
  parseConfigText,
  parseDuration,
} from "../src/config.js";
import { checkAppCredentials } from "../src/credentials.js";
import { apnsCertificateTopics, readApnsCertificate } from "../src/providers/apns-certificate.js";

const MINIMAL = `
component:
  service: xmpp://127.0.0.1:5347
  domain: push.example.org
  secret: s3cret
apps:
  monal:
    type: apns
    topic: im.monal.app
    teamId: TEAM123456
    keyId: KEY1234567
    privateKeyFile: /etc/lichen-push/apns.p8
    endpoint: https://api.push.apple.com
`;

function errorsOf(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfigText(text, "test.yaml", env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).issues;
  }
  throw new Error("expected a ConfigError");
}

describe("config", () => {
  it("fills defaults (fpush timings) and converts durations", () => {
    const c = parseConfigText(MINIMAL);
    expect(c.rateLimit).toEqual({ window: 20_000, hardLimit: 600_000 });
    expect(c.blacklist.token.firstBlock).toBe(86_400_000);
    expect(c.blacklist.token.repeatBlock).toBe(5 * 86_400_000);
    expect(c.component.reconnectInitialDelay).toBe(1000);
    expect(c.apps.monal).toMatchObject({
      type: "apns",
      topic: "im.monal.app",
      pushType: "alert",
      ttl: 7 * 86_400_000,
    });
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("2d")).toBe(172_800_000);
    expect(parseDuration("soon")).toBeUndefined();
  });

  it("names the field of every error", () => {
    expect(errorsOf(MINIMAL.replace("  secret: s3cret\n", ""))).toEqual([
      "component.secret: required field is missing",
    ]);
    expect(errorsOf(MINIMAL.replace("xmpp://127.0.0.1:5347", "localhost"))[0]).toMatch(
      /^component\.service: .*xmpp:\/\/HOST:PORT/,
    );
    expect(errorsOf(MINIMAL.replace("type: apns", "type: webpush"))[0]).toMatch(
      /^apps\.monal\.type: /,
    );
    expect(errorsOf(`${MINIMAL}rateLimit:\n  window: soon\n`)[0]).toMatch(
      /^rateLimit\.window: expected a duration/,
    );
    expect(errorsOf(`${MINIMAL}rateLimt:\n  window: 1s\n`)).toEqual(["rateLimt: unknown field"]);
    expect(errorsOf(`${MINIMAL}defaultApp: other\n`)[0]).toMatch(
      /^defaultApp: names no configured app/,
    );
    expect(errorsOf(`${MINIMAL}blacklist:\n  domain:\n    threshold: 0\n`)[0]).toMatch(
      /^blacklist\.domain\.threshold: /,
    );
    expect(errorsOf("component: [1, 2")[0]).toMatch(/^YAML syntax/);
    expect(errorsOf("- a\n- b\n")[0]).toMatch(/^\(root\)/);
    const many = errorsOf("apps: {}\n");
    expect(many).toEqual(
      expect.arrayContaining([
        "component: required field is missing",
        expect.stringMatching(/^apps: /),
      ]),
    );
  });

  it("env overrides win over the file, SNAKE_CASE maps to camelCase", () => {
    const c = parseConfigText(MINIMAL, "x", {
      LICHEN_PUSH_COMPONENT__SECRET: "from-env",
      LICHEN_PUSH_RATE_LIMIT__WINDOW: "5s",
      LICHEN_PUSH_HTTP__PORT: "9999",
      LICHEN_PUSH_REDIS__URL: "redis://127.0.0.1:6380",
      OTHER: "ignored",
    });
    expect(c.component.secret).toBe("from-env");
    expect(c.rateLimit.window).toBe(5000);
    expect(c.http.port).toBe(9999);
    expect(c.redis?.url).toBe("redis://127.0.0.1:6380");
    expect(errorsOf(MINIMAL, { LICHEN_PUSH_HTTP__PORT: "ninety" })[0]).toMatch(
      /^http\.port \(from LICHEN_PUSH_HTTP__PORT\): /,
    );
  });

  it("env overrides reach an app named in mixed case (fpush's monalProdiOS): a segment matches a key already in the file regardless of case and underscores", () => {
    const text = MINIMAL.replace("  monal:\n", "  monalProdiOS:\n");
    const env = {
      LICHEN_PUSH_APPS__MONALPRODIOS__TOPIC: "from-env",
      LICHEN_PUSH_APPS__MONAL_PROD_I_O_S__KEY_ID: "ENVKEY0001",
      LICHEN_PUSH_APPS__MONALPRODIOS__REQUEST_TIMEOUT: "3s",
    };
    const c = parseConfigText(text, "x", env);
    expect(Object.keys(c.apps)).toEqual(["monalProdiOS"]); // no second app "monalprodios"
    expect(c.apps.monalProdiOS).toMatchObject({
      topic: "from-env",
      keyId: "ENVKEY0001",
      requestTimeout: 3000, // a field not in the file: SNAKE_CASE → camelCase as before
    });
    // an error names the app as the file spells it and the variable behind it
    expect(errorsOf(text, { LICHEN_PUSH_APPS__MONALPRODIOS__REQUEST_TIMEOUT: "soon" })).toEqual([
      expect.stringMatching(
        /^apps\.monalProdiOS\.requestTimeout \(from LICHEN_PUSH_APPS__MONALPRODIOS__REQUEST_TIMEOUT\): /,
      ),
    ]);
    // two keys that differ only in case: no guess, SNAKE_CASE → camelCase decides
    const two = `${text}  monalprodios:\n    type: fcm\n    projectId: p\n    clientEmail: e@p\n    privateKeyFile: /k.pem\n    tokenUri: https://oauth2.googleapis.com/token\n    endpoint: https://fcm.googleapis.com\n`;
    const c2 = parseConfigText(two, "x", { LICHEN_PUSH_APPS__MONALPRODIOS__PROJECT_ID: "q" });
    expect(c2.apps.monalprodios).toMatchObject({ projectId: "q" });
    expect(c2.apps.monalProdiOS).not.toHaveProperty("projectId");
  });

  it("loadConfigFile reports an unreadable file with its name", () => {
    const dir = mkdtempSync(join(tmpdir(), "lichen-cfg-"));
    const f = join(dir, "push.yaml");
    writeFileSync(f, MINIMAL);
    expect(loadConfigFile(f, {}).component.domain).toBe("push.example.org");
    expect(() => loadConfigFile(join(dir, "missing.yaml"), {})).toThrow(
      /missing\.yaml[\s\S]*cannot read file/,
    );
  });

  it("APNs certificate (.p12) authentication: validated at check-config — readable, passphrase, legacy encryption, topic, environment, not with a key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lichen-cfg-"));
    const ca = new ApnsCertificateAuthority();
    const file = (name: string, data: Buffer) => {
      const f = join(dir, name);
      writeFileSync(f, data);
      return f;
    };
    const good = file("good.p12", ca.issue({ topic: "im.monal.app", passphrase: "pw" }).p12);
    const dev = file("dev.p12", ca.issue({ topic: "im.monal.app", kind: "development" }).p12);
    const legacy = file("legacy.p12", ca.issue({ topic: "im.monal.app", legacy: true }).p12);
    const app = (name: string, f: string, extra = "") =>
      `  ${name}:\n    type: apns\n    topic: im.monal.app\n    certificateFile: ${f}\n    endpoint: https://api.push.apple.com\n${extra}`;
    const cfg = (apps: string) => {
      const f = join(dir, `push-${Math.random()}.yaml`);
      writeFileSync(
        f,
        `component:\n  service: xmpp://127.0.0.1:5347\n  domain: push.example.org\n  secret: s\napps:\n${apps}`,
      );
      return f;
    };
    const ok = await checkConfigFile(cfg(app("ok", good, "    certificatePassphrase: pw\n")), {});
    expect(ok.issues).toEqual([]);
    expect(ok.config?.apps.ok).toMatchObject({
      certificateFile: good,
      certificatePassphrase: "pw",
    });
    const bad = await checkConfigFile(
      cfg(
        app("wrongpass", good, "    certificatePassphrase: nope\n") +
          app("missing", join(dir, "nope.p12")) +
          app("legacy", legacy) +
          app("devcert", dev) +
          app("othertopic", good, "    certificatePassphrase: pw\n").replace(
            "topic: im.monal.app",
            "topic: im.other.app",
          ) +
          app("both", good, "    certificatePassphrase: pw\n    keyId: K\n    teamId: T\n") +
          app("h2c", good, "    certificatePassphrase: pw\n").replace(
            "https://api.push.apple.com",
            "http://127.0.0.1:1",
          ),
      ),
      {},
    );
    const issue = (app: string) =>
      bad.issues.filter((i) => i.startsWith(`apps.${app}.`)).join("\n");
    expect(issue("wrongpass")).toMatch(/certificateFile: .*wrong certificatePassphrase/);
    expect(issue("missing")).toMatch(/certificateFile: cannot read .*nope\.p12: no such file/);
    expect(issue("legacy")).toMatch(/legacy encryption.*openssl pkcs12 -legacy/);
    expect(issue("devcert")).toMatch(
      /is for sandbox only, endpoint https:\/\/api\.push\.apple\.com is production/,
    );
    expect(issue("othertopic")).toMatch(
      /is for im\.monal\.app, im\.monal\.app\.voip, im\.monal\.app\.complication, not topic im\.other\.app/,
    );
    expect(issue("both")).toMatch(/certificateFile: give either a certificate or a key/);
    expect(issue("h2c")).toMatch(/endpoint: certificate authentication needs https/);
    // a .p8 app still needs its key and ids
    expect(
      errorsOf(
        MINIMAL.replace("    privateKeyFile: /etc/lichen-push/apns.p8\n", "").replace(
          "    keyId: KEY1234567\n",
          "",
        ),
      ),
    ).toEqual([
      "apps.monal.privateKeyPem: give exactly one of privateKeyPem and privateKeyFile (a .p8 key), or certificateFile (a .p12)",
      "apps.monal.keyId: required with a .p8 key",
    ]);
  });

  it("APNs certificates with Apple's multi-topic extension: check-config accepts exactly the topics it lists; without one only the bundle id; a malformed one is reported", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lichen-cfg-"));
    const ca = new ApnsCertificateAuthority();
    const file = (name: string, data: Buffer) => {
      const f = join(dir, name);
      writeFileSync(f, data);
      return f;
    };
    const universal = file("u.p12", ca.issue({ topic: "im.monal.app" }).p12);
    const listed = file(
      "listed.p12",
      ca.issue({ topic: "im.monal.app", topics: ["im.monal.app", "im.monal.app.complication"] })
        .p12,
    );
    const plain = file("plain.p12", ca.issue({ topic: "im.monal.app", kind: "production" }).p12);
    const check = async (f: string, topic: string) =>
      (
        await checkAppCredentials("ios", {
          type: "apns",
          topic,
          certificateFile: f,
          endpoint: "https://api.push.apple.com",
        })
      ).join("\n");
    expect(readApnsCertificate(readFileSync(universal)).topics).toEqual([
      "im.monal.app",
      "im.monal.app.voip",
      "im.monal.app.complication",
    ]);
    expect(await check(universal, "im.monal.app.voip")).toBe("");
    expect(await check(universal, "im.monal.app.complication")).toBe("");
    expect(await check(listed, "im.monal.app.complication")).toBe("");
    expect(await check(listed, "im.monal.app.voip")).toMatch(
      /apps\.ios\.certificateFile: the certificate in .*listed\.p12 is for im\.monal\.app, im\.monal\.app\.complication, not topic im\.monal\.app\.voip/,
    );
    // no extension (Apple's older per-environment certificates): the bundle id only
    expect(await check(plain, "im.monal.app")).toBe("");
    expect(await check(plain, "im.monal.app.voip")).toMatch(
      /is for im\.monal\.app, not topic im\.monal\.app\.voip/,
    );
    // the parser on hostile DER: a topics extension that is not a SEQUENCE, a truncated one
    const der = Buffer.from(new X509Certificate(ca.issue({ topic: "im.monal.app" }).certPem).raw);
    // OID TLV (12 bytes), then the OCTET STRING (tag, short length) holding the SEQUENCE
    const at = der.indexOf(Buffer.from("060a2a864886f76364060306", "hex"));
    expect([at > 0, der[at + 12], der[at + 14]]).toEqual([true, 0x04, 0x30]);
    const broken = Buffer.from(der);
    broken[at + 14] = 0x0c; // the value's outer SEQUENCE tag → UTF8String
    expect(() => apnsCertificateTopics(broken)).toThrow(/malformed APNs topics extension/);
    expect(() => apnsCertificateTopics(der.subarray(0, at))).toThrow(/malformed certificate/);
  });

  it("per-app additionalData, rateLimit and blacklist: parsed, with field-named errors", () => {
    const withApp = (extra: string) => MINIMAL + extra;
    const ok = parseConfigText(
      withApp(
        `    additionalData: { marker: v1, n: 2 }\n    rateLimit: { window: 5s }\n    blacklist: { firstBlock: 1h }\n`,
      ),
    );
    expect(ok.apps.monal).toMatchObject({
      additionalData: { marker: "v1", n: 2 },
      rateLimit: { window: 5000 },
      blacklist: { firstBlock: 3_600_000 },
    });
    expect(ok.rateLimit.window).toBe(20_000);
    expect(
      errorsOf(
        withApp(
          `    additionalData: { aps: { alert: x } }\n    rateLimit: { window: soon, burst: 3 }\n`,
        ),
      ),
    ).toEqual([
      "apps.monal.additionalData: the aps key is the appserver's",
      'apps.monal.rateLimit.window: expected a duration like "20s", "10m", "24h" or milliseconds, got "soon"',
      "apps.monal.rateLimit.burst: unknown field",
    ]);
  });
});
