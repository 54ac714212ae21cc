/** Options of the compute agent, resolved once into a fully filled object. */
import { randomUUID } from 'node:crypto';
import {
  type AgentMesh,
  type ArtifactStore,
  type Clock,
  type ComputeBackend,
  ConfigError,
  ISO_3166_ALPHA2,
  type Logger,
  noopLogger,
  systemClock,
} from '@meshroute/mesh';
import { DEFAULT_ARTIFACT_CACHE_BYTES } from './artifact-cache.js';
import type { CarbonSource } from './carbon.js';
import { DEFAULT_LATENCY_WINDOW_SIZE } from './latency-window.js';
import { DEFAULT_WORKLOAD_CACHE_TTL_MS, type WorkloadSource } from './workload-source.js';

/** Default concurrent jobs. */
export const DEFAULT_SLOTS = 4;
/** Default heartbeat interval. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1_000;
/** Default time in-flight work may take to finish when draining. */
export const DEFAULT_DRAIN_GRACE_MS = 30_000;
/** Default number of jobs waiting for a slot before new work is rejected. */
export const DEFAULT_MAX_QUEUED = 64;
/** Default price of one job, currency units (decimal string). */
export const DEFAULT_COST_PER_JOB = '0';

/** Who the agent is: announced in every heartbeat. */
export interface AgentIdentity {
  /** Agent id, letters, digits, `_` and `-` (the work subject is `<prefix>.work.<id>`). */
  id: string;
  /** Region name (e.g. `eu-west`, `FR`, `westeurope`). */
  region: string;
  /** ISO 3166-1 alpha-2 country whose law applies to data processed here. */
  jurisdiction: string;
  /** Free-form labels matched by policies. @default {} */
  labels?: Record<string, string>;
  /** Price of one job, decimal string. @default {@link DEFAULT_COST_PER_JOB} */
  costPerJob?: string;
}

/** Options of {@link createComputeAgent}. */
export interface ComputeAgentOptions {
  /** The agent's view of the mesh. */
  mesh: AgentMesh;
  /** The execution engine. The agent does not close it. */
  backend: ComputeBackend;
  /** Where workload specs are looked up. */
  workloads: WorkloadSource;
  /** Where artifacts are fetched by digest. */
  artifacts: ArtifactStore;
  /** Identity announced in heartbeats. */
  identity: AgentIdentity;
  /** Carbon intensity source (see `fixedCarbon`, `autoCarbon`, `carbonAwareProvider`). */
  carbon: CarbonSource;
  /** Concurrent jobs. @default {@link DEFAULT_SLOTS} */
  slots?: number;
  /** @default {@link DEFAULT_HEARTBEAT_INTERVAL_MS} */
  heartbeatIntervalMs?: number;
  /** How long draining waits for in-flight work before aborting it. @default {@link DEFAULT_DRAIN_GRACE_MS} */
  drainGraceMs?: number;
  /** Jobs waiting for a slot beyond which work is rejected (`AGENT_REJECTED`, retryable). @default {@link DEFAULT_MAX_QUEUED} */
  maxQueued?: number;
  /** Artifact cache bound, bytes. @default 256 MiB */
  artifactCacheBytes?: number;
  /** How long a workload spec is reused before it is looked up again. @default {@link DEFAULT_WORKLOAD_CACHE_TTL_MS} */
  workloadCacheTtlMs?: number;
  /** Execution times kept for the p50/p99 in heartbeats. @default {@link DEFAULT_LATENCY_WINDOW_SIZE} */
  latencyWindowSize?: number;
  /** Only these workloads are run (empty: any workload with an artifact for the backend). @default [] */
  acceptWorkloads?: readonly string[];
  /** Versions announced in heartbeats, added to the agent's own. @default {} */
  versions?: Record<string, string>;
  /** Process instance id. @default a random UUID */
  instanceId?: string;
  /** @default systemClock */
  clock?: Clock;
  /** @default noopLogger */
  logger?: Logger;
}

