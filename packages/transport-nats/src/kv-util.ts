/** Lazily opened KV buckets and Object Stores, shared by the adapters of this package. */

import { ErrorCode, MeshError } from '@meshroute/mesh';
import { type KV, Kvm } from '@nats-io/kv';
import { type ObjectStore, Objm } from '@nats-io/obj';
import type { MeshConnection } from './connection.js';
import { mapNatsError } from './errors.js';

/** A function that opens `bucket` once and returns the same handle afterwards (retrying after a failure). */
export function lazyKv(conn: MeshConnection, bucket: string): () => Promise<KV> {
  let p: Promise<KV> | undefined;
  return () => {
    if (p === undefined) {
      p = openKv(conn, bucket).catch((err: unknown) => {
        p = undefined;
        throw err;
      });
    }
    return p;
  };
}

async function openKv(conn: MeshConnection, bucket: string): Promise<KV> {
  const jsm = await conn.jetstreamManager();
  try {
    await jsm.streams.info(`KV_${bucket}`);
  } catch (err) {
    if (/not found/i.test((err as Error).message)) {
      throw new MeshError(
        ErrorCode.NOT_FOUND,
        `KV bucket ${bucket} not found: run provisionMesh (meshroute up) first`,
        { cause: err },
      );
    }
    throw mapNatsError(err, `open KV bucket ${bucket}`, conn.info.jetstreamTimeoutMs);
  }
  try {
    return await new Kvm(conn.js).open(bucket);
  } catch (err) {
    throw mapNatsError(err, `open KV bucket ${bucket}`, conn.info.jetstreamTimeoutMs);
  }
}

/** Like {@link lazyKv}, for an Object Store bucket. */
export function lazyObjectStore(conn: MeshConnection, bucket: string): () => Promise<ObjectStore> {
  let p: Promise<ObjectStore> | undefined;
  return () => {
    if (p === undefined) {
      p = (async () => {
        const jsm = await conn.jetstreamManager();
        try {
          await jsm.streams.info(`OBJ_${bucket}`);
        } catch (err) {
          if (/not found/i.test((err as Error).message)) {
            throw new MeshError(
              ErrorCode.NOT_FOUND,
              `object store ${bucket} not found: run provisionMesh (meshroute up) first`,
              { cause: err },
            );
          }
          throw mapNatsError(err, `open object store ${bucket}`, conn.info.jetstreamTimeoutMs);
        }
        try {
          return await new Objm(conn.js).open(bucket);
        } catch (err) {
          throw mapNatsError(err, `open object store ${bucket}`, conn.info.jetstreamTimeoutMs);
        }
      })().catch((err: unknown) => {
        p = undefined;
        throw err;
      });
    }
    return p;
  };
}
