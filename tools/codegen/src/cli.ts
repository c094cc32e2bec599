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
import { dirname, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { CONFIG_FILE, loadConfig } from "./config.js";
import { generateAll, staleFiles } from "./generate.js";
import { lintSwift } from "./swift-lint.js";
import { checkSwiftSyntax } from "./swift-syntax.js";
import { CodegenError } from "./errors.js";

const HELP = `lichen-codegen — JSON Schema, Swift Codable types, test vectors and a SQL contract from TypeScript types

Usage: lichen-codegen [--config FILE] [--check]
  --config FILE  config file (default ./${CONFIG_FILE}); every path in it is relative to it
  --check        generate in memory; fail (exit 1) listing files that differ from the committed
                 ones, Swift that tree-sitter-swift cannot parse, and semantic lint problems
                 (imports, conformance, undeclared types, required fields, integers)
  (no flag)      write the outputs; still fails on lint problems
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
      config: { type: "string", short: "c" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const config = loadConfig(resolve(values.config ?? CONFIG_FILE));
  const log = (m: string) => process.stderr.write(`[codegen] ${m}\n`);
  const gen = await generateAll(config, log);
  const stale = staleFiles(config, gen);
  // The generated file is linted with the schema's expectations (in generateAll); hand-written
  // files of the same module are linted together with it (imports, conformance, declared types).
  const moduleDir = resolve(config.root, dirname(config.swift.file));
  const generatedSwift = resolve(config.root, config.swift.file);
  const lint = gen.lint.map((p) => `${p.file}:${p.line}: [${p.rule}] ${p.message}`);
  const others = swiftFiles(moduleDir).filter(
    (f) => f !== generatedSwift && !gen.files.has(relative(config.root, f)),
  );
  if (others.length) {
    const module = [...gen.files]
      .filter(([p]) => p.endsWith(".swift") && resolve(config.root, dirname(p)) === moduleDir)
      .map(([, c]) => c);
    const lines = module.join("\n").split("\n").length;
    for (const p of lintSwift(
      [...module, ...others.map((f) => readFileSync(f, "utf8"))].join("\n"),
    ))
      if (p.line > lines) {
        let line = p.line - lines;
        const file = others.find((f) => {
          const n = readFileSync(f, "utf8").split("\n").length;
          if (line <= n) return true;
          line -= n;
          return false;
        });
        lint.push(`${relative(config.root, file ?? moduleDir)}:${line}: [${p.rule}] ${p.message}`);
      }
  }
  // Every Swift file of the generated file's package (hand-written tests included) must parse.
  const swiftRoot = resolve(config.root, dirname(config.swift.file), "..", "..");
  const swiftDir = existsSync(join(swiftRoot, "Package.swift"))
    ? swiftRoot
    : resolve(config.root, dirname(config.swift.file));
  const syntax: string[] = [];
  const parsed = new Set<string>();
  for (const [p, c] of gen.files)
    if (p.endsWith(".swift")) {
      parsed.add(resolve(config.root, p));
      for (const e of checkSwiftSyntax(c))
        syntax.push(`${p}:${e.line}:${e.column}: ${e.kind} node`);
    }
  for (const f of swiftFiles(swiftDir))
    if (!parsed.has(f))
      for (const e of checkSwiftSyntax(readFileSync(f, "utf8")))
        syntax.push(`${relative(config.root, f)}:${e.line}:${e.column}: ${e.kind} node`);

  if (values.check) {
    const differing = [...gen.files]
      .filter(([p, c]) => {
        const abs = resolve(config.root, p);
        return !existsSync(abs) || readFileSync(abs, "utf8") !== c;
      })
      .map(([p]) => p);
    log(`${gen.files.size} generated files compared; Swift parsed and linted`);
    for (const p of differing) process.stderr.write(`out of date: ${p}\n`);
    for (const p of stale) process.stderr.write(`stale (no longer generated): ${p}\n`);
    for (const p of syntax) process.stderr.write(`swift syntax: ${p}\n`);
    for (const p of lint) process.stderr.write(`swift lint: ${p}\n`);
    if (differing.length || stale.length)
      process.stderr.write("run `npm run codegen` and commit the result\n");
    if (differing.length || stale.length || syntax.length || lint.length) return 1;
    log("up to date; Swift parses and lints cleanly");
    return 0;
  }
  for (const p of stale) rmSync(resolve(config.root, p));
  let written = 0;
  for (const [p, content] of gen.files) {
    const abs = resolve(config.root, p);
    if (existsSync(abs) && readFileSync(abs, "utf8") === content) continue;
    mkdirSync(dirname(abs), { recursive: true });
    writeFileSync(abs, content);
    written++;
  }
  log(
    `${written} file(s) written, ${gen.files.size - written} unchanged, ${stale.length} stale removed`,
  );
  for (const p of syntax) process.stderr.write(`swift syntax: ${p}\n`);
  for (const p of lint) process.stderr.write(`swift lint: ${p}\n`);
  return syntax.length || lint.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    // A CodegenError is the user's input (it names file, type and property): no stack trace.
    process.stderr.write(
      `lichen-codegen: ${err instanceof CodegenError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
