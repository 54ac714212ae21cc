/**
 * The {@link StateStore} conformance suite: run against `memoryStateStore` (router) and
 * `redisStateStore` (store-redis), and against any future adapter.
 */
import { ErrorCode, type StateStore, type StoredOutcome } from '@meshroute/mesh';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../wait.js';

/** What a suite factory returns: a fresh, empty store, and how to move its time. */
export interface StateStoreFixture {
  store: StateStore;
  /**
   * Move the store's time forward (a simulated clock). Without it, the suite waits in real time
   * (short TTLs, polled with a deadline).
   */
  advance?: (ms: number) => void | Promise<void>;
  /** Called after each test (after `store.close()`). */
  cleanup?: () => void | Promise<void>;
}

/** A factory of fresh stores: each call must return an empty store (e.g. a new key prefix). */
export type StateStoreFactory = () => StateStoreFixture | StateStore | Promise<StateStoreFixture | StateStore>;

const outcome = (n: number): StoredOutcome => ({
  outcome: 'succeeded',
  recordedAtMs: 1_700_000_000_000 + n,
  result: {
    schema: 'meshroute.result/v1',
    workId: `w-${n}`,
    eventId: `e-${n}`,
    eventSource: '/test',
    agentId: 'edge-1',
    attempt: 1,
    ok: true,
    output: { n, nested: [1, 'two', null] },
    contentType: 'application/json',
    queueMs: 0.5,
    executionMs: 2,
    finishedAtMs: 1_700_000_000_100,
  },
});

const failedOutcome: StoredOutcome = {
  outcome: 'dead-lettered',
  recordedAtMs: 1_700_000_000_000,
  error: {
    code: ErrorCode.RETRIES_EXHAUSTED,
    message: 'gave up after 3 attempts',
    retryable: false,
    details: { n: 3 },
  },
};

function isStore(v: StateStoreFixture | StateStore): v is StateStore {
  return typeof (v as StateStore).claim === 'function';
}

/**
 * Register the StateStore conformance tests under `describe(name)`.
 * @example runStateStoreSuite('memoryStateStore', () => { const clock = simulatedClock(); return { store: memoryStateStore({ clock }), advance: (ms) => clock.advance(ms) }; });
 */
