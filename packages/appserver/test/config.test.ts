import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfigFile, parseConfigText, parseDuration } from "../src/config.js";

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

  it("loadConfigFile reports an unreadable file with its name", () => {
    const dir = mkdtempSync(join(tmpdir(), "lichen-cfg-"));
    const f = join(dir, "push.yaml");
    writeFileSync(f, MINIMAL);
    expect(loadConfigFile(f, {}).component.domain).toBe("push.example.org");
    expect(() => loadConfigFile(join(dir, "missing.yaml"), {})).toThrow(
      /missing\.yaml[\s\S]*cannot read file/,
    );
  });
});
