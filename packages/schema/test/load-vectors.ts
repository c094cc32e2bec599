import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The repository's schemas/ folder (JSON Schema files and test vectors). */
export const schemasDir = join(import.meta.dirname, "..", "..", "..", "schemas");

export interface Vector {
  /** Root type in kebab case, e.g. "account-state" (the folder name). */
  type: string;
  kind: "valid" | "invalid";
  name: string;
  text: string;
}

/** Every committed vector, schemas/vectors/<type>/<valid|invalid>/<name>.json. */
export function loadVectors(): Vector[] {
  const vectorDir = join(schemasDir, "vectors");
  return readdirSync(vectorDir).flatMap((type) =>
    (["valid", "invalid"] as const).flatMap((kind) => {
      let files: string[];
      try {
        files = readdirSync(join(vectorDir, type, kind));
      } catch {
        files = []; // a type may have only one kind yet; the coverage tests say which
      }
      return files.map((name) => ({
        type,
        kind,
        name,
        text: readFileSync(join(vectorDir, type, kind, name), "utf8"),
      }));
    }),
  );
}
