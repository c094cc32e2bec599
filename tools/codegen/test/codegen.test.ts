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
const SWIFT = "apps/swift-nse/Sources/LichenSchema/LichenSchema.swift";

type Failure = { code: number; stderr: string };
const fails = (p: Promise<unknown>) =>
  p.then(
    () => ({ code: 0, stderr: "" }),
    (e: Failure) => e,
  );

/** A copy of what the generator reads and writes, outside the repository. */
function copyRepo(): string {
  const copy = mkdtempSync(join(tmpdir(), "lichen-codegen-"));
  for (const d of ["packages/schema/src", "schemas", "apps/swift-nse", "lichen-codegen.json"])
    cpSync(join(repo, d), join(copy, d), { recursive: true });
  // The vectors module and the SQL contract module are built JS; point at the real ones.
  const config = JSON.parse(readFileSync(join(copy, "lichen-codegen.json"), "utf8")) as {
    vectors: { generator: string };
    sql?: { module: string };
  };
  config.vectors.generator = join(repo, config.vectors.generator);
  if (config.sql) config.sql.module = join(repo, config.sql.module);
  writeFileSync(join(copy, "lichen-codegen.json"), JSON.stringify(config));
  return copy;
}

describe("the generated Swift", () => {
  const swift = readFileSync(join(repo, SWIFT), "utf8");

  it("parses with tree-sitter-swift", () => {
    expect(checkSwiftSyntax(swift)).toEqual([]);
  });

  it("uses Foundation only and no quicktype helpers", () => {
    expect(swift.match(/^import .*/gm)).toEqual(["import Foundation"]);
    expect(swift).not.toMatch(/JSONAny|OptionallyDecodable|JSONNull/);
  });

  it("keeps required fields non-optional and integers Int (spot checks)", () => {
    expect(swift).toContain("    public var source: ProcessRole\n");
    expect(swift).toContain("    public var destination: IPCDestination\n");
    expect(swift).toContain("    public var csi: CSIState\n");
    expect(swift).toContain("    public var enabledAt: Int?\n");
    expect(swift).toContain("    public var discoveredAt: Int?\n");
    expect(swift).toContain("    public var bound: [String: JSONValue]\n");
  });

  it("follows the Swift API Design Guidelines for names", () => {
    expect(swift).toContain("public var itemIDs: [String]");
    expect(swift).toContain("public var appServerJID: String");
    expect(swift).toContain("public var accountID: String");
    expect(swift).toContain('case broadcast = "*"');
    expect(swift).not.toMatch(/itemIDS|var appServerJid|\.empty\b|case empty/);
  });

  it("decodes a required nullable field strictly and encodes its null", () => {
    expect(swift).toContain("streamID = try container.decode(String?.self, forKey: .streamID)");
    expect(swift).toContain("try container.encode(streamID, forKey: .streamID)");
    // Optional (`?:`) fields may be absent and are left out when nil.
    expect(swift).toContain(
      "syncedAt = try container.decodeIfPresent(Int.self, forKey: .syncedAt)",
    );
    expect(swift).toContain("try container.encodeIfPresent(syncedAt, forKey: .syncedAt)");
  });

  it("writes the discriminator after every variant and keeps unknown payloads whole", () => {
    const ipc = swift.slice(
      swift.indexOf("public enum IPCMessage"),
      swift.indexOf("// MARK: - ImageShare"),
    );
    expect(ipc).toContain("case unknown([String: JSONValue])");
    expect(ipc).toContain("default: self = .unknown(try [String: JSONValue](from: decoder))");
    const encode = ipc.slice(ipc.indexOf("public func encode"));
    // Every known case falls through to the tag write; only .unknown returns early. The known
    // cases are counted from the enum itself (a new IPC message adds one).
    const known = ipc.match(/^ {4}case \w+\([A-Z]\w*Message\)$/gm) ?? [];
    expect(known.length).toBeGreaterThanOrEqual(8);
    expect(encode.match(/try value\.encode\(to: encoder\)/g)).toHaveLength(known.length);
    expect(encode).toMatch(
      /case \.unknown\(let raw\):\n\s+try raw\.encode\(to: encoder\)\n\s+return/,
    );
    expect(encode).toMatch(
      /\}\n\s+var container = encoder\.container\(keyedBy: TagKey\.self\)\n\s+try container\.encode\(tag, forKey: \.tag\)/,
    );
    // Variant structs do not carry the tag as a settable (forgettable) property.
    const ping = swift.slice(
      swift.indexOf("public struct PingMessage:"),
      swift.indexOf("// MARK: - PingMessageData"),
    );
    expect(ping).toContain('public static let tag = "ping"');
    expect(ping).not.toMatch(/public var type\b/);
  });
});

describe("lichen-codegen --check", () => {
  it("passes on the committed tree", async () => {
    const { stderr } = await run(process.execPath, [cli, "--check"], { cwd: repo });
    expect(stderr).toContain("up to date; Swift parses and lints cleanly");
  });

  it("fails, naming the files, when a type changes without regenerating", async () => {
    const copy = copyRepo();
    const lock = join(copy, "packages/schema/src/types/lock.ts");
    writeFileSync(
      lock,
      readFileSync(lock, "utf8").replace(
        "generation: Counter;",
        "generation: Counter;\n  note: string;",
      ),
    );
    const err = await fails(
      run(process.execPath, [cli, "--check", "--config", join(copy, "lichen-codegen.json")]),
    );
    expect(err.code).toBe(1);
    expect(err.stderr).toContain("out of date: schemas/process-lock-record.schema.json");
    expect(err.stderr).toContain(`out of date: ${SWIFT}`);
  });

  it("enforces the Swift lint on hand-written files of the module", async () => {
    const copy = copyRepo();
    writeFileSync(
      join(copy, "apps/swift-nse/Sources/LichenSchema/Extras.swift"),
      "import OptionallyDecodable\n\npublic struct Extra: Hashable, Sendable {\n    public let value: Unknowable\n}\n",
    );
    const err = await fails(
      run(process.execPath, [cli, "--check", "--config", join(copy, "lichen-codegen.json")]),
    );
    expect(err.code).toBe(1);
    expect(err.stderr).toMatch(
      /swift lint: .*Extras\.swift:1: \[imports\] import OptionallyDecodable/,
    );
    expect(err.stderr).toMatch(/swift lint: .*\[undeclared\] type Unknowable is not declared/);
    expect(err.stderr).toMatch(
      /\[conformance\] Extra is Hashable but its member value: Unknowable/,
    );
    expect(err.stderr).not.toContain("out of date");
  });
});
