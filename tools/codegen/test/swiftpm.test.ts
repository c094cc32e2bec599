import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { checkSwiftSyntax } from "../src/swift-syntax.js";

// No Swift toolchain on Linux CI: check the SwiftPM layout an iOS app depends on, by structure.
const repo = join(import.meta.dirname, "..", "..", "..");
const config = loadConfig(join(repo, "lichen-codegen.json"));
const moduleDir = dirname(config.swift.file); // apps/swift-nse/Sources/LichenSchema
const packageDir = dirname(dirname(moduleDir)); // apps/swift-nse
const manifest = readFileSync(join(repo, packageDir, "Package.swift"), "utf8");
const readme = readFileSync(join(repo, packageDir, "README.md"), "utf8");

describe("the LichenSchema Swift package", () => {
  it("has a manifest that parses, in Swift 6 language mode, with no dependencies", () => {
    expect(checkSwiftSyntax(manifest)).toEqual([]);
    const tools = /^\/\/ swift-tools-version:(\d+)\.(\d+)/.exec(manifest);
    expect(Number(tools?.[1])).toBeGreaterThanOrEqual(6); // swiftLanguageModes needs tools 6.0
    expect(manifest).toContain("swiftLanguageModes: [.v6]");
    expect(manifest).not.toMatch(/\.package\(/); // Foundation only
  });

  it("declares the library target where the generator writes, and the vectors resource", () => {
    const module = config.swift.module;
    expect(manifest).toContain(`.library(name: "${module}", targets: ["${module}"])`);
    expect(manifest).toContain(
      `.target(name: "${module}", path: "${relative(packageDir, moduleDir)}")`,
    );
    expect(existsSync(join(repo, config.swift.file))).toBe(true);
    expect(dirname(config.sql!.swiftFile)).toBe(moduleDir);
    const resource = config.vectors!.swiftResource!;
    const testDir = /path: "(Tests\/\w+)",\n\s+resources: \[\.copy\("([^"]+)"\)\]/.exec(manifest);
    expect(testDir).not.toBeNull();
    expect(join(packageDir, testDir![1]!, testDir![2]!)).toBe(resource);
    expect(existsSync(join(repo, resource))).toBe(true);
  });

  it("keeps every source of the module in the target directory, and nothing but Swift", () => {
    const files = readdirSync(join(repo, moduleDir));
    expect(files.sort()).toEqual(["LichenSQL.swift", "LichenSchema.swift"]);
  });

  it("documents both ways to depend on it with the real paths, and regeneration", () => {
    expect(readme).toContain(`.package(path: "../lichen/${packageDir}")`);
    expect(readme).toContain(`git subtree split --prefix ${packageDir} `);
    expect(readme).toContain("npm run codegen -- --check");
    expect(readme.trimStart().startsWith("# ")).toBe(true);
    // The README starts with a runnable example.
    expect(readme.indexOf("```swift")).toBeLessThan(readme.indexOf("\n## "));
  });

  it("has README Swift examples that parse and use the generated API", () => {
    const blocks = [...readme.matchAll(/```swift\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    for (const b of blocks) expect(checkSwiftSyntax(b)).toEqual([]);
    const generated =
      readFileSync(join(repo, config.swift.file), "utf8") +
      readFileSync(join(repo, config.sql!.swiftFile), "utf8");
    // Every LichenSQL constant and every case the NSE example uses exists in the generated Swift.
    const example = blocks.join("\n");
    for (const [, name] of example.matchAll(/LichenSQL\.([a-z]\w*)/g))
      expect(generated).toMatch(new RegExp(`static let ${name}[ :]`));
    for (const name of [
      "IPCMessage",
      "AccountState",
      "case ping(",
      "case disconnectAll(",
      "case unknown(",
    ])
      expect(generated).toContain(name);
  });
});
