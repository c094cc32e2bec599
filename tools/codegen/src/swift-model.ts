/**
 * JSON Schema (typescript-json-schema output) -> a small Swift model: structs, string enums and
 * discriminated unions. Anything the model cannot express precisely is an error naming the type and
 * property: a field with a precise TS type never silently becomes JSONValue.
 */
import { CodegenError } from "./errors.js";
import type { JsonSchema } from "./json-schema.js";
import { escapeIdentifier, inlineTypeName, swiftMemberName, swiftTypeName } from "./naming.js";

export interface SwiftField {
  /** JSON key. */
  key: string;
  /** Swift property name (escaped if needed). */
  swiftName: string;
  /** Swift type without the optional marker. */
  type: string;
  /** Present in the TS type's required keys (`foo: T`, not `foo?: T`). */
  required: boolean;
  /** `T | null`. */
  nullable: boolean;
  /** JSON Schema "integer" (also inside arrays). */
  integer: boolean;
  doc?: string;
}

export type SwiftDecl =
  | {
      kind: "struct";
      name: string;
      doc?: string;
      fields: SwiftField[];
      tag?: { key: string; value: string };
    }
  | { kind: "enum"; name: string; doc?: string; cases: { name: string; value: string }[] }
  | {
      kind: "union";
      name: string;
      doc?: string;
      tagKey: string;
      variants: { caseName: string; type: string; tag: string }[];
    };

export interface ModelOptions {
  /** Root definitions to emit. */
  roots: string[];
  /** Discriminated unions: definition name -> tag property. */
  unions: Record<string, string>;
  /** Swift case names for enum values that are not identifiers (e.g. { "*": "broadcast" }). */
  caseNames?: Record<string, string>;
  /** Where a definition was declared, for error messages. */
  fileOf?: (definition: string) => string | undefined;
}

export interface SwiftModel {
  decls: SwiftDecl[];
  /** The model needs the JSONValue helper type (arbitrary JSON). */
  usesJSONValue: boolean;
}

const REF = "#/definitions/";

