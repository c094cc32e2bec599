// Issue 11, item 13: log lines are readable on a terminal and JSON lines otherwise.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";

const DAEMON = new URL("../dist/daemon.js", import.meta.url).href;
// One line: it also goes through a shell command line for script(1).
const SCRIPT = [
  `import(${JSON.stringify(DAEMON)}).then(({ makeLogger }) =>`,
  `makeLogger({ log: { level: "info" } }, process.env).info({ pushes: 3 }, "hello log"));`,
].join(" ");
// The format follows stdout unless LICHEN_LOG_FORMAT says otherwise: never inherit it here.
const { LICHEN_LOG_FORMAT: _ignored, ...env } = process.env;

describe("lichen-push logs", () => {
  it("are JSON lines when stdout is not a terminal", () => {
    const r = spawnSync(process.execPath, ["-e", SCRIPT], { encoding: "utf8", env });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({
      msg: "hello log",
      pushes: 3,
      svc: "lichen-push",
    });
  });

  it("are readable lines on a terminal (stdout a pty, through script(1))", () => {
    const cmd = `${JSON.stringify(process.execPath)} -e ${JSON.stringify(SCRIPT).replace(/\$/g, "\\$")}`;
    const r = spawnSync("script", ["-qec", cmd, "/dev/null"], { encoding: "utf8", env });
    expect(r.status).toBe(0);
    // eslint-disable-next-line no-control-regex -- colours are expected on a terminal
    const text = r.stdout.replace(/\u001b\[[0-9;]*m/g, "");
    // One line per event: time, level, message, then the fields.
    expect(text).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: hello log .*"pushes":3/m);
    expect(text.trim().split("\n")).toHaveLength(1);
    expect(text.trim().startsWith("{")).toBe(false);
  });

  it("LICHEN_LOG_FORMAT=pretty forces readable lines without a terminal", () => {
    const r = spawnSync(process.execPath, ["-e", SCRIPT], {
      encoding: "utf8",
      env: { ...env, LICHEN_LOG_FORMAT: "pretty" },
    });
    expect(r.stdout).toMatch(/INFO.*hello log/);
    expect(r.stdout).not.toContain('"msg"');
  });
});
