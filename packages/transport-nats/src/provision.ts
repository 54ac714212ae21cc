/**
 * Idempotent provisioning of everything the mesh keeps in NATS: the JetStream streams (ingress,
 * results, decisions, dead letters), the routers' shared durable consumer on ingress, the KV
 * buckets (agents, policies, workloads) and the artifacts Object Store.
 *
 * Design: the ingress stream uses **work-queue retention**. Ingress is a queue of pending work:
 * a message is removed once the router acks it (its work item reached a terminal state), so the
 * stream holds exactly the backlog. The audit trail lives in the decisions, results and
 * dead-letter streams (limits retention). De-duplication (`Nats-Msg-Id`) is independent of
 * retention: the window remembers ids of acked-and-removed messages too. A work-queue stream
 * admits one consumer per subject, which is the routers' shared durable consumer: several
 * routers pull from it and each message goes to one of them.
 */

import { ConfigError, type MeshNames, meshNames } from '@meshroute/mesh';
import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { nanos } from '@nats-io/nats-core';
import { Objm } from '@nats-io/obj';
import type { MeshConnection } from './connection.js';
import { mapNatsError } from './errors.js';

/** De-duplication window of the ingress stream: a republish of one `source`+`id` within it is dropped. */
export const DEFAULT_DUPLICATE_WINDOW_MS = 120_000;
/** How long an unacknowledged ingress delivery waits before JetStream redelivers it. */
export const DEFAULT_INGRESS_ACK_WAIT_MS = 30_000;
/** Deliveries of one ingress event before JetStream stops redelivering it. */
export const DEFAULT_MAX_DELIVER = 10;
/** Unacknowledged ingress deliveries outstanding across all routers. */
export const DEFAULT_MAX_ACK_PENDING = 10_000;
/** Age limit of ingress events not yet processed. */
export const DEFAULT_INGRESS_MAX_AGE_MS = 7 * 24 * 3_600_000;
/** Age limit of results. */
export const DEFAULT_RESULTS_MAX_AGE_MS = 24 * 3_600_000;
/** Age limit of decision records (the audit trail). */
export const DEFAULT_DECISIONS_MAX_AGE_MS = 7 * 24 * 3_600_000;
/** Age limit of dead letters. */
export const DEFAULT_DEAD_LETTERS_MAX_AGE_MS = 30 * 24 * 3_600_000;
/** Age after which an agent's heartbeat snapshot expires from the agents bucket. */
export const DEFAULT_AGENTS_TTL_MS = 10 * 60_000;
/** Revisions of the policy bundle kept in the policies bucket. */
export const DEFAULT_POLICY_HISTORY = 10;
/** Revisions of each workload kept in the workloads bucket. */
export const DEFAULT_WORKLOAD_HISTORY = 5;

/** Options of {@link provisionMesh}. */
export interface ProvisionOptions {
  /** @default meshNames() */
  names?: MeshNames;
  /** Replicas of every stream and bucket (1 for a single server, 3 for a cluster). @default 1 */
  replicas?: number;
  /** Storage of every stream and bucket. @default 'file' */
  storage?: 'file' | 'memory';
  /** @default DEFAULT_DUPLICATE_WINDOW_MS */
  duplicateWindowMs?: number;
  /** @default DEFAULT_INGRESS_ACK_WAIT_MS */
  ingressAckWaitMs?: number;
  /** @default DEFAULT_MAX_DELIVER */
  maxDeliver?: number;
  /**
   * Redelivery delays after ack-wait expiries (JetStream `backoff`). Empty: every redelivery
   * waits `ingressAckWaitMs`. When given, JetStream uses its first element as the ack wait, and
   * `maxDeliver` must be larger than its length. Naks carry their own delay.
   * @default []
   */
  redeliveryBackoffMs?: readonly number[];
  /** @default DEFAULT_MAX_ACK_PENDING */
  maxAckPending?: number;
  /** @default DEFAULT_INGRESS_MAX_AGE_MS */
  ingressMaxAgeMs?: number;
  /** @default DEFAULT_RESULTS_MAX_AGE_MS */
  resultsMaxAgeMs?: number;
  /** @default DEFAULT_DECISIONS_MAX_AGE_MS */
  decisionsMaxAgeMs?: number;
  /** @default DEFAULT_DEAD_LETTERS_MAX_AGE_MS */
  deadLettersMaxAgeMs?: number;
  /** @default DEFAULT_AGENTS_TTL_MS */
  agentsTtlMs?: number;
  /** @default DEFAULT_POLICY_HISTORY */
  policyHistory?: number;
  /** @default DEFAULT_WORKLOAD_HISTORY */
  workloadHistory?: number;
}

