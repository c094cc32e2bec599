import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

interface SyntaxNode {
  type: string;
  isMissing: boolean;
  hasError: boolean;
  startPosition: { row: number; column: number };
  children: SyntaxNode[];
}

export interface SwiftSyntaxProblem {
  line: number;
  column: number;
  kind: "ERROR" | "MISSING";
  node: string;
}

let parser: { parse(src: string): { rootNode: SyntaxNode } } | null = null;

/** Parses Swift with tree-sitter-swift and lists every ERROR or MISSING node (no Swift toolchain here). */
export function checkSwiftSyntax(source: string): SwiftSyntaxProblem[] {
  if (!parser) {
    const Parser = require("tree-sitter") as new () => {
      setLanguage(l: unknown): void;
      parse(s: string): { rootNode: SyntaxNode };
    };
    const p = new Parser();
    p.setLanguage(require("tree-sitter-swift"));
    parser = p;
  }
  // tree-sitter's default input buffer is 32 KiB; use a callback so large files parse whole.
  const tree = (
    parser as unknown as { parse(input: (i: number) => string | null): { rootNode: SyntaxNode } }
  ).parse((index: number) => (index < source.length ? source.slice(index, index + 16_384) : null));
  const problems: SwiftSyntaxProblem[] = [];
  const walk = (n: SyntaxNode): void => {
    if (n.type === "ERROR" || n.isMissing) {
      problems.push({
        line: n.startPosition.row + 1,
        column: n.startPosition.column + 1,
        kind: n.type === "ERROR" ? "ERROR" : "MISSING",
        node: n.type,
      });
    }
    if (n.hasError || n.type === "ERROR") for (const c of n.children) walk(c);
  };
  walk(tree.rootNode);
  return problems;
}
