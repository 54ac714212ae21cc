/**
 * Router options: every knob, its default as a `DEFAULT_*` constant, and
 * {@link resolveRouterOptions} that validates and fills them once.
 */
import { ConfigError, DEFAULT_MAX_JSON_DEPTH } from '@meshroute/mesh';

/** How often agents heartbeat, ms. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1_000;
/** Missed heartbeats before an agent is lost. */
export const DEFAULT_MISSED_HEARTBEATS_BEFORE_LOST = 3;
/** Missed heartbeats before a ready agent is considered degraded. */
export const DEFAULT_MISSED_HEARTBEATS_BEFORE_DEGRADED = 2;
/** Dispatch attempts per work item (first dispatch included). */
export const DEFAULT_MAX_ATTEMPTS = 5;
/** Base of the exponential retry backoff, ms. */
export const DEFAULT_BACKOFF_BASE_MS = 50;
/** Cap of the exponential retry backoff, ms. */
export const DEFAULT_BACKOFF_MAX_MS = 2_000;
/** Work items that may wait for a free slot at once. */
export const DEFAULT_MAX_QUEUED = 10_000;
/** How long a queued work item may wait for a free slot before it is dead-lettered, ms. */
export const DEFAULT_MAX_QUEUE_WAIT_MS = 30_000;
/** How long an agent may take to answer one dispatch, ms. */
export const DEFAULT_DISPATCH_TIMEOUT_MS = 10_000;
/** Largest accepted event, bytes (1 MiB). */
export const DEFAULT_MAX_EVENT_BYTES = 1_048_576;
/** HTTP ingress port (`meshroute up`). */
export const DEFAULT_HTTP_PORT = 8080;
/** Wait of `?wait=1` when the event carries no latency budget, ms. */
export const DEFAULT_HTTP_WAIT_MS = 30_000;
/** Longest `?wait=1`, whatever the event's latency budget, ms (5 min, as for NATS outcome questions). */
export const DEFAULT_HTTP_MAX_WAIT_MS = 300_000;
/** Deferrable work waits when an eligible agent is at most this share of the chosen one's carbon intensity. */
export const DEFAULT_DEFER_THRESHOLD_RATIO = 0.8;
/** How often deferred work is re-decided, ms. */
export const DEFAULT_DEFER_RECHECK_MS = 60_000;
/** How far back observed agent carbon intensities count as "expected again", ms (one day). */
export const DEFAULT_CARBON_MEMORY_MS = 86_400_000;
/** Safety margin kept before a deadline when deferring, ms. */
export const DEFAULT_DEFER_MARGIN_MS = 1_000;
/** How long a redelivered event's recorded outcome is kept, ms (1 h). */
export const DEFAULT_IDEMPOTENCY_TTL_MS = 3_600_000;
/** How long a dispatch claim blocks other routers, ms. */
export const DEFAULT_CLAIM_TTL_MS = 60_000;
/** Delay of a redelivery requested by the router (busy, another router owns the event), ms. */
export const DEFAULT_NAK_DELAY_MS = 1_000;
/** Network round trip assumed for an agent before it was measured, ms. */
export const DEFAULT_INITIAL_RTT_MS = 1;
/** Weight of a new round-trip sample in the per-agent EWMA. */
export const DEFAULT_RTT_EWMA_ALPHA = 0.2;
/** Work items the router holds at once (received, not terminal) before it pushes back. */
export const DEFAULT_MAX_IN_FLIGHT_ITEMS = 50_000;

