/**
 * The router engine: consumes ingress deliveries, places each event's work with the active policy
 * bundle over the live agent registry, dispatches it, retries and fails over, records outcomes and
 * acknowledges ingress only when the work item is terminal. Talks to ports only.
 */
import { randomUUID } from 'node:crypto';
import {
  type CapacityReport,
  type Clock,
  type DeadLetterRecord,
  type DecisionRecord,
  decodeNats,
  type ErrorInfo,
  type EventSource,
  type IngressDelivery,
  type Intent,
  InvalidEventError,
  InvalidIntentError,
  jsonDeeperThan,
  type Logger,
  type Mesh,
  MeshError,
  noopLogger,
  parseIntent,
  type QuotaDecision,
  residencyAllows,
  type StateStore,
  type StoredOutcome,
  systemClock,
  toMeshError,
  type WorkItem,
  type WorkloadSpec,
  type WorkResult,
} from '@meshroute/mesh';
import { type Span, SpanKind } from '@opentelemetry/api';
import { type Actor, createActor, fromCallback } from 'xstate';
import { AGENT_LEFT_REASON } from './agent-machine.js';
import { type AgentEntry, AgentRegistry, type RegistryChange } from './agent-registry.js';
import { ANSWER_HEADERS, encodeAnswer, type RouterAnswer } from './answer.js';
import { COST_MICRO_UNITS, type ResolvedRouterOptions, type RouterOptions, resolveRouterOptions } from './options.js';
import {
  type AgentView,
  type PlacementPolicy,
  type PolicySource,
  type RouterEvent,
  toPolicySource,
} from './policy-port.js';
import { type RouterStatusEvent, StatusHub } from './status.js';
import { createRouterTelemetry, DEFAULT_ASSUMED_JOB_POWER_W, estimateGrams, traceparentOfSpan } from './telemetry.js';
import {
  type DeadLetterReason,
  type WorkItemContext,
  type WorkItemEffects,
  type WorkItemFinalState,
  workItemMachine,
} from './work-item-machine.js';
import { agentCanRun, WORKLOAD_BACKEND_RULE, type WorkloadCatalog, workloadBackends } from './workloads.js';
import { toXStateClock } from './xstate-clock.js';

/** Engine name and version written into decision records by the router. */
export const ROUTER_ENGINE = { name: 'meshroute-router', version: '0.1.0' } as const;

/**
 * What {@link IngressPublisher.publish} resolves with when the ingress already holds an event with
 * the same `source` and `id` (JetStream de-duplicated the publish): the router then answers from
 * the first one's outcome ({@link Router.outcome}).
 */
export const DUPLICATE_PUBLISH = 'duplicate' as const;

/** Publishes an event into the ingress stream (so HTTP events take the same at-least-once path). */
export interface IngressPublisher {
  /**
   * Publish `event`; when `waitMs` is given, resolve with the router's answer (or `undefined` when
   * none came in time). Resolves {@link DUPLICATE_PUBLISH} when the ingress de-duplicated it.
   */
  publish(
    event: RouterEvent,
    options: { waitMs: number | undefined },
  ): Promise<RouterAnswer | undefined | typeof DUPLICATE_PUBLISH>;
}

/** How often {@link Router.outcome} looks in the state store for an outcome it waits for. */
export const OUTCOME_POLL_MS = 100;

/** Dependencies and options of {@link createRouter}. */
export interface CreateRouterOptions {
  /** Dispatch, capacity, outcome publishing. */
  mesh: Mesh;
  /** Ingress deliveries (a JetStream durable consumer). Without one, only {@link Router.submit} and HTTP feed the router. */
  source?: EventSource;
  /** Idempotency keys and shared state. */
  store: StateStore;
  /** The active policy bundle, or a holder of it (hot reload). */
  policies: PlacementPolicy | PolicySource;
  /** Time. @default systemClock */
  clock?: Clock;
  /** @default noopLogger */
  logger?: Logger;
  /** This router's id (decision records, claims). @default a random id */
  routerId?: string;
  /** Tuning, see {@link RouterOptions}. */
  options?: RouterOptions;
  /** Where HTTP events are published. Without one, HTTP events are processed in this router directly (at-most-once across a crash). */
  ingressPublisher?: IngressPublisher;
  /** Uniform random in [0, 1) for backoff jitter. @default Math.random */
  random?: () => number;
  /**
   * The registered workloads (in memory, e.g. {@link watchWorkloadCatalog} over the NATS
   * registry). With it, an event naming an unregistered workload is dead-lettered
   * `WORKLOAD_NOT_FOUND` before any dispatch, and agents that cannot run the workload (no artifact
   * for any of their backends, or a `workloads` list without it) are excluded before the policy
   * decides (rule `router/workload-backend` in the decision record). Without it, every workload is
   * assumed to exist and to run anywhere.
   */
  workloads?: WorkloadCatalog;
}

/** The answer of {@link Router.admit}. */
export type Admission =
  | { allowed: true }
  | { allowed: false; tenant: string; limit: number; windowMs: number; retryAfterMs: number };

/** Health of a router (`GET /healthz`). */
export interface RouterHealth {
  status: 'ok' | 'degraded' | 'stopped';
  routerId: string;
  /** Digest of the active policy bundle. */
  policyDigest: string | null;
  agents: number;
  registryRevision: number;
  inFlightItems: number;
  queued: number;
  deferred: number;
  store: 'ok' | 'degraded';
}

/** A running router. */
export interface Router {
  readonly routerId: string;
  readonly options: ResolvedRouterOptions;
  /** Load the capacity snapshot, subscribe to heartbeats, start consuming ingress. */
  start(): Promise<void>;
  /**
   * Stop consuming, let in-flight dispatches answer for up to `drainTimeoutMs` (default: the
   * dispatch timeout), hand everything unfinished back to ingress, stop timers.
   */
  stop(options?: { drainTimeoutMs?: number }): Promise<void>;
  /** Typed lifecycle events. */
  status(): AsyncIterable<RouterStatusEvent>;
  /** Process one ingress delivery; resolves when its work item is terminal (or handed back). */
  handleDelivery(delivery: IngressDelivery): Promise<void>;
  /**
   * Accept an already validated event from an edge (HTTP): publish it into ingress when an
   * {@link IngressPublisher} is configured, else process it here. With `waitMs`, resolve with the
   * answer (`undefined` on timeout). The edge applies the tenant rate limit itself ({@link admit})
   * before; the event is not counted again.
   */
  submit(event: RouterEvent, options?: { waitMs?: number }): Promise<RouterAnswer | undefined>;
  /** Whether new work should be pushed back (queue or in-flight bound reached). */
  overloaded(): boolean;
  /** Health summary. */
  health(): RouterHealth;
  /** Whether the router can take work: started, with a policy bundle. */
  ready(): boolean;
  /**
   * Whether `workload` is registered (always `true` when the router was created without a
   * workload catalog). Edges use it to refuse unknown workloads at once.
   */
  knowsWorkload(workload: string): boolean;
  /** Policy views of the live agents. */
  agents(): AgentView[];
  /**
   * Tell the router its mesh connection came back after an outage. While it was away it heard no
   * heartbeats, so its registry may have dropped agents that are alive: for one loss window
   * (`heartbeatIntervalMs` × `missedHeartbeatsBeforeLost`) work that finds no routable agent at all
   * is handed back to ingress instead of being dead-lettered, until the agents announce themselves.
   */
  meshReconnected(): void;
  /**
   * Tell the router its mesh connection is down. It hears no heartbeats then, so its registry
   * drops agents that may well be alive: until {@link meshReconnected}, work that finds no
   * routable agent at all waits in the router's queue (up to `maxQueueWaitMs`) for the agents to
   * be heard again instead of being dead-lettered `NO_ELIGIBLE_AGENT`.
   */
  meshDisconnected(): void;
  /**
   * Count `events` events against `tenant`'s rate limit (`tenantRateLimits`). Resolves
   * `{ allowed: true }` when the tenant has no limit, the events fit, or the store is unavailable;
   * otherwise the limit and when its window ends. Edges (HTTP) call it before accepting events.
   */
  admit(tenant: string, events: number): Promise<Admission>;
  /**
   * The answer for an event that was accepted before (a producer sending the same `source` and
   * `id` again): its recorded outcome, replayed (`replayed: true`); when it has none yet, waits up
   * to `waitMs` for it (this router finishing the event, or another router's outcome appearing in
   * the shared state store, looked for every {@link OUTCOME_POLL_MS}). `undefined` when none came.
   * Only the event's own tenant (`tenant`, none for the default tenant) is told its outcome.
   * @throws InvalidEventError (`id`, `duplicate-id`) when the source and id belong to another tenant's event
   */
  outcome(
    event: { source: string; id: string; tenant?: string | undefined },
    options: { waitMs: number },
  ): Promise<RouterAnswer | undefined>;
  /** The live registry (read-only use). */
  readonly registry: AgentRegistry;
}

