import { relative, resolve } from "node:path";
import ts from "typescript";
import * as TJS from "typescript-json-schema";
import type { LoadedConfig } from "./config.js";
import { kebab } from "./naming.js";
import { CodegenError } from "./errors.js";

export type JsonSchema = Record<string, unknown> & { definitions?: Record<string, JsonSchema> };

export interface SchemaDocument {
  doc: JsonSchema;
  /** Definition name -> file (relative to the config) that declares it. */
  fileOf: (definition: string) => string | undefined;
}

/**
 * Runs typescript-json-schema over the configured input files. Module "ES2022" + "Bundler" keeps
 * definition names clean (NodeNext makes them `import("...").Name`).
 */
export function buildDocument(config: LoadedConfig): SchemaDocument {
  const files = config.input.files.map((f) => resolve(config.root, f));
  let options: ts.CompilerOptions = {};
  if (config.input.tsconfig) {
    const path = resolve(config.root, config.input.tsconfig);
    const read = ts.readConfigFile(path, (p) => ts.sys.readFile(p));
    if (read.error)
      throw new CodegenError(
        `${path}: ${ts.flattenDiagnosticMessageText(read.error.messageText, "\n")}`,
      );
    options = ts.parseJsonConfigFileContent(read.config, ts.sys, resolve(path, "..")).options;
  }
  const compilerOptions: ts.CompilerOptions = {
    ...options,
    strict: true,
    skipLibCheck: true,
    module: ts.ModuleKind.ES2022,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    target: ts.ScriptTarget.ES2022,
    noEmit: true,
  };
  const program = ts.createProgram(files, compilerOptions);
  const diagnostics = ts.getPreEmitDiagnostics(program);
  if (diagnostics.length)
    throw new CodegenError(
      ts.formatDiagnostics(diagnostics, {
        getCanonicalFileName: (f) => f,
        getCurrentDirectory: () => config.root,
        getNewLine: () => "\n",
      }),
    );
  const declared = new Map<string, string>();
  const checker = program.getTypeChecker();
  for (const f of files) {
    const sf = program.getSourceFile(f);
    if (!sf) throw new CodegenError(`${f}: input file not found`);
    const mod = checker.getSymbolAtLocation(sf);
    for (const sym of mod ? checker.getExportsOfModule(mod) : []) {
      const target = sym.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym;
      const decl = target.declarations?.[0];
      if (decl) declared.set(sym.name, relative(config.root, decl.getSourceFile().fileName));
    }
  }
  for (const t of config.types)
    if (!declared.has(t))
      throw new CodegenError(
        `type ${t} (in "types") is not exported by ${config.input.files.join(", ")}`,
      );
  for (const u of Object.keys(config.unions ?? {}))
    if (!declared.has(u))
      throw new CodegenError(
        `union ${u} (in "unions") is not exported by ${config.input.files.join(", ")}`,
      );
  checkSupported(program, config.types, declared, config.root);
  const generator = TJS.buildGenerator(program as never, {
    required: true,
    noExtraProps: true,
    strictNullChecks: true,
    ref: true,
    aliasRef: false,
    topRef: false,
    ignoreErrors: false,
  });
  if (!generator)
    throw new CodegenError(`typescript-json-schema could not compile ${files.join(", ")}`);
  const doc = generator.getSchemaForSymbols([...config.types]) as unknown as JsonSchema;
  restoreNullableIntegers(program, doc);
  return { doc, fileOf: (d) => declared.get(d) };
}

/**
 * Rejects TS constructs JSON cannot carry, before typescript-json-schema silently turns them into
 * `{}` or `number`: function types, bigint, symbol, and index signatures next to named properties.
 */
function checkSupported(
  program: ts.Program,
  roots: string[],
  declared: Map<string, string>,
  root: string,
): void {
  const checker = program.getTypeChecker();
  const seen = new Set<ts.Type>();
  const visit = (type: ts.Type, at: string): void => {
    if (seen.has(type)) return;
    seen.add(type);
    if (type.flags & ts.TypeFlags.BigIntLike)
      throw new CodegenError(`${at}: bigint has no JSON representation`);
    if (type.flags & ts.TypeFlags.ESSymbolLike)
      throw new CodegenError(`${at}: symbol has no JSON representation`);
    if (type.isUnion() || type.isIntersection()) {
      for (const t of type.types) visit(t, at);
      return;
    }
    if (!(type.flags & ts.TypeFlags.Object)) return;
    if (type.getCallSignatures().length || type.getConstructSignatures().length)
      throw new CodegenError(`${at}: a function type cannot be serialized`);
    const element = checker.isArrayType(type)
      ? checker.getTypeArguments(type as ts.TypeReference)[0]
      : undefined;
    if (element) return visit(element, at);
    const props = checker.getPropertiesOfType(type);
    const index = checker.getIndexInfosOfType(type);
    if (index.length && props.length)
      throw new CodegenError(
        `${at}: an index signature next to named properties has no struct form`,
      );
    for (const i of index) visit(i.type, at);
    const owner = type.aliasSymbol?.name ?? type.getSymbol()?.name;
    for (const p of props) {
      const decl = p.valueDeclaration ?? p.declarations?.[0];
      if (!decl) continue;
      const file = relative(root, decl.getSourceFile().fileName);
      const typeName = owner && owner !== "__type" ? owner : at.split(": ").pop()!;
      visit(checker.getTypeOfSymbolAtLocation(p, decl), `${file}: ${typeName}.${p.name}`);
    }
  };
  const sources = new Map<string, ts.Symbol>();
  for (const sf of program.getSourceFiles()) {
    const mod = checker.getSymbolAtLocation(sf);
    if (mod)
      for (const s of checker.getExportsOfModule(mod))
        if (!sources.has(s.name)) sources.set(s.name, s);
  }
  for (const r of roots) {
    const sym = sources.get(r);
    if (!sym) continue;
    const target = sym.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym) : sym;
    visit(checker.getDeclaredTypeOfSymbol(target), `${declared.get(r) ?? "?"}: ${r}`);
  }
}

