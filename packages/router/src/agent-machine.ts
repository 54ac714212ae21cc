/**
 * The lifecycle of one agent as the router sees it, an XState v5 machine driven by heartbeats and
 * the injected clock: `joining` → `ready` ↔ `degraded` → `draining` → `lost`.
 * A heartbeat resets the silence timers; after `missedHeartbeatsBeforeDegraded` intervals of
 * silence a ready agent is `degraded`, after `missedHeartbeatsBeforeLost` it is `lost`.
 */
import type { CapacityReport } from '@meshroute/mesh';
import { assign, setup } from 'xstate';

/** The `lostReason` of an agent that announced it was leaving (a graceful stop, not a failure). */
export const AGENT_LEFT_REASON = 'agent left the mesh';

/** States of an agent. */
export type AgentState = 'joining' | 'ready' | 'degraded' | 'draining' | 'lost';

/** Input of {@link agentMachine}. */
export interface AgentMachineInput {
  agentId: string;
  /** Silence after which the agent is degraded, ms. */
  degradedAfterMs: number;
  /** Silence after which the agent is lost, ms. */
  lostAfterMs: number;
}

interface AgentContext extends AgentMachineInput {
  /** Status the agent announced last. */
  announced: CapacityReport['status'] | undefined;
  /** Why the agent was lost. */
  lostReason: string | undefined;
}

/** Events of {@link agentMachine}. */
export type AgentMachineEvent =
  | { type: 'HEARTBEAT'; status: CapacityReport['status'] }
  | { type: 'LEAVE'; reason: string };

/** The agent lifecycle machine. */
export const agentMachine = setup({
  types: {
    context: {} as AgentContext,
    input: {} as AgentMachineInput,
    events: {} as AgentMachineEvent,
  },
  delays: {
    degradedAfter: ({ context }) => context.degradedAfterMs,
    lostAfter: ({ context }) => context.lostAfterMs,
  },
  guards: {
    announcesReady: ({ event }) => event.type === 'HEARTBEAT' && event.status === 'ready',
    announcesDegraded: ({ event }) => event.type === 'HEARTBEAT' && event.status === 'degraded',
    announcesDraining: ({ event }) => event.type === 'HEARTBEAT' && event.status === 'draining',
    announcesLeaving: ({ event }) => event.type === 'HEARTBEAT' && event.status === 'leaving',
  },
  actions: {
    remember: assign({ announced: ({ event }) => (event.type === 'HEARTBEAT' ? event.status : undefined) }),
  },
}).createMachine({
  id: 'agent',
  initial: 'alive',
  context: ({ input }) => ({ ...input, announced: undefined, lostReason: undefined }),
  states: {
    alive: {
      initial: 'joining',
      after: {
        lostAfter: {
          target: 'lost',
          actions: assign({ lostReason: ({ context }) => `no heartbeat for ${context.lostAfterMs} ms` }),
        },
      },
      on: {
        HEARTBEAT: [
          {
            guard: 'announcesLeaving',
            target: 'lost',
            actions: [assign({ lostReason: AGENT_LEFT_REASON }), 'remember'],
          },
          { guard: 'announcesDraining', target: '.draining', reenter: true, actions: 'remember' },
          { guard: 'announcesDegraded', target: '.degraded', reenter: true, actions: 'remember' },
          { target: '.ready', reenter: true, actions: 'remember' },
        ],
        LEAVE: { target: 'lost', actions: assign({ lostReason: ({ event }) => event.reason }) },
      },
      states: {
        joining: {},
        ready: {
          after: { degradedAfter: { target: 'silent' } },
        },
        /** Ready but silent for a while: still routable, ranked by the policy with status `degraded`. */
        silent: {},
        degraded: {},
        draining: {},
      },
    },
    lost: {
      on: {
        HEARTBEAT: {
          guard: ({ event }) => event.status !== 'leaving',
          target: 'alive.ready',
          actions: [assign({ lostReason: undefined }), 'remember'],
        },
      },
    },
  },
});

/** Map a machine snapshot value to an {@link AgentState}. */
export function agentStateOf(value: unknown): AgentState {
  if (value === 'lost') return 'lost';
  if (typeof value === 'object' && value !== null && 'alive' in value) {
    const sub = (value as { alive: string }).alive;
    if (sub === 'silent') return 'degraded';
    if (sub === 'ready' || sub === 'degraded' || sub === 'draining' || sub === 'joining') return sub;
  }
  return 'joining';
}
