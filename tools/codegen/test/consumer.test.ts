import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { buildDocument } from "../src/json-schema.js";
import { lintExpectations, lintSwift } from "../src/swift-lint.js";
import { checkSwiftSyntax } from "../src/swift-syntax.js";

const run = promisify(execFile);
const pkg = join(import.meta.dirname, "..");
const cli = join(pkg, "dist", "cli.js");
type Failure = { code: number; stderr: string };
const fails = (p: Promise<unknown>) =>
  p.then(
    () => ({ code: 0, stderr: "" }),
    (e: Failure) => e,
  );

describe("a consumer package with its own types, outside the workspace", () => {
  it("generates JSON Schema and Swift that parses and lints clean, then --check guards it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "acme-orders-"));
    cpSync(join(import.meta.dirname, "fixtures", "consumer"), dir, { recursive: true });
    // Run from the consumer's directory with the default config name, as `npx lichen-codegen` would.
    await run(process.execPath, [cli], { cwd: dir });

    const swiftPath = join(dir, "swift/Sources/AcmeOrders/AcmeOrders.swift");
    const swift = readFileSync(swiftPath, "utf8");
    expect(checkSwiftSyntax(swift)).toEqual([]);
    const config = loadConfig(join(dir, "lichen-codegen.json"));
    const { doc } = buildDocument(config);
    const expectations = lintExpectations(doc, config.types, config.unions ?? {});
    expect(expectations.length).toBeGreaterThan(5);
    expect(lintSwift(swift, expectations)).toEqual([]);
    expect(swift).toContain("// Module AcmeOrders.");
    expect(swift).toContain("public enum OrderEvent: Codable, Hashable, Sendable");
    expect(swift).toContain("case orderPlaced(OrderPlaced)");
    // `Millis | null` keeps the alias's integer (typescript-json-schema alone gives Double?).
    expect(swift).toContain("public var paidAt: Int?");
    expect(swift).toContain("public var quantity: Int");
    expect(swift).toContain("public var price: Double");
    expect(swift).toContain("public var metadata: [String: JSONValue]");
    expect(swift).toContain("public var trackingURL: String?");
    // Array elements that are inline objects get their own struct, linted like the others.
    expect(swift).toContain("public var discounts: [OrderPlacedDiscountsItem]");
    expect(swift).toMatch(/public struct OrderPlacedDiscountsItem[^]*?public var percent: Int\n/);
    expect(expectations).toContainEqual(
      expect.objectContaining({
        swiftType: "OrderPlacedDiscountsItem",
        key: "percent",
        integer: true,
      }),
    );

    const schema = JSON.parse(
      readFileSync(join(dir, "generated/schemas/order-event.schema.json"), "utf8"),
    ) as {
      $id: string;
      definitions: Record<string, { properties: Record<string, unknown> }>;
    };
    expect(schema.$id).toBe("https://acme.example/schemas/order-event.schema.json");
    expect(schema.definitions.OrderPlaced!.properties.paidAt).toMatchObject({
      type: ["null", "integer"],
      minimum: 0,
    });
    // The consumer's own vectors become the Swift test resource.
    const resource = JSON.parse(
      readFileSync(join(dir, "swift/Tests/AcmeOrdersTests/vectors.json"), "utf8"),
    ) as {
      name: string;
      valid: boolean;
    }[];
    expect(resource.map((v) => [v.name, v.valid])).toEqual([
      ["placed", true],
      ["fractional-quantity", false],
    ]);

    const ok = await run(process.execPath, [cli, "--check"], { cwd: dir });
    expect(ok.stderr).toContain("up to date; Swift parses and lints cleanly");
    const types = join(dir, "src/types.ts");
    writeFileSync(
      types,
      readFileSync(types, "utf8").replace(
        "shippedAt: Millis;",
        "shippedAt: Millis;\n  carrier: string;",
      ),
    );
    const err = await fails(run(process.execPath, [cli, "--check"], { cwd: dir }));
    expect(err.code).toBe(1);
    expect(err.stderr).toContain("out of date: swift/Sources/AcmeOrders/AcmeOrders.swift");
    expect(err.stderr).toContain("out of date: generated/schemas/order-event.schema.json");
  });
});