/**
 * typescript-json-schema drops the annotations of an alias inside a union with null: for
 * `/** @TJS-type integer *\/ type Millis = number`, `paidAt: Millis | null` becomes
 * `["null","number"]` (Swift `Double?`, and the validator accepts 1.5). Put "integer" and the
 * alias's minimum/maximum back, for properties of the input files' interfaces and type literals.
 */
function restoreNullableIntegers(program: ts.Program, doc: JsonSchema): void {
  const checker = program.getTypeChecker();
  const integerAlias = (node: ts.TypeNode): Record<string, number> | null => {
    if (!ts.isTypeReferenceNode(node)) return null;
    let sym = checker.getSymbolAtLocation(node.typeName);
    if (sym && sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
    const decl = sym?.declarations?.find(ts.isTypeAliasDeclaration);
    if (!decl) return null;
    const tags = ts.getJSDocTags(decl);
    const tag = (name: string) => tags.find((t) => t.tagName.text === name);
    const text = (t: ts.JSDocTag | undefined) =>
      typeof t?.comment === "string" ? t.comment.trim() : undefined;
    if (text(tag("TJS-type")) !== "integer") return null;
    const out: Record<string, number> = {};
    for (const k of ["minimum", "maximum"]) {
      const v = Number(text(tag(k)));
      if (text(tag(k)) !== undefined && Number.isFinite(v)) out[k] = v;
    }
    return out;
  };
  const patch = (schema: JsonSchema | undefined, members: ts.NodeArray<ts.TypeElement>): void => {
    const props = schema?.properties as Record<string, JsonSchema> | undefined;
    if (!props) return;
    for (const m of members) {
      if (!ts.isPropertySignature(m) || !m.type || !m.name) continue;
      const p = props[m.name.getText()];
      if (!p) continue;
      if (ts.isTypeLiteralNode(m.type)) patch(p, m.type.members);
      if (!ts.isUnionTypeNode(m.type)) continue;
      const rest = m.type.types.filter(
        (t) => !(ts.isLiteralTypeNode(t) && t.literal.kind === ts.SyntaxKind.NullKeyword),
      );
      const info =
        rest.length === 1 && rest.length < m.type.types.length ? integerAlias(rest[0]!) : null;
      if (!info || !Array.isArray(p.type) || !(p.type as string[]).includes("number")) continue;
      p.type = (p.type as string[]).map((t) => (t === "number" ? "integer" : t));
      for (const [k, v] of Object.entries(info)) if (p[k] === undefined) p[k] = v;
    }
  };
  const visit = (node: ts.Node): void => {
    if (ts.isInterfaceDeclaration(node)) patch(doc.definitions?.[node.name.text], node.members);
    else if (ts.isTypeAliasDeclaration(node) && ts.isTypeLiteralNode(node.type))
      patch(doc.definitions?.[node.name.text], node.type.members);
    ts.forEachChild(node, visit);
  };
  // The input files and the project files they import (not libraries).
  for (const sf of program.getSourceFiles())
    if (!sf.isDeclarationFile && !sf.fileName.includes("/node_modules/")) visit(sf);
}

/** Definitions reachable from `name` (transitively, through $ref). */
function reachable(doc: JsonSchema, name: string, seen = new Set<string>()): Set<string> {
  if (seen.has(name)) return seen;
  seen.add(name);
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === "object") {
      for (const [k, v] of Object.entries(node)) {
        if (k === "$ref" && typeof v === "string" && v.startsWith("#/definitions/")) {
          reachable(doc, v.slice("#/definitions/".length), seen);
        } else walk(v);
      }
    }
  };
  walk(doc.definitions?.[name]);
  return seen;
}

/** One self-contained schema per root type: the root at top level plus the definitions it uses. */
export function rootSchemas(
  doc: JsonSchema,
  roots: string[],
  idBase = "https://example.invalid/schemas/",
): Record<string, JsonSchema> {
  const out: Record<string, JsonSchema> = {};
  for (const name of roots) {
    const defs: Record<string, JsonSchema> = {};
    for (const d of [...reachable(doc, name)].sort())
      if (d !== name) defs[d] = doc.definitions![d]!;
    out[name] = {
      $schema: "http://json-schema.org/draft-07/schema#",
      $id: `${idBase}${kebab(name)}.schema.json`,
      title: name,
      ...doc.definitions![name]!,
      ...(Object.keys(defs).length > 0 ? { definitions: defs } : {}),
    };
  }
  return out;
}