/** {@link ProvisionOptions} with every field filled. */
export interface ResolvedProvisionOptions {
  names: MeshNames;
  replicas: number;
  storage: 'file' | 'memory';
  duplicateWindowMs: number;
  ingressAckWaitMs: number;
  maxDeliver: number;
  redeliveryBackoffMs: number[];
  maxAckPending: number;
  ingressMaxAgeMs: number;
  resultsMaxAgeMs: number;
  decisionsMaxAgeMs: number;
  deadLettersMaxAgeMs: number;
  agentsTtlMs: number;
  policyHistory: number;
  workloadHistory: number;
}

function posInt(option: string, v: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const x = v ?? fallback;
  if (!Number.isInteger(x) || x <= 0 || x > max)
    throw new ConfigError(option, `must be an integer in 1..${max}, got ${x}`);
  return x;
}

/**
 * Validate {@link ProvisionOptions} and fill every default.
 * @throws ConfigError naming the option at fault
 */
export function resolveProvisionOptions(input: ProvisionOptions = {}): ResolvedProvisionOptions {
  const storage = input.storage ?? 'file';
  if (storage !== 'file' && storage !== 'memory')
    throw new ConfigError('storage', `must be 'file' or 'memory', got ${String(storage)}`);
  const replicas = posInt('replicas', input.replicas, 1, 5);
  const maxDeliver = input.maxDeliver ?? DEFAULT_MAX_DELIVER;
  if (!Number.isInteger(maxDeliver) || (maxDeliver < 1 && maxDeliver !== -1)) {
    throw new ConfigError('maxDeliver', `must be a positive integer or -1 (unlimited), got ${maxDeliver}`);
  }
  const backoff = [...(input.redeliveryBackoffMs ?? [])];
  for (const [i, b] of backoff.entries()) {
    if (!Number.isFinite(b) || b <= 0)
      throw new ConfigError(`redeliveryBackoffMs[${i}]`, `must be a positive number of milliseconds, got ${b}`);
  }
  if (backoff.length > 0 && maxDeliver !== -1 && maxDeliver <= backoff.length) {
    throw new ConfigError(
      'maxDeliver',
      `must be larger than redeliveryBackoffMs.length (${backoff.length}), got ${maxDeliver}`,
    );
  }
  return {
    names: input.names ?? meshNames(),
    replicas,
    storage,
    duplicateWindowMs: posInt('duplicateWindowMs', input.duplicateWindowMs, DEFAULT_DUPLICATE_WINDOW_MS),
    ingressAckWaitMs: posInt('ingressAckWaitMs', input.ingressAckWaitMs, DEFAULT_INGRESS_ACK_WAIT_MS),
    maxDeliver,
    redeliveryBackoffMs: backoff,
    maxAckPending: posInt('maxAckPending', input.maxAckPending, DEFAULT_MAX_ACK_PENDING),
    ingressMaxAgeMs: posInt('ingressMaxAgeMs', input.ingressMaxAgeMs, DEFAULT_INGRESS_MAX_AGE_MS),
    resultsMaxAgeMs: posInt('resultsMaxAgeMs', input.resultsMaxAgeMs, DEFAULT_RESULTS_MAX_AGE_MS),
    decisionsMaxAgeMs: posInt('decisionsMaxAgeMs', input.decisionsMaxAgeMs, DEFAULT_DECISIONS_MAX_AGE_MS),
    deadLettersMaxAgeMs: posInt('deadLettersMaxAgeMs', input.deadLettersMaxAgeMs, DEFAULT_DEAD_LETTERS_MAX_AGE_MS),
    agentsTtlMs: posInt('agentsTtlMs', input.agentsTtlMs, DEFAULT_AGENTS_TTL_MS),
    policyHistory: posInt('policyHistory', input.policyHistory, DEFAULT_POLICY_HISTORY, 64),
    workloadHistory: posInt('workloadHistory', input.workloadHistory, DEFAULT_WORKLOAD_HISTORY, 64),
  };
}

