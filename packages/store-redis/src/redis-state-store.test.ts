import { ErrorCode, type MeshError, StoreUnavailableError } from '@meshroute/mesh';
import { runStateStoreSuite, startRedisServer, type TestRedisServer } from '@meshroute/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisStoreStatusEvent, redisStateStore } from './redis-state-store.js';

let redis: TestRedisServer;
let n = 0;
beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await redis?.stop();
});

// Each test gets its own key prefix on the shared server, so stores start empty.
runStateStoreSuite('redisStateStore (store-owned client)', () =>
  redisStateStore(redis.url, { keyPrefix: `suite-${++n}:` }),
);

runStateStoreSuite('redisStateStore (caller-owned client)', () => {
  const client = new Redis(redis.url);
  return {
    store: redisStateStore(client, { keyPrefix: `suite-shared-${++n}:` }),
    cleanup: () => {
      client.disconnect();
    },
  };
});

/** Collect status events into an array and wake waiters. */
function statusRecorder(store: ReturnType<typeof redisStateStore>) {
  const events: RedisStoreStatusEvent[] = [];
  const waiters: { type: string; resolve: () => void }[] = [];
  store.onStatus((e) => {
    events.push(e);
    for (const w of waiters.filter((x) => x.type === e.type)) w.resolve();
  });
  const next = (type: RedisStoreStatusEvent['type']) =>
    events.some((e) => e.type === type)
      ? Promise.resolve()
      : new Promise<void>((resolve) => waiters.push({ type, resolve }));
  return { events, next };
}

describe('redisStateStore', () => {
  it('shares claims and budgets between two stores (two routers) on one Redis', async () => {
    const a = redisStateStore(redis.url, { keyPrefix: 'shared:' });
    const b = redisStateStore(redis.url, { keyPrefix: 'shared:' });
    expect(await a.claim('evt-1', 'router-a', 60_000)).toEqual({ kind: 'claimed' });
    const seen = await b.claim('evt-1', 'router-b', 60_000);
    expect(seen).toMatchObject({ kind: 'in-progress', ownerId: 'router-a' });
    // The remaining claim time comes from Redis (PTTL).
    expect(seen.kind === 'in-progress' ? seen.expiresInMs : undefined).toBeGreaterThan(55_000);
    expect(seen.kind === 'in-progress' ? seen.expiresInMs : undefined).toBeLessThanOrEqual(60_000);
    const spends = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).spend('acme', 3, 100, 60_000)),
    );
    expect(spends.filter((s) => s.allowed)).toHaveLength(33);
    await a.close();
    await b.close();
  });

  it('says degraded while Redis is down (operations fail fast, retryable), then recovers after a restart', async () => {
    const server = await startRedisServer();
    const store = redisStateStore(server.url, { keyPrefix: 'restart:' });
    const rec = statusRecorder(store);
    const statusStream = store.status()[Symbol.asyncIterator]();
    const firstStreamed = statusStream.next();
    expect(await store.claim('k', 'router-a', 60_000)).toEqual({ kind: 'claimed' });
    await rec.next('ready');
    expect(await store.healthy()).toBe(true);

    await server.kill('SIGKILL');
    await rec.next('degraded');
    expect(store.degraded()).toBe(true);
    expect(await store.healthy()).toBe(false);
    const err = await store.claim('k2', 'router-a', 60_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err).toMatchObject({ code: ErrorCode.STORE_UNAVAILABLE, retryable: true });
    await expect(store.spend('acme', 1, 10, 60_000)).rejects.toBeInstanceOf(StoreUnavailableError);

    await server.restart();
    await rec.next('recovered');
    expect(store.degraded()).toBe(false);
    expect(await store.healthy()).toBe(true);
    // Redis came back empty (no persistence): the old claim is gone, the store works again.
    expect(await store.claim('k', 'router-b', 60_000)).toEqual({ kind: 'claimed' });
    expect(rec.events.map((e) => e.type)).toEqual(['ready', 'degraded', 'recovered']);
    const recovered = rec.events[2];
    expect(recovered?.type === 'recovered' && recovered.downMs).toBeGreaterThan(0);
    // The async iterable saw the same events, in order, and ends on close().
    expect((await firstStreamed).value).toMatchObject({ type: 'ready' });
    expect((await statusStream.next()).value).toMatchObject({ type: 'degraded' });
    expect((await statusStream.next()).value).toMatchObject({ type: 'recovered' });
    await store.close();
    expect((await statusStream.next()).done).toBe(true);
    await server.stop();
  });

  it('fails an operation that Redis does not answer in time with StoreUnavailableError', async () => {
    // A server that accepts connections but never answers: SIGSTOP the redis process.
    const server = await startRedisServer();
    const store = redisStateStore(server.url, { keyPrefix: 'stall:', operationTimeoutMs: 200 });
    expect(await store.hit('k', 5, 60_000)).toMatchObject({ allowed: true });
    await server.kill('SIGSTOP');
    try {
      const err = await store.hit('k', 5, 60_000).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as MeshError).message).toMatch(/did not answer hit within 200 ms/);
    } finally {
      await server.kill('SIGCONT');
      await store.close();
      await server.stop();
    }
  });

  it('refuses work after close() with SHUTTING_DOWN, and rejects a bad operation timeout', async () => {
    const store = redisStateStore(redis.url, { keyPrefix: 'closed:' });
    await store.close();
    await expect(store.claim('k', 'a', 1_000)).rejects.toMatchObject({ code: ErrorCode.SHUTTING_DOWN });
    expect(() => redisStateStore(redis.url, { operationTimeoutMs: 0 })).toThrow(/operationTimeoutMs/);
  });
});
