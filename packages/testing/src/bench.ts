/**
 * Benchmark helpers. Every benchmark measures meshroute and its baseline in the same run and
 * prints one JSON object per line: `{"bench","unit","p50","p99","baseline","ratio", ...}`.
 * `baseline` is the baseline's p50 in the same unit; `ratio` is ours / baseline for times
 * (lower is better) unless the line says `"higherIsBetter": true` (throughputs).
 */
import { performance } from 'node:perf_hooks';

/** Latency percentiles of a sample. */
export interface Percentiles {
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
  count: number;
}

/** One benchmark line. Extra fields (targets, notes, memory) are allowed. */
export interface BenchLine {
  bench: string;
  unit: string;
  p50: number;
  p99: number;
  baseline: number;
  ratio: number;
  [extra: string]: unknown;
}

/** The `q` quantile (0..1) of an ascending-sorted array. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx] as number;
}

/** Percentiles of unsorted samples. */
export function percentiles(samples: readonly number[]): Percentiles {
  const s = [...samples].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    p50: quantile(s, 0.5),
    p99: quantile(s, 0.99),
    mean: sum / s.length,
    min: s[0] ?? Number.NaN,
    max: s[s.length - 1] ?? Number.NaN,
    count: s.length,
  };
}

/** Options of {@link sampleSync} and {@link sampleAsync}. */
export interface SampleOptions {
  /** Measured iterations. @default 10_000 */
  iterations?: number;
  /** Unmeasured warm-up iterations. @default iterations / 10 */
  warmup?: number;
  /** Calls per measured sample (for sub-microsecond functions). @default 1 */
  batch?: number;
}

/** Time a synchronous function; returns per-call durations in microseconds. */
export function sampleSync(fn: (i: number) => unknown, options: SampleOptions = {}): number[] {
  const iterations = options.iterations ?? 10_000;
  const warmup = options.warmup ?? Math.ceil(iterations / 10);
  const batch = options.batch ?? 1;
  for (let i = 0; i < warmup * batch; i++) fn(i);
  const out = new Array<number>(iterations);
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    for (let j = 0; j < batch; j++) fn(i * batch + j);
    out[i] = ((performance.now() - t0) * 1000) / batch;
  }
  return out;
}

/** Time an async function sequentially; returns per-call durations in microseconds. */
export async function sampleAsync(fn: (i: number) => Promise<unknown>, options: SampleOptions = {}): Promise<number[]> {
  const iterations = options.iterations ?? 1_000;
  const warmup = options.warmup ?? Math.ceil(iterations / 10);
  for (let i = 0; i < warmup; i++) await fn(i);
  const out = new Array<number>(iterations);
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    await fn(i);
    out[i] = (performance.now() - t0) * 1000;
  }
  return out;
}

function round(n: number): number {
  return Number.isFinite(n) ? Math.round(n * 1000) / 1000 : n;
}

/**
 * Build a benchmark line comparing ours with a baseline measured in the same run.
 * @example benchLine('decode', 'us', ours, sdk) // ratio = ours.p50 / sdk.p50
 */
export function benchLine(
  bench: string,
  unit: string,
  ours: Percentiles,
  baseline: Percentiles,
  extra: Record<string, unknown> = {},
): BenchLine {
  return {
    bench,
    unit,
    p50: round(ours.p50),
    p99: round(ours.p99),
    baseline: round(baseline.p50),
    ratio: round(ours.p50 / baseline.p50),
    baseline_p99: round(baseline.p99),
    ...extra,
  };
}

/** Print one benchmark line as JSON on stdout. */
export function reportBench(line: BenchLine): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}