/** A stream's desired configuration. */
export type StreamPlan = Partial<StreamConfig> & { name: string };

/** The desired configuration of every stream and the ingress consumer (pure; no I/O). */
export interface MeshStreamPlan {
  streams: { ingress: StreamPlan; results: StreamPlan; decisions: StreamPlan; deadLetters: StreamPlan };
  ingressConsumer: Partial<ConsumerConfig> & { durable_name: string };
}

/**
 * The stream and consumer configuration {@link provisionMesh} applies. Pure; exported so that
 * `meshroute` tooling can print or diff it.
 */
export function meshStreamPlan(opts: ResolvedProvisionOptions): MeshStreamPlan {
  const { names } = opts;
  const storage = opts.storage === 'file' ? StorageType.File : StorageType.Memory;
  const base = (name: string, subject: string, maxAgeMs: number, description: string): StreamPlan => ({
    name,
    description,
    subjects: [subject],
    retention: RetentionPolicy.Limits,
    storage,
    num_replicas: opts.replicas,
    max_age: nanos(maxAgeMs),
    // JetStream refuses a de-duplication window longer than the age limit.
    duplicate_window: nanos(Math.min(opts.duplicateWindowMs, maxAgeMs)),
    discard: DiscardPolicy.Old,
  });
  const ingress: StreamPlan = {
    ...base(
      names.streams.ingress,
      names.ingressWildcard,
      opts.ingressMaxAgeMs,
      'meshroute ingress: CloudEvents awaiting placement',
    ),
    retention: RetentionPolicy.Workqueue,
  };
  const consumer: Partial<ConsumerConfig> & { durable_name: string } = {
    durable_name: names.ingressConsumer,
    description: 'meshroute routers (shared)',
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(opts.ingressAckWaitMs),
    max_deliver: opts.maxDeliver,
    max_ack_pending: opts.maxAckPending,
  };
  if (opts.redeliveryBackoffMs.length > 0) consumer.backoff = opts.redeliveryBackoffMs.map((ms) => nanos(ms));
  return {
    streams: {
      ingress,
      results: base(names.streams.results, names.resultsSubject('>'), opts.resultsMaxAgeMs, 'meshroute work results'),
      decisions: base(
        names.streams.decisions,
        names.decisionsSubject('>'),
        opts.decisionsMaxAgeMs,
        'meshroute decision records',
      ),
      deadLetters: base(
        names.streams.deadLetters,
        names.deadLetterSubject('>'),
        opts.deadLettersMaxAgeMs,
        'meshroute dead letters',
      ),
    },
    ingressConsumer: consumer,
  };
}

/** What provisioning did to one resource. */
export interface ProvisionedResource {
  kind: 'stream' | 'consumer' | 'kv' | 'object-store';
  name: string;
  action: 'created' | 'updated' | 'unchanged';
  /** The fields that were changed, for `updated`. */
  changed?: string[];
}

/** The outcome of {@link provisionMesh}. */
export interface ProvisionReport {
  resources: ProvisionedResource[];
}

const IMMUTABLE_STREAM_FIELDS = new Set(['retention', 'storage']);
const IMMUTABLE_CONSUMER_FIELDS = new Set(['deliver_policy', 'ack_policy']);

function same(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => same(x, b[i]));
  }
  const empty = (x: unknown): boolean => x === undefined || x === null || (Array.isArray(x) && x.length === 0);
  return a === b || (empty(a) && empty(b));
}

