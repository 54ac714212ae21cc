/**
 * @module @meshroute/compute-agent
 * A compute agent: takes the work addressed to it from the mesh, runs it on a backend
 * (WebAssembly, GPU, quantum simulator) within slots and the workload's limits, answers with the
 * result or a typed error, heartbeats its capacity and drains gracefully.
 *
 * @example
 * import { createComputeAgent, fixedCarbon } from '@meshroute/compute-agent';
 * const agent = createComputeAgent({
 *   mesh, backend, workloads, artifacts,
 *   identity: { id: 'edge-eu-1', region: 'eu-west', jurisdiction: 'DE', costPerJob: '0.0001' },
 *   carbon: fixedCarbon(120),
 *   slots: 4,
 * });
 * await agent.start();
 * process.once('SIGTERM', () => void agent.drain());
 */
export {
  AgentRejectedError,
  COMPUTE_AGENT_VERSION,
  type ComputeAgent,
  type ComputeAgentEvent,
  type ComputeAgentStatus,
  createComputeAgent,
} from './agent.js';
export {
  type ArtifactCache,
  type ArtifactCacheStats,
  createArtifactCache,
  DEFAULT_ARTIFACT_CACHE_BYTES,
  sha256Digest,
} from './artifact-cache.js';
export {
  AUTO_CARBON_DATASET,
  autoCarbon,
  type CarbonAwareProviderOptions,
  type CarbonOptionContext,
  type CarbonReading,
  type CarbonSource,
  carbonAwareProvider,
  countryGridIntensity,
  DEFAULT_CARBON_POLL_INTERVAL_MS,
  DEFAULT_CARBON_REQUEST_TIMEOUT_MS,
  fixedCarbon,
  parseCarbonOption,
} from './carbon.js';
export { type JobInput, jobInput } from './job-io.js';
export { DEFAULT_LATENCY_WINDOW_SIZE } from './latency-window.js';
export { type AgentLifecycleEvent, type AgentLifecycleState, agentLifecycleMachine } from './lifecycle-machine.js';
export {
  type AgentIdentity,
  type ComputeAgentOptions,
  DEFAULT_COST_PER_JOB,
  DEFAULT_DRAIN_GRACE_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_MAX_QUEUED,
  DEFAULT_SLOTS,
  type ResolvedAgentOptions,
  resolveAgentOptions,
} from './options.js';
export { DEFAULT_WORKLOAD_CACHE_TTL_MS, memoryWorkloadSource, type WorkloadSource } from './workload-source.js';
