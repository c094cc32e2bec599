/* global module */
// Import rules checked by `npm run lint` (dependency-cruiser): no import cycles anywhere, and the
// package map of DESIGN.md — a library's src imports only the @lichen packages below it; an app
// imports its library and what that library builds on. Tests and benches may use tools/ (test
// kit, real servers), so the map applies to src/ only.

/** A rule: files under `from` may import from no workspace folder but `allowed` (and their own). */
function layer(name, from, allowed) {
  const own = `^${from}/`;
  return {
    name,
    severity: "error",
    comment: `${from}/src may import only ${allowed.join(", ") || "nothing"} of ours (DESIGN.md package map)`,
    from: { path: `${own}src/` },
    to: {
      path: "^(packages|apps|tools)/",
      pathNot: [own, ...allowed.map((p) => `^${p}/`)],
    },
  };
}

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "Import cycles (type-only imports included) make modules impossible to read alone.",
      from: {},
      to: { circular: true },
    },
    {
      name: "workspace-package-resolved",
      severity: "error",
      comment:
        "An @lichen import that does not resolve cannot be checked against the package map: build first (npm run build).",
      from: {},
      to: { couldNotResolve: true, path: "^@lichen/" },
    },
    layer("schema-imports-nothing-of-ours", "packages/schema", []),
    layer("store-imports-schema-only", "packages/store", ["packages/schema"]),
    layer("engine-imports-store-schema", "packages/engine", ["packages/store", "packages/schema"]),
    layer("appserver-imports-schema", "packages/appserver", ["packages/schema"]),
    // A plugin (GPL-3.0): nothing of ours may import it, it builds on the engine.
    layer("omemo-imports-engine-store-schema", "packages/omemo", [
      "packages/engine",
      "packages/store",
      "packages/schema",
    ]),
    {
      name: "nothing-imports-omemo",
      severity: "error",
      comment: "@lichen/omemo is GPL-3.0: MIT code must not import it (apps load it as a plugin).",
      from: { path: "^packages/(?!omemo/)[^/]+/src/" },
      to: { path: "^packages/omemo/" },
    },
    layer("chat-app-imports-engine", "apps/chat", [
      "packages/engine",
      "packages/store",
      "packages/schema",
    ]),
    // Its demo mode drives the APNs/FCM simulators instead of the real providers.
    layer("push-server-imports-appserver", "apps/push-server", [
      "packages/appserver",
      "packages/schema",
      "tools/push-simulators",
    ]),
    // The roster view reads through the engine's listRoster (loaded lazily, for that command only).
    layer("store-explorer-imports-store-engine", "apps/store-explorer", [
      "packages/store",
      "packages/engine",
      "packages/schema",
    ]),
  ],
  options: {
    // Another package's built dist is where an @lichen import resolves: seen (the package map
    // checks its path) but not followed (each package's own src is cruised on its own).
    doNotFollow: { path: ["node_modules", "^(packages|apps|tools)/[^/]+/dist/"] },
    exclude: { path: "(^|/)(node_modules|dist-bench)/" },
    // Type-only imports count: a module that imports types back from its user is still a cycle.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.base.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["lichen-source", "import", "types", "default"],
      extensions: [".ts", ".js", ".mjs", ".d.ts"],
    },
    // Workspace packages are symlinks into packages/: resolve them to their folders there.
    preserveSymlinks: false,
  },
};
