/**
 * What the router needs from a policy bundle. The data types (agent view, decision, decide
 * options) are those of `@meshroute/policy`; the bundle and holder interfaces stay narrow (only
 * what the router calls), so a real `PolicyBundle` or `PolicyHolder` satisfies them as is and a
 * test can hand in a small fake.
 */
import type { CloudEventJson } from '@meshroute/mesh';
import type { AgentView, DecideOptions, Decision } from '@meshroute/policy';

export type {
  /** The policy engine's view of one agent (built by the router from the registry). */
  AgentView,
  /** Options of {@link PlacementPolicy.decide}. */
  DecideOptions,
};

/** A CloudEvent in structured-mode JSON (the mesh contract's `CloudEventJson`). */
export type RouterEvent = CloudEventJson;

/** One decision of a policy bundle (`Decision` of `@meshroute/policy`). */
export type PolicyDecision = Decision;

/** A loaded policy bundle: the part of `PolicyBundle` (`@meshroute/policy`) the router calls. */
export interface PlacementPolicy {
  readonly digest: string;
  decide(event: RouterEvent, agents: readonly AgentView[], options?: DecideOptions): PolicyDecision;
}

/** Something that holds the active bundle: the part of `PolicyHolder` (`@meshroute/policy`) the router calls. */
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