/** Options of {@link createRouter}. Every field is optional; see the `DEFAULT_*` constants. */
export interface RouterOptions {
  /** Expected agent heartbeat interval. @default 1000 */
  heartbeatIntervalMs?: number;
  /** Missed heartbeats before an agent is lost and its work fails over. @default 3 */
  missedHeartbeatsBeforeLost?: number;
  /** Missed heartbeats before a ready agent counts as degraded. @default 2 */
  missedHeartbeatsBeforeDegraded?: number;
  /** Dispatch attempts per work item, retries and failovers included. @default 5 */
  maxAttempts?: number;
  /** Retry backoff base (full jitter: random in [0, min(max, base * 2^(attempt-1))]). @default 50 */
  backoffBaseMs?: number;
  /** Retry backoff cap. @default 2000 */
  backoffMaxMs?: number;
  /** Bound of the wait queue (work whose eligible agents are all busy). @default 10000 */
  maxQueued?: number;
  /** Longest wait in the queue before dead-lettering. @default 30000 */
  maxQueueWaitMs?: number;
  /** Per-dispatch answer timeout. @default 10000 */
  dispatchTimeoutMs?: number;
  /** Largest event accepted. @default 1048576 */
  maxEventBytes?: number;
  /**
   * Deepest nesting of arrays/objects accepted in an event: deeper ones are dead-lettered
   * `INVALID_EVENT` (attribute `data`, rule `max-depth`) before anything recursive reads them.
   * @default 128 (`DEFAULT_MAX_JSON_DEPTH` of `@meshroute/mesh`)
   */
  maxJsonDepth?: number;
  /** HTTP ingress port (0: any free port). @default 8080 */
  httpPort?: number;
  /** HTTP ingress host. @default '0.0.0.0' */
  httpHost?: string;
  /** `?wait=1` limit when the event has no latency budget. @default 30000 */
  httpWaitMs?: number;
  /**
   * Longest `?wait=1` whatever the event's latency budget (which may be up to 2^31-1 ms): past it the
   * request is answered 504, the event accepted and still running. @default 300000
   */
  httpMaxWaitMs?: number;
  /** Carbon time shifting: defer when a greener eligible slot is expected at most this ratio of the chosen intensity. @default 0.8 */
  deferThresholdRatio?: number;
  /** Re-decide deferred work this often. @default 60000 */
  deferRecheckMs?: number;
  /** Remember observed agent intensities this long. @default 86400000 */
  carbonMemoryMs?: number;
  /** Margin before the deadline when deferring. @default 1000 */
  deferMarginMs?: number;
  /** Keep recorded outcomes for redeliveries this long. @default 3600000 */
  idempotencyTtlMs?: number;
  /** A dispatch claim's lifetime. @default 60000 */
  claimTtlMs?: number;
  /** Redelivery delay requested on backpressure or a foreign claim. @default 1000 */
  nakDelayMs?: number;
  /** RTT assumed before measuring. @default 1 */
  initialRttMs?: number;
  /** Weight of a new RTT sample. @default 0.2 */
  rttEwmaAlpha?: number;
  /** Work items held at once before backpressure. @default 50000 */
  maxInFlightItems?: number;
  /**
   * Cost budgets per tenant (the `tenant` intent attribute): each dispatch spends the chosen
   * agent's `costPerJob` from its tenant's budget in the state store (atomically, shared by every
   * router on the same store); work whose dispatch would overspend is dead-lettered
   * `BUDGET_EXCEEDED` with the remaining budget and when the window ends. Tenants not listed have
   * no budget. While the store is unavailable, budgets are not enforced (routing goes on).
   * @default {} (no budgets)
   */
  tenantBudgets?: Record<string, TenantBudget>;
  /**
   * Event rate limits per tenant at the HTTP ingress: at most `limit` events per fixed window of
   * `windowMs`, counted in the state store (shared by every router on the same store); a request
   * over the limit is answered 429 with `Retry-After` and nothing of it is accepted. Events
   * published to the NATS ingress directly are not limited. Not enforced while the store is
   * unavailable. @default {} (no limits)
   */
  tenantRateLimits?: Record<string, TenantRateLimit>;
}

/** A tenant's event rate limit: at most `limit` events per window of `windowMs`. */
export interface TenantRateLimit {
  /** Events per window (a positive integer). */
  limit: number;
  /** Window length, ms (a fixed window starting at the first event). */
  windowMs: number;
}

