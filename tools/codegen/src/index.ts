export { CONFIG_FILE, loadConfig, type CodegenConfig, type LoadedConfig } from "./config.js";
export { generateAll, staleFiles, type Generated, type Vector } from "./generate.js";
export { buildDocument, rootSchemas, type JsonSchema } from "./json-schema.js";
export { kebab, swiftMemberName, swiftTypeName } from "./naming.js";
export { renderSqlSwift, type SqlConstantSpec, type SqlStatementSpec } from "./sql-swift.js";
export { renderSwift } from "./swift-emit.js";
export {
  lintExpectations,
  lintSwift,
  type LintExpectation,
  type LintProblem,
  type LintRule,
} from "./swift-lint.js";
export { CodegenError } from "./errors.js";
export { buildSwiftModel, type SwiftDecl, type SwiftModel } from "./swift-model.js";
export { checkSwiftSyntax, type SwiftSyntaxProblem } from "./swift-syntax.js";
