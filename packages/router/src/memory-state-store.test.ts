import { ErrorCode } from '@meshroute/mesh';
import { runStateStoreSuite, simulatedClock } from '@meshroute/testing';
import { describe, expect, it } from 'vitest';
import { memoryStateStore } from './memory-state-store.js';

runStateStoreSuite('memoryStateStore (simulated clock)', () => {
  const clock = simulatedClock(1_700_000_000_000);
  return { store: memoryStateStore({ clock }), advance: (ms) => clock.advance(ms) };
});

runStateStoreSuite('memoryStateStore (system clock)', () => memoryStateStore());

describe('memoryStateStore', () => {
  it('refuses work after close()', async () => {
    const store = memoryStateStore();
    await store.close();
    expect(await store.healthy()).toBe(false);
    await expect(store.claim('k', 'a', 1_000)).rejects.toMatchObject({ code: ErrorCode.SHUTTING_DOWN });
  });

  it('sweeps expired entries so a long-running router does not grow without bound', async () => {
    const clock = simulatedClock();
    const store = memoryStateStore({ clock, sweepEveryOps: 10 });
    for (let i = 0; i < 9; i++) await store.claim(`k${i}`, 'a', 100);
    clock.advance(101);
    // The 10th operation sweeps; the expired claims are gone (another owner can take them).
    await store.hit('x', 1, 1_000);
    for (let i = 0; i < 9; i++) expect(await store.claim(`k${i}`, 'b', 100)).toEqual({ kind: 'claimed' });
  });

  it('tells another owner how long the claim still lasts', async () => {
    const clock = simulatedClock();
    const store = memoryStateStore({ clock });
    await store.claim('k', 'router-a', 30_000);
    clock.advance(10_000);
    expect(await store.claim('k', 'router-b', 60_000)).toEqual({
      kind: 'in-progress',
      ownerId: 'router-a',
      expiresInMs: 20_000,
    });
  });

  it('keeps at most maxOutcomes recorded outcomes, dropping the oldest first', async () => {
    const store = memoryStateStore({ maxOutcomes: 3 });
    for (const k of ['a', 'b', 'c']) await store.complete(k, { outcome: 'succeeded', recordedAtMs: 1 }, 60_000);
    // Recording `a` again makes it the newest: `b` is the oldest now.
    await store.complete('a', { outcome: 'failed', recordedAtMs: 2 }, 60_000);
    await store.complete('d', { outcome: 'succeeded', recordedAtMs: 3 }, 60_000);
    expect(await store.outcome('b')).toBeUndefined();
    expect(await store.outcome('a')).toEqual({ outcome: 'failed', recordedAtMs: 2 });
    expect(await store.outcome('c')).toEqual({ outcome: 'succeeded', recordedAtMs: 1 });
    expect(await store.claim('b', 'r', 1_000)).toEqual({ kind: 'claimed' });
    expect(() => memoryStateStore({ maxOutcomes: 0 })).toThrow(/maxOutcomes/);
  });

  it('reports retryAfterMs from the window start', async () => {
    const clock = simulatedClock();
    const store = memoryStateStore({ clock });
    await store.spend('t', 10, 10, 1_000);
    clock.advance(400);
    expect(await store.spend('t', 1, 10, 1_000)).toEqual({ allowed: false, remaining: 0, retryAfterMs: 600 });
    await store.hit('h', 1, 1_000);
    clock.advance(250);
    expect(await store.hit('h', 1, 1_000)).toEqual({ allowed: false, remaining: 0, retryAfterMs: 750 });
  });
});
