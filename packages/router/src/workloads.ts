/**
 * The router's view of the workload registry: which workloads exist and which backends can run
 * them. The router keeps it in memory (fed by a watch of the registry) so that placement never
 * waits on the network; agents that cannot run an event's workload are excluded before the policy
 * decides, and an event naming an unregistered workload is dead-lettered before any dispatch.
 */
import type { Logger, WorkloadSpec } from '@meshroute/mesh';
import { noopLogger } from '@meshroute/mesh';

/** The rule id recorded in a decision record's `excluded` for agents that cannot run the workload. */
export const WORKLOAD_BACKEND_RULE = 'router/workload-backend';

/** What the router reads: the registered spec of a workload, from memory. */
export interface WorkloadCatalog {
  /** The spec registered under `name`, or `undefined` when none is. */
  get(name: string): WorkloadSpec | undefined;
}

/** A {@link WorkloadCatalog} held in memory, changed by `put`/`delete`. */
export interface MemoryWorkloadCatalog extends WorkloadCatalog {
  /** Register or replace a spec. */
  put(spec: WorkloadSpec): void;
  /** Forget a workload. */
  delete(name: string): void;
  /** Registered names, sorted. */
  names(): string[];
}

/**
 * A catalog in memory (tests, or fed by {@link watchWorkloadCatalog}).
 * @example
 * const workloads = memoryWorkloadCatalog([echoSpec]);
 * createRouter({ mesh, store, policies, workloads });
 */
export function memoryWorkloadCatalog(specs: readonly WorkloadSpec[] = []): MemoryWorkloadCatalog {
  const byName = new Map<string, WorkloadSpec>();
  for (const s of specs) byName.set(s.name, s);
  return {
    get: (name) => byName.get(name),
    put: (spec) => {
      byName.set(spec.name, spec);
    },
    delete: (name) => {
      byName.delete(name);
    },
    names: () => [...byName.keys()].sort(),
  };
}

/** A change of a watched registry (the shape of `WorkloadChange` in `@meshroute/transport-nats`). */
export type WatchedWorkloadChange = { type: 'put'; spec: WorkloadSpec } | { type: 'delete'; name: string };

/** What {@link watchWorkloadCatalog} needs of a registry (`natsWorkloadRegistry(conn)` satisfies it). */
export interface WatchableWorkloadRegistry {
  /** Every registered spec. */
  list(): Promise<WorkloadSpec[]>;
  /** Call `handler` with every current spec, then with each change; resolves with a stop function. */
  watch(handler: (change: WatchedWorkloadChange) => void): Promise<() => void>;
}

/** A catalog kept current by a registry watch. */
export interface WatchedWorkloadCatalog extends MemoryWorkloadCatalog {
  /** Stop watching. Idempotent. */
  close(): void;
}

/**
 * Load every registered workload, then keep the catalog current from the registry's watch.
 * Resolves once the initial list is in (so a starting router never dead-letters a registered
 * workload as unknown).
 * @example
 * const workloads = await watchWorkloadCatalog(natsWorkloadRegistry(conn));
 */
export async function watchWorkloadCatalog(
  registry: WatchableWorkloadRegistry,
  options: { logger?: Logger } = {},
): Promise<WatchedWorkloadCatalog> {
  const logger = (options.logger ?? noopLogger).child({ component: 'workload-catalog' });
  const catalog = memoryWorkloadCatalog(await registry.list());
  const stop = await registry.watch((change) => {
    if (change.type === 'put') {
      catalog.put(change.spec);
      logger.debug('workload registered', { workload: change.spec.name, version: change.spec.version });
    } else {
      catalog.delete(change.name);
      logger.info('workload removed', { workload: change.name });
    }
  });
  let closed = false;
  return {
    ...catalog,
    close() {
      if (closed) return;
      closed = true;
      stop();
    },
  };
}

/** Backends a spec has an artifact for (`wasm`, `gpu`, `quantum`). */
export function workloadBackends(spec: WorkloadSpec): string[] {
  const out: string[] = [];
  for (const [backend, artifact] of Object.entries(spec.artifacts)) if (artifact !== undefined) out.push(backend);
  return out;
}

/**
 * Whether an agent can run `spec`: one of its backends has an artifact for the workload, and its
 * announced `workloads` list (when it announces one) includes the workload.
 */
export function agentCanRun(
  spec: WorkloadSpec,
  agent: { backends: readonly string[]; workloads: readonly string[] },
): boolean {
  if (agent.workloads.length > 0 && !agent.workloads.includes(spec.name)) return false;
  const artifacts = spec.artifacts as Record<string, unknown>;
  for (const b of agent.backends) if (artifacts[b] !== undefined) return true;
  return false;
}
