export interface Prng {
  /** A float in [0, 1). */
  (): number;
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** An integer in [lo, hi]. */
  between(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
}

/** mulberry32: small, fast, seedable, so a failing run can be replayed from its printed seed. */
export function prng(seed: number): Prng {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return Object.assign(() => next(), {
    next,
    int,
    between: (lo: number, hi: number) => lo + int(hi - lo + 1),
    pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!,
    chance: (p: number) => next() < p,
  });
}

/** The seed in `process.env[envVar]` (to replay a failure), else a random 32-bit one. */
export function seedFromEnv(envVar = "LICHEN_SEED"): number {
  const fromEnv = process.env[envVar];
  return fromEnv ? Number(fromEnv) >>> 0 : Math.floor(Math.random() * 2 ** 32) >>> 0;
}
