/**
 * A {@link Clock} whose time moves only when a test says so. Timers fire in due order during
 * {@link SimulatedClock.advance}, each with the clock set to its due time; timers scheduled while
 * advancing fire in the same call when they fall inside the window.
 */
import type { CancelTimer, Clock } from '@meshroute/mesh';

/** A clock for tests. */
export interface SimulatedClock extends Clock {
  /**
   * Move time forward by `ms`, firing every timer due on the way, in order (equal due times in
   * the order they were scheduled).
   */
  advance(ms: number): void;
  /**
   * Like {@link advance}, but lets pending promise callbacks run after each timer (for code that
   * awaits between timers). Resolves when time has reached the target.
   */
  advanceAsync(ms: number): Promise<void>;
  /** Fire everything that is due now, without moving time. */
  runDue(): void;
  /** Number of timers scheduled and not yet fired or cancelled. */
  pendingTimers(): number;
  /** Due time (epoch ms) of the next timer, if any. */
  nextTimerAtMs(): number | undefined;
}

interface Timer {
  id: number;
  dueMs: number;
  fn: () => void;
}

/**
 * A simulated clock starting at `startMs` (epoch ms). `monotonicMs()` starts at 0.
 * @example
 * const clock = simulatedClock(Date.parse('2025-01-01T00:00:00Z'));
 * clock.setTimeout(() => fired.push('a'), 100);
 * clock.advance(100); // fires 'a'
 */
export function simulatedClock(startMs = 0): SimulatedClock {
  let elapsedMs = 0;
  let nextId = 1;
  const timers: Timer[] = [];

  const nextDue = (limitMs: number): Timer | undefined => {
    let best: Timer | undefined;
    for (const t of timers) {
      if (t.dueMs > limitMs) continue;
      if (!best || t.dueMs < best.dueMs || (t.dueMs === best.dueMs && t.id < best.id)) best = t;
    }
    return best;
  };
  const take = (t: Timer): void => {
    const i = timers.indexOf(t);
    if (i >= 0) timers.splice(i, 1);
  };
  const checkMs = (ms: number): void => {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`advance: ms must be a finite number >= 0, got ${ms}`);
  };

  const clock: SimulatedClock = {
    now: () => startMs + elapsedMs,
    monotonicMs: () => elapsedMs,
    setTimeout(fn, delayMs): CancelTimer {
      const t: Timer = { id: nextId++, dueMs: elapsedMs + Math.max(0, Number.isFinite(delayMs) ? delayMs : 0), fn };
      timers.push(t);
      return () => take(t);
    },
    advance(ms) {
      checkMs(ms);
      const target = elapsedMs + ms;
      for (let t = nextDue(target); t; t = nextDue(target)) {
        take(t);
        elapsedMs = Math.max(elapsedMs, t.dueMs);
        t.fn();
      }
      elapsedMs = target;
    },
    async advanceAsync(ms) {
      checkMs(ms);
      const target = elapsedMs + ms;
      await flushMicrotasks();
      for (let t = nextDue(target); t; t = nextDue(target)) {
        take(t);
        elapsedMs = Math.max(elapsedMs, t.dueMs);
        t.fn();
        await flushMicrotasks();
      }
      elapsedMs = target;
      await flushMicrotasks();
    },
    runDue() {
      clock.advance(0);
    },
    pendingTimers: () => timers.length,
    nextTimerAtMs() {
      const t = nextDue(Number.POSITIVE_INFINITY);
      return t ? startMs + t.dueMs : undefined;
    },
  };
  return clock;
}

async function flushMicrotasks(): Promise<void> {
  // A macrotask boundary lets every queued promise callback (and their follow-ups) run.
  await new Promise<void>((resolve) => setImmediate(resolve));
}
