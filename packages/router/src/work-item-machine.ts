/**
 * The lifecycle of one work item, an XState v5 machine:
 * `received` → `placing` → (`queued` | `deferred` | `dispatched`) → `running` → `succeeded`,
 * with `backoff` → `placing` on timeout, agent loss or rejection (exponential backoff with full
 * jitter, bounded by `maxAttempts`), and the terminal states `succeeded`, `failed` (the workload
 * ran and failed), `deadLettered`, `duplicate` (answered from a recorded outcome) and `released`
 * (handed back to ingress for redelivery).
 *
 * Side effects are the router's: the machine calls the {@link WorkItemEffects} it was given and
 * the router answers with events.
 */
import type { DeadLetterReason, ErrorInfo, StoredOutcome, WorkResult } from '@meshroute/mesh';
import { assign, setup } from 'xstate';

/** Dead-letter reasons the router uses: those of the dead-letter schema. */
export type { DeadLetterReason } from '@meshroute/mesh';

/** The router's side of a work item. Each effect eventually sends an event back to the actor. */
export interface WorkItemEffects {
  /** Decide where to run; answer `PLACED`, `QUEUED`, `DEFERRED` or `DEAD_LETTER`. */
  place(context: WorkItemContext): void;
  /** Claim the idempotency key (first dispatch) and send the work; answer `STARTED` then an outcome. */
  dispatch(attempt: number, agentId: string, decisionId: string): void;
  /** Called when the item enters the wait queue (`true`) or leaves it (`false`). */
  queue(entered: boolean): void;
  /** Called once in a terminal state. */
  finish(state: WorkItemFinalState, context: WorkItemContext): void;
}

/** Terminal states. */
export type WorkItemFinalState = 'succeeded' | 'failed' | 'deadLettered' | 'duplicate' | 'released';

/** Input of {@link workItemMachine}. */
export interface WorkItemInput {
  workId: string;
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  maxQueueWaitMs: number;
  /** Returns the current time (epoch ms) of the injected clock. */
  now: () => number;
  /** Uniform random in [0, 1) (injectable for tests). */
  random: () => number;
  effects: WorkItemEffects;
  /**
   * Set when the event failed validation at ingress: the item goes straight from `received` to
   * `deadLettered` with this reason and error, without placement.
   */
  invalid?: { reason: DeadLetterReason; error: ErrorInfo } | undefined;
}

/**
 * What the machine remembers. The input is kept whole under `input` rather than spread into
 * the context: XState copies the context on every `assign` (`Object.assign({}, context, …)`),
 * and past 16 properties V8 turns those copies into slow dictionary-mode objects (several µs
 * per transition, and slower reads of every field afterwards).
 */
export interface WorkItemContext {
  input: WorkItemInput;
  attempt: number;
  agentId: string | undefined;
  decisionId: string | undefined;
  decisionIds: string[];
  triedAgents: string[];
  backoffMs: number;
  deferMs: number;
  queuedSinceMs: number | undefined;
  result: WorkResult | undefined;
  error: ErrorInfo | undefined;
  deadLetterReason: DeadLetterReason | undefined;
  stored: StoredOutcome | undefined;
}

/** Events of {@link workItemMachine}. */
export type WorkItemEvent =
  | { type: 'PLACED'; agentId: string; decisionId: string }
  | { type: 'QUEUED'; decisionId?: string }
  | { type: 'CAPACITY' }
  | { type: 'DEFERRED'; delayMs: number; decisionId: string }
  | { type: 'STARTED'; attempt: number }
  | { type: 'SUCCEEDED'; attempt: number; result: WorkResult }
  | { type: 'FAILED'; attempt: number; result: WorkResult; error: ErrorInfo }
  | { type: 'RETRY'; attempt: number; error: ErrorInfo }
  | { type: 'DUPLICATE'; stored: StoredOutcome }
  | { type: 'DEAD_LETTER'; reason: DeadLetterReason; error: ErrorInfo }
  | { type: 'RELEASE' };

/** Full-jitter exponential backoff: uniform in [0, min(max, base * 2^(attempt - 1))]. */
export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * cap);
}

const retriesExhausted = (error: ErrorInfo, attempts: number): ErrorInfo => ({
  code: 'RETRIES_EXHAUSTED',
  message: `gave up after ${attempts} attempt(s); last error: ${error.code}: ${error.message}`,
  retryable: false,
  details: { attempts, last: error },
});