interface ItemState {
  workId: string;
  key: string;
  delivery: IngressDelivery;
  event: RouterEvent | undefined;
  raw: string | undefined;
  intent: Intent | undefined;
  actor: Actor<typeof workItemMachine>;
  claimed: boolean;
  abort: AbortController | undefined;
  agentId: string | undefined;
  agent: { id: string; region: string; jurisdiction: string } | null;
  deferred: { untilMs: number; reason: string } | undefined;
  done: () => void;
  /** The event's span (OpenTelemetry; a no-op span unless an SDK is registered). */
  span: Span;
  receivedMs: number;
  /** Every decision whose record was published for this item, oldest first. */
  decisionIds: string[];
  /** The record of the decision that queued the item (published if the wait times out). */
  queuedRecord: (() => DecisionRecord) | undefined;
  /** How long a released item waits before it is delivered again (default: `nakDelayMs`). */
  releaseDelayMs?: number;
  /** Why the item was released (said in its dead letter when its deliveries run out). */
  releaseWhy?: string;
}

const textDecoder = new TextDecoder();

/**
 * How long `stop()` waits at most, once every item is released, for their hand-backs and dead
 * letters to be published (so that closing the connection right after does not cut them off).
 */
const STOP_SETTLE_MS = 5_000;

/** The longest a handed-back delivery waits to come again. */
const MAX_HAND_BACK_DELAY_MS = 30_000;

/**
 * How long a delivery handed back to ingress waits before it comes again: `nakDelayMs` doubled
 * with each earlier delivery, at most {@link MAX_HAND_BACK_DELAY_MS}. Every hand-back spends one
 * of the consumer's deliveries (`max_deliver`), and what makes the router hand an event back
 * lasts a while: a stream without a leader (a replicated stream whose leader was killed, until
 * the election ends, seconds) refuses the result or dead letter at once (503 no responders); the
 * mesh is unreachable; no agent has been heard since a restart; the router is full. At a fixed
 * delay the deliveries ran out within such a window and JetStream gave the event up (its outcome
 * recorded, its result never published); doubling makes ten deliveries last minutes.
 */
const handBackDelayMs = (nakDelayMs: number, redeliveryCount: number): number =>
  Math.min(nakDelayMs * 2 ** Math.min(redeliveryCount, 20), MAX_HAND_BACK_DELAY_MS);

const deadLetterError = (reason: DeadLetterReason, message: string, details?: Record<string, unknown>): ErrorInfo => ({
  code: reason === 'RETRIES_EXHAUSTED' ? 'RETRIES_EXHAUSTED' : reason,
  message,
  retryable: false,
  ...(details ? { details } : {}),
});

/** The agents of a views array that can run a workload, and the others as exclusions. */
interface WorkloadSplit {
  able: readonly AgentView[];
  excluded: { agentId: string; rules: string[] }[];
}

/** Whether a work item is on its way to an agent or running there. */
const isInFlight = (snap: { matches(state: 'dispatched' | 'running'): boolean }): boolean =>
  snap.matches('dispatched') || snap.matches('running');

/** The idempotency key of an event: its `source` and `id`. */
export function idempotencyKey(event: { source: string; id: string }): string {
  return `${event.source}#${event.id}`;
}

/**
 * Create a router.
 * @example
 * const router = createRouter({ mesh, source, store: memoryStateStore(), policies: holder });
 * await router.start();
 */
