import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The repository's schemas/ folder (JSON Schema files and test vectors). */
export const schemasDir = join(import.meta.dirname, "..", "..", "..", "schemas");

export interface SchemaVector {
  /** Root type in kebab case, e.g. "account-state" (the folder name). */
  type: string;
  kind: "valid" | "invalid";
  /** File name, e.g. "minimal.json". */
  name: string;
  /** `<type>/<kind>/<name>`, for test titles. */
  id: string;
  /** The file's text, unparsed (some invalid vectors test the parser). */
  text: string;
}

/** Every committed vector, schemas/vectors/<type>/<valid|invalid>/<name>.json. */
export function loadSchemaVectors(dir: string = schemasDir): SchemaVector[] {
  const vectorDir = join(dir, "vectors");
  return readdirSync(vectorDir).flatMap((type) =>
    (["valid", "invalid"] as const).flatMap((kind) => {
      let files: string[];
      try {
        files = readdirSync(join(vectorDir, type, kind));
      } catch {
        files = []; // a type may have only one kind yet; the schema package's coverage test says which
      }
      return files.map((name) => ({
        type,
        kind,
        name,
        id: `${type}/${kind}/${name}`,
        text: readFileSync(join(vectorDir, type, kind, name), "utf8"),
      }));
    }),
  );
}
