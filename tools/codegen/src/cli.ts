#!/usr/bin/env node
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { generateAll, staleFiles } from "./generate.js";
import { checkSwiftSyntax } from "./swift-syntax.js";

const HELP = `lichen-codegen — JSON Schema, TS validator schemas, test vectors and Swift types from packages/schema

Usage: npm run codegen [-- --check] [-- --root DIR]
  (no flag)  regenerate schemas/, schemas/vectors/, packages/schema/src/generated/, apps/swift-nse/
  --check    regenerate in memory, fail (exit 1) listing files that differ from the committed ones,
             and parse every .swift file under apps/swift-nse with tree-sitter-swift (ERROR/MISSING fail)
`;

function swiftFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return f === ".build" ? [] : swiftFiles(p);
    return f.endsWith(".swift") ? [p] : [];
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      check: { type: "boolean" },
      help: { type: "boolean", short: "h" },
      root: { type: "string" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const root = resolve(values.root ?? process.cwd());
  if (!existsSync(join(root, "packages/schema/src/types/index.ts"))) {
    process.stderr.write(
      `codegen: ${root} is not the Lichen repository root (no packages/schema/src/types)\n`,
    );
    return 1;
  }
  const log = (m: string) => process.stderr.write(`[codegen] ${m}\n`);
  const files = await generateAll(root, log);
  const stale = staleFiles(root, files);
  if (values.check) {
    const differing = [...files]
      .filter(([p, c]) => !existsSync(join(root, p)) || readFileSync(join(root, p), "utf8") !== c)
      .map(([p]) => p);
    const problems: string[] = [];
    for (const f of swiftFiles(join(root, "apps/swift-nse"))) {
      const text =
        f.endsWith("LichenSchema.swift") &&
        files.has("apps/swift-nse/Sources/LichenSchema/LichenSchema.swift")
          ? files.get("apps/swift-nse/Sources/LichenSchema/LichenSchema.swift")!
          : readFileSync(f, "utf8");
      for (const p of checkSwiftSyntax(text))
        problems.push(
          `${f.slice(root.length + 1)}:${p.line}:${p.column}: ${p.kind} node (${p.node})`,
        );
    }
    log(
      `${files.size} generated files checked, ${swiftFiles(join(root, "apps/swift-nse")).length} Swift files parsed`,
    );
    if (differing.length || stale.length || problems.length) {
      for (const p of differing) process.stderr.write(`out of date: ${p}\n`);
      for (const p of stale) process.stderr.write(`stale (no longer generated): ${p}\n`);
      for (const p of problems) process.stderr.write(`swift syntax: ${p}\n`);
      if (differing.length || stale.length)
        process.stderr.write("run `npm run codegen` and commit the result\n");
      return 1;
    }
    log("up to date; Swift parses cleanly");
    return 0;
  }
  for (const p of stale) rmSync(join(root, p));
  let written = 0;
  for (const [p, content] of files) {
    const abs = join(root, p);
    if (existsSync(abs) && readFileSync(abs, "utf8") === content) continue;
    mkdirSync(dirname(abs), { recursive: true });
    writeFileSync(abs, content);
    written++;
  }
  log(
    `${written} file(s) written, ${files.size - written} unchanged, ${stale.length} stale removed`,
  );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(
      `codegen: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
