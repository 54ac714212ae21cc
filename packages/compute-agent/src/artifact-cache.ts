/**
 * A bounded (by bytes) least-recently-used cache of artifacts in front of the
 * {@link ArtifactStore}: each digest is fetched once (concurrent requests share the fetch),
 * its sha256 verified, then kept until the cache needs the room.
 */
import { createHash } from 'node:crypto';
import { type ArtifactStore, ErrorCode, MeshError, WorkloadError } from '@meshroute/mesh';

/** Default artifact cache size: 256 MiB. */
export const DEFAULT_ARTIFACT_CACHE_BYTES = 256 * 1024 * 1024;

const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;

/** Counters of an {@link ArtifactCache}. */
export interface ArtifactCacheStats {
  /** Artifacts held. */
  entries: number;
  /** Bytes held. */
  bytes: number;
  /** Requests answered from the cache. */
  hits: number;
  /** Fetches from the store. */
  fetches: number;
  /** Artifacts evicted to make room. */
  evictions: number;
}

/** The agent's artifact cache. */
export interface ArtifactCache {
  /**
   * The verified bytes of `digest`.
   * @throws WorkloadError `ARTIFACT_ERROR` when missing, unreadable or not matching the digest
   */
  get(digest: string): Promise<Uint8Array>;
  /** Counters. */
  stats(): ArtifactCacheStats;
}

/** The `sha256:<hex>` digest of bytes. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * Create an artifact cache holding at most `maxBytes` (an artifact larger than that is still
 * served, just not kept).
 */
export function createArtifactCache(
  store: ArtifactStore,
  maxBytes: number = DEFAULT_ARTIFACT_CACHE_BYTES,
): ArtifactCache {
  // Map iteration order is insertion order: the first key is the least recently used.
  const entries = new Map<string, Uint8Array>();
  const pending = new Map<string, Promise<Uint8Array>>();
  let bytes = 0;
  let hits = 0;
  let fetches = 0;
  let evictions = 0;

  async function fetchVerified(digest: string): Promise<Uint8Array> {
    if (!DIGEST_RE.test(digest)) {
      throw new WorkloadError(
        ErrorCode.ARTIFACT_ERROR,
        `artifact digest ${JSON.stringify(digest)} is not sha256:<64 hex>`,
      );
    }
    fetches++;
    let data: Uint8Array | undefined;
    try {
      data = await store.get(digest);
    } catch (cause) {
      const retryable = cause instanceof MeshError ? cause.retryable : true;
      throw new WorkloadError(
        ErrorCode.ARTIFACT_ERROR,
        `artifact ${digest} could not be fetched: ${(cause as Error).message}`,
        {
          cause,
          retryable,
          details: { digest },
        },
      );
    }
    if (data === undefined) {
      throw new WorkloadError(ErrorCode.ARTIFACT_ERROR, `artifact ${digest} is not in the artifact store`, {
        details: { digest },
      });
    }
    const actual = sha256Digest(data);
    if (actual !== digest) {
      throw new WorkloadError(
        ErrorCode.ARTIFACT_ERROR,
        `artifact ${digest} failed verification: its bytes hash to ${actual}`,
        {
          details: { digest, actual },
        },
      );
    }
    if (data.byteLength <= maxBytes) {
      entries.set(digest, data);
      bytes += data.byteLength;
      for (const [key, value] of entries) {
        if (bytes <= maxBytes) break;
        entries.delete(key);
        bytes -= value.byteLength;
        evictions++;
      }
    }
    return data;
  }

  return {
    get(digest) {
      const hit = entries.get(digest);
      if (hit) {
        hits++;
        entries.delete(digest);
        entries.set(digest, hit);
        return Promise.resolve(hit);
      }
      let p = pending.get(digest);
      if (!p) {
        p = fetchVerified(digest).finally(() => pending.delete(digest));
        pending.set(digest, p);
      }
      return p;
    },
    stats: () => ({ entries: entries.size, bytes, hits, fetches, evictions }),
  };
}