export function createRouter(deps: CreateRouterOptions): Router {
  const options = resolveRouterOptions(deps.options);
  const clock = deps.clock ?? systemClock;
  const logger = (deps.logger ?? noopLogger).child({ component: 'router' });
  const routerId = deps.routerId ?? `router-${randomUUID().slice(0, 8)}`;
  const mesh = deps.mesh;
  const store = deps.store;
  const policies = toPolicySource(deps.policies);
  const random = deps.random ?? Math.random;
  const hub = new StatusHub();
  const xclock = toXStateClock(clock);
  const nowMs = (): number => clock.now();
  // One actor system for every work item: each item's machine runs as a child of this root actor
  // (whose logic ignores the children's done events), so an item costs its own actor but not a
  // system of its own (about 2 KB of heap per in-flight item less).
  const workItems = createActor(
    fromCallback(() => undefined),
    { clock: xclock, id: 'work-items' },
  );
  workItems.start();
  const registry = new AgentRegistry({
    clock,
    heartbeatIntervalMs: options.heartbeatIntervalMs,
    missedHeartbeatsBeforeDegraded: options.missedHeartbeatsBeforeDegraded,
    missedHeartbeatsBeforeLost: options.missedHeartbeatsBeforeLost,
    initialRttMs: options.initialRttMs,
    rttEwmaAlpha: options.rttEwmaAlpha,
    carbonMemoryMs: options.carbonMemoryMs,
  });
  /** How long an agent may stay silent before it is lost: the registry's blind spot after an outage. */
  const lossWindowMs = options.heartbeatIntervalMs * options.missedHeartbeatsBeforeLost;
  /** Until then, work that finds no routable agent at all is handed back, not dead-lettered. */
  let blindUntilMs = Number.NEGATIVE_INFINITY;
  /** Set between {@link Router.meshDisconnected} and {@link Router.meshReconnected}. */
  let meshDown = false;
  const registryHasRoutableAgent = (): boolean => {
    for (const e of registry.entries()) if (registry.routable(e)) return true;
    return false;
  };

  const telemetry = createRouterTelemetry(routerId, () =>
    [...registry.entries()].map((e) => ({
      agentId: e.agentId,
      slots: e.report.slots,
      inFlight: Math.max(0, e.report.slots - registry.freeSlots(e)),
      queueDepth: e.report.queueDepth,
    })),
  );
  const items = new Map<string, ItemState>();
  const queue = new Set<ItemState>();
  /** Items waiting in `deferred` (carbon time shifting), counted for `health()`. */
  const deferredItems = new Set<ItemState>();
  const waiters = new Map<string, Set<(a: RouterAnswer, tenant: string | undefined) => void>>();
  const duplicateWaiters = new Map<string, Set<(a: RouterAnswer | undefined) => void>>();
  let lifecycle: 'idle' | 'started' | 'stopping' | 'stopped' = 'idle';
  let storeState: 'ok' | 'degraded' = 'ok';
  let unsubscribeCapacity: (() => void) | undefined;
  let wakeScheduled = false;

  // While started, check the store every heartbeat interval: an outage is noticed (and reported
  // on health) even when no work arrives, and so is the recovery.
  let cancelStoreWatch: (() => void) | undefined;
  const watchStore = (): void => {
    cancelStoreWatch = clock.setTimeout(() => {
      cancelStoreWatch = undefined;
      if (lifecycle !== 'started') return;
      store.healthy().then(
        (ok) => {
          if (ok) storeOk();
          else storeFailed(new Error('the state store health check failed'));
          watchStore();
        },
        (err: unknown) => {
          storeFailed(err);
          watchStore();
        },
      );
    }, options.heartbeatIntervalMs);
  };
  const storeFailed = (err: unknown): void => {
    if (storeState === 'ok') {
      storeState = 'degraded';
      const error = err instanceof Error ? err.message : String(err);
      logger.warn('state store unavailable; routing without idempotency claims', { error });
      hub.emit({ type: 'storeDegraded', error });
    }
  };
  const storeOk = (): void => {
    if (storeState === 'degraded') {
      storeState = 'ok';
      logger.info('state store recovered');
      hub.emit({ type: 'storeRecovered' });
    }
  };

  /** Deliveries being settled (items finishing, last deliveries being dead-lettered), for `stop()`. */
  const settling = new Set<Promise<void>>();
  const track = (p: Promise<void>): void => {
    settling.add(p);
    void p.finally(() => settling.delete(p));
  };
  /**
   * A settling of our own, tracked until `done()` (per event: without the two promises `track`
   * chains on an async function's promise).
   */
  const trackUntilDone = (): { finished: Promise<void>; done: () => void } => {
    let resolve!: () => void;
    const finished = new Promise<void>((r) => {
      resolve = r;
    });
    settling.add(finished);
    return {
      finished,
      done: () => {
        settling.delete(finished);
        resolve();
      },
    };
  };

  /**
   * Hand a delivery back to ingress: after `delayMs`, or {@link handBackDelayMs} for its delivery
   * count. On its last delivery (`deliveriesLeft` 0) a hand-back would lose the event, as the
   * stream stops delivering it: it is dead-lettered `DELIVERIES_EXHAUSTED`, saying `why`, instead.
   */
  const handBack = (delivery: IngressDelivery, why: string, delayMs?: number): void => {
    if (delivery.deliveriesLeft === 0) {
      track(giveUp(delivery, why));
      return;
    }
    delivery.nak(delayMs ?? handBackDelayMs(options.nakDelayMs, delivery.redeliveryCount));
  };

  /** Release a work item to ingress, saying why (see {@link handBack}). */
  const release = (it: ItemState, why: string): void => {
    it.releaseWhy = why;
    it.actor.send({ type: 'RELEASE' });
  };

  const exhaustedError = (delivery: IngressDelivery, why: string): ErrorInfo =>
    deadLetterError(
      'DELIVERIES_EXHAUSTED',
      `the event was handed back to ingress on its last delivery (${delivery.redeliveryCount + 1}) because ${why}`,
      { deliveries: delivery.redeliveryCount + 1, handedBackBecause: why },
    );

  /**
   * Dead-letter the last delivery of an event that is not a work item here (the router stopping
   * or full, a finished item whose outcome could not be published): record it with what can be
   * read of the event, answer whoever waits, and ack. When even the dead letter cannot be
   * published the delivery is handed back, and the stream delivers it no more (logged as an error).
   */
  const giveUp = async (delivery: IngressDelivery, why: string): Promise<void> => {
    let event: RouterEvent | undefined;
    try {
      if (!jsonDeeperThan(delivery.body, options.maxJsonDepth)) {
        event = decodeNats(delivery.headers, delivery.body, {
          maxEventBytes: options.maxEventBytes,
          validateIntent: false,
        }) as RouterEvent;
      }
    } catch {
      event = undefined;
    }
    const error = exhaustedError(delivery, why);
    const eventId = event?.id ?? '';
    const eventSource = event?.source ?? '';
    const tenant = typeof event?.tenant === 'string' ? event.tenant : undefined;
    try {
      await mesh.publishDeadLetter({
        schema: 'meshroute.deadletter/v1',
        eventId,
        eventSource,
        ...(tenant ? { tenant } : {}),
        reason: 'DELIVERIES_EXHAUSTED',
        error,
        attempts: 0,
        decisionIds: [],
        timeMs: clock.now(),
        event: event ?? textDecoder.decode(delivery.body.subarray(0, 4096)),
      });
    } catch (err) {
      logger.error('the last delivery of an event could not be dead-lettered; the stream will not deliver it again', {
        eventId,
        eventSource,
        why,
        error: toMeshError(err).message,
      });
      delivery.nak();
      return;
    }
    telemetry.deadLettered('DELIVERIES_EXHAUSTED');
    const answer: RouterAnswer = {
      schema: 'meshroute.answer/v1',
      id: eventId,
      source: eventSource,
      outcome: 'dead-lettered',
      agent: null,
      decisionId: null,
      error,
      deadLetterReason: 'DELIVERIES_EXHAUSTED',
    };
    if (event) notifyWaiters(idempotencyKey(event), answer, tenant);
    if (delivery.replyTo) {
      await mesh
        .reply(delivery.replyTo, encodeAnswer(answer), {
          [ANSWER_HEADERS.outcome]: answer.outcome,
          [ANSWER_HEADERS.errorCode]: error.code,
        })
        .catch(() => {});
    }
    await delivery.ack().catch((err: unknown) => {
      logger.warn('ack of a dead-lettered last delivery failed', { eventId, error: toMeshError(err).message });
    });
    hub.emit({ type: 'workFinished', eventId, state: 'deadLettered' });
  };

  const background = (what: string, p: Promise<unknown>): void => {
    p.catch((err: unknown) => logger.warn(`${what} failed`, { error: toMeshError(err).message }));
  };

  // --- capacity and the wait queue -------------------------------------------------------------

  const scheduleWake = (): void => {
    if (wakeScheduled || queue.size === 0) return;
    wakeScheduled = true;
    queueMicrotask(() => {
      wakeScheduled = false;
      let free = 0;
      for (const e of registry.entries()) if (registry.routable(e)) free += registry.freeSlots(e);
      if (free === 0) return;
      const batch: ItemState[] = [];
      for (const it of queue) {
        batch.push(it);
        if (batch.length >= free) break;
      }
      for (const it of batch) it.actor.send({ type: 'CAPACITY' });
    });
  };

  registry.onChange((change: RegistryChange) => {
    switch (change.type) {
      case 'agentJoined':
        hub.emit({ type: 'agentJoined', agentId: change.agentId });
        break;
      case 'agentState':
        hub.emit({ type: 'agentState', agentId: change.agentId, state: change.state });
        break;
      case 'agentLost': {
        let inFlight = 0;
        for (const it of items.values()) {
          if (it.agentId !== change.agentId) continue;
          const snap = it.actor.getSnapshot();
          if (!isInFlight(snap)) continue;
          inFlight++;
          it.abort?.abort();
          it.actor.send({
            type: 'RETRY',
            attempt: snap.context.attempt,
            error: {
              code: 'AGENT_LOST',
              message: `agent ${change.agentId} was lost: ${change.reason}`,
              retryable: true,
              details: { agentId: change.agentId },
            },
          });
        }
        if (change.reason === AGENT_LEFT_REASON && inFlight === 0) {
          logger.info('agent left', { agentId: change.agentId });
        } else logger.warn('agent lost', { agentId: change.agentId, reason: change.reason, inFlight });
        hub.emit({ type: 'agentLost', agentId: change.agentId, reason: change.reason, inFlight });
        break;
      }
      case 'capacity':
        break;
    }
    scheduleWake();
  });

  // Heartbeats also go to the capacity snapshot (KV) so that a starting router knows the mesh at
  // once; at most once per heartbeat interval per agent, and at once when the status changes.
  const lastSaved = new Map<string, { atMs: number; status: string }>();
  const onCapacity = (report: CapacityReport): void => {
    if (!registry.apply(report)) return;
    const now = clock.now();
    const prev = lastSaved.get(report.agentId);
    if (prev && prev.status === report.status && now - prev.atMs < report.heartbeatIntervalMs) return;
    lastSaved.set(report.agentId, { atMs: now, status: report.status });
    if (lastSaved.size > 4 * Math.max(16, registry.size)) {
      for (const id of lastSaved.keys()) if (!registry.get(id)) lastSaved.delete(id);
    }
    background('save capacity snapshot', mesh.saveCapacity(report));
  };

  // --- placement ---------------------------------------------------------------------------------

  const publishDecision = (record: DecisionRecord): void => {
    background('publish decision', mesh.publishDecision(record));
  };

  const candidateEntries = (it: ItemState, ranking: { agentId: string }[]): AgentEntry[] => {
    const out: AgentEntry[] = [];
    for (const r of ranking) {
      const e = registry.get(r.agentId);
      if (!e || !registry.routable(e)) continue;
      if (it.intent && !residencyAllows(it.intent, e.report.jurisdiction)) {
        logger.error('policy ranked an agent outside the event residency; ignored', {
          agentId: e.agentId,
          jurisdiction: e.report.jurisdiction,
          eventId: it.event?.id,
        });
        continue;
      }
      out.push(e);
    }
    return out;
  };

  /**
   * The agents of a views array that can run a workload, and the others as exclusions; cached
   * per array (the registry hands out the same array until something changes) and workload spec.
   */
  let splits = new Map<WorkloadSpec, WorkloadSplit>();
  let splitsOf: readonly AgentView[] | undefined;
  const workloadSplit = (views: readonly AgentView[], spec: WorkloadSpec): WorkloadSplit => {
    if (splitsOf !== views) {
      splits = new Map();
      splitsOf = views;
    }
    let split = splits.get(spec);
    if (split === undefined) {
      const able: AgentView[] = [];
      const excluded: { agentId: string; rules: string[] }[] = [];
      for (const v of views) {
        if (agentCanRun(spec, v)) able.push(v);
        else excluded.push({ agentId: v.id, rules: [WORKLOAD_BACKEND_RULE] });
      }
      split = { able: excluded.length === 0 ? views : able, excluded };
      if (splits.size >= 256) splits.clear();
      splits.set(spec, split);
    }
    return split;
  };

  /** Send the item to `pick`: reserve a slot, answer `PLACED`, publish the decision record after. */
  const route = (
    it: ItemState,
    actor: ItemState['actor'],
    pick: AgentEntry,
    decisionId: string,
    baseRecord: () => DecisionRecord,
  ): void => {
    const chosen = { agentId: pick.agentId, region: pick.report.region, jurisdiction: pick.report.jurisdiction };
    const deferredInfo = it.deferred;
    if (it.span.isRecording())
      it.span.setAttributes({
        'meshroute.agent.id': pick.agentId,
        'meshroute.agent.region': pick.report.region,
        'meshroute.agent.jurisdiction': pick.report.jurisdiction,
        'meshroute.agent.carbon_intensity': pick.report.carbonIntensity,
      });
    telemetry.routed(pick.agentId);
    registry.reserve(pick.agentId);
    it.decisionIds.push(decisionId);
    it.agentId = pick.agentId;
    it.agent = { id: pick.agentId, region: pick.report.region, jurisdiction: pick.report.jurisdiction };
    actor.send({ type: 'PLACED', agentId: pick.agentId, decisionId });
    // The audit record is built and published off the dispatch path (right after it).
    setImmediate(() => {
      const record = baseRecord();
      record.outcome = 'routed';
      record.chosen = chosen;
      if (deferredInfo) record.deferred = deferredInfo;
      publishDecision(record);
    });
  };

  const place = (it: ItemState, ctx: WorkItemContext): void => {
    deferredItems.delete(it);
    const attempt = ctx.attempt;
    const actor = it.actor;
    if (lifecycle !== 'started') {
      release(it, 'the router was stopping');
      return;
    }
    const event = it.event as RouterEvent;
    const intent = it.intent as Intent;
    const now = clock.now();
    if (intent.deadlineMs !== undefined && now > intent.deadlineMs) {
      actor.send({
        type: 'DEAD_LETTER',
        reason: 'DEADLINE_PASSED',
        error: deadLetterError('DEADLINE_PASSED', `the deadline ${event.deadline} passed before the work could run`, {
          deadlineMs: intent.deadlineMs,
        }),
      });
      return;
    }
    const bundle = policies.current();
    if (!bundle) {
      hub.emit({ type: 'policyMissing' });
      release(it, 'no policy bundle was active');
      return;
    }
    let views: readonly AgentView[] = registry.views();
    // Workload-aware placement: an unregistered workload never reaches an agent, and agents that
    // cannot run it are excluded before the policy decides (and listed in the record).
    let workloadExcluded: { agentId: string; rules: string[] }[] = [];
    let spec: WorkloadSpec | undefined;
    if (deps.workloads) {
      const workload = intent.workload as string;
      spec = deps.workloads.get(workload);
      if (!spec) {
        actor.send({
          type: 'DEAD_LETTER',
          reason: 'WORKLOAD_NOT_FOUND',
          error: {
            code: 'WORKLOAD_NOT_FOUND',
            message: `workload ${JSON.stringify(workload)} is not registered`,
            retryable: false,
            details: { attribute: 'workload', rule: 'registered', workload },
          },
        });
        return;
      }
      const split = workloadSplit(views, spec);
      views = split.able;
      workloadExcluded = split.excluded;
    }
    const decisionId = randomUUID();
    const decideStarted = clock.monotonicMs();
    let decision: ReturnType<PlacementPolicy['decide']>;
    try {
      decision = bundle.decide(event, views, {
        decisionId,
        nowMs: now,
        registryRevision: registry.revision,
        routerId,
        attempt,
      });
    } catch (err) {
      const e = toMeshError(err);
      actor.send({
        type: 'DEAD_LETTER',
        reason: 'POLICY_ERROR',
        error: deadLetterError('POLICY_ERROR', `policy evaluation failed: ${e.message}`),
      });
      return;
    }
    const decisionMs = clock.monotonicMs() - decideStarted;
    telemetry.decisionMs(decisionMs, decision.outcome);
    if (it.span.isRecording()) {
      it.span.setAttributes({
        'meshroute.policy.digest': bundle.digest,
        'meshroute.decision.id': decisionId,
        'meshroute.decision.outcome': decision.outcome,
        'meshroute.decision.duration_ms': decisionMs,
        'meshroute.decision.candidates': views.length,
      });
      it.span.addEvent('decision', {
        'meshroute.attempt': attempt,
        'meshroute.decision.id': decisionId,
        'meshroute.decision.outcome': decision.outcome,
        'meshroute.decision.duration_ms': decisionMs,
      });
    }
    // Every excluded agent, for the dead letter (materialised only then: it walks every agent).
    const excluded = () =>
      workloadExcluded.length > 0 ? [...decision.excluded, ...workloadExcluded] : decision.excluded;
    // Every decision whose record is published is listed in the item's dead letter (if any).
    // The record (with this router's id and the attempt) is the decision's own object, published
    // once: the caller sets its outcome on it rather than copying it (a copy of this ~20-field
    // object costs more than building it).
    let withWorkloadExclusions = workloadExcluded.length === 0;
    const baseRecord = (): DecisionRecord => {
      if (!it.decisionIds.includes(decisionId)) it.decisionIds.push(decisionId);
      const record = decision.record;
      // A policy that does not write them from the options (the bundle does): set here.
      if (record.routerId !== routerId) record.routerId = routerId;
      if (record.attempt !== attempt) record.attempt = attempt;
      if (!withWorkloadExclusions) {
        withWorkloadExclusions = true;
        record.excluded = [...record.excluded, ...workloadExcluded];
        record.candidates += workloadExcluded.length;
      }
      return record;
    };
    if (decision.outcome === 'policy-error') {
      const base = baseRecord();
      publishDecision(base);
      actor.send({
        type: 'DEAD_LETTER',
        reason: 'POLICY_ERROR',
        error: deadLetterError('POLICY_ERROR', 'the policy bundle failed to decide', { errors: base.errors ?? [] }),
      });
      return;
    }
    const tried = ctx.triedAgents;
    // The common case first: the policy's best agent is routable here, has a free slot, was not
    // tried yet, and the work cannot wait for a greener slot (no deadline). Otherwise walk the
    // whole ranking.
    const best = decision.outcome === 'routed' && intent.deadlineMs === undefined ? decision.chosen : undefined;
    const bestEntry = best ? registry.get(best.id) : undefined;
    if (
      bestEntry !== undefined &&
      registry.routable(bestEntry) &&
      registry.freeSlots(bestEntry) > 0 &&
      !tried.includes(bestEntry.agentId) &&
      residencyAllows(intent, bestEntry.report.jurisdiction)
    ) {
      route(it, actor, bestEntry, decisionId, baseRecord);
      return;
    }
    const candidates = decision.outcome === 'routed' ? candidateEntries(it, decision.ranking) : [];
    if (candidates.length === 0) {
      if (intent.deadlineMs !== undefined) {
        const latest = intent.deadlineMs - options.deferMarginMs;
        if (latest > now) {
          const delayMs = Math.max(1, Math.min(options.deferRecheckMs, latest - now));
          const deferred = { untilMs: now + delayMs, reason: 'no eligible agent now; waiting within the deadline' };
          it.deferred = deferred;
          publishDecision({ ...baseRecord(), outcome: 'deferred', chosen: null, deferred });
          deferredItems.add(it);
          actor.send({ type: 'DEFERRED', delayMs, decisionId });
          return;
        }
      }
      if (meshDown && !registryHasRoutableAgent() && (queue.size < options.maxQueued || queue.has(it))) {
        // Cut off from the mesh: the agents went missing from the registry because their
        // heartbeats cannot reach this router, not because they are gone. Wait for them.
        logger.debug('mesh connection down and no agent heard; queuing the event', { eventId: event.id });
        it.queuedRecord = () => ({ ...baseRecord(), outcome: 'no-eligible-agent', chosen: null });
        actor.send({ type: 'QUEUED' });
        return;
      }
      if (now < blindUntilMs && !registryHasRoutableAgent()) {
        // Started or reconnected moments ago and no agent heard yet: hand the event back rather
        // than dead-letter it for a registry that has not caught up with the mesh.
        logger.debug('no routable agent yet after start or reconnect; handing the event back', { eventId: event.id });
        release(it, 'no agent had been heard since the router started or reconnected');
        return;
      }
      publishDecision({ ...baseRecord(), outcome: 'no-eligible-agent', chosen: null });
      actor.send({
        type: 'DEAD_LETTER',
        reason: 'NO_ELIGIBLE_AGENT',
        error: deadLetterError('NO_ELIGIBLE_AGENT', `no eligible agent for event ${event.id}`, {
          excluded: excluded(),
          ...(spec && workloadExcluded.length > 0 ? { workloadBackends: workloadBackends(spec) } : {}),
        }),
      });
      return;
    }
    const free = candidates.filter((e) => registry.freeSlots(e) > 0);
    const pick = free.find((e) => !tried.includes(e.agentId)) ?? free[0];
    // Carbon-aware time shifting: deferrable work waits for a clearly greener eligible slot.
    if (intent.deadlineMs !== undefined) {
      const reference = pick ?? candidates[0];
      if (reference) {
        let greenest: AgentEntry | undefined;
        let greenestIntensity = Number.POSITIVE_INFINITY;
        for (const e of candidates) {
          const expected = registry.lowestObservedCarbon(e);
          if (expected < greenestIntensity) {
            greenestIntensity = expected;
            greenest = e;
          }
        }
        const current = reference.report.carbonIntensity;
        const estimateMs = registry.view(reference).estimatedLatencyMs;
        const latest = intent.deadlineMs - options.deferMarginMs - estimateMs;
        if (greenest && greenestIntensity <= current * options.deferThresholdRatio && latest > now) {
          const delayMs = Math.max(1, Math.min(options.deferRecheckMs, latest - now));
          const deferred = {
            untilMs: now + delayMs,
            reason: `carbon: eligible agent ${greenest.agentId} expected at ${greenestIntensity} gCO2e/kWh vs ${current} on ${reference.agentId}`,
          };
          it.deferred = deferred;
          publishDecision({ ...baseRecord(), outcome: 'deferred', chosen: null, deferred });
          deferredItems.add(it);
          actor.send({ type: 'DEFERRED', delayMs, decisionId });
          return;
        }
      }
    }
    if (!pick) {
      if (queue.size >= options.maxQueued && !queue.has(it)) {
        hub.emit({ type: 'backpressure', queued: queue.size, inFlightItems: items.size });
        release(it, `the router's wait queue was full (${options.maxQueued} items)`);
        return;
      }
      // Every eligible agent is busy: if the wait times out, this decision is the one recorded.
      it.queuedRecord = () => ({ ...baseRecord(), outcome: 'no-eligible-agent', chosen: null });
      actor.send({ type: 'QUEUED' });
      return;
    }
    route(it, actor, pick, decisionId, baseRecord);
  };

  // --- dispatch ------------------------------------------------------------------------------------

  /**
   * Spend the chosen agent's `costPerJob` from the tenant's budget (when the tenant has one).
   * Resolves `false` when the budget cannot take it: the item is then dead-lettered
   * `BUDGET_EXCEEDED`. An unavailable store does not stop the dispatch (budgets go unenforced).
   */
  const spendBudget = async (it: ItemState, agentId: string): Promise<boolean> => {
    const tenant = it.intent?.tenant;
    const budget = tenant === undefined ? undefined : options.tenantBudgets[tenant];
    if (tenant === undefined || budget === undefined || storeState === 'degraded') return true;
    const cost = Number(registry.get(agentId)?.report.costPerJob ?? 0);
    const amount = Number.isFinite(cost) && cost > 0 ? Math.round(cost * COST_MICRO_UNITS) : 0;
    if (amount === 0) return true;
    let quota: QuotaDecision;
    try {
      quota = await store.spend(tenant, amount, Math.round(budget.limit * COST_MICRO_UNITS), budget.windowMs);
      storeOk();
    } catch (err) {
      storeFailed(err);
      return true;
    }
    if (quota.allowed) return true;
    registry.release(agentId);
    scheduleWake();
    const remaining = quota.remaining / COST_MICRO_UNITS;
    it.actor.send({
      type: 'DEAD_LETTER',
      reason: 'BUDGET_EXCEEDED',
      error: deadLetterError(
        'BUDGET_EXCEEDED',
        `tenant ${tenant} has ${remaining} of its budget of ${budget.limit} left in this window; the job on agent ${agentId} costs ${cost}`,
        { tenant, agentId, cost, limit: budget.limit, remaining, retryAfterMs: quota.retryAfterMs },
      ),
    });
    return false;
  };

  const dispatch = async (it: ItemState, attempt: number, agentId: string, decisionId: string): Promise<void> => {
    const actor = it.actor;
    if (!it.claimed && storeState !== 'degraded') {
      try {
        const claim = await store.claim(it.key, routerId, options.claimTtlMs);
        storeOk();
        if (claim.kind === 'completed') {
          registry.release(agentId);
          scheduleWake();
          if (!ownOutcome(claim.result, it)) {
            actor.send({ type: 'DEAD_LETTER', reason: 'INVALID_EVENT', error: otherTenantsId(it.event).toJSON() });
            return;
          }
          actor.send({ type: 'DUPLICATE', stored: claim.result });
          return;
        }
        if (claim.kind === 'in-progress' && claim.ownerId !== routerId) {
          registry.release(agentId);
          scheduleWake();
          // Another router holds the claim: it is working on the event, or it died with it. Hand
          // the event back until the claim has expired, so that a dead router's claim is gone when
          // the event comes again (handing it back sooner only spends deliveries, and JetStream
          // gives up on a message after its last one).
          it.releaseDelayMs = (claim.expiresInMs ?? options.claimTtlMs) + options.nakDelayMs;
          logger.debug('event claimed by another router; handed back until the claim expires', {
            eventId: it.event?.id,
            ownerId: claim.ownerId,
            delayMs: it.releaseDelayMs,
          });
          release(it, `router ${claim.ownerId} held the event's claim`);
          return;
        }
        it.claimed = true;
      } catch (err) {
        storeFailed(err);
      }
    } else if (!it.claimed) {
      // Degraded: probe the store so that recovery is noticed, without blocking the dispatch.
      store
        .claim(it.key, routerId, options.claimTtlMs)
        .then((claim) => {
          storeOk();
          if (claim.kind === 'claimed') it.claimed = true;
        })
        .catch(() => {});
    }
    if (!(await spendBudget(it, agentId))) return;
    const abort = new AbortController();
    it.abort = abort;
    actor.send({ type: 'STARTED', attempt });
    const work: WorkItem = {
      schema: 'meshroute.work/v1',
      workId: it.workId,
      attempt,
      decisionId,
      routerId,
      agentId,
      workload: (it.intent as Intent).workload as string,
      event: it.event as RouterEvent,
      dispatchedAtMs: clock.now(),
      timeoutMs: options.dispatchTimeoutMs,
    };
    const dspan = telemetry.startChild(it.span, `dispatch ${work.workload}`, SpanKind.PRODUCER, () => ({
      'messaging.system': 'nats',
      'meshroute.agent.id': agentId,
      'meshroute.attempt': attempt,
      'meshroute.work.id': it.workId,
    }));
    const traceparent = traceparentOfSpan(dspan);
    if (traceparent !== undefined) work.traceparent = traceparent;
    const t0 = clock.monotonicMs();
    let result: WorkResult;
    try {
      result = await mesh.dispatch(work, { timeoutMs: options.dispatchTimeoutMs, signal: abort.signal });
    } catch (err) {
      telemetry.end(dspan, toMeshError(err));
      if (registry.release(agentId)) scheduleWake();
      if (abort.signal.aborted) return; // agent lost: the registry already sent RETRY
      const e = toMeshError(err);
      if (e.code === 'TRANSPORT_ERROR' || e.code === 'SHUTTING_DOWN') {
        // The router cannot reach the mesh: not the agent's fault, so no attempt is spent; the
        // event goes back to ingress and comes again once the connection is back.
        logger.warn('mesh unreachable; handing the event back to ingress', { eventId: it.event?.id, error: e.message });
        release(it, `the mesh was unreachable: ${e.message}`);
        return;
      }
      actor.send({ type: 'RETRY', attempt, error: e.toJSON() });
      return;
    }
    telemetry.end(dspan, result.ok ? undefined : (result.error ?? { code: 'WORKLOAD_FAILED', message: 'failed' }));
    const ran = registry.get(agentId);
    if (result.ok && ran) {
      const w = Number(ran.report.labels.powerWatts ?? DEFAULT_ASSUMED_JOB_POWER_W);
      const grams = estimateGrams(
        ran.report.carbonIntensity,
        Number.isFinite(w) && w > 0 ? w : DEFAULT_ASSUMED_JOB_POWER_W,
        result.executionMs,
      );
      if (it.span.isRecording()) it.span.setAttribute('meshroute.carbon.estimated_g', grams);
      telemetry.carbonGrams(grams, agentId);
    }
    const elapsed = clock.monotonicMs() - t0;
    registry.observeRtt(agentId, elapsed - result.queueMs - result.executionMs);
    if (registry.release(agentId)) scheduleWake();
    if (result.ok) {
      actor.send({ type: 'SUCCEEDED', attempt, result });
      return;
    }
    const error: ErrorInfo = result.error ?? {
      code: 'WORKLOAD_FAILED',
      message: 'the agent reported a failure without an error',
      retryable: false,
    };
    const retry =
      error.retryable || error.code === 'AGENT_REJECTED' || error.code === 'TIMEOUT' || error.code === 'AGENT_LOST';
    if (retry) actor.send({ type: 'RETRY', attempt, error });
    else actor.send({ type: 'FAILED', attempt, result, error });
  };

  // --- terminal --------------------------------------------------------------------------------------

  const notifyDuplicates = (key: string, answer: RouterAnswer | undefined): void => {
    const set = duplicateWaiters.get(key);
    if (!set) return;
    duplicateWaiters.delete(key);
    for (const w of set) w(answer);
  };

  /**
   * Answer this router's HTTP waiters. Deliveries of the same event waiting on this one are told
   * only once its outcome is settled (result published, delivery acked): acking one of them acks
   * the message, and a result publish that failed after it could not be retried.
   */
  const notifyWaiters = (key: string, answer: RouterAnswer, tenant: string | undefined): void => {
    const set = waiters.get(key);
    if (!set) return;
    waiters.delete(key);
    for (const w of set) w(answer, tenant);
  };

  const recordFinish = (it: ItemState, state: WorkItemFinalState, ctx: WorkItemContext): void => {
    if (it.span.isRecording())
      it.span.setAttributes({
        'meshroute.outcome': state,
        'meshroute.attempts': ctx.attempt,
        'meshroute.retries': Math.max(0, ctx.attempt - 1),
        'meshroute.failovers': Math.max(0, ctx.triedAgents.length - 1),
      });
    if (state === 'deadLettered') {
      const reason = ctx.deadLetterReason ?? 'RETRIES_EXHAUSTED';
      if (it.span.isRecording()) it.span.setAttribute('meshroute.dead_letter.reason', reason);
      telemetry.deadLettered(reason);
    }
    if (state !== 'released') {
      const t = typeof it.event?.time === 'string' ? Date.parse(it.event.time) : Number.NaN;
      telemetry.endToEndMs(clock.now() - (Number.isFinite(t) ? t : it.receivedMs), state);
    }
    const ok = state === 'succeeded' || state === 'duplicate' || state === 'released';
    telemetry.end(it.span, ok ? undefined : (ctx.error ?? { code: state, message: state }));
  };

  /** Whether a recorded outcome is of this item's tenant (source and id are not scoped by tenant). */
  const ownOutcome = (stored: StoredOutcome, it: ItemState): boolean => stored.tenant === it.intent?.tenant;

  /** The error of an event re-using the source and id of another tenant's event. */
  const otherTenantsId = (event: { source: string; id: string } | undefined): InvalidEventError =>
    new InvalidEventError(
      'id',
      'duplicate-id',
      `an event with source ${JSON.stringify(event?.source)} and id ${JSON.stringify(event?.id)} was already accepted for another tenant; source and id must identify one event`,
    );

  /** The answer a recorded outcome gives again (a redelivery, a producer re-sending the event). */
  const replayedAnswer = (id: string, source: string, stored: StoredOutcome): RouterAnswer => {
    // Outcomes recorded before the agent and decision were stored with them: the live registry.
    const agentId = stored.result?.agentId;
    const entry = agentId && !stored.agent ? registry.get(agentId) : undefined;
    return {
      schema: 'meshroute.answer/v1',
      id,
      source,
      outcome: stored.outcome,
      agent:
        stored.agent ??
        (agentId
          ? { id: agentId, region: entry?.report.region ?? '', jurisdiction: entry?.report.jurisdiction ?? '' }
          : null),
      decisionId: stored.decisionId ?? null,
      ...(stored.result ? { result: stored.result } : {}),
      ...(stored.error ? { error: stored.error } : {}),
      ...(stored.outcome === 'dead-lettered' && stored.error ? { deadLetterReason: stored.error.code } : {}),
      replayed: true,
    };
  };

  /** Waits of {@link Router.outcome} in progress, each settled `undefined` by `stop()`. */
  const outcomeWaits = new Set<() => void>();

  /** See {@link Router.outcome}. */
  const awaitOutcome = (
    event: { source: string; id: string; tenant?: unknown },
    waitMs: number,
  ): Promise<RouterAnswer | undefined> =>
    new Promise<RouterAnswer | undefined>((resolve, reject) => {
      const key = idempotencyKey(event);
      const tenant = typeof event.tenant === 'string' && event.tenant !== '' ? event.tenant : undefined;
      let settled = false;
      let cancelPoll: (() => void) | undefined;
      let cancelTimer: (() => void) | undefined;
      const settle = (a: RouterAnswer | undefined, ofTenant?: string): void => {
        if (settled) return;
        settled = true;
        outcomeWaits.delete(abandon);
        cancelTimer?.();
        cancelPoll?.();
        waiters.get(key)?.delete(onAnswer);
        // An outcome is only ever told to its own tenant (source and id are not scoped by tenant).
        if (a && ofTenant !== tenant) {
          reject(otherTenantsId(event));
          return;
        }
        resolve(a);
      };
      const onAnswer = (a: RouterAnswer, ofTenant: string | undefined): void =>
        settle({ ...a, replayed: true }, ofTenant);
      const abandon = (): void => settle(undefined);
      if (lifecycle === 'stopping' || lifecycle === 'stopped') {
        resolve(undefined);
        return;
      }
      outcomeWaits.add(abandon);
      cancelTimer = clock.setTimeout(() => settle(undefined), waitMs);
      let set = waiters.get(key);
      if (!set) {
        set = new Set();
        waiters.set(key, set);
      }
      set.add(onAnswer);
      const poll = (): void => {
        store.outcome(key).then(
          (stored) => {
            if (stored) settle(replayedAnswer(event.id, event.source, stored), stored.tenant);
            else if (!settled) cancelPoll = clock.setTimeout(poll, OUTCOME_POLL_MS);
          },
          () => {
            if (!settled) cancelPoll = clock.setTimeout(poll, OUTCOME_POLL_MS);
          },
        );
      };
      poll();
    });

  /**
   * Answer the waiters in this router and, when the delivery has a reply inbox and `reply` is not
   * false, the producer. Resolves with whether a reply went out.
   */
  const answerProducer = async (it: ItemState, answer: RouterAnswer, reply = true): Promise<boolean> => {
    notifyWaiters(it.key, answer, it.intent?.tenant);
    const replyTo = it.delivery.replyTo;
    if (!replyTo || !reply) return false;
    const headers: Record<string, string> = { [ANSWER_HEADERS.outcome]: answer.outcome };
    if (answer.error) headers[ANSWER_HEADERS.errorCode] = answer.error.code;
    return mesh.reply(replyTo, encodeAnswer(answer), headers).then(
      () => true,
      (err: unknown) => {
        logger.warn('reply failed', { replyTo, error: toMeshError(err).message });
        return false;
      },
    );
  };

  /**
   * Record that the producer was answered with `stored`, so that a redelivery (a lost ack, a
   * stream leader change) is acknowledged without answering again.
   */
  const markAnswered = async (it: ItemState, stored: StoredOutcome): Promise<void> => {
    // The recorded outcome is this item's own object: marked in place, not copied.
    stored.answeredAtMs = clock.now();
    if (it.delivery.replyTo !== undefined) stored.answeredReplyTo = it.delivery.replyTo;
    await store.complete(it.key, stored, options.idempotencyTtlMs).then(storeOk, storeFailed);
  };

  const finish = async (it: ItemState, finalState: WorkItemFinalState, finalCtx: WorkItemContext): Promise<void> => {
    let state = finalState;
    let ctx = finalCtx;
    if (state === 'released' && it.delivery.deliveriesLeft === 0) {
      // Handing the last delivery back would lose the event: dead-letter it, saying why.
      state = 'deadLettered';
      ctx = {
        ...ctx,
        deadLetterReason: 'DELIVERIES_EXHAUSTED',
        error: exhaustedError(it.delivery, it.releaseWhy ?? 'it could not be placed'),
      };
    }
    if (state === 'deadLettered' && it.event && !it.claimed && storeState !== 'degraded') {
      // Dead-lettered before any dispatch claimed it (no agent now, deadline passed, ...): if an
      // earlier delivery of the same event already has an outcome, that is the answer.
      const prior = await store.outcome(it.key).then(
        (o) => {
          storeOk();
          return o;
        },
        (err: unknown) => {
          storeFailed(err);
          return undefined;
        },
      );
      if (prior && ownOutcome(prior, it)) {
        state = 'duplicate';
        ctx = { ...ctx, stored: prior };
      }
    }
    recordFinish(it, state, ctx);
    queue.delete(it);
    deferredItems.delete(it);
    items.delete(it.key);
    const event = it.event;
    const tenant = it.intent?.tenant;
    if (state === 'released') {
      if (it.claimed) {
        await store.release(it.key, routerId).catch((err: unknown) => storeFailed(err));
      }
      handBack(it.delivery, it.releaseWhy ?? 'it was released', it.releaseDelayMs);
      notifyDuplicates(it.key, undefined);
      it.done();
      return;
    }
    let answer: RouterAnswer;
    const id = event?.id ?? '';
    const source = event?.source ?? '';
    let ackable = true;
    let early: Promise<unknown> | undefined;
    // The recorded outcome this answer comes from (marked answered once the reply is out), and
    // whether the producer was already answered with it (a redelivery after a lost ack).
    let recorded: StoredOutcome | undefined;
    let alreadyAnswered = false;
    if (state === 'duplicate') {
      const stored = ctx.stored as StoredOutcome;
      recorded = stored;
      alreadyAnswered =
        stored.answeredAtMs !== undefined &&
        (stored.answeredReplyTo === undefined || stored.answeredReplyTo === it.delivery.replyTo);
      answer = replayedAnswer(id, source, stored);
      // The first run recorded the outcome; its result publish may have failed: publish again
      // (the results stream de-duplicates by work id and attempt).
      if (stored.result) {
        const pub = await mesh.publishResult(stored.result, tenant).then(
          () => true,
          () => false,
        );
        if (!pub) ackable = false;
      }
    } else if (state === 'succeeded' || state === 'failed') {
      const result = ctx.result as WorkResult;
      // Built field by field (optional fields only when set), not from spread literals: per event.
      answer = {
        schema: 'meshroute.answer/v1',
        id,
        source,
        outcome: state,
        agent: it.agent,
        decisionId: ctx.decisionId ?? null,
        result,
      };
      if (ctx.error) answer.error = ctx.error;
      const stored: StoredOutcome = { outcome: state, result, recordedAtMs: clock.now() };
      if (ctx.error) stored.error = ctx.error;
      if (ctx.decisionId !== undefined) stored.decisionId = ctx.decisionId;
      if (it.agent) stored.agent = it.agent;
      if (tenant) stored.tenant = tenant;
      // Record first (a redelivery is then answered from the store, never run twice), then answer
      // the producer while the result goes to the results stream.
      let completed = false;
      if (it.claimed) {
        completed = await store.complete(it.key, stored, options.idempotencyTtlMs).then(
          () => {
            storeOk();
            return true;
          },
          (err: unknown) => {
            storeFailed(err);
            return false;
          },
        );
      }
      early = answerProducer(it, answer).then((replied) =>
        replied && completed ? markAnswered(it, stored) : undefined,
      );
      try {
        await mesh.publishResult(result, tenant);
      } catch (err) {
        logger.warn('publishing the result failed; the event will be redelivered', {
          eventId: id,
          error: toMeshError(err).message,
        });
        ackable = false;
      }
    } else {
      // A wait in the queue that timed out: record the decision that queued it.
      if (
        it.queuedRecord &&
        ctx.deadLetterReason === 'NO_ELIGIBLE_AGENT' &&
        ctx.error?.details?.queuedMs !== undefined
      ) {
        publishDecision(it.queuedRecord());
      }
      it.queuedRecord = undefined;
      const reason = ctx.deadLetterReason ?? 'RETRIES_EXHAUSTED';
      const error = ctx.error ?? deadLetterError(reason, reason);
      answer = {
        schema: 'meshroute.answer/v1',
        id,
        source,
        outcome: 'dead-lettered',
        agent: null,
        // The last decision: the one that found no agent, deferred past the deadline, or routed
        // the last attempt.
        decisionId: it.decisionIds[it.decisionIds.length - 1] ?? ctx.decisionId ?? null,
        error,
        deadLetterReason: reason,
      };
      const record: DeadLetterRecord = {
        schema: 'meshroute.deadletter/v1',
        eventId: id,
        eventSource: source,
        ...(tenant ? { tenant } : {}),
        reason,
        error,
        attempts: ctx.decisionIds.length > 0 ? ctx.attempt : 0,
        decisionIds: [...it.decisionIds],
        timeMs: clock.now(),
        ...(event ? { event } : it.raw !== undefined ? { event: it.raw } : {}),
      };
      const stored: StoredOutcome = {
        outcome: 'dead-lettered',
        error,
        recordedAtMs: clock.now(),
        ...(answer.decisionId ? { decisionId: answer.decisionId } : {}),
        ...(tenant ? { tenant } : {}),
      };
      // Publish first: if the dead letter cannot be recorded, the claim is dropped and the event
      // is delivered again and decided afresh.
      try {
        await mesh.publishDeadLetter(record);
        if (it.claimed) {
          await store.complete(it.key, stored, options.idempotencyTtlMs).then(storeOk, storeFailed);
          recorded = stored;
        }
      } catch (err) {
        logger.warn('publishing the dead letter failed; the event will be redelivered', {
          eventId: id,
          error: toMeshError(err).message,
        });
        if (it.claimed) await store.release(it.key, routerId).catch((e: unknown) => storeFailed(e));
        ackable = false;
      }
    }
    if (!ackable) {
      // The stream did not take the result or dead letter: back off, so that the deliveries last
      // until it does (a stream leader election), rather than running out while it cannot.
      handBack(it.delivery, `the ${state === 'deadLettered' ? 'dead-letter' : 'results'} stream refused its record`);
      notifyDuplicates(it.key, undefined);
      it.done();
      return;
    }
    if (early) await early;
    else {
      const replied = await answerProducer(it, answer, !alreadyAnswered);
      if (replied && recorded && storeState === 'ok') await markAnswered(it, recorded);
    }
    await it.delivery.ack().catch((err: unknown) => {
      logger.warn('ack failed; the event may be redelivered (answered from the recorded outcome)', {
        eventId: id,
        error: toMeshError(err).message,
      });
    });
    notifyDuplicates(it.key, answer);
    hub.emit({ type: 'workFinished', eventId: id, state });
    it.done();
  };

  // --- ingress -------------------------------------------------------------------------------------------

  const handleDelivery = async (delivery: IngressDelivery): Promise<void> => {
    if (lifecycle !== 'started') {
      handBack(delivery, 'the router was stopping');
      return;
    }
    let event: RouterEvent | undefined;
    let intent: Intent | undefined;
    let invalid: { reason: DeadLetterReason; error: ErrorInfo } | undefined;
    let raw: string | undefined;
    try {
      // Hostile nesting parses, but would overflow the stack of everything recursive after it
      // (encoding the work item, the dead letter): refuse it on the bytes first.
      if (jsonDeeperThan(delivery.body, options.maxJsonDepth)) {
        throw new InvalidEventError(
          'data',
          'max-depth',
          `data: JSON nested deeper than ${options.maxJsonDepth} levels (arrays and objects) is refused`,
        );
      }
      // Intent is parsed below (once), with the workload rule added.
      event = decodeNats(delivery.headers, delivery.body, {
        maxEventBytes: options.maxEventBytes,
        validateIntent: false,
      }) as RouterEvent;
    } catch (err) {
      const e = toMeshError(err);
      raw = textDecoder.decode(delivery.body.subarray(0, 4096));
      invalid = { reason: e.code === 'INVALID_INTENT' ? 'INVALID_INTENT' : 'INVALID_EVENT', error: e.toJSON() };
    }
    if (event && !invalid) {
      try {
        intent = parseIntent(event);
        if (intent.workload === undefined) {
          throw new InvalidIntentError(
            'workload',
            'required',
            'the workload attribute is required: it names the workload to run',
          );
        }
      } catch (err) {
        invalid = { reason: 'INVALID_INTENT', error: toMeshError(err).toJSON() };
      }
    }
    // Tenant rate limits: events from NATS producers count here, once (their first delivery);
    // the HTTP ingress counted its own before publishing them (`admitted`).
    const rateTenant = intent?.tenant;
    if (
      !invalid &&
      rateTenant !== undefined &&
      options.tenantRateLimits[rateTenant] !== undefined &&
      !delivery.admitted &&
      delivery.redeliveryCount === 0
    ) {
      const admission = await router.admit(rateTenant, 1);
      if (!admission.allowed) {
        invalid = {
          reason: 'BUDGET_EXCEEDED',
          error: deadLetterError(
            'BUDGET_EXCEEDED',
            `tenant ${rateTenant} is over its rate limit of ${admission.limit} events per ${admission.windowMs} ms; retry after ${admission.retryAfterMs} ms`,
            {
              rule: 'rate-limit',
              tenant: rateTenant,
              limit: admission.limit,
              windowMs: admission.windowMs,
              retryAfterMs: admission.retryAfterMs,
            },
          ),
        };
      }
    }
    let key = event ? idempotencyKey(event) : `invalid#${randomUUID()}`;
    let existing = items.get(key);
    if (existing && !invalid && existing.intent?.tenant !== intent?.tenant) {
      // Another tenant's event with the same source and id is being worked on: not this one's.
      invalid = { reason: 'INVALID_EVENT', error: otherTenantsId(event).toJSON() };
      key = `invalid#${randomUUID()}`;
      existing = undefined;
    }
    if (existing) {
      // A redelivery while the first delivery is still being worked on: answer with it, or hand
      // it back too when the first delivery is handed back.
      delivery.working();
      await new Promise<void>((resolve) => {
        let set = duplicateWaiters.get(key);
        if (!set) {
          set = new Set();
          duplicateWaiters.set(key, set);
        }
        set.add((answer) => {
          if (answer === undefined) {
            handBack(delivery, 'an earlier delivery of the event was handed back');
            resolve();
            return;
          }
          const replyTo = delivery.replyTo;
          const done = async () => {
            if (replyTo && replyTo !== existing.delivery.replyTo) {
              await mesh.reply(replyTo, encodeAnswer({ ...answer, replayed: true })).catch(() => {});
            }
            await delivery.ack().catch(() => {});
          };
          void done().then(resolve);
        });
      });
      return;
    }
    if (items.size >= options.maxInFlightItems) {
      hub.emit({ type: 'backpressure', queued: queue.size, inFlightItems: items.size });
      handBack(delivery, `the router was full (${options.maxInFlightItems} work items)`);
      return;
    }
    const { finished, done } = trackUntilDone();
    const it = { workId: randomUUID(), key, delivery, event, raw, intent, claimed: false } as ItemState;
    it.abort = undefined;
    it.agentId = undefined;
    it.agent = null;
    it.deferred = undefined;
    it.done = done;
    it.receivedMs = clock.now();
    it.decisionIds = [];
    it.queuedRecord = undefined;
    it.span = telemetry.startEvent(event, () => ({
      'cloudevents.event_id': event?.id ?? '',
      'meshroute.work.id': it.workId,
      'meshroute.redelivery': delivery.redeliveryCount,
      ...(intent?.workload ? { 'meshroute.workload': intent.workload } : {}),
      ...(intent?.tenant ? { 'meshroute.tenant': intent.tenant } : {}),
    }));
    if (!invalid) telemetry.accepted();
    const effects: WorkItemEffects = {
      place: (ctx) => place(it, ctx),
      dispatch: (attempt, agentId, decisionId) => {
        void dispatch(it, attempt, agentId, decisionId).catch((err: unknown) => {
          logger.error('dispatch crashed', { error: toMeshError(err).message });
          it.actor.send({ type: 'RETRY', attempt, error: toMeshError(err).toJSON() });
        });
      },
      queue: (entered) => {
        // No wake here: the item queued because nothing eligible was free; capacity changes wake it.
        if (entered) queue.add(it);
        else queue.delete(it);
      },
      finish: (state, ctx) => {
        void finish(it, state, ctx).catch((err: unknown) => {
          logger.error('finishing a work item failed', { error: toMeshError(err).message });
          handBack(delivery, `finishing its work item failed: ${toMeshError(err).message}`);
          notifyDuplicates(key, undefined);
          done();
        });
      },
    };
    it.actor = createActor(workItemMachine, {
      parent: workItems,
      input: {
        workId: it.workId,
        maxAttempts: options.maxAttempts,
        backoffBaseMs: options.backoffBaseMs,
        backoffMaxMs: options.backoffMaxMs,
        maxQueueWaitMs: options.maxQueueWaitMs,
        now: nowMs,
        random,
        effects,
        invalid,
      },
    });
    items.set(key, it);
    // `received` is transient: starting the actor places the item (or dead-letters it when invalid).
    // The item's actor stops on its own in its final state (the one that resolves `finished`).
    it.actor.start();
    await finished;
  };

  // Direct processing of HTTP events (no ingress stream): an in-process delivery whose nak re-runs.
  const submitDirect = (event: RouterEvent): void => {
    const body = new TextEncoder().encode(JSON.stringify(event));
    const headers = new Map<string, string>([['content-type', 'application/cloudevents+json']]);
    let redeliveries = 0;
    const deliver = (): void => {
      const delivery: IngressDelivery = {
        headers,
        body,
        replyTo: undefined,
        redeliveryCount: redeliveries,
        // The edge calling submit() applies admission itself (`admit()`, as the HTTP ingress does).
        admitted: true,
        ack: async () => {},
        nak: (delayMs) => {
          redeliveries++;
          if (lifecycle === 'started') clock.setTimeout(deliver, delayMs ?? options.nakDelayMs);
        },
        working: () => {},
        term: () => {},
      };
      void handleDelivery(delivery);
    };
    deliver();
  };

  const router: Router = {
    routerId,
    options,
    registry,
    async admit(tenant, events) {
      const rate = options.tenantRateLimits[tenant];
      if (rate === undefined || storeState === 'degraded' || events < 1) return { allowed: true };
      let quota: QuotaDecision;
      try {
        quota = await store.hit(`rate:${tenant}`, rate.limit, rate.windowMs, events);
        storeOk();
      } catch (err) {
        storeFailed(err);
        return { allowed: true };
      }
      if (quota.allowed) return { allowed: true };
      return { allowed: false, tenant, limit: rate.limit, windowMs: rate.windowMs, retryAfterMs: quota.retryAfterMs };
    },
    meshDisconnected() {
      if (meshDown) return;
      meshDown = true;
      logger.info('mesh disconnected: work that finds no agent waits for the agents to be heard again');
    },
    meshReconnected() {
      meshDown = false;
      blindUntilMs = clock.now() + lossWindowMs;
      logger.info('mesh reconnected: waiting one loss window for heartbeats before dead-lettering for lack of agents', {
        untilMs: blindUntilMs,
      });
    },
    async start() {
      if (lifecycle !== 'idle') return;
      lifecycle = 'started';
      blindUntilMs = clock.now() + lossWindowMs;
      unsubscribeCapacity = mesh.onCapacity(onCapacity);
      watchStore();
      try {
        const snapshot = await mesh.snapshotCapacity();
        for (const r of snapshot) registry.apply(r, { fromSnapshot: true });
      } catch (err) {
        logger.warn('capacity snapshot unavailable; waiting for heartbeats', { error: toMeshError(err).message });
      }
      if (deps.source) await deps.source.start(handleDelivery);
      logger.info('router started', { routerId, agents: registry.size });
      hub.emit({ type: 'started', routerId, agents: registry.size });
    },
    async stop(stopOptions = {}) {
      const drainTimeoutMs = stopOptions.drainTimeoutMs ?? options.dispatchTimeoutMs;
      if (lifecycle === 'stopped' || lifecycle === 'stopping') return;
      lifecycle = 'stopping';
      for (const abandon of [...outcomeWaits]) abandon();
      unsubscribeCapacity?.();
      cancelStoreWatch?.();
      cancelStoreWatch = undefined;
      if (deps.source) await deps.source.close().catch(() => {});
      for (const it of [...items.values()]) {
        const snap = it.actor.getSnapshot();
        if (!isInFlight(snap)) release(it, 'the router was stopping');
      }
      const pending = [...items.values()];
      if (pending.length > 0 && drainTimeoutMs > 0) {
        // In-flight dispatches answer or time out; then everything left goes back to ingress.
        await new Promise<void>((resolve) => {
          const cancel = clock.setTimeout(resolve, drainTimeoutMs);
          void Promise.all(
            pending.map(
              (it) =>
                new Promise<void>((r) => {
                  it.actor.subscribe({ complete: r });
                  if (it.actor.getSnapshot().status !== 'active') r();
                }),
            ),
          ).then(() => {
            cancel();
            resolve();
          });
        });
      }
      for (const it of [...items.values()]) {
        it.abort?.abort();
        release(it, 'the router stopped before the work finished');
      }
      if (settling.size > 0) {
        // Let the hand-backs and dead letters just made reach the mesh before the caller closes it.
        await new Promise<void>((resolve) => {
          const cancel = clock.setTimeout(resolve, STOP_SETTLE_MS);
          void Promise.all([...settling]).then(() => {
            cancel();
            resolve();
          });
        });
      }
      registry.stop();
      workItems.stop();
      lifecycle = 'stopped';
      hub.emit({ type: 'stopped', routerId });
      hub.close();
    },
    status: () => hub.iterate(),
    handleDelivery,
    async submit(event, submitOptions = {}) {
      if (lifecycle !== 'started') {
        throw new MeshError('SHUTTING_DOWN', 'the router is not running', { retryable: true });
      }
      const waitMs = submitOptions.waitMs;
      if (deps.ingressPublisher) {
        const published = await deps.ingressPublisher.publish(event, { waitMs });
        if (published !== DUPLICATE_PUBLISH) return published;
        // The ingress already holds this event: the answer is the first one's outcome.
        return waitMs === undefined ? undefined : awaitOutcome(event, waitMs);
      }
      const key = idempotencyKey(event);
      let answered: Promise<RouterAnswer | undefined> = Promise.resolve(undefined);
      if (waitMs !== undefined) {
        answered = new Promise<RouterAnswer | undefined>((resolve) => {
          let set = waiters.get(key);
          if (!set) {
            set = new Set();
            waiters.set(key, set);
          }
          const s = set;
          const waiter = (a: RouterAnswer) => {
            cancel();
            resolve(a);
          };
          const cancel = clock.setTimeout(() => {
            s.delete(waiter);
            resolve(undefined);
          }, waitMs);
          s.add(waiter);
        });
      }
      submitDirect(event);
      return answered;
    },
    overloaded: () => (queue.size > 0 && queue.size >= options.maxQueued) || items.size >= options.maxInFlightItems,
    health() {
      const bundle = policies.current();
      return {
        status: lifecycle === 'started' ? (storeState === 'ok' ? 'ok' : 'degraded') : 'stopped',
        routerId,
        policyDigest: bundle?.digest ?? null,
        agents: registry.size,
        registryRevision: registry.revision,
        inFlightItems: items.size,
        queued: queue.size,
        deferred: deferredItems.size,
        store: storeState,
      };
    },
    ready: () => lifecycle === 'started' && policies.current() !== undefined,
    outcome: (event, outcomeOptions) => awaitOutcome(event, outcomeOptions.waitMs),
    knowsWorkload: (workload) => deps.workloads === undefined || deps.workloads.get(workload) !== undefined,
    agents: () => [...registry.entries()].map((e) => registry.view(e)),
  };
  return router;
}