export function buildSwiftModel(doc: JsonSchema, opts: ModelOptions): SwiftModel {
  const defs = doc.definitions ?? {};
  const decls = new Map<string, SwiftDecl>();
  const origin = new Map<string, string>(); // swift name -> definition (clash detection)
  let usesJSONValue = false;
  const where = (def: string, key?: string) => {
    const file = opts.fileOf?.(def);
    return `${file ? `${file}: ` : ""}${def}${key !== undefined ? `.${key}` : ""}`;
  };
  const claim = (swift: string, from: string) => {
    const prev = origin.get(swift);
    if (prev !== undefined && prev !== from)
      throw new CodegenError(`${from} and ${prev} both map to the Swift type ${swift}; rename one`);
    origin.set(swift, from);
  };

  const variantTag = new Map<string, { key: string; value: string }>();
  for (const [u, tagKey] of Object.entries(opts.unions)) {
    const def = defs[u];
    if (!def)
      throw new CodegenError(
        `union ${u} (configured with tag "${tagKey}") is not a type of the input`,
      );
    const anyOf = def.anyOf as JsonSchema[] | undefined;
    if (!anyOf?.every((r) => typeof r.$ref === "string"))
      throw new CodegenError(
        `${where(u)}: configured as a union on "${tagKey}" but is not a union of interfaces`,
      );
    for (const r of anyOf) {
      const v = (r.$ref as string).slice(REF.length);
      const p = (defs[v]?.properties as Record<string, JsonSchema> | undefined)?.[tagKey];
      const enumOne =
        Array.isArray(p?.enum) && (p.enum as unknown[]).length === 1
          ? (p.enum as unknown[])[0]
          : undefined;
      const value = p?.const ?? enumOne;
      if (typeof value !== "string")
        throw new CodegenError(
          `${where(v, tagKey)}: variant of union ${u} has no string literal tag "${tagKey}" (declare e.g. ${tagKey}: "${v.toLowerCase()}")`,
        );
      variantTag.set(v, { key: tagKey, value });
    }
  }

  const u_ = (swiftName: string) => origin.get(swiftName) ?? swiftName;
  const enumCase = (value: string, ctx: string): string => {
    const mapped = opts.caseNames?.[value];
    const name = mapped ?? swiftMemberName(value);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
      throw new CodegenError(
        `${ctx}: enum value ${JSON.stringify(value)} has no Swift case name; add it to swift.caseNames`,
      );
    return escapeIdentifier(name);
  };

  const emitDef = (def: string): string => {
    const swift = swiftTypeName(def);
    if (decls.has(swift)) return swift;
    claim(swift, def);
    const s = defs[def];
    if (!s) throw new CodegenError(`type ${def} is not exported by the input files`);
    const doc = s.description as string | undefined;
    if (opts.unions[def] !== undefined) {
      const tagKey = opts.unions[def]!;
      const variants = (s.anyOf as JsonSchema[]).map((r) => {
        const v = (r.$ref as string).slice(REF.length);
        return {
          caseName: enumCase(variantTag.get(v)!.value, where(v, tagKey)),
          type: emitDef(v),
          tag: variantTag.get(v)!.value,
        };
      });
      const clash = variants.find((v) => v.caseName === "unknown");
      if (clash)
        throw new CodegenError(
          `${where(u_(clash.type), tagKey)}: the tag "${clash.tag}" would be the Swift case reserved for unknown variants`,
        );
      decls.set(swift, { kind: "union", name: swift, ...(doc ? { doc } : {}), tagKey, variants });
      return swift;
    }
    if (s.type === "string" && Array.isArray(s.enum)) {
      decls.set(swift, {
        kind: "enum",
        name: swift,
        ...(doc ? { doc } : {}),
        cases: (s.enum as string[]).map((value) => ({ name: enumCase(value, where(def)), value })),
      });
      return swift;
    }
    if (s.type === "object" && s.properties) {
      decls.set(swift, { kind: "struct", name: swift, fields: [] }); // placeholder against cycles
      decls.set(swift, structDecl(swift, def, s, variantTag.get(def)));
      return swift;
    }
    throw new CodegenError(`${where(def)}: not an object type, string enum or configured union`);
  };

  const structDecl = (
    swift: string,
    def: string,
    s: JsonSchema,
    tag: { key: string; value: string } | undefined,
  ): SwiftDecl => {
    const required = new Set((s.required as string[] | undefined) ?? []);
    const fields: SwiftField[] = [];
    for (const [key, p] of Object.entries(s.properties as Record<string, JsonSchema>)) {
      if (tag && key === tag.key) continue; // written by the union enum
      const r = resolve(p, { def, key, parentSwift: swift });
      const doc = (p.description as string | undefined) ?? r.doc;
      fields.push({
        key,
        swiftName: escapeIdentifier(swiftMemberName(key)),
        type: r.type,
        required: required.has(key),
        nullable: r.nullable,
        integer: r.integer,
        ...(doc ? { doc } : {}),
      });
    }
    const names = new Set<string>();
    for (const f of fields) {
      if (names.has(f.swiftName))
        throw new CodegenError(
          `${where(def, f.key)}: two properties map to the Swift name ${f.swiftName}`,
        );
      names.add(f.swiftName);
    }
    const doc = s.description as string | undefined;
    return {
      kind: "struct",
      name: swift,
      ...(doc ? { doc } : {}),
      fields,
      ...(tag ? { tag } : {}),
    };
  };

  interface Resolved {
    type: string;
    nullable: boolean;
    integer: boolean;
    doc?: string;
  }
  const resolve = (
    p: JsonSchema,
    ctx: { def: string; key: string; parentSwift: string },
  ): Resolved => {
    const at = where(ctx.def, ctx.key);
    if (typeof p.$ref === "string") {
      const target = p.$ref.slice(REF.length);
      const t = defs[target];
      if (!t) throw new CodegenError(`${at}: refers to ${target}, which is not in the schema`);
      const isDecl =
        opts.unions[target] !== undefined ||
        (t.type === "string" && Array.isArray(t.enum)) ||
        (t.type === "object" && t.properties !== undefined);
      if (isDecl) return { type: emitDef(target), nullable: false, integer: false };
      // A plain alias (e.g. `type EpochMsOrNull = EpochMs | null`): inline it.
      const r = resolve(t, ctx);
      const doc = t.description as string | undefined;
      return { ...r, ...(doc && !r.doc ? { doc } : {}) };
    }
    if (Array.isArray(p.anyOf)) {
      const members = p.anyOf as JsonSchema[];
      const nonNull = members.filter((m) => m.type !== "null");
      if (nonNull.length === 1 && members.length === 2)
        return { ...resolve(nonNull[0]!, ctx), nullable: true };
      throw new CodegenError(
        `${at}: a union that is not a configured discriminated union (add it to "unions" with its literal tag property, or use one type)`,
      );
    }
    let type = p.type;
    let nullable = false;
    if (Array.isArray(type)) {
      nullable = type.includes("null");
      const rest = (type as string[]).filter((t) => t !== "null");
      if (rest.length !== 1)
        throw new CodegenError(
          `${at}: a value of several JSON types (${rest.join(", ")}) has no Swift type`,
        );
      type = rest[0];
    }
    switch (type) {
      case "integer":
        return { type: "Int", nullable, integer: true };
      case "number":
        // typescript-json-schema renders `bigint` as a number with an empty "properties".
        if (p.properties !== undefined)
          throw new CodegenError(`${at}: bigint has no JSON representation; use number or string`);
        return { type: "Double", nullable, integer: false };
      case "boolean":
        return { type: "Bool", nullable, integer: false };
      case "string": {
        if (Array.isArray(p.enum) && p.const === undefined && (p.enum as unknown[]).length > 1) {
          const name = inlineTypeName(ctx.parentSwift, ctx.key);
          claim(name, `${ctx.def}.${ctx.key}`);
          decls.set(name, {
            kind: "enum",
            name,
            cases: (p.enum as string[]).map((value) => ({ name: enumCase(value, at), value })),
          });
          return { type: name, nullable, integer: false };
        }
        return { type: "String", nullable, integer: false };
      }
      case "array": {
        if (!p.items || Array.isArray(p.items))
          throw new CodegenError(`${at}: tuples and untyped arrays have no Swift type`);
        const r = resolve(p.items as JsonSchema, { ...ctx, key: `${ctx.key}Item` });
        return { type: `[${r.type}${r.nullable ? "?" : ""}]`, nullable, integer: r.integer };
      }
      case "object": {
        if (p.properties && Object.keys(p.properties).length > 0) {
          if (p.additionalProperties && typeof p.additionalProperties === "object")
            throw new CodegenError(
              `${at}: an index signature next to named properties has no Swift struct form`,
            );
          const name = inlineTypeName(ctx.parentSwift, ctx.key);
          claim(name, `${ctx.def}.${ctx.key}`);
          decls.set(name, structDecl(name, ctx.def, p, undefined));
          return { type: name, nullable, integer: false };
        }
        const ap = p.additionalProperties;
        if (ap && typeof ap === "object" && Object.keys(ap).length > 0) {
          const r = resolve(ap as JsonSchema, { ...ctx, key: `${ctx.key}Value` });
          return {
            type: `[String: ${r.type}${r.nullable ? "?" : ""}]`,
            nullable,
            integer: r.integer,
          };
        }
        if (ap === false)
          // typescript-json-schema renders function types (and `{}`) as an empty closed object.
          throw new CodegenError(
            `${at}: a function type or empty object type cannot be serialized`,
          );
        usesJSONValue = true;
        return { type: "[String: JSONValue]", nullable, integer: false };
      }
      case undefined:
        if (Object.keys(p).filter((k) => k !== "description").length === 0) {
          usesJSONValue = true; // `unknown`
          return { type: "JSONValue", nullable, integer: false };
        }
        throw new CodegenError(`${at}: unsupported schema ${JSON.stringify(p)}`);
      default:
        throw new CodegenError(`${at}: unsupported JSON type ${JSON.stringify(type)}`);
    }
  };

  for (const r of opts.roots) emitDef(r);
  for (const reserved of ["JSONValue", "EmptyCodingKeys"])
    if (origin.has(reserved))
      throw new CodegenError(
        `${origin.get(reserved)}: the Swift name ${reserved} is reserved for the generated helper; rename the type`,
      );
  const sorted = [...decls.values()].sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
  );
  return { decls: sorted, usesJSONValue };
}
