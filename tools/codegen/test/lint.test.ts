import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { buildDocument } from "../src/json-schema.js";
import { lintExpectations, lintSwift, type LintExpectation } from "../src/swift-lint.js";

const repo = join(import.meta.dirname, "..", "..", "..");

const HASHABLE_OK = `import Foundation
public struct Box: Codable, Hashable, Sendable {
    public var count: Int
    public var name: String?
    public var tags: [String: JSONValue]
}
public enum JSONValue: Codable, Hashable, Sendable {
    case int(Int)
    case object([String: JSONValue])
}
`;

const expect1 = (over: Partial<LintExpectation>): LintExpectation => ({
  swiftType: "Box",
  key: "count",
  required: true,
  nullable: false,
  integer: true,
  where: "Box.count",
  ...over,
});

describe("Swift lint: the committed Lichen Swift", () => {
  it("is clean against the expectations read from the JSON Schema", () => {
    const config = loadConfig(join(repo, "lichen-codegen.json"));
    const { doc } = buildDocument(config);
    const expectations = lintExpectations(doc, config.types, config.unions ?? {});
    // Spot-check that the expectations carry the facts the rules need.
    expect(expectations).toContainEqual(
      expect.objectContaining({
        swiftType: "StreamManagementState",
        key: "enabledAt",
        integer: true,
        nullable: true,
      }),
    );
    expect(expectations).toContainEqual(
      expect.objectContaining({
        swiftType: "DisconnectAllMessage",
        key: "source",
        required: true,
        nullable: false,
      }),
    );
    const swift = readFileSync(join(repo, config.swift.file), "utf8");
    expect(lintSwift(swift, expectations)).toEqual([]);
  });
});

describe("Swift lint on main's quicktype output (the bugs of issue 15)", () => {
  it("reports the import, the JSONAny conformance, optional required fields and Double times", () => {
    const config = loadConfig(join(repo, "lichen-codegen.json"));
    const { doc } = buildDocument(config);
    const swift = readFileSync(
      join(import.meta.dirname, "fixtures/quicktype-main-excerpt.swift"),
      "utf8",
    );
    const messages = lintSwift(swift, lintExpectations(doc, config.types, config.unions ?? {})).map(
      (p) => `[${p.rule}] ${p.message}`,
    );
    expect(messages).toEqual(
      expect.arrayContaining([
        "[imports] import OptionallyDecodable: only Foundation is available to the package",
        "[conformance] HandlerDescriptor is Hashable but its member bound: [String: JSONAny] uses JSONAny, which is not Hashable",
        "[conformance] HandlerDescriptor is Sendable but its member bound: [String: JSONAny] uses JSONAny, which is not Sendable",
        "[required] AccountState.csi is required in TypeScript but AccountState.csi is optional (CSIState?)",
        "[required] DisconnectAllMessage.source is required in TypeScript but DisconnectAllMessage.source is optional (ProcessRole?)",
        "[integer] DiscoveredFeatures.discoveredAt is an integer but DiscoveredFeatures.discoveredAt is Double?",
      ]),
    );
  });
});

describe("Swift lint rules, one broken input each", () => {
  it("accepts a correct input", () => {
    expect(lintSwift(HASHABLE_OK, [expect1({})])).toEqual([]);
  });

  it("imports: a module other than Foundation", () => {
    const p = lintSwift(
      HASHABLE_OK.replace("import Foundation", "import Foundation\nimport OptionallyDecodable"),
    );
    expect(p).toEqual([expect.objectContaining({ rule: "imports", line: 2 })]);
    expect(p[0]!.message).toContain("OptionallyDecodable");
  });

  it("conformance: a Hashable/Sendable struct with a member that is neither", () => {
    const swift = `import Foundation
public struct HandlerDescriptor: Codable, Hashable, Sendable {
    public let bound: [String: JSONAny]
}
public class JSONAny: Codable {
    public let value: String
}
`;
    const p = lintSwift(swift);
    expect(p.map((x) => x.rule)).toEqual(["conformance", "conformance", "conformance"]);
    expect(p.map((x) => x.message).join("\n")).toMatch(
      /HandlerDescriptor is Hashable .* JSONAny, which is not Hashable/,
    );
    expect(p.map((x) => x.message).join("\n")).toMatch(/JSONAny, which is not Sendable/);
  });

  it("conformance added by an extension counts", () => {
    const swift = `import Foundation
public struct Outer: Hashable, Sendable {
    public var inner: Inner
}
public struct Inner {
    public var n: Int
}
`;
    expect(lintSwift(swift).map((p) => p.rule)).toEqual([
      "conformance",
      "conformance",
      "conformance",
    ]);
    expect(lintSwift(`${swift}extension Inner: Hashable, Sendable {}\n`)).toEqual([]);
  });

  it("undeclared: a member type declared nowhere", () => {
    const p = lintSwift(
      HASHABLE_OK.replace("public var name: String?", "public var name: Nickname?"),
    );
    expect(p.map((x) => x.rule)).toContain("undeclared");
    expect(p.find((x) => x.rule === "undeclared")!.message).toBe("type Nickname is not declared");
  });

  it("required: a field required in TypeScript that is optional in Swift", () => {
    const p = lintSwift(HASHABLE_OK.replace("public var count: Int", "public var count: Int?"), [
      expect1({}),
    ]);
    expect(p).toEqual([expect.objectContaining({ rule: "required", line: 3 })]);
    // A required but nullable field may be optional.
    expect(
      lintSwift(HASHABLE_OK.replace("public var count: Int", "public var count: Int?"), [
        expect1({ nullable: true }),
      ]),
    ).toEqual([]);
  });

  it("integer: a JSON Schema integer that is a Double in Swift", () => {
    const p = lintSwift(HASHABLE_OK.replace("public var count: Int", "public var count: Double"), [
      expect1({}),
    ]);
    expect(p).toEqual([expect.objectContaining({ rule: "integer", line: 3 })]);
    expect(p[0]!.message).toBe("Box.count is an integer but Box.count is Double");
  });

  it("finds fields through CodingKeys raw values", () => {
    const swift = HASHABLE_OK.replace(
      "public var tags",
      `private enum CodingKeys: String, CodingKey {\n        case count = "cnt"\n        case name\n        case tags\n    }\n    public var tags`,
    ).replace("public var count: Int", "public var count: Double");
    expect(lintSwift(swift, [expect1({ key: "cnt" })]).map((x) => x.rule)).toEqual(["integer"]);
  });
});