/** A tenant's cost budget: `limit` (in the unit of agents' `costPerJob`) per window of `windowMs`. */
export interface TenantBudget {
  /** Most the tenant may spend per window, same unit as `costPerJob` (e.g. 12.5). */
  limit: number;
  /** Window length, ms (a fixed window starting at the first spend). */
  windowMs: number;
}

/** Micro-units per cost unit: budgets are kept in the state store as integers. */
export const COST_MICRO_UNITS = 1_000_000;

/** {@link RouterOptions} with every field filled. */
export type ResolvedRouterOptions = Required<RouterOptions>;

function positiveInt(name: string, value: number | undefined, def: number, min = 1): number {
  const v = value ?? def;
  if (!Number.isInteger(v) || v < min) throw new ConfigError(name, `must be an integer >= ${min}, got ${value}`);
  return v;
}

function ratio(name: string, value: number | undefined, def: number, max = 1): number {
  const v = value ?? def;
  if (!Number.isFinite(v) || v <= 0 || v > max) {
    throw new ConfigError(name, `must be a number in (0, ${max}], got ${value}`);
  }
  return v;
}

/**
 * Validate options and fill defaults.
 * @throws ConfigError naming the first invalid option
 * @example resolveRouterOptions({ maxAttempts: 3 }).heartbeatIntervalMs // 1000
 */
export function resolveRouterOptions(input: RouterOptions = {}): ResolvedRouterOptions {
  const backoffBaseMs = positiveInt('backoffBaseMs', input.backoffBaseMs, DEFAULT_BACKOFF_BASE_MS, 0);
  const backoffMaxMs = positiveInt('backoffMaxMs', input.backoffMaxMs, DEFAULT_BACKOFF_MAX_MS, 0);
  if (backoffMaxMs < backoffBaseMs) throw new ConfigError('backoffMaxMs', 'must be >= backoffBaseMs');
  const missedLost = positiveInt(
    'missedHeartbeatsBeforeLost',
    input.missedHeartbeatsBeforeLost,
    DEFAULT_MISSED_HEARTBEATS_BEFORE_LOST,
  );
  const missedDegraded = positiveInt(
    'missedHeartbeatsBeforeDegraded',
    input.missedHeartbeatsBeforeDegraded,
    Math.min(DEFAULT_MISSED_HEARTBEATS_BEFORE_DEGRADED, missedLost),
  );
  if (missedDegraded > missedLost) {
    throw new ConfigError('missedHeartbeatsBeforeDegraded', 'must be <= missedHeartbeatsBeforeLost');
  }
  const httpHost = input.httpHost ?? '0.0.0.0';
  if (typeof httpHost !== 'string' || httpHost === '') throw new ConfigError('httpHost', 'must be a host name');
  return {
    heartbeatIntervalMs: positiveInt('heartbeatIntervalMs', input.heartbeatIntervalMs, DEFAULT_HEARTBEAT_INTERVAL_MS),
    missedHeartbeatsBeforeLost: missedLost,
    missedHeartbeatsBeforeDegraded: missedDegraded,
    maxAttempts: positiveInt('maxAttempts', input.maxAttempts, DEFAULT_MAX_ATTEMPTS),
    backoffBaseMs,
    backoffMaxMs,
    maxQueued: positiveInt('maxQueued', input.maxQueued, DEFAULT_MAX_QUEUED, 0),
    maxQueueWaitMs: positiveInt('maxQueueWaitMs', input.maxQueueWaitMs, DEFAULT_MAX_QUEUE_WAIT_MS),
    dispatchTimeoutMs: positiveInt('dispatchTimeoutMs', input.dispatchTimeoutMs, DEFAULT_DISPATCH_TIMEOUT_MS),
    maxEventBytes: positiveInt('maxEventBytes', input.maxEventBytes, DEFAULT_MAX_EVENT_BYTES),
    maxJsonDepth: positiveInt('maxJsonDepth', input.maxJsonDepth, DEFAULT_MAX_JSON_DEPTH),
    httpPort: positiveInt('httpPort', input.httpPort, DEFAULT_HTTP_PORT, 0),
    httpHost,
    httpWaitMs: positiveInt('httpWaitMs', input.httpWaitMs, DEFAULT_HTTP_WAIT_MS),
    httpMaxWaitMs: positiveInt('httpMaxWaitMs', input.httpMaxWaitMs, DEFAULT_HTTP_MAX_WAIT_MS),
    deferThresholdRatio: ratio('deferThresholdRatio', input.deferThresholdRatio, DEFAULT_DEFER_THRESHOLD_RATIO),
    deferRecheckMs: positiveInt('deferRecheckMs', input.deferRecheckMs, DEFAULT_DEFER_RECHECK_MS),
    carbonMemoryMs: positiveInt('carbonMemoryMs', input.carbonMemoryMs, DEFAULT_CARBON_MEMORY_MS, 0),
    deferMarginMs: positiveInt('deferMarginMs', input.deferMarginMs, DEFAULT_DEFER_MARGIN_MS, 0),
    idempotencyTtlMs: positiveInt('idempotencyTtlMs', input.idempotencyTtlMs, DEFAULT_IDEMPOTENCY_TTL_MS),
    claimTtlMs: positiveInt('claimTtlMs', input.claimTtlMs, DEFAULT_CLAIM_TTL_MS),
    nakDelayMs: positiveInt('nakDelayMs', input.nakDelayMs, DEFAULT_NAK_DELAY_MS, 0),
    initialRttMs: ratio('initialRttMs', input.initialRttMs, DEFAULT_INITIAL_RTT_MS, 60_000),
    rttEwmaAlpha: ratio('rttEwmaAlpha', input.rttEwmaAlpha, DEFAULT_RTT_EWMA_ALPHA),
    maxInFlightItems: positiveInt('maxInFlightItems', input.maxInFlightItems, DEFAULT_MAX_IN_FLIGHT_ITEMS),
    tenantBudgets: resolveTenantBudgets(input.tenantBudgets),
    tenantRateLimits: resolveTenantRateLimits(input.tenantRateLimits),
  };
}

