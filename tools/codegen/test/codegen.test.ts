import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { checkSwiftSyntax } from "../src/swift-syntax.js";

const run = promisify(execFile);
const repo = join(import.meta.dirname, "..", "..", "..");
const cli = join(import.meta.dirname, "..", "dist", "cli.js");

describe("Swift syntax check (tree-sitter-swift)", () => {
  it("accepts the generated Swift", () => {
    const swift = readFileSync(
      join(repo, "apps/swift-nse/Sources/LichenSchema/LichenSchema.swift"),
      "utf8",
    );
    expect(swift).toContain("public enum IPCMessage: Codable, Hashable, Sendable");
    expect(swift).toContain(
      'case "disconnect-all": self = .disconnectAll(try DisconnectAllMessage(from: decoder))',
    );
    expect(checkSwiftSyntax(swift)).toEqual([]);
  });

  it("finds errors in broken Swift", () => {
    const problems = checkSwiftSyntax("public struct A: Codable {\n  let x: Int =\n}\nfunc (");
    expect(problems.length).toBeGreaterThan(0);
    expect(problems[0]!.line).toBeGreaterThanOrEqual(2);
  });
});

describe("codegen --check", () => {
  it("passes on the committed tree", async () => {
    const { stderr } = await run(process.execPath, [cli, "--check", "--root", repo]);
    expect(stderr).toContain("up to date");
  }, 60_000);

  it("fails, naming the files, when a type changes without regenerating", async () => {
    const copy = mkdtempSync(join(tmpdir(), "lichen-codegen-"));
    for (const d of ["packages/schema/src", "schemas", "apps/swift-nse"])
      cpSync(join(repo, d), join(copy, d), { recursive: true });
    const lock = join(copy, "packages/schema/src/types/lock.ts");
    writeFileSync(
      lock,
      readFileSync(lock, "utf8").replace(
        "generation: Counter;",
        "generation: Counter;\n  note: string;",
      ),
    );
    const err = await run(process.execPath, [cli, "--check", "--root", copy]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(err).toMatchObject({ code: 1 });
    expect((err as { stderr: string }).stderr).toContain(
      "out of date: schemas/process-lock-record.schema.json",
    );
    expect((err as { stderr: string }).stderr).toContain(
      "out of date: apps/swift-nse/Sources/LichenSchema/LichenSchema.swift",
    );
  }, 60_000);
});
