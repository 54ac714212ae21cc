/**
 * The in-memory {@link StateStore}: the default for a single router. Idempotency claims, recorded
 * outcomes, tenant budgets and rate limits live in maps and expire by the injected clock; every
 * operation runs to completion synchronously, so concurrent callers in one process never see a
 * half-applied update. Several routers need a shared store (`redisStateStore`).
 */
import {
  type Clock,
  ConfigError,
  ErrorCode,
  type IdempotencyClaim,
  MeshError,
  type QuotaDecision,
  type StateStore,
  type StoredOutcome,
  systemClock,
} from '@meshroute/mesh';

/** How often (in operations) expired entries are swept out. */
export const DEFAULT_MEMORY_STORE_SWEEP_EVERY_OPS = 1_024;

/**
 * How many recorded outcomes the in-memory store keeps at most; past it the oldest are dropped
 * (a redelivery of such an event after that is run again). About 0.5 KB each.
 */
export const DEFAULT_MEMORY_STORE_MAX_OUTCOMES = 100_000;

/** Options of {@link memoryStateStore}. */
export interface MemoryStateStoreOptions {
  /** Time source for expiry. @default systemClock */
  clock?: Clock;
  /** Sweep expired entries every this many operations. @default {@link DEFAULT_MEMORY_STORE_SWEEP_EVERY_OPS} */
  sweepEveryOps?: number;
  /**
   * Recorded outcomes kept at most (oldest dropped first), besides their TTL: a single router's
   * memory must not grow with its traffic. @default {@link DEFAULT_MEMORY_STORE_MAX_OUTCOMES}
   */
  maxOutcomes?: number;
}

interface Expiring {
  expiresAtMs: number;
}
interface Claim extends Expiring {
  ownerId: string;
}
interface Done extends Expiring {
  /** The outcome as JSON: one string per entry (cheap to keep and to copy; read back rarely). */
  outcome: string;
}
interface Window extends Expiring {
  used: number;
}

function positive(option: string, value: number): void {
  if (!Number.isFinite(value) || value <= 0) throw new ConfigError(option, `must be a positive number, got ${value}`);
}
function positiveInt(option: string, value: number): void {
  if (!Number.isSafeInteger(value) || value <= 0)
    throw new ConfigError(option, `must be a positive integer, got ${value}`);
}
function nonEmpty(option: string, value: string): void {
  if (typeof value !== 'string' || value === '') throw new ConfigError(option, 'must be a non-empty string');
}

/**
 * Create an in-memory StateStore.
 * @example
 * const store = memoryStateStore();
 * if ((await store.claim(key, routerId, 60_000)).kind === 'claimed') { ... }
 */
