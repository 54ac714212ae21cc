import { describe, expect, it } from 'vitest';
import { simulatedClock } from './simulated-clock.js';

describe('simulatedClock', () => {
  it('starts where told and moves only on advance', () => {
    const clock = simulatedClock(1_000);
    expect(clock.now()).toBe(1_000);
    expect(clock.monotonicMs()).toBe(0);
    clock.advance(250);
    expect(clock.now()).toBe(1_250);
    expect(clock.monotonicMs()).toBe(250);
  });

  it('fires due timers in due order, at their due time, equal times in scheduling order', () => {
    const clock = simulatedClock(0);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`c@${clock.now()}`), 30);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
    clock.setTimeout(() => fired.push(`b1@${clock.now()}`), 20);
    clock.setTimeout(() => fired.push(`b2@${clock.now()}`), 20);
    clock.advance(25);
    expect(fired).toEqual(['a@10', 'b1@20', 'b2@20']);
    expect(clock.now()).toBe(25);
    expect(clock.pendingTimers()).toBe(1);
    expect(clock.nextTimerAtMs()).toBe(30);
    clock.advance(5);
    expect(fired).toEqual(['a@10', 'b1@20', 'b2@20', 'c@30']);
  });

  it('fires timers scheduled by timers inside the same window, and not cancelled ones', () => {
    const clock = simulatedClock();
    const fired: number[] = [];
    const tick = () => {
      fired.push(clock.now());
      if (fired.length < 5) clock.setTimeout(tick, 100);
    };
    clock.setTimeout(tick, 100);
    const cancel = clock.setTimeout(() => fired.push(-1), 50);
    cancel();
    clock.advance(350);
    expect(fired).toEqual([100, 200, 300]);
    clock.advance(1_000);
    expect(fired).toEqual([100, 200, 300, 400, 500]);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('advanceAsync lets awaited code schedule the next timer', async () => {
    const clock = simulatedClock();
    const seen: number[] = [];
    const wait = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
    const loop = (async () => {
      for (let i = 0; i < 3; i++) {
        await wait(10);
        seen.push(clock.now());
      }
    })();
    await clock.advanceAsync(30);
    await loop;
    expect(seen).toEqual([10, 20, 30]);
  });

  it('rejects a negative advance', () => {
    expect(() => simulatedClock().advance(-1)).toThrow(/ms must be a finite number >= 0/);
  });
});
