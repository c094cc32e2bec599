import { dirname, join } from "node:path";
import * as TJS from "typescript-json-schema";
import { kebab, ROOT_TYPES } from "./roots.js";

export type JsonSchema = Record<string, unknown> & { definitions?: Record<string, JsonSchema> };

/**
 * Runs typescript-json-schema over packages/schema/src/types. Module "ES2022" + "Bundler" keeps
 * definition names clean (NodeNext makes them `import("...").Name`).
 */
export function buildDocument(repoRoot: string): JsonSchema {
  const entry = join(repoRoot, "packages", "schema", "src", "types", "index.ts");
  const program = TJS.getProgramFromFiles(
    [entry],
    {
      strict: true,
      skipLibCheck: true,
      module: "ES2022",
      moduleResolution: "Bundler",
      target: "ES2022",
    } as never,
    dirname(entry),
  );
  const generator = TJS.buildGenerator(program, {
    required: true,
    noExtraProps: true,
    strictNullChecks: true,
    ref: true,
    aliasRef: false,
    topRef: false,
    ignoreErrors: false,
  });
  if (!generator)
    throw new Error("typescript-json-schema could not compile packages/schema/src/types");
  return generator.getSchemaForSymbols([...ROOT_TYPES]) as unknown as JsonSchema;
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
export function rootSchemas(doc: JsonSchema): Record<string, JsonSchema> {
  const out: Record<string, JsonSchema> = {};
  for (const name of ROOT_TYPES) {
    const defs: Record<string, JsonSchema> = {};
    for (const d of [...reachable(doc, name)].sort())
      if (d !== name) defs[d] = doc.definitions![d]!;
    out[name] = {
      $schema: "http://json-schema.org/draft-07/schema#",
      $id: `https://lichen.invalid/schemas/${kebab(name)}.schema.json`,
      title: name,
      ...doc.definitions![name]!,
      ...(Object.keys(defs).length > 0 ? { definitions: defs } : {}),
    };
  }
  return out;
}
