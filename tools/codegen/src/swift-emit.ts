/** Renders the Swift model: Foundation-only, Swift 6 clean (Sendable), Codable written out. */
import type { SwiftDecl, SwiftField, SwiftModel } from "./swift-model.js";

const I = "    ";

function docLines(doc: string | undefined, indent: string): string[] {
  if (!doc) return [];
  return doc
    .replace(/^ +| +$/g, "")
    .split("\n")
    .map((l) => `${indent}/// ${l.trim()}`.trimEnd());
}

const fieldType = (f: SwiftField) => `${f.type}${f.nullable || !f.required ? "?" : ""}`;

function renderStruct(d: Extract<SwiftDecl, { kind: "struct" }>, union?: string): string {
  const out: string[] = [`// MARK: - ${d.name}`, ""];
  out.push(...docLines(d.doc, ""));
  if (d.tag && union)
    out.push(
      ...docLines(
        `${d.doc ? "\n" : ""}The \`${union}\` variant whose "${d.tag.key}" is "${d.tag.value}"; \`${union}\` writes that tag when encoding.`,
        "",
      ),
    );
  out.push(`public struct ${d.name}: Codable, Hashable, Sendable {`);
  if (d.tag)
    out.push(
      `${I}/// The "${d.tag.key}" of this variant.`,
      `${I}public static let tag = ${JSON.stringify(d.tag.value)}`,
      "",
    );
  for (const f of d.fields) {
    out.push(...docLines(f.doc, I));
    if (f.required && f.nullable) out.push(`${I}/// Required: encoded as \`null\` when nil.`);
    out.push(`${I}public var ${f.swiftName}: ${fieldType(f)}`);
  }
  if (d.fields.length) out.push("");
  const params = d.fields.map(
    (f) => `${f.swiftName}: ${fieldType(f)}${f.required ? "" : " = nil"}`,
  );
  out.push(`${I}public init(${params.join(", ")}) {`);
  for (const f of d.fields) out.push(`${I}${I}self.${f.swiftName} = ${f.swiftName}`);
  out.push(`${I}}`, "");
  if (d.fields.length) {
    out.push(`${I}private enum CodingKeys: String, CodingKey {`);
    for (const f of d.fields)
      out.push(
        `${I}${I}case ${f.swiftName}${f.swiftName === f.key ? "" : ` = ${JSON.stringify(f.key)}`}`,
      );
    out.push(`${I}}`, "");
  }
  out.push(`${I}public init(from decoder: Decoder) throws {`);
  if (d.fields.length) {
    out.push(`${I}${I}let container = try decoder.container(keyedBy: CodingKeys.self)`);
    for (const f of d.fields) {
      const call = !f.required
        ? `decodeIfPresent(${f.type}.self`
        : f.nullable
          ? `decode(${f.type}?.self` // key must be present, value may be null
          : `decode(${f.type}.self`;
      out.push(`${I}${I}${f.swiftName} = try container.${call}, forKey: .${f.swiftName})`);
    }
  } else out.push(`${I}${I}_ = try decoder.container(keyedBy: EmptyCodingKeys.self)`);
  out.push(`${I}}`, "");
  out.push(`${I}public func encode(to encoder: Encoder) throws {`);
  if (d.fields.length) {
    out.push(`${I}${I}var container = encoder.container(keyedBy: CodingKeys.self)`);
    for (const f of d.fields)
      out.push(
        `${I}${I}try container.${f.required ? "encode" : "encodeIfPresent"}(${f.swiftName}, forKey: .${f.swiftName})`,
      );
  } else out.push(`${I}${I}_ = encoder.container(keyedBy: EmptyCodingKeys.self)`);
  out.push(`${I}}`, "}");
  return out.join("\n");
}

function renderEnum(d: Extract<SwiftDecl, { kind: "enum" }>): string {
  const out: string[] = [`// MARK: - ${d.name}`, ""];
  out.push(...docLines(d.doc, ""));
  out.push(
    ...docLines(
      `${d.doc ? "\n" : ""}Decoding an unknown value throws \`DecodingError.dataCorrupted\`.`,
      "",
    ),
  );
  out.push(`public enum ${d.name}: String, Codable, Hashable, Sendable, CaseIterable {`);
  for (const c of d.cases)
    out.push(`${I}case ${c.name}${c.name === c.value ? "" : ` = ${JSON.stringify(c.value)}`}`);
  out.push("}");
  return out.join("\n");
}

