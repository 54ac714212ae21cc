/** The {@link ArtifactStore} conformance suite (memory fake, NATS Object Store). */
import { createHash } from 'node:crypto';
import { type ArtifactStore, ErrorCode } from '@meshroute/mesh';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

/** What an artifact-store suite factory returns. */
export interface ArtifactStoreFixture {
  store: ArtifactStore;
  cleanup?: () => void | Promise<void>;
}

/** A factory of fresh, empty artifact stores. */
export type ArtifactStoreFactory = () =>
  | ArtifactStoreFixture
  | ArtifactStore
  | Promise<ArtifactStoreFixture | ArtifactStore>;

/** A plain Uint8Array view (a Buffer is a Uint8Array too, but not deeply equal to one). */
const plain = (b: Uint8Array | undefined) =>
  b === undefined ? undefined : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
const hex = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/**
 * Register the ArtifactStore conformance tests under `describe(name)`.
 * @example runArtifactStoreSuite('memoryArtifactStore', () => memoryArtifactStore());
 */
export function runArtifactStoreSuite(name: string, factory: ArtifactStoreFactory): void {
  describe(`ArtifactStore conformance: ${name}`, () => {
    let fx: ArtifactStoreFixture;
    let store: ArtifactStore;
    beforeEach(async () => {
      const made = await factory();
      fx = 'store' in made ? made : { store: made };
      store = fx.store;
    });
    afterEach(async () => {
      await fx.cleanup?.();
    });

    it('stores bytes under their sha256 digest and returns them verified', async () => {
      const bytes = new TextEncoder().encode('(module)');
      const info = await store.put('checksum.wasm', bytes);
      expect(info).toEqual({ digest: hex(bytes), sizeBytes: bytes.length, name: 'checksum.wasm' });
      expect(await store.has(info.digest)).toBe(true);
      expect(plain(await store.get(info.digest))).toEqual(bytes);
    });

    it('is idempotent: the same bytes twice give the same digest', async () => {
      const bytes = Uint8Array.from([1, 2, 3, 4]);
      const a = await store.put('a.bin', bytes);
      const b = await store.put('a.bin', Uint8Array.from([1, 2, 3, 4]));
      expect(b.digest).toBe(a.digest);
      expect(b.sizeBytes).toBe(4);
      expect(plain(await store.get(a.digest))).toEqual(bytes);
    });

    it('round-trips empty and 1 MiB artifacts byte for byte', async () => {
      const empty = await store.put('empty', new Uint8Array(0));
      expect(empty.sizeBytes).toBe(0);
      expect(plain(await store.get(empty.digest))).toEqual(new Uint8Array(0));
      const big = new Uint8Array(1024 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
      const info = await store.put('model.onnx', big);
      expect(info.digest).toBe(hex(big));
      const back = await store.get(info.digest);
      expect(back?.length).toBe(big.length);
      expect(back && hex(back)).toBe(info.digest);
    });

    it('answers undefined / false for a digest it does not hold', async () => {
      const missing = hex(new TextEncoder().encode('never stored'));
      expect(await store.get(missing)).toBeUndefined();
      expect(await store.has(missing)).toBe(false);
    });

    it('rejects a malformed digest on get with ARTIFACT_ERROR and says false on has', async () => {
      for (const bad of ['sha256:abc', 'md5:0123', `sha256:${'G'.repeat(64)}`, '']) {
        await expect(store.get(bad)).rejects.toMatchObject({ code: ErrorCode.ARTIFACT_ERROR });
        expect(await store.has(bad)).toBe(false);
      }
    });
  });
}
