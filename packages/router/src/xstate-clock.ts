import type { Clock } from '@meshroute/mesh';

/** The clock interface XState actors accept (`createActor(machine, { clock })`). */
export interface XStateClock {
  setTimeout(fn: (...args: unknown[]) => void, timeout: number): unknown;
  clearTimeout(id: unknown): void;
}

/** Adapt a meshroute {@link Clock} to XState's clock so that machine delays follow the injected time. */
export function toXStateClock(clock: Clock): XStateClock {
  return {
    setTimeout: (fn, timeout) => clock.setTimeout(() => fn(), timeout),
    clearTimeout: (id) => {
      if (typeof id === 'function') (id as () => void)();
    },
  };
}