export function memoryStateStore(options: MemoryStateStoreOptions = {}): StateStore {
  const clock = options.clock ?? systemClock;
  const sweepEveryOps = options.sweepEveryOps ?? DEFAULT_MEMORY_STORE_SWEEP_EVERY_OPS;
  positiveInt('sweepEveryOps', sweepEveryOps);
  const maxOutcomes = options.maxOutcomes ?? DEFAULT_MEMORY_STORE_MAX_OUTCOMES;
  positiveInt('maxOutcomes', maxOutcomes);
  const claims = new Map<string, Claim>();
  const done = new Map<string, Done>();
  const budgets = new Map<string, Window>();
  const rates = new Map<string, Window>();
  let ops = 0;
  let closed = false;

  const live = <V extends Expiring>(map: Map<string, V>, key: string, now: number): V | undefined => {
    const v = map.get(key);
    if (v && v.expiresAtMs <= now) {
      map.delete(key);
      return undefined;
    }
    return v;
  };
  const begin = (): number => {
    if (closed) throw new MeshError(ErrorCode.SHUTTING_DOWN, 'the state store is closed');
    const now = clock.now();
    if (++ops % sweepEveryOps === 0) {
      // Maps keep insertion order and entries of one kind mostly share a TTL, so the expired ones
      // are at the front: stop at the first live entry (a straggler with a shorter TTL is dropped
      // when read, or on a later sweep once the entries before it expire).
      for (const map of [claims, done, budgets, rates] as Map<string, Expiring>[]) {
        for (const [k, v] of map) {
          if (v.expiresAtMs > now) break;
          map.delete(k);
        }
      }
    }
    return now;
  };

  return {
    async claim(key: string, ownerId: string, ttlMs: number): Promise<IdempotencyClaim> {
      nonEmpty('key', key);
      nonEmpty('ownerId', ownerId);
      positive('ttlMs', ttlMs);
      const now = begin();
      const d = live(done, key, now);
      if (d) return { kind: 'completed', result: JSON.parse(d.outcome) as StoredOutcome };
      const c = live(claims, key, now);
      if (c && c.ownerId !== ownerId)
        return { kind: 'in-progress', ownerId: c.ownerId, expiresInMs: c.expiresAtMs - now };
      claims.delete(key); // re-inserted at the end: the map stays in expiry order for the sweep
      claims.set(key, { ownerId, expiresAtMs: now + ttlMs });
      return { kind: 'claimed' };
    },

    async complete(key: string, outcome: StoredOutcome, ttlMs: number): Promise<void> {
      nonEmpty('key', key);
      positive('ttlMs', ttlMs);
      const now = begin();
      // Re-insert so that the map stays in recording order (the oldest is evicted first).
      done.delete(key);
      done.set(key, { outcome: JSON.stringify(outcome), expiresAtMs: now + ttlMs });
      if (done.size > maxOutcomes) {
        for (const k of done.keys()) {
          done.delete(k);
          if (done.size <= maxOutcomes) break;
        }
      }
      claims.delete(key);
    },

    async release(key: string, ownerId: string): Promise<void> {
      const now = begin();
      const c = live(claims, key, now);
      if (c && c.ownerId === ownerId) claims.delete(key);
    },

    async outcome(key: string): Promise<StoredOutcome | undefined> {
      const now = begin();
      const d = live(done, key, now);
      return d ? (JSON.parse(d.outcome) as StoredOutcome) : undefined;
    },

    async spend(tenant: string, amount: number, limit: number, windowMs: number): Promise<QuotaDecision> {
      nonEmpty('tenant', tenant);
      if (!Number.isSafeInteger(amount) || amount < 0) {
        throw new ConfigError('amount', `must be a non-negative integer (micro-units), got ${amount}`);
      }
      positiveInt('limit', limit);
      positive('windowMs', windowMs);
      const now = begin();
      const w = live(budgets, tenant, now);
      const used = w?.used ?? 0;
      if (used + amount > limit) {
        return {
          allowed: false,
          remaining: Math.max(0, limit - used),
          retryAfterMs: w ? w.expiresAtMs - now : windowMs,
        };
      }
      if (w) w.used = used + amount;
      else budgets.set(tenant, { used: amount, expiresAtMs: now + windowMs });
      return { allowed: true, remaining: limit - used - amount, retryAfterMs: 0 };
    },

    async hit(key: string, limit: number, windowMs: number, count = 1): Promise<QuotaDecision> {
      nonEmpty('key', key);
      positiveInt('limit', limit);
      positive('windowMs', windowMs);
      positiveInt('count', count);
      const now = begin();
      let w = live(rates, key, now);
      if (!w) {
        w = { used: 0, expiresAtMs: now + windowMs };
        rates.set(key, w);
      }
      w.used += count;
      if (w.used > limit) return { allowed: false, remaining: 0, retryAfterMs: w.expiresAtMs - now };
      return { allowed: true, remaining: limit - w.used, retryAfterMs: 0 };
    },

    async healthy(): Promise<boolean> {
      return !closed;
    },

    async close(): Promise<void> {
      closed = true;
      claims.clear();
      done.clear();
      budgets.clear();
      rates.clear();
    },
  };
}
