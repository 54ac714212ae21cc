/** The workload registry: `meshroute.workload/v1` specs in a NATS KV bucket, one key per name. */

import {
  decodeMessage,
  encodeMessage,
  type Logger,
  type MeshNames,
  meshNames,
  noopLogger,
  parseMessage,
  type WorkloadSpec,
} from '@meshroute/mesh';
import type { KvEntry } from '@nats-io/kv';
import type { MeshConnection } from './connection.js';
import { mapNatsError } from './errors.js';
import { lazyKv } from './kv-util.js';

/** A change in the registry, as seen by {@link WorkloadRegistry.watch}. */
export type WorkloadChange =
  | { type: 'put'; spec: WorkloadSpec; revision: number }
  | { type: 'delete'; name: string; revision: number };

/** The workload registry. */
export interface WorkloadRegistry {
  /**
   * Validate and store a spec under its name. Returns the KV revision.
   * @throws InvalidMessageError when the spec fails `meshroute.workload/v1`
   */
  put(spec: WorkloadSpec): Promise<number>;
  /** The spec registered under `name`, or `undefined`. */
  get(name: string): Promise<WorkloadSpec | undefined>;
  /** Every registered spec, sorted by name. Entries that fail validation are skipped and logged. */
  list(): Promise<WorkloadSpec[]>;
  /** Remove a workload. */
  delete(name: string): Promise<void>;
  /**
   * Call `handler` with every current spec, then with each change. Returns a function that
   * stops watching.
   */
  watch(handler: (change: WorkloadChange) => void): Promise<() => void>;
}

/** Options of {@link natsWorkloadRegistry}. */
export interface NatsWorkloadRegistryOptions {
  /** @default meshNames() */
  names?: MeshNames;
  /** @default noopLogger */
  logger?: Logger;
}

const NAME_RE = /^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$/;

/**
 * The {@link WorkloadRegistry} on the KV bucket `names.buckets.workloads`.
 * @example
 * await natsWorkloadRegistry(conn).put(spec);
 */
export function natsWorkloadRegistry(
  conn: MeshConnection,
  options: NatsWorkloadRegistryOptions = {},
): WorkloadRegistry {
  const names = options.names ?? meshNames();
  const log = (options.logger ?? noopLogger).child({ component: 'nats-workload-registry' });
  const kv = lazyKv(conn, names.buckets.workloads);
  const timeoutMs = conn.info.jetstreamTimeoutMs;

  const decode = (e: KvEntry): WorkloadSpec | undefined => {
    try {
      return decodeMessage('meshroute.workload/v1', e.value);
    } catch (err) {
      log.warn('invalid workload spec in registry skipped', { key: e.key, error: (err as Error).message });
      return undefined;
    }
  };

  return {
    async put(spec) {
      const valid = parseMessage('meshroute.workload/v1', spec);
      const bucket = await kv();
      try {
        return await bucket.put(valid.name, encodeMessage('meshroute.workload/v1', valid));
      } catch (err) {
        throw mapNatsError(err, `register workload ${valid.name}`, timeoutMs);
      }
    },
    async get(name) {
      if (!NAME_RE.test(name)) return undefined;
      const bucket = await kv();
      let e: KvEntry | null;
      try {
        e = await bucket.get(name);
      } catch (err) {
        throw mapNatsError(err, `read workload ${name}`, timeoutMs);
      }
      if (e === null || e.operation !== 'PUT') return undefined;
      return decode(e);
    },
    async list() {
      const bucket = await kv();
      try {
        const keys: string[] = [];
        for await (const k of await bucket.keys()) keys.push(k);
        const entries = await Promise.all(keys.map((k) => bucket.get(k)));
        return entries
          .flatMap((e) => (e !== null && e.operation === 'PUT' ? [decode(e)] : []))
          .filter((s): s is WorkloadSpec => s !== undefined)
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      } catch (err) {
        throw mapNatsError(err, 'list workloads', timeoutMs);
      }
    },
    async delete(name) {
      if (!NAME_RE.test(name)) return;
      const bucket = await kv();
      try {
        await bucket.delete(name);
      } catch (err) {
        throw mapNatsError(err, `delete workload ${name}`, timeoutMs);
      }
    },
    async watch(handler) {
      const bucket = await kv();
      const iter = await bucket.watch();
      void (async () => {
        for await (const e of iter) {
          if (e.operation === 'PUT') {
            const spec = decode(e);
            if (spec !== undefined) handler({ type: 'put', spec, revision: e.revision });
          } else {
            handler({ type: 'delete', name: e.key, revision: e.revision });
          }
        }
      })().catch((err: unknown) => log.error('workload watch ended', { error: (err as Error).message }));
      return () => iter.stop();
    },
  };
}
