/**
 * The agent's lifecycle as an XState v5 machine: `idle → starting → ready → draining → stopped`.
 * The engine sends events; everything else (taking work, the heartbeat status) reads the state.
 */
import { setup } from 'xstate';

/** Lifecycle states of a compute agent. */
export type AgentLifecycleState = 'idle' | 'starting' | 'ready' | 'draining' | 'stopped';

/** Events that move the lifecycle. */
export type AgentLifecycleEvent =
  | { type: 'START' }
  | { type: 'STARTED' }
  | { type: 'START_FAILED' }
  | { type: 'DRAIN' }
  | { type: 'STOPPED' };

/** The lifecycle machine. `DRAIN` before `START` goes straight to `stopped`. */
export const agentLifecycleMachine = setup({
  types: { events: {} as AgentLifecycleEvent },
}).createMachine({
  id: 'compute-agent',
  initial: 'idle',
  states: {
    idle: { on: { START: 'starting', DRAIN: 'stopped' } },
    starting: { on: { STARTED: 'ready', START_FAILED: 'stopped' } },
    ready: { on: { DRAIN: 'draining' } },
    draining: { on: { STOPPED: 'stopped' } },
    stopped: { type: 'final' },
  },
});