/** Fields of `want` whose value differs from `have`. */
function diff(want: Record<string, unknown>, have: Record<string, unknown>): string[] {
  return Object.keys(want).filter((k) => {
    const w = want[k];
    const h = have[k];
    if (k === 'subjects' && Array.isArray(w) && Array.isArray(h)) return !same([...w].sort(), [...h].sort());
    return !same(w, h);
  });
}

function isNotFound(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (isNotFound(err, JetStreamApiCodes.StreamNotFound)) return undefined;
    throw err;
  }
}

async function ensureStream(jsm: JetStreamManager, want: StreamPlan): Promise<ProvisionedResource> {
  const name = want.name;
  const have = await streamInfo(jsm, name);
  if (have === undefined) {
    await jsm.streams.add(want);
    return { kind: 'stream', name, action: 'created' };
  }
  const changed = diff(want as Record<string, unknown>, have.config as unknown as Record<string, unknown>);
  if (changed.length === 0) return { kind: 'stream', name, action: 'unchanged' };
  const immutable = changed.filter((f) => IMMUTABLE_STREAM_FIELDS.has(f));
  if (immutable.length > 0) {
    throw new ConfigError(
      immutable[0] as string,
      `stream ${name} exists with ${immutable.map((f) => `${f}=${String((have.config as unknown as Record<string, unknown>)[f])}`).join(', ')}, which cannot change (wanted ${immutable.map((f) => String((want as Record<string, unknown>)[f])).join(', ')}); delete the stream or keep its setting`,
    );
  }
  const { name: _n, ...update } = want;
  await jsm.streams.update(name, update);
  return { kind: 'stream', name, action: 'updated', changed };
}