function renderUnion(d: Extract<SwiftDecl, { kind: "union" }>): string {
  const out: string[] = [`// MARK: - ${d.name}`, ""];
  out.push(...docLines(d.doc, ""));
  out.push(
    ...docLines(
      `${d.doc ? "\n" : ""}Chosen by "${d.tagKey}". Encoding always writes "${d.tagKey}"; a value whose "${d.tagKey}" this version does not know decodes to \`.unknown\` with the whole object, which encodes back unchanged.`,
      "",
    ),
  );
  out.push(`public enum ${d.name}: Codable, Hashable, Sendable {`);
  for (const v of d.variants) out.push(`${I}case ${v.caseName}(${v.type})`);
  out.push(`${I}/// A variant unknown to this version, kept whole (including "${d.tagKey}").`);
  out.push(`${I}case unknown([String: JSONValue])`, "");
  out.push(
    `${I}private enum TagKey: String, CodingKey {`,
    `${I}${I}case tag = ${JSON.stringify(d.tagKey)}`,
    `${I}}`,
    "",
  );
  out.push(`${I}/// The "${d.tagKey}" of this value.`);
  out.push(`${I}public var tag: String {`, `${I}${I}switch self {`);
  for (const v of d.variants) out.push(`${I}${I}case .${v.caseName}: return ${v.type}.tag`);
  out.push(`${I}${I}case .unknown(let raw):`);
  out.push(
    `${I}${I}${I}if case .string(let tag)? = raw[${JSON.stringify(d.tagKey)}] { return tag }`,
  );
  out.push(`${I}${I}${I}return ""`);
  out.push(`${I}${I}}`, `${I}}`, "");
  out.push(`${I}public init(from decoder: Decoder) throws {`);
  out.push(`${I}${I}let container = try decoder.container(keyedBy: TagKey.self)`);
  out.push(`${I}${I}switch try container.decode(String.self, forKey: .tag) {`);
  for (const v of d.variants)
    out.push(`${I}${I}case ${v.type}.tag: self = .${v.caseName}(try ${v.type}(from: decoder))`);
  out.push(`${I}${I}default: self = .unknown(try [String: JSONValue](from: decoder))`);
  out.push(`${I}${I}}`, `${I}}`, "");
  out.push(`${I}public func encode(to encoder: Encoder) throws {`);
  out.push(`${I}${I}switch self {`);
  for (const v of d.variants)
    out.push(`${I}${I}case .${v.caseName}(let value): try value.encode(to: encoder)`);
  out.push(`${I}${I}case .unknown(let raw):`);
  out.push(`${I}${I}${I}try raw.encode(to: encoder)`);
  out.push(`${I}${I}${I}return // the raw object already holds its own "${d.tagKey}"`);
  out.push(`${I}${I}}`);
  out.push(`${I}${I}var container = encoder.container(keyedBy: TagKey.self)`);
  out.push(`${I}${I}try container.encode(tag, forKey: .tag)`);
  out.push(`${I}}`, "}");
  return out.join("\n");
}

const JSON_VALUE = `// MARK: - JSONValue

/// Any JSON value, for fields the TypeScript type leaves open (\`unknown\`, \`{ [key: string]: unknown }\`).
/// Integers stay \`.int\`, so values re-encode exactly as decoded.
public enum JSONValue: Codable, Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}`;

const EMPTY_KEYS = `/// Keys of a struct without properties (it still has to be a JSON object).
private struct EmptyCodingKeys: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}`;

export function renderSwift(model: SwiftModel, header: string): string {
  const unionOf = new Map<string, string>();
  for (const d of model.decls)
    if (d.kind === "union") for (const v of d.variants) unionOf.set(v.type, d.name);
  const parts = model.decls.map((d) =>
    d.kind === "struct"
      ? renderStruct(d, unionOf.get(d.name))
      : d.kind === "enum"
        ? renderEnum(d)
        : renderUnion(d),
  );
  const needsJSON = model.usesJSONValue || model.decls.some((d) => d.kind === "union");
  if (needsJSON) parts.push(JSON_VALUE);
  if (model.decls.some((d) => d.kind === "struct" && d.fields.length === 0)) parts.push(EMPTY_KEYS);
  return `${header}\nimport Foundation\n\n${parts.join("\n\n")}\n`;
}
