/** An in-memory {@link ArtifactStore}: content-addressed by SHA-256, verified on every get. */
import { createHash } from 'node:crypto';
import { type ArtifactInfo, type ArtifactStore, ErrorCode, MeshError } from '@meshroute/mesh';

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** `sha256:<hex>` of `bytes`. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** The in-memory artifact store, with a hook to simulate tampering. */
export interface MemoryArtifactStore extends ArtifactStore {
  /** Replace the stored bytes of `digest` (without changing the digest), to test verification. */
  corrupt(digest: string, bytes: Uint8Array): void;
  /** Number of stored artifacts. */
  size(): number;
}

function checkDigest(digest: string): void {
  if (typeof digest !== 'string' || !DIGEST_RE.test(digest)) {
    throw new MeshError(
      ErrorCode.ARTIFACT_ERROR,
      `malformed artifact digest ${JSON.stringify(digest)}: expected sha256:<64 hex>`,
      {
        details: { digest, rule: 'digest-format' },
      },
    );
  }
}

/**
 * Create an in-memory ArtifactStore. Same behaviour as the NATS Object Store adapter: `put` is
 * idempotent, `get` returns `undefined` for a missing digest and throws `ARTIFACT_ERROR` for a
 * malformed digest or bytes that no longer match it; `has` is false for a malformed digest.
 */
export function memoryArtifactStore(): MemoryArtifactStore {
  const blobs = new Map<string, { bytes: Uint8Array; name: string }>();
  return {
    async put(name: string, bytes: Uint8Array): Promise<ArtifactInfo> {
      if (!(bytes instanceof Uint8Array)) {
        throw new MeshError(ErrorCode.ARTIFACT_ERROR, `artifact ${name}: bytes must be a Uint8Array`, {
          details: { name, rule: 'bytes-type' },
        });
      }
      const digest = sha256Digest(bytes);
      const existing = blobs.get(digest);
      if (existing) return { digest, sizeBytes: existing.bytes.length, name: existing.name };
      blobs.set(digest, { bytes: new Uint8Array(bytes), name });
      return { digest, sizeBytes: bytes.length, name };
    },
    async get(digest: string): Promise<Uint8Array | undefined> {
      checkDigest(digest);
      const blob = blobs.get(digest);
      if (!blob) return undefined;
      const actual = sha256Digest(blob.bytes);
      if (actual !== digest) {
        throw new MeshError(
          ErrorCode.ARTIFACT_ERROR,
          `artifact ${digest} failed verification: its bytes hash to ${actual}`,
          {
            details: { digest, actual, rule: 'digest-mismatch' },
          },
        );
      }
      return new Uint8Array(blob.bytes);
    },
    async has(digest: string): Promise<boolean> {
      return typeof digest === 'string' && DIGEST_RE.test(digest) && blobs.has(digest);
    },
    corrupt(digest, bytes) {
      const blob = blobs.get(digest);
      if (!blob) throw new MeshError(ErrorCode.NOT_FOUND, `no artifact ${digest} to corrupt`);
      blob.bytes = new Uint8Array(bytes);
    },
    size: () => blobs.size,
  };
}
