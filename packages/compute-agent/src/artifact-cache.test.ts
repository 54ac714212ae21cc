import { ErrorCode, MeshError } from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import { createArtifactCache, sha256Digest } from './artifact-cache.js';
import { countingArtifactStore } from './test-support/fakes.js';

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);

describe('artifact cache', () => {
  it('fetches each digest once, even for concurrent requests', async () => {
    const s = countingArtifactStore();
    const { digest } = await s.store.put('a', bytes(10, 1));
    const cache = createArtifactCache(s.store, 1_000);
    const all = await Promise.all([cache.get(digest), cache.get(digest), cache.get(digest)]);
    expect(all.every((b) => b.byteLength === 10)).toBe(true);
    await cache.get(digest);
    expect(s.gets()).toBe(1);
    expect(cache.stats()).toMatchObject({ entries: 1, bytes: 10, fetches: 1, hits: 1 });
  });

  it('evicts the least recently used artifacts to stay within its byte bound', async () => {
    const s = countingArtifactStore();
    const a = (await s.store.put('a', bytes(40, 1))).digest;
    const b = (await s.store.put('b', bytes(40, 2))).digest;
    const c = (await s.store.put('c', bytes(40, 3))).digest;
    const cache = createArtifactCache(s.store, 100);
    await cache.get(a);
    await cache.get(b);
    await cache.get(a); // a is now the most recent
    await cache.get(c); // evicts b
    expect(cache.stats()).toMatchObject({ entries: 2, bytes: 80, evictions: 1 });
    const before = s.gets();
    await cache.get(a);
    expect(s.gets()).toBe(before);
    await cache.get(b);
    expect(s.gets()).toBe(before + 1);
  });

  it('serves an artifact larger than the cache without keeping it', async () => {
    const s = countingArtifactStore();
    const big = (await s.store.put('big', bytes(200, 9))).digest;
    const cache = createArtifactCache(s.store, 100);
    expect((await cache.get(big)).byteLength).toBe(200);
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0 });
  });

  it('fails with ARTIFACT_ERROR for a missing, tampered, malformed or unreachable artifact', async () => {
    const s = countingArtifactStore();
    const cache = createArtifactCache(s.store, 100);
    const missing = sha256Digest(bytes(3, 3));
    await expect(cache.get(missing)).rejects.toMatchObject({
      code: ErrorCode.ARTIFACT_ERROR,
      message: expect.stringContaining('not in the artifact store'),
    });
    s.corrupt(missing, bytes(3, 4));
    await expect(cache.get(missing)).rejects.toThrow(/failed verification/);
    await expect(cache.get('md5:abc')).rejects.toThrow(/not sha256:<64 hex>/);
    const broken = createArtifactCache(
      {
        ...s.store,
        get: () => Promise.reject(new MeshError(ErrorCode.TRANSPORT_ERROR, 'no route', { retryable: true })),
      },
      100,
    );
    await expect(broken.get(missing)).rejects.toMatchObject({ code: ErrorCode.ARTIFACT_ERROR, retryable: true });
    // a failed fetch is not cached: the next call asks again
    s.corrupt(missing, bytes(3, 3));
    expect((await cache.get(missing)).byteLength).toBe(3);
  });
});
