/** Renders SQL statements (built by the caller, e.g. from Drizzle's `.toSQL()`) as Swift constants. */
import { CodegenError } from "./errors.js";

export interface SqlStatementSpec {
  /** Swift constant name (lowerCamelCase). */
  name: string;
  /** What it does and when to run it (Swift doc comment). */
  doc: string;
  sql: string;
  /** Bound parameters, in `?` order. */
  params: string[];
  /** Result columns, in order (empty/absent: no rows). */
  returns?: string[];
}

/** A constant next to the statements (e.g. expected migration hashes). */
export interface SqlConstantSpec {
  name: string;
  doc: string;
  value: string | string[];
}

export function renderSqlSwift(
  name: string,
  specs: SqlStatementSpec[],
  header: string,
  constants: SqlConstantSpec[] = [],
): string {
  const seen = new Set<string>();
  const body = specs.map((s) => {
    if (!/^[a-z][A-Za-z0-9]*$/.test(s.name))
      throw new CodegenError(
        `SQL statement name ${JSON.stringify(s.name)} is not a lowerCamelCase Swift name`,
      );
    if (seen.has(s.name)) throw new CodegenError(`SQL statement ${s.name} is defined twice`);
    seen.add(s.name);
    const placeholders = (s.sql.match(/\?/g) ?? []).length;
    if (placeholders !== s.params.length)
      throw new CodegenError(
        `SQL statement ${s.name}: ${placeholders} "?" but ${s.params.length} parameters named`,
      );
    if (s.sql.includes('"""')) throw new CodegenError(`SQL statement ${s.name} contains """`);
    const doc = wrap(s.doc.trim(), 96).map((l) => `    /// ${l}`.trimEnd());
    const params = s.params.length
      ? [
          "    ///",
          "    /// Parameters, in order:",
          ...s.params.map((p, i) => `    /// ${i + 1}. \`${p}\``),
        ]
      : [];
    const returns = s.returns?.length
      ? ["    ///", `    /// Returns: ${s.returns.map((r) => `\`${r}\``).join(", ")}.`]
      : [];
    const sql = s.sql
      .replace(/\\/g, "\\\\")
      .split("\n")
      .map((l) => `            ${l}`)
      .join("\n");
    return [
      ...doc,
      ...params,
      ...returns,
      `    public static let ${s.name} = Statement(`,
      `        sql: """`,
      sql,
      `            """,`,
      `        parameters: [${s.params.map((p) => JSON.stringify(p)).join(", ")}],`,
      `        returns: [${(s.returns ?? []).map((p) => JSON.stringify(p)).join(", ")}]`,
      `    )`,
    ].join("\n");
  });
  return `${header}
import Foundation

/// The SQL a native process runs against the shared database, generated from the TypeScript
/// store's own queries. Bind parameters positionally (\`sqlite3_bind_*\`, 1-based) in the order of
/// \`parameters\`; read result columns in the order of \`returns\`.
public enum ${name} {
    /// One statement with its bound-parameter order.
    public struct Statement: Hashable, Sendable {
        public let sql: String
        public let parameters: [String]
        public let returns: [String]
    }

${body.join("\n\n")}
${constants
  .map((c) => {
    if (!/^[a-z][A-Za-z0-9]*$/.test(c.name))
      throw new CodegenError(
        `SQL constant name ${JSON.stringify(c.name)} is not a lowerCamelCase Swift name`,
      );
    const doc = wrap(c.doc.trim(), 96).map((l) => `    /// ${l}`.trimEnd());
    const value = Array.isArray(c.value)
      ? `[String] = [\n${c.value.map((v) => `        ${JSON.stringify(v)},`).join("\n")}\n    ]`
      : `= ${JSON.stringify(c.value)}`;
    return `\n${doc.join("\n")}\n    public static let ${c.name}${Array.isArray(c.value) ? ": " : " "}${value}`;
  })
  .join("\n")}

    /// Every statement, for checks and logging.
    public static let all: [String: Statement] = ${
      specs.length
        ? `[\n${specs.map((s) => `        ${JSON.stringify(s.name)}: ${s.name},`).join("\n")}\n    ]`
        : "[:]"
    }
}
`;
}

/** Greedy word wrap, keeping explicit line breaks. */
function wrap(text: string, width: number): string[] {
  return text.split("\n").flatMap((para) => {
    const lines: string[] = [];
    let line = "";
    for (const w of para.split(/\s+/).filter(Boolean)) {
      if (line && line.length + 1 + w.length > width) {
        lines.push(line);
        line = w;
      } else line = line ? `${line} ${w}` : w;
    }
    return [...lines, line];
  });
}
