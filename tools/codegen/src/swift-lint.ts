/**
 * A semantic lint of generated Swift, standing in for the compiler that Linux CI does not have. It
 * parses with tree-sitter-swift and checks what the Swift compiler (Swift 6 language mode) would
 * reject or what would silently break the contract:
 * - imports: only Foundation;
 * - conformance: every member of a Hashable / Equatable / Sendable type conforms too;
 * - undeclared: every referenced type is declared in the file or is a standard/Foundation type;
 * - required: a field required (and not nullable) in TypeScript is not optional in Swift;
 * - integer: a JSON Schema integer is `Int` in Swift.
 */
import { createRequire } from "node:module";
import type { JsonSchema } from "./json-schema.js";
import { inlineTypeName, swiftMemberName, swiftTypeName } from "./naming.js";

const require = createRequire(import.meta.url);

interface Node {
  type: string;
  text: string;
  startPosition: { row: number };
  children: Node[];
  namedChildren: Node[];
  childForFieldName(name: string): Node | null;
}

export type LintRule = "imports" | "conformance" | "undeclared" | "required" | "integer";
export interface LintProblem {
  rule: LintRule;
  line: number;
  message: string;
}

/** What the schema says about one field; the Swift property is found through CodingKeys. */
export interface LintExpectation {
  /** Swift type that should declare the field. */
  swiftType: string;
  /** JSON key. */
  key: string;
  required: boolean;
  nullable: boolean;
  integer: boolean;
  /** TS location for messages ("AccountState.sm.inboundH"). */
  where: string;
}

const BUILTIN_VALUES = new Set(
  "String Int Int8 Int16 Int32 Int64 UInt UInt8 UInt16 UInt32 UInt64 Double Float Bool Character Data Date URL UUID Decimal".split(
    " ",
  ),
);
const KNOWN = new Set([
  ...BUILTIN_VALUES,
  ..."Codable Decodable Encodable Hashable Equatable Sendable CaseIterable CodingKey Decoder Encoder Error DecodingError EncodingError Never Void Any AnyObject Self Optional Array Dictionary Set KeyedDecodingContainer KeyedEncodingContainer SingleValueDecodingContainer SingleValueEncodingContainer UnkeyedDecodingContainer UnkeyedEncodingContainer JSONDecoder JSONEncoder NSError CodingUserInfoKey Hasher".split(
    " ",
  ),
]);
const PROTOCOLS = ["Hashable", "Equatable", "Sendable"] as const;

let parser: { parse(input: (i: number) => string | null): { rootNode: Node } } | null = null;
function parse(source: string): Node {
  if (!parser) {
    const Parser = require("tree-sitter") as new () => { setLanguage(l: unknown): void };
    const p = new Parser();
    p.setLanguage(require("tree-sitter-swift"));
    parser = p as unknown as typeof parser;
  }
  return parser!.parse((i) => (i < source.length ? source.slice(i, i + 16_384) : null)).rootNode;
}

interface Decl {
  name: string;
  kind: string;
  inherits: string[];
  /** Stored properties and associated values: [name, type node]. */
  members: { name: string; type: Node; line: number }[];
  codingKeys: Map<string, string>; // JSON key -> Swift property
  line: number;
}

function walk(n: Node, f: (n: Node) => void): void {
  f(n);
  for (const c of n.children) walk(c, f);
}