/** {@link ComputeAgentOptions} with every field filled and checked. */
export interface ResolvedAgentOptions {
  mesh: AgentMesh;
  backend: ComputeBackend;
  workloads: WorkloadSource;
  artifacts: ArtifactStore;
  identity: Required<AgentIdentity>;
  carbon: CarbonSource;
  slots: number;
  heartbeatIntervalMs: number;
  drainGraceMs: number;
  maxQueued: number;
  artifactCacheBytes: number;
  workloadCacheTtlMs: number;
  latencyWindowSize: number;
  acceptWorkloads: readonly string[];
  versions: Record<string, string>;
  instanceId: string;
  clock: Clock;
  logger: Logger;
}

function int(option: string, value: number | undefined, fallback: number, min: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < min) throw new ConfigError(option, `must be an integer >= ${min}, got ${v}`);
  return v;
}

/**
 * Validate and fill the agent's options.
 * @throws ConfigError naming the option at fault
 */
export function resolveAgentOptions(input: ComputeAgentOptions): ResolvedAgentOptions {
  for (const key of ['mesh', 'backend', 'workloads', 'artifacts', 'identity', 'carbon'] as const) {
    if (input[key] === undefined || input[key] === null) throw new ConfigError(key, 'is required');
  }
  const { id, region, jurisdiction } = input.identity;
  if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(id)) {
    throw new ConfigError('identity.id', `must be 1-128 letters, digits, _ or -, got ${JSON.stringify(id)}`);
  }
  if (typeof region !== 'string' || region === '')
    throw new ConfigError('identity.region', 'must be a non-empty string');
  if (typeof jurisdiction !== 'string' || !ISO_3166_ALPHA2.has(jurisdiction)) {
    throw new ConfigError(
      'identity.jurisdiction',
      `must be an uppercase ISO 3166-1 alpha-2 country code, got ${JSON.stringify(jurisdiction)}`,
    );
  }
  const costPerJob = input.identity.costPerJob ?? DEFAULT_COST_PER_JOB;
  if (!/^(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(costPerJob)) {
    throw new ConfigError(
      'identity.costPerJob',
      `must be a non-negative decimal string, got ${JSON.stringify(costPerJob)}`,
    );
  }
  const labels = { ...(input.identity.labels ?? {}) };
  for (const [k, v] of Object.entries(labels)) {
    if (k === '' || typeof v !== 'string')
      throw new ConfigError('identity.labels', `label ${JSON.stringify(k)} must map a non-empty key to a string`);
  }
  return {
    mesh: input.mesh,
    backend: input.backend,
    workloads: input.workloads,
    artifacts: input.artifacts,
    identity: { id, region, jurisdiction, labels, costPerJob },
    carbon: input.carbon,
    slots: int('slots', input.slots, DEFAULT_SLOTS, 1),
    heartbeatIntervalMs: int('heartbeatIntervalMs', input.heartbeatIntervalMs, DEFAULT_HEARTBEAT_INTERVAL_MS, 1),
    drainGraceMs: int('drainGraceMs', input.drainGraceMs, DEFAULT_DRAIN_GRACE_MS, 0),
    maxQueued: int('maxQueued', input.maxQueued, DEFAULT_MAX_QUEUED, 0),
    artifactCacheBytes: int('artifactCacheBytes', input.artifactCacheBytes, DEFAULT_ARTIFACT_CACHE_BYTES, 0),
    workloadCacheTtlMs: int('workloadCacheTtlMs', input.workloadCacheTtlMs, DEFAULT_WORKLOAD_CACHE_TTL_MS, 0),
    latencyWindowSize: int('latencyWindowSize', input.latencyWindowSize, DEFAULT_LATENCY_WINDOW_SIZE, 1),
    acceptWorkloads: [...(input.acceptWorkloads ?? [])],
    versions: { ...(input.versions ?? {}) },
    instanceId: input.instanceId ?? randomUUID(),
    clock: input.clock ?? systemClock,
    logger: input.logger ?? noopLogger,
  };
}
