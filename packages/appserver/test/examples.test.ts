import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateApnsKey, generateFcmServiceAccount } from "@lichen/push-simulators";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { checkConfigFile, configIssues } from "../src/config.js";
import { AppServerMetrics } from "../src/metrics.js";

// The operator files shipped with the daemon (apps/push-server/examples). The Prosody and ejabberd
// snippets are run by the e2e tests' own servers (helpers/e2e.ts operatorSnippets).
const EXAMPLES = fileURLToPath(new URL("../../../apps/push-server/examples/", import.meta.url));
const read = (f: string) => readFileSync(join(EXAMPLES, f), "utf8");

function which(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
}

/** Every key of the validated config (defaults filled) that the raw file does not spell out. */
function missingKeys(cfg: unknown, raw: unknown, path = ""): string[] {
  if (typeof cfg !== "object" || cfg === null || Array.isArray(cfg)) return [];
  const r = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  return Object.entries(cfg as Record<string, unknown>).flatMap(([k, v]) =>
    k in r ? missingKeys(v, r[k], `${path}${k}.`) : [`${path}${k}`],
  );
}

describe("operator examples", () => {
  it("push.yaml is valid, complete (every field the schema knows), and passes check-config with real keys in its key paths", async () => {
    const text = read("push.yaml");
    const raw = parseYaml(text) as Record<string, unknown>;
    const r = configIssues(raw);
    expect(r.issues).toEqual([]);
    expect(missingKeys(r.config, raw)).toEqual([]);
    // the key files it names, with real keys: check-config (credentials included) says ok
    const dir = mkdtempSync(join(tmpdir(), "lichen-push-example-"));
    writeFileSync(join(dir, "apns.p8"), generateApnsKey().privateKeyPem);
    writeFileSync(join(dir, "fcm.pem"), generateFcmServiceAccount().privateKeyPem);
    const f = join(dir, "push.yaml");
    writeFileSync(
      f,
      text
        .replace("/etc/lichen-push/AuthKey_KEY1234567.p8", join(dir, "apns.p8"))
        .replace("/etc/lichen-push/fcm-private-key.pem", join(dir, "fcm.pem")),
    );
    expect((await checkConfigFile(f, {})).issues).toEqual([]);
    // as shipped (no key files on this machine) it names both
    const shipped = await checkConfigFile(join(EXAMPLES, "push.yaml"), {});
    expect(shipped.issues).toEqual([
      expect.stringMatching(/^apps\.ios\.privateKeyFile: cannot read/),
      expect.stringMatching(/^apps\.android\.privateKeyFile: cannot read/),
    ]);
  });

  it("lichen-push.service passes systemd-analyze verify and rates OK in systemd-analyze security", () => {
    // Not skipped when missing: .ci/run installs systemd (Debian's package has systemd-analyze).
    expect(which("systemd-analyze"), "systemd-analyze not found: apt-get install systemd").toBe(
      true,
    );
    const unit = join(EXAMPLES, "lichen-push.service");
    const v = spawnSync("systemd-analyze", ["verify", unit], { encoding: "utf8" });
    expect(v.status, v.stderr).toBe(0);
    expect(v.stderr).toBe(""); // unknown keys are only warnings: none allowed
    const s = execFileSync("systemd-analyze", ["security", "--offline=true", unit], {
      encoding: "utf8",
    });
    const level = Number(/Overall exposure level for .*: ([\d.]+)/.exec(s)?.[1]);
    expect(level).toBeLessThan(3);
    const text = read("lichen-push.service");
    for (const d of ["User=lichen-push", "ProtectSystem=strict", "NoNewPrivileges=yes"])
      expect(text).toContain(d);
    // the unit's state directory is the example config's dataDir
    expect(read("push.yaml")).toContain("dataDir: /var/lib/lichen-push");
    expect(text).toContain("StateDirectory=lichen-push");
  });

  it("alerts.yml: well-formed rules whose metric names and label values the exporter has", () => {
    const doc = parseYaml(read("alerts.yml")) as {
      groups: {
        name: string;
        rules: { alert: string; expr: string; labels: { severity: string } }[];
      }[];
    };
    const exported = new Set(
      new AppServerMetrics({ defaultMetrics: true }).registry
        .getMetricsAsArray()
        .flatMap((m) =>
          String(m.type) === "histogram"
            ? [`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`]
            : [m.name],
        ),
    );
    const service = readFileSync(new URL("../src/push-service.ts", import.meta.url), "utf8");
    const kinds = ["delivered", "invalid-token", "rate-limited", "transient", "misconfigured"];
    const rules = doc.groups.flatMap((g) => g.rules);
    expect(rules.length).toBeGreaterThan(5);
    for (const r of rules) {
      expect(r.alert).toMatch(/^LichenPush[A-Za-z]+$/);
      expect(["critical", "warning", "info"]).toContain(r.labels.severity);
      for (const m of r.expr.match(/\blichen_push_[a-z_]+/g) ?? [])
        expect(exported.has(m), `${r.alert}: ${m} is not exported`).toBe(true);
      for (const [, v] of r.expr.matchAll(/result="([^"]+)"/g)) expect(kinds).toContain(v);
      for (const [, v] of r.expr.matchAll(/outcome="([^"]+)"/g))
        expect(service, `${r.alert}: outcome ${v} is never counted`).toContain(`"${v}"`);
    }
  });

  it("alerts.yml passes promtool check rules", () => {
    // Not skipped when missing: .ci/run installs Debian's prometheus package, which has promtool.
    expect(which("promtool"), "promtool not found: apt-get install prometheus").toBe(true);
    const p = spawnSync("promtool", ["check", "rules", join(EXAMPLES, "alerts.yml")], {
      encoding: "utf8",
    });
    expect(p.status, p.stdout + p.stderr).toBe(0);
    const rules = (
      parseYaml(read("alerts.yml")) as { groups: { rules: unknown[] }[] }
    ).groups.flatMap((g) => g.rules).length;
    expect(p.stdout).toContain(`SUCCESS: ${rules} rules found`);
  });
});