describe("bad input fails naming file, type and property", () => {
  const project = (types: string, config: object = {}) => {
    const dir = mkdtempSync(join(tmpdir(), "codegen-bad-"));
    writeFileSync(join(dir, "types.ts"), types);
    writeFileSync(
      join(dir, "lichen-codegen.json"),
      JSON.stringify({
        input: { files: ["types.ts"] },
        types: ["Root"],
        jsonSchema: { dir: "schemas" },
        swift: { file: "Sources/M/M.swift", module: "M" },
        ...config,
      }),
    );
    return fails(run(process.execPath, [cli], { cwd: dir }));
  };

  it.each([
    [
      "a function type",
      "export interface Root { onDone: () => void }",
      {},
      "types.ts: Root.onDone: a function type cannot be serialized",
    ],
    [
      "bigint",
      "export interface Root { big: bigint }",
      {},
      "types.ts: Root.big: bigint has no JSON representation",
    ],
    [
      "an index signature next to properties (nested)",
      "export interface Root { meta: { name: string; [k: string]: string } }",
      {},
      "types.ts: Root.meta: an index signature next to named properties has no struct form",
    ],
    [
      "a union without a literal tag",
      'export interface A { kind: string; a: number }\nexport interface B { kind: "b" }\nexport type Root = A | B;',
      { unions: { Root: "kind" } },
      "types.ts: A.kind: variant of union Root has no string literal tag",
    ],
    [
      "an untagged union of objects",
      "export interface A { a: number }\nexport interface B { b: string }\nexport interface Root { either: A | B }",
      {},
      "types.ts: Root.either: a union that is not a configured discriminated union",
    ],
    [
      "a missing type",
      "export interface Other { a: number }",
      {},
      'type Root (in "types") is not exported by types.ts',
    ],
  ])("%s", async (_name, types, config, message) => {
    const err = await project(types, config);
    expect(err.code).toBe(1);
    expect(err.stderr).toContain(message);
    expect(err.stderr).not.toMatch(/\n\s+at /); // a user error, not a stack trace
  });

  it("a config without a required field names the file and the field", async () => {
    const dir = mkdtempSync(join(tmpdir(), "codegen-bad-"));
    writeFileSync(
      join(dir, "lichen-codegen.json"),
      JSON.stringify({ input: { files: ["a.ts"] }, types: ["A"] }),
    );
    const err = await fails(run(process.execPath, [cli], { cwd: dir }));
    expect(err.stderr).toContain(
      `${join(dir, "lichen-codegen.json")}: "jsonSchema.dir" must be a path`,
    );
    expect(existsSync(join(dir, "schemas"))).toBe(false);
  });
});

describe("the published package", () => {
  it("is public, ships the bin with a shebang, and packs dist", async () => {
    const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as {
      private?: boolean;
      bin: Record<string, string>;
      dependencies: Record<string, string>;
    };
    expect(manifest.private).toBeUndefined();
    expect(manifest.bin["lichen-codegen"]).toBe("./dist/cli.js");
    expect(
      readFileSync(join(pkg, manifest.bin["lichen-codegen"]!), "utf8").startsWith(
        "#!/usr/bin/env node\n",
      ),
    ).toBe(true);
    // Every runtime import is a declared, exactly pinned dependency.
    for (const d of ["typescript", "typescript-json-schema", "tree-sitter", "tree-sitter-swift"])
      expect(manifest.dependencies[d]).toMatch(/^\d+\.\d+\.\d+$/);
    const { stdout } = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: pkg,
    });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map(
      (f) => f.path,
    );
    expect(files).toEqual(
      expect.arrayContaining(["dist/cli.js", "dist/index.js", "README.md", "package.json"]),
    );
    expect(files.some((f) => f.startsWith("test/"))).toBe(false);
    // Lichen's own vectors are not part of the tool.
    expect(files.filter((f) => f.includes("lichen-vectors"))).toEqual([]);
  });
});