function collect(root: Node): {
  decls: Map<string, Decl>;
  aliases: Map<string, Node>;
  imports: { name: string; line: number }[];
} {
  const decls = new Map<string, Decl>();
  const aliases = new Map<string, Node>();
  const imports: { name: string; line: number }[] = [];
  const extensions = new Map<string, string[]>();
  walk(root, (n) => {
    if (n.type === "import_declaration")
      imports.push({
        name: n.namedChildren
          .map((c) => c.text)
          .join(" ")
          .trim(),
        line: n.startPosition.row + 1,
      });
    if (n.type === "typealias_declaration") {
      const name = n.childForFieldName("name");
      const types = n.namedChildren.filter((c) => c !== name && c.type !== "modifiers");
      if (name && types.length) aliases.set(name.text, types[types.length - 1]!);
    }
    if (n.type !== "class_declaration" && n.type !== "protocol_declaration") return;
    const kind =
      n.children[0]?.type === "modifiers"
        ? (n.children[1]?.text ?? "")
        : (n.children[0]?.text ?? "");
    const name = n.childForFieldName("name")?.text;
    if (!name) return;
    if (kind === "extension") {
      // `extension Foo: Hashable {}` adds conformances to a type declared elsewhere in the module.
      const added = n.children
        .filter((c) => c.type === "inheritance_specifier")
        .map((c) => c.text.trim());
      extensions.set(name, [...(extensions.get(name) ?? []), ...added]);
      return;
    }
    const body = n.childForFieldName("body");
    const members: Decl["members"] = [];
    const codingKeys = new Map<string, string>();
    for (const m of body?.namedChildren ?? []) {
      if (m.type === "property_declaration") {
        const mods = m.children.find((c) => c.type === "modifiers")?.text ?? "";
        if (/\bstatic\b/.test(mods) || m.children.some((c) => c.type === "computed_property"))
          continue;
        const bound = m.childForFieldName("name")?.text;
        const ann = m.children.find((c) => c.type === "type_annotation");
        const t = ann?.childForFieldName("name") ?? ann?.namedChildren[0];
        if (bound && t)
          members.push({ name: bound.replace(/`/g, ""), type: t, line: m.startPosition.row + 1 });
      }
      if (m.type === "enum_entry") {
        for (const dc of m.children.filter((c) => c.type === "enum_type_parameters"))
          for (const t of dc.namedChildren)
            if (t.type !== "simple_identifier")
              members.push({ name: "(associated value)", type: t, line: m.startPosition.row + 1 });
      }
      if (m.type === "class_declaration" && m.childForFieldName("name")?.text === "CodingKeys") {
        for (const e of m.childForFieldName("body")?.namedChildren ?? []) {
          if (e.type !== "enum_entry") continue;
          const names = e.children.filter((c) => c.type === "simple_identifier");
          const raw = e.childForFieldName("raw_value");
          for (const nm of names) {
            const swiftName = nm.text.replace(/`/g, "");
            codingKeys.set(
              raw && names.length === 1 ? raw.text.replace(/^"|"$/g, "") : swiftName,
              swiftName,
            );
          }
        }
      }
    }
    const inherits = n.children
      .filter((c) => c.type === "inheritance_specifier")
      .map((c) => c.text.trim());
    decls.set(name, { name, kind, inherits, members, codingKeys, line: n.startPosition.row + 1 });
  });
  for (const [name, added] of extensions) {
    const d = decls.get(name);
    if (d) d.inherits.push(...added);
  }
  return { decls, aliases, imports };
}

/** Names of the nominal types a type expression uses ("[String: JSONValue]?" -> String, JSONValue). */
function typeNames(t: Node): { name: string; line: number }[] {
  const out: { name: string; line: number }[] = [];
  walk(t, (n) => {
    if (n.type === "user_type") {
      const first = n.namedChildren.find((c) => c.type === "type_identifier");
      if (first) out.push({ name: first.text, line: n.startPosition.row + 1 });
    }
  });
  return out;
}

const baseType = (t: Node): Node => {
  let n = t;
  while (n.type === "optional_type" || n.type === "array_type") {
    const inner =
      n.childForFieldName(n.type === "optional_type" ? "wrapped" : "element") ?? n.namedChildren[0];
    if (!inner) break;
    n = inner;
  }
  return n;
};

export function lintSwift(source: string, expectations: LintExpectation[] = []): LintProblem[] {
  const root = parse(source);
  const { decls, aliases, imports } = collect(root);
  const problems: LintProblem[] = [];

  for (const i of imports)
    if (i.name !== "Foundation")
      problems.push({
        rule: "imports",
        line: i.line,
        message: `import ${i.name}: only Foundation is available to the package`,
      });

  const conforms = (
    name: string,
    p: (typeof PROTOCOLS)[number],
    seen = new Set<string>(),
  ): boolean => {
    if (BUILTIN_VALUES.has(name)) return true;
    if (seen.has(name)) return true;
    seen.add(name);
    const d = decls.get(name);
    if (d) return d.inherits.includes(p) || (p === "Equatable" && d.inherits.includes("Hashable"));
    const a = aliases.get(name);
    if (a) return typeNames(a).every((x) => conforms(x.name, p, seen));
    return false;
  };

  for (const d of decls.values()) {
    for (const p of PROTOCOLS) {
      if (!(d.inherits.includes(p) || (p === "Equatable" && d.inherits.includes("Hashable"))))
        continue;
      for (const m of d.members)
        for (const t of typeNames(m.type))
          if (!conforms(t.name, p))
            problems.push({
              rule: "conformance",
              line: m.line,
              message: `${d.name} is ${p} but its member ${m.name}: ${m.type.text} uses ${t.name}, which is not ${p}`,
            });
    }
  }

  walk(root, (n) => {
    if (n.type !== "user_type") return;
    const first = n.namedChildren.find((c) => c.type === "type_identifier")?.text;
    if (first && !KNOWN.has(first) && !decls.has(first) && !aliases.has(first))
      problems.push({
        rule: "undeclared",
        line: n.startPosition.row + 1,
        message: `type ${first} is not declared`,
      });
  });

  for (const e of expectations) {
    const d = decls.get(e.swiftType);
    if (!d) {
      problems.push({
        rule: "undeclared",
        line: 0,
        message: `${e.where}: no Swift type ${e.swiftType}`,
      });
      continue;
    }
    const prop = d.codingKeys.get(e.key) ?? swiftMemberName(e.key);
    const m = d.members.find((x) => x.name === prop);
    if (!m) {
      problems.push({
        rule: "required",
        line: d.line,
        message: `${e.where}: ${e.swiftType} has no property for "${e.key}"`,
      });
      continue;
    }
    if (e.required && !e.nullable && m.type.type === "optional_type")
      problems.push({
        rule: "required",
        line: m.line,
        message: `${e.where} is required in TypeScript but ${e.swiftType}.${prop} is optional (${m.type.text})`,
      });
    if (e.integer) {
      const b = baseType(m.type);
      if (b.text !== "Int")
        problems.push({
          rule: "integer",
          line: m.line,
          message: `${e.where} is an integer but ${e.swiftType}.${prop} is ${m.type.text}`,
        });
    }
  }
  return problems.sort((a, b) => a.line - b.line);
}

