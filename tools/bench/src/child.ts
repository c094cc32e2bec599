// Runs inside the child process: imports one benchmark module and reports over IPC.
import { pathToFileURL } from "node:url";
import { validateResult, type Benchmark } from "./runner.js";

const [file, mode] = process.argv.slice(2);
const send = (m: object) => process.send?.(m);

try {
  const mod = (await import(pathToFileURL(file!).href)) as { default?: Benchmark };
  if (typeof mod.default !== "function") throw new Error(`${file} has no default export function`);
  const result = validateResult(
    file!,
    await mod.default({ quick: mode === "quick", log: (msg) => send({ kind: "log", msg }) }),
  );
  send({ kind: "result", result });
  process.exitCode = 0;
} catch (err) {
  send({ kind: "error", error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exitCode = 1;
}
// Benchmarks may leave handles (servers, sockets) open: exit once the result is delivered.
setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref();
process.disconnect?.();
