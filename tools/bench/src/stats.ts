/** Median of a sample (mean of the two middle values for even sizes). */
export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Percentile with linear interpolation between closest ranks (p in 0..100). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new Error("percentile of an empty sample");
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  return a + (b - a) * (rank - lo);
}

/** Runs `fn` `warmup` times unmeasured, then `iterations` times; returns each duration in ms. */
export async function measure(
  fn: () => unknown,
  opts: { iterations: number; warmup?: number },
): Promise<number[]> {
  for (let i = 0; i < (opts.warmup ?? 0); i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < opts.iterations; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return times;
}