const machineSetup = setup({
  types: {
    context: {} as WorkItemContext,
    input: {} as WorkItemInput,
    events: {} as WorkItemEvent,
  },
  delays: {
    backoff: ({ context }) => context.backoffMs,
    deferral: ({ context }) => context.deferMs,
    queueTimeout: ({ context }) =>
      Math.max(
        0,
        context.input.maxQueueWaitMs - (context.input.now() - (context.queuedSinceMs ?? context.input.now())),
      ),
  },
  guards: {
    currentAttempt: ({ context, event }) => 'attempt' in event && event.attempt === context.attempt,
    canRetry: ({ context, event }) =>
      'attempt' in event && event.attempt === context.attempt && context.attempt < context.input.maxAttempts,
  },
  actions: {
    place: ({ context }) => context.input.effects.place(context),
    dispatch: ({ context }) =>
      context.input.effects.dispatch(context.attempt, context.agentId as string, context.decisionId as string),
    enterQueue: ({ context }) => context.input.effects.queue(true),
    leaveQueue: ({ context }) => context.input.effects.queue(false),
    deadLetter: assign(({ event }) =>
      event.type === 'DEAD_LETTER' ? { deadLetterReason: event.reason, error: event.error } : {},
    ),
    recordDuplicate: assign(({ event }) => (event.type === 'DUPLICATE' ? { stored: event.stored } : {})),
    recordSuccess: assign(({ event }) =>
      event.type === 'SUCCEEDED' ? { result: event.result, error: undefined } : {},
    ),
    recordFailure: assign(({ event }) => (event.type === 'FAILED' ? { result: event.result, error: event.error } : {})),
    scheduleRetry: assign(({ context, event }) =>
      event.type === 'RETRY'
        ? {
            error: event.error,
            backoffMs: backoffDelayMs(
              context.attempt,
              context.input.backoffBaseMs,
              context.input.backoffMaxMs,
              context.input.random,
            ),
            attempt: context.attempt + 1,
          }
        : {},
    ),
    exhaustRetries: assign(({ context, event }) =>
      event.type === 'RETRY'
        ? { deadLetterReason: 'RETRIES_EXHAUSTED' as const, error: retriesExhausted(event.error, context.attempt) }
        : {},
    ),
  },
});

/** The outcomes of a dispatched or running item (shared by both states). */
const inFlightTransitions = {
  DUPLICATE: { target: 'duplicate', actions: 'recordDuplicate' },
  SUCCEEDED: { guard: 'currentAttempt', target: 'succeeded', actions: 'recordSuccess' },
  FAILED: { guard: 'currentAttempt', target: 'failed', actions: 'recordFailure' },
  RETRY: [
    { guard: 'canRetry', target: 'backoff', actions: 'scheduleRetry' },
    { guard: 'currentAttempt', target: 'deadLettered', actions: 'exhaustRetries' },
  ],
} as const;

/** The work item machine. */
export const workItemMachine = machineSetup.createMachine({
  id: 'workItem',
  initial: 'received',
  context: ({ input }) => ({
    input,
    attempt: 1,
    agentId: undefined,
    decisionId: undefined,
    decisionIds: [],
    triedAgents: [],
    backoffMs: 0,
    deferMs: 0,
    queuedSinceMs: undefined,
    result: undefined,
    error: undefined,
    deadLetterReason: undefined,
    stored: undefined,
  }),
  on: {
    DEAD_LETTER: { target: '.deadLettered', actions: 'deadLetter' },
    RELEASE: { target: '.released' },
  },
  states: {
    /** Transient: an invalid event is dead-lettered at once, a valid one placed. */
    received: {
      always: [
        {
          guard: ({ context }) => context.input.invalid !== undefined,
          target: 'deadLettered',
          actions: assign(({ context }) => ({
            deadLetterReason: context.input.invalid?.reason,
            error: context.input.invalid?.error,
          })),
        },
        { target: 'placing' },
      ],
    },
    placing: {
      entry: 'place',
      on: {
        PLACED: {
          target: 'dispatched',
          actions: assign(({ context, event }) => ({
            agentId: event.agentId,
            decisionId: event.decisionId,
            decisionIds: [...context.decisionIds, event.decisionId],
            triedAgents: context.triedAgents.includes(event.agentId)
              ? context.triedAgents
              : [...context.triedAgents, event.agentId],
            queuedSinceMs: undefined,
          })),
        },
        QUEUED: {
          target: 'queued',
          actions: assign(({ context, event }) => ({
            queuedSinceMs: context.queuedSinceMs ?? context.input.now(),
            decisionIds:
              event.decisionId && !context.decisionIds.includes(event.decisionId)
                ? [...context.decisionIds, event.decisionId]
                : context.decisionIds,
          })),
        },
        DEFERRED: {
          target: 'deferred',
          actions: assign(({ context, event }) => ({
            deferMs: event.delayMs,
            decisionIds: [...context.decisionIds, event.decisionId],
          })),
        },
      },
    },
    queued: {
      entry: 'enterQueue',
      exit: 'leaveQueue',
      on: { CAPACITY: 'placing' },
      after: {
        queueTimeout: {
          target: 'deadLettered',
          actions: assign(({ context }) => ({
            deadLetterReason: 'NO_ELIGIBLE_AGENT' as const,
            error: {
              code: 'NO_ELIGIBLE_AGENT' as const,
              message: `every eligible agent stayed busy for ${context.input.maxQueueWaitMs} ms`,
              retryable: true,
              details: { queuedMs: context.input.maxQueueWaitMs },
            },
          })),
        },
      },
    },
    deferred: {
      after: { deferral: 'placing' },
    },
    // In flight: on its way to an agent (`dispatched`) or running there (`running`). Two flat
    // states sharing their outcome transitions (a compound parent costs every transition more).
    dispatched: {
      entry: 'dispatch',
      on: { STARTED: { guard: 'currentAttempt', target: 'running' }, ...inFlightTransitions },
    },
    running: {
      on: inFlightTransitions,
    },
    backoff: {
      after: { backoff: 'placing' },
    },
    succeeded: { type: 'final', entry: ({ context }) => context.input.effects.finish('succeeded', context) },
    failed: { type: 'final', entry: ({ context }) => context.input.effects.finish('failed', context) },
    deadLettered: { type: 'final', entry: ({ context }) => context.input.effects.finish('deadLettered', context) },
    duplicate: { type: 'final', entry: ({ context }) => context.input.effects.finish('duplicate', context) },
    released: { type: 'final', entry: ({ context }) => context.input.effects.finish('released', context) },
  },
});