/** Per-field expectations read straight from the JSON Schema (not from the Swift model). */
export function lintExpectations(
  doc: JsonSchema,
  roots: string[],
  unions: Record<string, string>,
): LintExpectation[] {
  const defs = doc.definitions ?? {};
  const out: LintExpectation[] = [];
  const done = new Set<string>();
  const tagOf = new Map<string, string>();
  for (const [u, tag] of Object.entries(unions))
    for (const r of (defs[u]?.anyOf as JsonSchema[] | undefined) ?? [])
      if (typeof r.$ref === "string") tagOf.set(r.$ref.split("/").pop()!, tag);

  const flags = (
    p: JsonSchema,
  ): { nullable: boolean; integer: boolean; ref?: string; obj?: JsonSchema; item?: boolean } => {
    if (typeof p.$ref === "string") {
      const name = p.$ref.split("/").pop()!;
      const t = defs[name];
      if (t && !(t.type === "object" && t.properties) && !t.anyOf && !t.enum) return flags(t);
      return { nullable: false, integer: false, ref: name };
    }
    if (Array.isArray(p.anyOf)) {
      const rest = (p.anyOf as JsonSchema[]).filter((m) => m.type !== "null");
      const f = rest.length === 1 ? flags(rest[0]!) : { nullable: false, integer: false };
      return { ...f, nullable: rest.length < (p.anyOf as unknown[]).length };
    }
    const types = Array.isArray(p.type) ? (p.type as string[]) : [p.type as string];
    const nullable = types.includes("null");
    if (types.includes("array") && p.items && !Array.isArray(p.items)) {
      const f = flags(p.items as JsonSchema);
      return { ...f, nullable, ...(f.obj ? { item: true } : {}) };
    }
    if (types.includes("object") && p.properties) return { nullable, integer: false, obj: p };
    return { nullable, integer: types.includes("integer") };
  };

  const visitObject = (swift: string, where: string, s: JsonSchema, tag?: string) => {
    const required = new Set((s.required as string[] | undefined) ?? []);
    for (const [key, p] of Object.entries((s.properties as Record<string, JsonSchema>) ?? {})) {
      if (key === tag) continue;
      const f = flags(p);
      out.push({
        swiftType: swift,
        key,
        required: required.has(key),
        nullable: f.nullable,
        integer: f.integer,
        where: `${where}.${key}`,
      });
      if (f.ref) visitDef(f.ref);
      // Inline objects are named after their property; array elements after "<property>Item".
      if (f.obj)
        visitObject(inlineTypeName(swift, f.item ? `${key}Item` : key), `${where}.${key}`, f.obj);
    }
  };
  const visitDef = (name: string) => {
    if (done.has(name)) return;
    done.add(name);
    const s = defs[name];
    if (!s) return;
    for (const r of (s.anyOf as JsonSchema[] | undefined) ?? [])
      if (typeof r.$ref === "string") visitDef(r.$ref.split("/").pop()!);
    if (s.type === "object" && s.properties)
      visitObject(swiftTypeName(name), name, s, tagOf.get(name));
  };
  for (const r of roots) visitDef(r);
  return out;
}
