/**
 * The policy store: the active policy bundle's files in a NATS KV bucket, written by
 * `meshroute policy push` and watched by routers for hot reload.
 */

import {
  ErrorCode,
  InvalidMessageError,
  type Logger,
  MeshError,
  type MeshNames,
  meshNames,
  noopLogger,
} from '@meshroute/mesh';
import type { KvEntry } from '@nats-io/kv';
import type { MeshConnection } from './connection.js';
import { mapNatsError } from './errors.js';
import { lazyKv } from './kv-util.js';

/** Schema name of a stored bundle. */
export const POLICY_BUNDLE_SCHEMA = 'meshroute.policy-bundle/v1';
/** The KV key holding the active bundle. */
export const POLICY_BUNDLE_KEY = 'bundle';

/** One policy file. */
export interface PolicyFile {
  /** Path relative to the bundle root, e.g. `residency.policy.yaml`. */
  path: string;
  content: string;
}

/** What `policy push` stores. */
export interface PolicyBundlePush {
  files: PolicyFile[];
  /** The bundle digest computed by `loadBundle` (carried as is). */
  digest: string;
  /** Who pushed it (user, host, CI job). */
  pushedBy: string;
}

/** A stored bundle, as read back. */
export interface StoredPolicyBundle extends PolicyBundlePush {
  schema: typeof POLICY_BUNDLE_SCHEMA;
  /** Epoch ms of the push. */
  pushedAtMs: number;
  /** KV revision: increases with every push. */
  revision: number;
}

/** The policy store. */
export interface PolicyStore {
  /**
   * Store a bundle as the active one. Returns its KV revision.
   * @throws InvalidMessageError when a file has no path or content is not a string
   */
  put(push: PolicyBundlePush): Promise<number>;
  /** The active bundle, or `undefined` when none was pushed. */
  get(): Promise<StoredPolicyBundle | undefined>;
  /**
   * Call `handler` with the active bundle (if any) and with each one pushed later. Invalid
   * entries are logged and skipped. Returns a function that stops watching.
   */
  watch(handler: (bundle: StoredPolicyBundle) => void): Promise<() => void>;
}

/** Options of {@link natsPolicyStore}. */
export interface NatsPolicyStoreOptions {
  /** @default meshNames() */
  names?: MeshNames;
  /** Clock for `pushedAtMs`. @default Date.now */
  nowMs?: () => number;
  /** @default noopLogger */
  logger?: Logger;
}

function validatePush(value: unknown, schema: string): PolicyBundlePush {
  const issues: string[] = [];
  const o = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  if (!Array.isArray(o.files)) issues.push('files: expected an array');
  else {
    const seen = new Set<string>();
    o.files.forEach((f: unknown, i: number) => {
      const fo = (typeof f === 'object' && f !== null ? f : {}) as Record<string, unknown>;
      if (typeof fo.path !== 'string' || fo.path.length === 0)
        issues.push(`files.${i}.path: expected a non-empty string`);
      else if (seen.has(fo.path)) issues.push(`files.${i}.path: duplicate path ${JSON.stringify(fo.path)}`);
      else seen.add(fo.path);
      if (typeof fo.content !== 'string') issues.push(`files.${i}.content: expected a string`);
    });
  }
  if (typeof o.digest !== 'string' || o.digest.length === 0) issues.push('digest: expected a non-empty string');
  if (typeof o.pushedBy !== 'string') issues.push('pushedBy: expected a string');
  if (issues.length > 0) throw new InvalidMessageError(schema, issues);
  return {
    files: (o.files as PolicyFile[]).map((f) => ({ path: f.path, content: f.content })),
    digest: o.digest as string,
    pushedBy: o.pushedBy as string,
  };
}

/**
 * The {@link PolicyStore} on the KV bucket `names.buckets.policies` (history kept per
 * `provisionMesh`'s `policyHistory`).
 * @example
 * await natsPolicyStore(conn).put({ files, digest: loaded.digest, pushedBy: 'ci' });
 */
export function natsPolicyStore(conn: MeshConnection, options: NatsPolicyStoreOptions = {}): PolicyStore {
  const names = options.names ?? meshNames();
  const nowMs = options.nowMs ?? Date.now;
  const log = (options.logger ?? noopLogger).child({ component: 'nats-policy-store' });
  const kv = lazyKv(conn, names.buckets.policies);
  const timeoutMs = conn.info.jetstreamTimeoutMs;
  const enc = new TextEncoder();
  const dec = new TextDecoder();

  const decode = (e: KvEntry): StoredPolicyBundle => {
    let value: unknown;
    try {
      value = JSON.parse(dec.decode(e.value));
    } catch (cause) {
      throw new InvalidMessageError(POLICY_BUNDLE_SCHEMA, [`(root): not JSON: ${(cause as Error).message}`], { cause });
    }
    const o = value as Record<string, unknown>;
    if (o.schema !== POLICY_BUNDLE_SCHEMA)
      throw new InvalidMessageError(POLICY_BUNDLE_SCHEMA, [`schema: expected ${POLICY_BUNDLE_SCHEMA}`]);
    const push = validatePush(value, POLICY_BUNDLE_SCHEMA);
    const pushedAtMs = typeof o.pushedAtMs === 'number' ? o.pushedAtMs : 0;
    return { schema: POLICY_BUNDLE_SCHEMA, ...push, pushedAtMs, revision: e.revision };
  };

  return {
    async put(push) {
      const valid = validatePush(push, POLICY_BUNDLE_SCHEMA);
      const body = enc.encode(JSON.stringify({ schema: POLICY_BUNDLE_SCHEMA, ...valid, pushedAtMs: nowMs() }));
      const bucket = await kv();
      try {
        return await bucket.put(POLICY_BUNDLE_KEY, body);
      } catch (err) {
        const e = mapNatsError(err, `push policy bundle ${valid.digest}`, timeoutMs);
        if (/maximum payload|max_payload|message size/i.test((err as Error).message)) {
          throw new MeshError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            `policy bundle is ${body.length} bytes, over the server's message size limit`,
            {
              cause: err,
            },
          );
        }
        throw e;
      }
    },
    async get() {
      const bucket = await kv();
      let e: KvEntry | null;
      try {
        e = await bucket.get(POLICY_BUNDLE_KEY);
      } catch (err) {
        throw mapNatsError(err, 'read policy bundle', timeoutMs);
      }
      if (e === null || e.operation !== 'PUT') return undefined;
      return decode(e);
    },
    async watch(handler) {
      const bucket = await kv();
      const iter = await bucket.watch({ key: POLICY_BUNDLE_KEY });
      void (async () => {
        for await (const e of iter) {
          if (e.operation !== 'PUT') continue;
          let b: StoredPolicyBundle;
          try {
            b = decode(e);
          } catch (err) {
            log.warn('invalid policy bundle in store skipped', { revision: e.revision, error: (err as Error).message });
            continue;
          }
          handler(b);
        }
      })().catch((err: unknown) => log.error('policy watch ended', { error: (err as Error).message }));
      return () => iter.stop();
    },
  };
}
