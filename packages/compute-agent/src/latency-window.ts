/** A sliding window of the last N execution times, for the heartbeat's p50/p99. */

/** Default number of samples kept. */
export const DEFAULT_LATENCY_WINDOW_SIZE = 512;

/** Percentiles over the last samples. */
export interface LatencyWindow {
  /** Add one duration, ms. */
  record(ms: number): void;
  /** p50 and p99 of the samples in the window (0 when empty). */
  percentiles(): { p50Ms: number; p99Ms: number; count: number };
}

function rank(sorted: Float64Array, q: number): number {
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx] ?? 0;
}

/** Create a window of at most `size` samples (a ring buffer). */
export function createLatencyWindow(size: number = DEFAULT_LATENCY_WINDOW_SIZE): LatencyWindow {
  const ring = new Float64Array(size);
  let next = 0;
  let count = 0;
  return {
    record(ms) {
      ring[next] = ms;
      next = (next + 1) % size;
      if (count < size) count++;
    },
    percentiles() {
      if (count === 0) return { p50Ms: 0, p99Ms: 0, count: 0 };
      const sorted = ring.slice(0, count).sort();
      return { p50Ms: rank(sorted, 0.5), p99Ms: rank(sorted, 0.99), count };
    },
  };
}