async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  want: Partial<ConsumerConfig> & { durable_name: string },
): Promise<ProvisionedResource> {
  const name = want.durable_name;
  let have: ConsumerInfo | undefined;
  try {
    have = await jsm.consumers.info(stream, name);
  } catch (err) {
    if (!isNotFound(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
  }
  if (have === undefined) {
    await jsm.consumers.add(stream, want);
    return { kind: 'consumer', name, action: 'created' };
  }
  const wantCmp: Record<string, unknown> = { ...want };
  if (want.backoff === undefined) wantCmp.backoff = [];
  const changed = diff(wantCmp, have.config as unknown as Record<string, unknown>);
  if (changed.length === 0) return { kind: 'consumer', name, action: 'unchanged' };
  const immutable = changed.filter((f) => IMMUTABLE_CONSUMER_FIELDS.has(f));
  if (immutable.length > 0) {
    throw new ConfigError(
      immutable[0] as string,
      `consumer ${stream}/${name} exists with a different ${immutable.join(', ')}, which cannot change`,
    );
  }
  const update: Record<string, unknown> = {};
  for (const f of changed) update[f] = wantCmp[f];
  await jsm.consumers.update(stream, name, update);
  return { kind: 'consumer', name, action: 'updated', changed };
}

async function ensureKv(
  conn: MeshConnection,
  jsm: JetStreamManager,
  bucket: string,
  opts: { history: number; ttlMs: number; storage: StorageType; replicas: number; description: string },
): Promise<ProvisionedResource> {
  const streamName = `KV_${bucket}`;
  const have = await streamInfo(jsm, streamName);
  if (have === undefined) {
    await new Kvm(conn.js).create(bucket, {
      history: opts.history,
      ttl: opts.ttlMs,
      storage: opts.storage,
      replicas: opts.replicas,
      description: opts.description,
    });
    return { kind: 'kv', name: bucket, action: 'created' };
  }
  const want: Record<string, unknown> = {
    max_msgs_per_subject: opts.history,
    max_age: opts.ttlMs > 0 ? nanos(opts.ttlMs) : 0,
    num_replicas: opts.replicas,
    storage: opts.storage,
  };
  const changed = diff(want, have.config as unknown as Record<string, unknown>);
  if (changed.length === 0) return { kind: 'kv', name: bucket, action: 'unchanged' };
  if (changed.includes('storage')) {
    throw new ConfigError(
      'storage',
      `KV bucket ${bucket} exists with storage ${have.config.storage}, which cannot change`,
    );
  }
  const update: Record<string, unknown> = {};
  for (const f of changed) update[f] = want[f];
  await jsm.streams.update(streamName, update);
  return { kind: 'kv', name: bucket, action: 'updated', changed };
}

async function ensureObjectStore(
  conn: MeshConnection,
  jsm: JetStreamManager,
  bucket: string,
  opts: { storage: StorageType; replicas: number },
): Promise<ProvisionedResource> {
  const have = await streamInfo(jsm, `OBJ_${bucket}`);
  if (have === undefined) {
    await new Objm(conn.js).create(bucket, {
      storage: opts.storage,
      replicas: opts.replicas,
      description: 'meshroute artifacts by sha256',
    });
    return { kind: 'object-store', name: bucket, action: 'created' };
  }
  const want: Record<string, unknown> = { num_replicas: opts.replicas, storage: opts.storage };
  const changed = diff(want, have.config as unknown as Record<string, unknown>);
  if (changed.length === 0) return { kind: 'object-store', name: bucket, action: 'unchanged' };
  if (changed.includes('storage')) {
    throw new ConfigError(
      'storage',
      `object store ${bucket} exists with storage ${have.config.storage}, which cannot change`,
    );
  }
  await jsm.streams.update(`OBJ_${bucket}`, { num_replicas: opts.replicas });
  return { kind: 'object-store', name: bucket, action: 'updated', changed };
}

/**
 * Create (or bring up to date) every stream, consumer and bucket the mesh uses. Idempotent: on
 * a mesh already provisioned with the same options every resource reports `unchanged` and
 * nothing is written. Changed mutable settings (ages, ack wait, max deliver, replicas, ...) are
 * updated in place; a change that JetStream cannot make (retention, storage) is refused with
 * a {@link ConfigError}.
 * @throws ConfigError for invalid options or an impossible change; MeshError
 *   `PERMISSION_DENIED` when the account may not manage JetStream; TransportError otherwise
 * @example
 * const report = await provisionMesh(conn, { replicas: 3 });
 */
export async function provisionMesh(conn: MeshConnection, options: ProvisionOptions = {}): Promise<ProvisionReport> {
  const opts = resolveProvisionOptions(options);
  const plan = meshStreamPlan(opts);
  const storage = opts.storage === 'file' ? StorageType.File : StorageType.Memory;
  const jsm = await conn.jetstreamManager();
  const resources: ProvisionedResource[] = [];
  let step = 'streams';
  try {
    for (const s of [plan.streams.ingress, plan.streams.results, plan.streams.decisions, plan.streams.deadLetters]) {
      step = `stream ${s.name}`;
      resources.push(await ensureStream(jsm, s));
    }
    step = `consumer ${plan.ingressConsumer.durable_name}`;
    resources.push(await ensureConsumer(jsm, opts.names.streams.ingress, plan.ingressConsumer));
    const { buckets } = opts.names;
    step = `kv ${buckets.agents}`;
    resources.push(
      await ensureKv(conn, jsm, buckets.agents, {
        history: 1,
        ttlMs: opts.agentsTtlMs,
        storage,
        replicas: opts.replicas,
        description: 'meshroute agents: last heartbeat per agent',
      }),
    );
    step = `kv ${buckets.policies}`;
    resources.push(
      await ensureKv(conn, jsm, buckets.policies, {
        history: opts.policyHistory,
        ttlMs: 0,
        storage,
        replicas: opts.replicas,
        description: 'meshroute policy bundles',
      }),
    );
    step = `kv ${buckets.workloads}`;
    resources.push(
      await ensureKv(conn, jsm, buckets.workloads, {
        history: opts.workloadHistory,
        ttlMs: 0,
        storage,
        replicas: opts.replicas,
        description: 'meshroute workload registry',
      }),
    );
    step = `object store ${opts.names.artifacts}`;
    resources.push(await ensureObjectStore(conn, jsm, opts.names.artifacts, { storage, replicas: opts.replicas }));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw mapNatsError(err, `provision ${step}`, conn.info.jetstreamTimeoutMs);
  }
  return { resources };
}
