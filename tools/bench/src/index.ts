export { median, percentile, measure } from "./stats.js";
export type { BenchContext, BenchResult, Benchmark } from "./runner.js";
export { findBenchmarks, formatTable } from "./runner.js";