export function runStateStoreSuite(name: string, factory: StateStoreFactory): void {
  describe(`StateStore conformance: ${name}`, () => {
    let fx: StateStoreFixture;
    let store: StateStore;
    // Real-time stores need TTLs long enough that a slow CI machine does not expire them mid-test.
    const shortTtl = () => (fx.advance ? 1_000 : 300);

    /** Let `ms` pass, then wait until `check` holds (at once with a simulated clock). */
    const elapse = async (ms: number, what: string, check: () => Promise<boolean>): Promise<void> => {
      if (fx.advance) {
        await fx.advance(ms);
        expect(await check(), what).toBe(true);
      } else {
        await waitFor(what, async () => (await check()) || undefined, { timeoutMs: ms + 10_000, intervalMs: 25 });
      }
    };

    beforeEach(async () => {
      const made = await factory();
      fx = isStore(made) ? { store: made } : made;
      store = fx.store;
    });
    afterEach(async () => {
      await store.close();
      await fx.cleanup?.();
    });

    describe('idempotency claims', () => {
      it('claims a key once; another owner sees in-progress with the owner id; the owner may claim again', async () => {
        expect(await store.claim('k1', 'router-a', 60_000)).toEqual({ kind: 'claimed' });
        expect(await store.claim('k1', 'router-b', 60_000)).toMatchObject({ kind: 'in-progress', ownerId: 'router-a' });
        expect(await store.claim('k1', 'router-a', 60_000)).toEqual({ kind: 'claimed' });
        expect(await store.claim('k2', 'router-b', 60_000)).toEqual({ kind: 'claimed' });
      });

      it('tells another owner how long the claim still lasts (expiresInMs), when it tells at all', async () => {
        expect(await store.claim('k3', 'router-a', 30_000)).toEqual({ kind: 'claimed' });
        const seen = await store.claim('k3', 'router-b', 60_000);
        expect(seen.kind).toBe('in-progress');
        if (seen.kind === 'in-progress' && seen.expiresInMs !== undefined) {
          expect(seen.expiresInMs).toBeGreaterThan(0);
          expect(seen.expiresInMs).toBeLessThanOrEqual(30_000);
        }
      });

      it('is exclusive under concurrency: exactly one of 25 concurrent claimants wins', async () => {
        const owners = Array.from({ length: 25 }, (_, i) => `router-${i}`);
        const claims = await Promise.all(owners.map((o) => store.claim('hot', o, 60_000)));
        const winners = owners.filter((_, i) => claims[i]?.kind === 'claimed');
        expect(winners).toHaveLength(1);
        for (const c of claims)
          if (c.kind !== 'claimed') expect(c).toMatchObject({ kind: 'in-progress', ownerId: winners[0] });
      });

      it('returns the completed outcome (deeply equal) to every later claimant and from outcome()', async () => {
        expect(await store.outcome('k')).toBeUndefined();
        await store.claim('k', 'router-a', 60_000);
        const o = outcome(1);
        await store.complete('k', o, 60_000);
        expect(await store.outcome('k')).toEqual(o);
        const later = await Promise.all(['router-a', 'router-b', 'router-c'].map((r) => store.claim('k', r, 60_000)));
        for (const c of later) expect(c).toEqual({ kind: 'completed', result: o });
        await store.complete('dlq', failedOutcome, 60_000);
        expect(await store.claim('dlq', 'router-b', 60_000)).toEqual({ kind: 'completed', result: failedOutcome });
      });

      it('hands out copies: changing a returned outcome does not change the stored one', async () => {
        const o = outcome(2);
        await store.complete('k', o, 60_000);
        const got = await store.outcome('k');
        if (got?.result) got.result.workId = 'changed';
        o.outcome = 'failed';
        expect(await store.outcome('k')).toEqual(outcome(2));
      });

      it('lets only the owner release a claim; after release another owner can claim', async () => {
        await store.claim('k', 'router-a', 60_000);
        await store.release('k', 'router-b');
        expect(await store.claim('k', 'router-b', 60_000)).toMatchObject({ kind: 'in-progress', ownerId: 'router-a' });
        await store.release('k', 'router-a');
        expect(await store.claim('k', 'router-b', 60_000)).toEqual({ kind: 'claimed' });
        await store.release('never-claimed', 'router-a');
        expect(await store.outcome('k')).toBeUndefined();
      });

      it('release does not drop a completed outcome', async () => {
        await store.claim('k', 'router-a', 60_000);
        await store.complete('k', outcome(3), 60_000);
        await store.release('k', 'router-a');
        expect(await store.claim('k', 'router-b', 60_000)).toEqual({ kind: 'completed', result: outcome(3) });
      });

      it('expires an abandoned claim after its TTL, so another owner can take over', async () => {
        const ttl = shortTtl();
        await store.claim('k', 'router-a', ttl);
        expect(await store.claim('k', 'router-b', ttl)).toMatchObject({ kind: 'in-progress' });
        await elapse(
          ttl + 1,
          'the claim to expire',
          async () => (await store.claim('k', 'router-b', 60_000)).kind === 'claimed',
        );
        expect(await store.claim('k', 'router-a', 60_000)).toMatchObject({ kind: 'in-progress', ownerId: 'router-b' });
      });

      it('forgets a completed outcome after its TTL', async () => {
        const ttl = shortTtl();
        await store.claim('k', 'router-a', 60_000);
        await store.complete('k', outcome(4), ttl);
        expect(await store.outcome('k')).toEqual(outcome(4));
        await elapse(ttl + 1, 'the outcome to expire', async () => (await store.outcome('k')) === undefined);
        expect(await store.claim('k', 'router-b', 60_000)).toEqual({ kind: 'claimed' });
      });

      it('rejects invalid TTLs and empty keys or owners with CONFIG_ERROR', async () => {
        await expect(store.claim('k', 'a', 0)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
        await expect(store.claim('k', 'a', Number.NaN)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
        await expect(store.claim('', 'a', 1_000)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
        await expect(store.claim('k', '', 1_000)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
        await expect(store.complete('k', outcome(1), -5)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
      });
    });

    describe('tenant budgets', () => {
      it('spends until the limit, then refuses without spending and says when the window frees', async () => {
        const windowMs = 60_000;
        expect(await store.spend('acme', 40, 100, windowMs)).toEqual({ allowed: true, remaining: 60, retryAfterMs: 0 });
        expect(await store.spend('acme', 60, 100, windowMs)).toEqual({ allowed: true, remaining: 0, retryAfterMs: 0 });
        const refused = await store.spend('acme', 1, 100, windowMs);
        expect(refused.allowed).toBe(false);
        expect(refused.remaining).toBe(0);
        expect(refused.retryAfterMs).toBeGreaterThan(0);
        expect(refused.retryAfterMs).toBeLessThanOrEqual(windowMs);
        expect(await store.spend('acme', 0, 100, windowMs)).toEqual({ allowed: true, remaining: 0, retryAfterMs: 0 });
      });

      it('refuses a spend that would overshoot, leaving the remainder for smaller spends', async () => {
        await store.spend('acme', 70, 100, 60_000);
        const r = await store.spend('acme', 31, 100, 60_000);
        expect(r).toMatchObject({ allowed: false, remaining: 30 });
        expect(await store.spend('acme', 30, 100, 60_000)).toEqual({ allowed: true, remaining: 0, retryAfterMs: 0 });
        expect((await store.spend('other', 101, 100, 60_000)).allowed).toBe(false);
      });

      it('never overspends under 50 concurrent spends', async () => {
        const results = await Promise.all(Array.from({ length: 50 }, () => store.spend('acme', 7, 100, 60_000)));
        const allowed = results.filter((r) => r.allowed);
        expect(allowed).toHaveLength(14);
        const remainders = allowed.map((r) => r.remaining).sort((a, b) => a - b);
        expect(remainders).toEqual(Array.from({ length: 14 }, (_, i) => 2 + 7 * i));
        for (const r of results.filter((x) => !x.allowed)) expect(r.remaining).toBe(2);
        expect(await store.spend('acme', 2, 100, 60_000)).toEqual({ allowed: true, remaining: 0, retryAfterMs: 0 });
      });

      it('keeps tenants apart and starts a fresh budget when the window ends', async () => {
        const windowMs = shortTtl();
        expect((await store.spend('a', 10, 10, windowMs)).allowed).toBe(true);
        expect(await store.spend('b', 4, 10, windowMs)).toEqual({ allowed: true, remaining: 6, retryAfterMs: 0 });
        expect((await store.spend('a', 1, 10, windowMs)).allowed).toBe(false);
        await elapse(
          windowMs + 1,
          'the budget window to end',
          async () => (await store.spend('a', 3, 10, windowMs)).allowed,
        );
      });

      it('rejects invalid amounts, limits and windows with CONFIG_ERROR', async () => {
        await expect(store.spend('a', -1, 10, 1_000)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
        await expect(store.spend('a', 1.5, 10, 1_000)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
        await expect(store.spend('a', 1, -10, 1_000)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
        await expect(store.spend('a', 1, 10, 0)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
        await expect(store.spend('', 1, 10, 1_000)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
      });
    });

    describe('rate limits', () => {
      it('allows `limit` hits per window with a falling remainder, then refuses with retryAfterMs', async () => {
        const windowMs = 60_000;
        const seen = [];
        for (let i = 0; i < 3; i++) seen.push(await store.hit('ip:1', 3, windowMs));
        expect(seen).toEqual([
          { allowed: true, remaining: 2, retryAfterMs: 0 },
          { allowed: true, remaining: 1, retryAfterMs: 0 },
          { allowed: true, remaining: 0, retryAfterMs: 0 },
        ]);
        const refused = await store.hit('ip:1', 3, windowMs);
        expect(refused).toMatchObject({ allowed: false, remaining: 0 });
        expect(refused.retryAfterMs).toBeGreaterThan(0);
        expect(refused.retryAfterMs).toBeLessThanOrEqual(windowMs);
        expect(await store.hit('ip:2', 3, windowMs)).toEqual({ allowed: true, remaining: 2, retryAfterMs: 0 });
      });

      it('counts several hits at once (a batch), refusing a count that goes over the limit', async () => {
        const windowMs = 60_000;
        expect(await store.hit('batch', 5, windowMs, 3)).toEqual({ allowed: true, remaining: 2, retryAfterMs: 0 });
        const over = await store.hit('batch', 5, windowMs, 3);
        expect(over).toMatchObject({ allowed: false, remaining: 0 });
        expect(over.retryAfterMs).toBeGreaterThan(0);
        expect(over.retryAfterMs).toBeLessThanOrEqual(windowMs);
        await expect(store.hit('batch', 5, windowMs, 0)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
      });

      it('admits exactly `limit` of 30 concurrent hits', async () => {
        const results = await Promise.all(Array.from({ length: 30 }, () => store.hit('burst', 10, 60_000)));
        expect(results.filter((r) => r.allowed)).toHaveLength(10);
      });

      it('opens a new window after windowMs', async () => {
        const windowMs = shortTtl();
        await store.hit('k', 1, windowMs);
        expect((await store.hit('k', 1, windowMs)).allowed).toBe(false);
        await elapse(
          windowMs + 1,
          'the rate-limit window to end',
          async () => (await store.hit('k', 1, windowMs)).allowed,
        );
      });

      it('rejects invalid limits and windows with CONFIG_ERROR', async () => {
        await expect(store.hit('k', 0, 1_000)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
        await expect(store.hit('k', 2.5, 1_000)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
        await expect(store.hit('k', 1, -1)).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR });
      });
    });

    describe('lifecycle', () => {
      it('is healthy while open, and close() is idempotent', async () => {
        expect(await store.healthy()).toBe(true);
        await store.close();
        await store.close();
      });
    });
  });
}
