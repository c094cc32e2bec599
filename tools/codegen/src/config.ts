/** The codegen config file (`lichen-codegen.json`): every input and output path, relative to it. */
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { CodegenError } from "./errors.js";

export interface CodegenConfig {
  /** TypeScript files whose exported types are the contract (and an optional tsconfig for compiler options). */
  input: { files: string[]; tsconfig?: string };
  /** Root types: one JSON Schema file each, all emitted to Swift (with what they reference). */
  types: string[];
  /** Discriminated unions: type name -> tag property holding a string literal in every variant. */
  unions?: Record<string, string>;
  jsonSchema: {
    /** Directory for `<kebab-type>.schema.json`. */
    dir: string;
    /** `$id` prefix (default "https://example.invalid/schemas/"). */
    idBase?: string;
    /** Optional TS module exporting the schemas as constants, for runtime validators. */
    tsModule?: string;
  };
  swift: {
    /** Output file. */
    file: string;
    /** SwiftPM module (target) name the file belongs to; named in the header. */
    module: string;
    /** Swift case names for enum values that are not identifiers, e.g. { "*": "broadcast" }. */
    caseNames?: Record<string, string>;
  };
  vectors?: {
    /** `<kebab-type>/{valid,invalid}/<name>.json`. Read as input unless `generator` writes it. */
    dir: string;
    /** JS module (relative path) exporting `VECTORS`, written into `dir`. */
    generator?: string;
    /** The vectors as one JSON file for the Swift tests (a SwiftPM test resource). */
    swiftResource?: string;
  };
  sql?: {
    /** JS module (relative path) exporting the statements (see SqlStatementSpec). */
    module: string;
    /** Export name (default "sqlContract"). */
    export?: string;
    /** Optional export returning `{ name, doc, value: string | string[] }[]`, emitted as constants. */
    constants?: string;
    /** Swift output file. */
    swiftFile: string;
    /** Name of the Swift namespace enum. */
    name: string;
  };
}

export interface LoadedConfig extends CodegenConfig {
  /** Absolute path of the config file. */
  path: string;
  /** Directory paths are relative to. */
  root: string;
}

export const CONFIG_FILE = "lichen-codegen.json";

const isStr = (v: unknown): v is string => typeof v === "string" && v.length > 0;
const isStrMap = (v: unknown) =>
  v !== null &&
  typeof v === "object" &&
  !Array.isArray(v) &&
  Object.values(v as object).every(isStr);

/** Loads and checks a config file; errors name the file and the offending field. */
export function loadConfig(path: string): LoadedConfig {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new CodegenError(`${abs}: config file not found`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(abs, "utf8"));
  } catch (e) {
    throw new CodegenError(`${abs}: not JSON (${(e as Error).message})`);
  }
  const c = raw as Partial<CodegenConfig>;
  const bad = (field: string, want: string) =>
    new CodegenError(`${abs}: "${field}" must be ${want}`);
  if (!c || typeof c !== "object") throw bad("(root)", "an object");
  if (
    !c.input ||
    !Array.isArray(c.input.files) ||
    !c.input.files.length ||
    !c.input.files.every(isStr)
  )
    throw bad("input.files", "a non-empty array of paths");
  if (c.input.tsconfig !== undefined && !isStr(c.input.tsconfig))
    throw bad("input.tsconfig", "a path");
  if (!Array.isArray(c.types) || !c.types.length || !c.types.every(isStr))
    throw bad("types", "a non-empty array of type names");
  if (c.unions !== undefined && !isStrMap(c.unions))
    throw bad("unions", "an object of type name -> tag property");
  if (!c.jsonSchema || !isStr(c.jsonSchema.dir)) throw bad("jsonSchema.dir", "a path");
  if (!c.swift || !isStr(c.swift.file) || !c.swift.file.endsWith(".swift"))
    throw bad("swift.file", "a path ending in .swift");
  if (!isStr(c.swift.module) || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(c.swift.module))
    throw bad("swift.module", "a Swift module name");
  if (c.swift.caseNames !== undefined && !isStrMap(c.swift.caseNames))
    throw bad("swift.caseNames", "an object of value -> Swift case name");
  if (c.vectors !== undefined && !isStr(c.vectors.dir)) throw bad("vectors.dir", "a path");
  if (
    c.sql !== undefined &&
    (!isStr(c.sql.module) || !isStr(c.sql.swiftFile) || !isStr(c.sql.name))
  )
    throw bad("sql", "{ module, swiftFile, name }");
  return { ...(c as CodegenConfig), path: abs, root: dirname(abs) };
}
