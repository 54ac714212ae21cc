/**
 * What the router needs from a policy bundle, written structurally after the `@meshroute/policy`
 * contract so that a real `PolicyBundle` (or a `PolicyHolder`) satisfies it as is.
 */
import type { DecisionRecord } from '@meshroute/mesh';

/** The policy engine's view of one agent (built by the router from the registry). */
export interface AgentView {
  id: string;
  backends: string[];
  region: string;
  jurisdiction: string;
  /** Grid carbon intensity, gCO2e/kWh. */
  carbonIntensity: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** Measured network RTT + expected queue wait + observed execution p50, ms. */
  estimatedLatencyMs: number;
  freeSlots: number;
  inFlight: number;
  queueDepth: number;
  costPerJob: number;
  labels: Record<string, string>;
  status: string;
  workloads: string[];
}

/** A CloudEvent in structured-mode JSON (the mesh contract's `CloudEventJson`). */
export type RouterEvent = {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  [attribute: string]: unknown;
};

/** One decision of a policy bundle. */
export interface PolicyDecision {
  outcome: 'routed' | 'no-eligible-agent' | 'policy-error';
  chosen: AgentView | undefined;
  /** Every eligible agent, best first. */
  ranking: { agentId: string; score: number }[];
  excluded: { agentId: string; rules: string[] }[];
  record: DecisionRecord;
}

/** Options of {@link PlacementPolicy.decide}. */
export interface DecideOptions {
  decisionId?: string;
  nowMs?: number;
  registryRevision?: number;
  topK?: number;
}

/** A loaded policy bundle (`PolicyBundle` of `@meshroute/policy`). */
export interface PlacementPolicy {
  readonly digest: string;
  decide(event: RouterEvent, agents: readonly AgentView[], options?: DecideOptions): PolicyDecision;
}

/** Something that holds the active bundle (`PolicyHolder` of `@meshroute/policy`). */
export interface PolicySource {
  current(): PlacementPolicy | undefined;
}

/** Normalise a bundle or a holder into a {@link PolicySource}. */
export function toPolicySource(p: PlacementPolicy | PolicySource | undefined): PolicySource {
  if (p === undefined) return { current: () => undefined };
  if ('current' in p && typeof p.current === 'function') return p;
  const bundle = p as PlacementPolicy;
  return { current: () => bundle };
}