function resolveTenantRateLimits(input: Record<string, TenantRateLimit> | undefined): Record<string, TenantRateLimit> {
  const out: Record<string, TenantRateLimit> = Object.create(null);
  if (input === undefined) return out;
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ConfigError('tenantRateLimits', 'must be an object of tenant → { limit, windowMs }');
  }
  for (const [tenant, r] of Object.entries(input)) {
    const name = `tenantRateLimits.${tenant}`;
    if (tenant === '') throw new ConfigError('tenantRateLimits', 'a tenant name must not be empty');
    if (typeof r !== 'object' || r === null) throw new ConfigError(name, 'must be { limit, windowMs }');
    out[tenant] = {
      limit: positiveInt(`${name}.limit`, r.limit, 0),
      windowMs: positiveInt(`${name}.windowMs`, r.windowMs, 0),
    };
  }
  return out;
}

function resolveTenantBudgets(input: Record<string, TenantBudget> | undefined): Record<string, TenantBudget> {
  const out: Record<string, TenantBudget> = Object.create(null);
  if (input === undefined) return out;
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ConfigError('tenantBudgets', 'must be an object of tenant → { limit, windowMs }');
  }
  for (const [tenant, b] of Object.entries(input)) {
    const name = `tenantBudgets.${tenant}`;
    if (tenant === '') throw new ConfigError('tenantBudgets', 'a tenant name must not be empty');
    if (typeof b !== 'object' || b === null) throw new ConfigError(name, 'must be { limit, windowMs }');
    if (typeof b.limit !== 'number' || !Number.isFinite(b.limit) || Math.round(b.limit * COST_MICRO_UNITS) < 1) {
      throw new ConfigError(`${name}.limit`, `must be a positive number (at least 0.000001), got ${String(b.limit)}`);
    }
    out[tenant] = { limit: b.limit, windowMs: positiveInt(`${name}.windowMs`, b.windowMs, 0) };
  }
  return out;
}
