export { generateAll, staleFiles } from "./generate.js";
export { checkSwiftSyntax, type SwiftSyntaxProblem } from "./swift-syntax.js";
export { VECTORS, type Vector } from "./vectors.js";
export { ROOT_TYPES, UNIONS, kebab } from "./roots.js";
