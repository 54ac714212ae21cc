/** Where the agent looks up workload specs: the NATS KV registry in production, a map in tests. */
import { parseMessage, type WorkloadSpec } from '@meshroute/mesh';

/**
 * Read access to registered workloads. `natsWorkloadRegistry(conn)` from
 * `@meshroute/transport-nats` satisfies it.
 */
export interface WorkloadSource {
  /** The spec registered under `name`, or `undefined`. */
  get(name: string): Promise<WorkloadSpec | undefined>;
}

/** Default time a looked-up workload spec is reused before asking the source again. */
export const DEFAULT_WORKLOAD_CACHE_TTL_MS = 5_000;

/**
 * An in-memory {@link WorkloadSource} (tests, `meshroute run`). Specs are validated against
 * `meshroute.workload/v1` when added.
 */
export function memoryWorkloadSource(specs: Iterable<WorkloadSpec> = []): WorkloadSource & {
  /** Add or replace a spec. */
  put(spec: WorkloadSpec): void;
} {
  const map = new Map<string, WorkloadSpec>();
  const put = (spec: WorkloadSpec) => {
    const parsed = parseMessage('meshroute.workload/v1', spec);
    map.set(parsed.name, parsed);
  };
  for (const s of specs) put(s);
  return { get: async (name) => map.get(name), put };
}
