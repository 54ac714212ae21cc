/**
 * {@link ArtifactStore} on a NATS Object Store bucket: objects are named by their digest
 * (`sha256:<hex>`), so a put of the same bytes is a no-op and every get is verified.
 */
import { createHash } from 'node:crypto';
import {
  type ArtifactInfo,
  type ArtifactStore,
  ErrorCode,
  MeshError,
  type MeshNames,
  meshNames,
} from '@meshroute/mesh';
import type { MeshConnection } from './connection.js';
import { mapNatsError } from './errors.js';
import { lazyObjectStore } from './kv-util.js';

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** `sha256:<hex>` of `bytes`. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Options of {@link natsArtifactStore}. */
export interface NatsArtifactStoreOptions {
  /** @default meshNames() */
  names?: MeshNames;
}

/**
 * An {@link ArtifactStore} on the Object Store bucket `names.artifacts`.
 * - `put(name, bytes)` stores the bytes under their digest (the human `name` is kept as the
 *   object's description); storing bytes already there writes nothing.
 * - `get(digest)` returns the bytes after checking their SHA-256, `undefined` when missing.
 * @throws (from get) MeshError `ARTIFACT_ERROR` for a malformed digest or bytes that do not
 *   match it
 * @example
 * const info = await natsArtifactStore(conn).put('checksum.wasm', bytes); // info.digest
 */
export function natsArtifactStore(conn: MeshConnection, options: NatsArtifactStoreOptions = {}): ArtifactStore {
  const names = options.names ?? meshNames();
  const store = lazyObjectStore(conn, names.artifacts);
  const timeoutMs = conn.info.jetstreamTimeoutMs;

  const checkDigest = (digest: string): void => {
    if (!DIGEST_RE.test(digest)) {
      throw new MeshError(
        ErrorCode.ARTIFACT_ERROR,
        `artifact digest ${JSON.stringify(digest)} is not sha256:<64 lowercase hex>`,
        {
          details: { digest, rule: 'digest-format' },
        },
      );
    }
  };

  return {
    async put(name: string, bytes: Uint8Array): Promise<ArtifactInfo> {
      const digest = sha256Digest(bytes);
      const os = await store();
      try {
        const existing = await os.info(digest);
        if (existing !== null && !existing.deleted && existing.size === bytes.length) {
          return { digest, sizeBytes: existing.size, name: existing.description ?? name };
        }
        const info = await os.putBlob({ name: digest, description: name }, bytes);
        return { digest, sizeBytes: info.size, name };
      } catch (err) {
        throw mapNatsError(err, `store artifact ${name} (${digest})`, timeoutMs);
      }
    },

    async get(digest: string): Promise<Uint8Array | undefined> {
      checkDigest(digest);
      const os = await store();
      let bytes: Uint8Array | null;
      try {
        bytes = await os.getBlob(digest);
      } catch (err) {
        throw new MeshError(
          ErrorCode.ARTIFACT_ERROR,
          `artifact ${digest} could not be read: ${(err as Error).message}`,
          {
            cause: err,
            retryable: true,
            details: { digest },
          },
        );
      }
      if (bytes === null) return undefined;
      const actual = sha256Digest(bytes);
      if (actual !== digest) {
        throw new MeshError(
          ErrorCode.ARTIFACT_ERROR,
          `artifact ${digest} failed verification: its bytes hash to ${actual}`,
          {
            details: { digest, actual, rule: 'digest-mismatch' },
          },
        );
      }
      return bytes;
    },

    async has(digest: string): Promise<boolean> {
      if (!DIGEST_RE.test(digest)) return false;
      const os = await store();
      try {
        const info = await os.info(digest);
        return info !== null && !info.deleted;
      } catch (err) {
        throw mapNatsError(err, `look up artifact ${digest}`, timeoutMs);
      }
    },
  };
}
