/**
 * {@link StateStore} on Redis through ioredis, shared by several routers. Every read-modify-write
 * is one Lua script, so it is atomic on the server: claims are `SET NX PX` (exclusive), release is
 * compare-and-delete by owner, a tenant budget is checked and spent in one step (never
 * overspent), and a fixed-window rate limit is `INCR` + `PEXPIRE` together.
 *
 * When Redis cannot be reached, operations fail fast with {@link StoreUnavailableError}
 * (retryable), `healthy()` is false, and {@link RedisStateStore.status} reports `degraded`, then
 * `recovered` when the connection is back.
 */
import {
  type Clock,
  ConfigError,
  ErrorCode,
  type IdempotencyClaim,
  type Logger,
  MeshError,
  noopLogger,
  type QuotaDecision,
  type StateStore,
  type StoredOutcome,
  StoreUnavailableError,
  systemClock,
} from '@meshroute/mesh';
import { Redis, type RedisOptions } from 'ioredis';

/** Key prefix of every key the store writes. */
export const DEFAULT_REDIS_KEY_PREFIX = 'meshroute:';
/** How long one operation may take before it fails with `StoreUnavailableError`. */
export const DEFAULT_REDIS_OPERATION_TIMEOUT_MS = 2_000;
/** Longest pause between reconnect attempts of a client the store creates. */
export const DEFAULT_REDIS_MAX_RECONNECT_DELAY_MS = 1_000;

/** A status change of the store's connection. */
export type RedisStoreStatusEvent =
  | { type: 'ready'; atMs: number }
  | { type: 'degraded'; atMs: number; error: string }
  | { type: 'recovered'; atMs: number; downMs: number };

/** Options of {@link redisStateStore}. */
export interface RedisStateStoreOptions {
  /** Prefix of every key. @default {@link DEFAULT_REDIS_KEY_PREFIX} */
  keyPrefix?: string;
  /** Time source (status event times, downtime). @default systemClock */
  clock?: Clock;
  /** @default noopLogger */
  logger?: Logger;
  /** Per-operation time limit. @default {@link DEFAULT_REDIS_OPERATION_TIMEOUT_MS} */
  operationTimeoutMs?: number;
}

/** A Redis-backed StateStore with connection status. */
export interface RedisStateStore extends StateStore {
  /** Typed status events (`ready`, `degraded`, `recovered`) until `close()`. */
  status(): AsyncIterable<RedisStoreStatusEvent>;
  /** Call `handler` on each status event; returns a function that stops it. */
  onStatus(handler: (event: RedisStoreStatusEvent) => void): () => void;
  /** Whether the store considers itself degraded now (connection lost). */
  degraded(): boolean;
}

interface ResolvedOptions {
  keyPrefix: string;
  clock: Clock;
  logger: Logger;
  operationTimeoutMs: number;
}

function resolveOptions(options: RedisStateStoreOptions): ResolvedOptions {
  const operationTimeoutMs = options.operationTimeoutMs ?? DEFAULT_REDIS_OPERATION_TIMEOUT_MS;
  if (!Number.isFinite(operationTimeoutMs) || operationTimeoutMs <= 0) {
    throw new ConfigError('operationTimeoutMs', `must be a positive number of milliseconds, got ${operationTimeoutMs}`);
  }
  const keyPrefix = options.keyPrefix ?? DEFAULT_REDIS_KEY_PREFIX;
  if (typeof keyPrefix !== 'string') throw new ConfigError('keyPrefix', 'must be a string');
  return {
    keyPrefix,
    clock: options.clock ?? systemClock,
    logger: options.logger ?? noopLogger,
    operationTimeoutMs,
  };
}

const CLAIM = `
local d = redis.call('GET', KEYS[2])
if d then return {'completed', d} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'claimed'} end
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {'claimed'}
end
return {'in-progress', cur, redis.call('PTTL', KEYS[1])}`;

const COMPLETE = `
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
return 1`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

const SPEND = `
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if used + amount > limit then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl <= 0 then ttl = tonumber(ARGV[3]) end
  local left = limit - used
  if left < 0 then left = 0 end
  return {0, left, ttl}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], amount, 'PX', ARGV[3])
else
  redis.call('INCRBY', KEYS[1], amount)
end
return {1, limit - used - amount, 0}`;

const HIT = `
local n = redis.call('INCRBY', KEYS[1], ARGV[3])
local ttl = redis.call('PTTL', KEYS[1])
if n == tonumber(ARGV[3]) or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
local limit = tonumber(ARGV[1])
if n > limit then
  if ttl < 1 then ttl = 1 end
  return {0, 0, ttl}
end
return {1, limit - n, 0}`;

interface ScriptedRedis {
  mrClaim(claimKey: string, doneKey: string, owner: string, ttlMs: number): Promise<[string, string?, number?]>;
  mrComplete(claimKey: string, doneKey: string, json: string, ttlMs: number): Promise<number>;
  mrRelease(claimKey: string, owner: string): Promise<number>;
  mrSpend(key: string, amount: number, limit: number, windowMs: number): Promise<[number, number, number]>;
  mrHit(key: string, limit: number, windowMs: number, count: number): Promise<[number, number, number]>;
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

/** The options of a client the store creates itself: fail fast, reconnect forever. */
function ownClientOptions(options: RedisOptions): RedisOptions {
  return {
    maxRetriesPerRequest: 1,
    retryStrategy: (times: number) => Math.min(50 * times, DEFAULT_REDIS_MAX_RECONNECT_DELAY_MS),
    ...options,
  };
}

/**
 * Create a Redis StateStore. Pass a connected-or-connecting `Redis` client (the store does not
 * close it), or a URL / `RedisOptions` (the store creates the client and closes it on `close()`).
 * @example
 * const store = redisStateStore('redis://127.0.0.1:6379', { keyPrefix: 'prod:' });
 * for await (const s of store.status()) if (s.type === 'degraded') log.warn('state store down');
 */
export function redisStateStore(
  redis: Redis | RedisOptions | string,
  options: RedisStateStoreOptions = {},
): RedisStateStore {
  const o = resolveOptions(options);
  const owned = !(redis instanceof Redis);
  const client: Redis =
    redis instanceof Redis
      ? redis
      : typeof redis === 'string'
        ? new Redis(redis, ownClientOptions({}))
        : new Redis(ownClientOptions(redis));
  const scripted = client as unknown as ScriptedRedis;
  const define = (name: keyof ScriptedRedis, numberOfKeys: number, lua: string): void => {
    if (typeof (client as unknown as Record<string, unknown>)[name] !== 'function') {
      client.defineCommand(name, { numberOfKeys, lua });
    }
  };
  define('mrClaim', 2, CLAIM);
  define('mrComplete', 2, COMPLETE);
  define('mrRelease', 1, RELEASE);
  define('mrSpend', 1, SPEND);
  define('mrHit', 1, HIT);

  const log = o.logger.child({ component: 'redis-state-store' });
  const idemKey = (key: string, part: 'claim' | 'done') => `${o.keyPrefix}idem:{${key}}:${part}`;
  const budgetKey = (tenant: string) => `${o.keyPrefix}budget:{${tenant}}`;
  const rateKey = (key: string) => `${o.keyPrefix}rate:{${key}}`;

  // Connection state: seen ready once, degraded since (monotonic ms) or undefined.
  let everReady = client.status === 'ready';
  let downSinceMs: number | undefined;
  let closed = false;
  const handlers = new Set<(e: RedisStoreStatusEvent) => void>();
  const closeWaiters = new Set<() => void>();
  const emit = (e: RedisStoreStatusEvent): void => {
    for (const h of handlers) h(e);
  };
  const onReady = (): void => {
    if (!everReady) {
      everReady = true;
      emit({ type: 'ready', atMs: o.clock.now() });
      return;
    }
    if (downSinceMs !== undefined) {
      const downMs = o.clock.monotonicMs() - downSinceMs;
      downSinceMs = undefined;
      log.info('state store recovered', { downMs });
      emit({ type: 'recovered', atMs: o.clock.now(), downMs });
    }
  };
  let lastError = 'connection closed';
  const onError = (err: Error): void => {
    lastError = err.message;
  };
  const onDown = (): void => {
    if (closed || downSinceMs !== undefined || !everReady) return;
    downSinceMs = o.clock.monotonicMs();
    log.warn('state store degraded', { error: lastError });
    emit({ type: 'degraded', atMs: o.clock.now(), error: lastError });
  };
  client.on('ready', onReady);
  client.on('error', onError);
  client.on('close', onDown);
  client.on('end', onDown);

  const run = async <T>(what: string, op: () => Promise<T>): Promise<T> => {
    if (closed) throw new MeshError(ErrorCode.SHUTTING_DOWN, 'the state store is closed');
    if (downSinceMs !== undefined) {
      throw new StoreUnavailableError(`redis state store is unavailable (${what}): ${lastError}`, {
        details: { operation: what },
      });
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        op(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new StoreUnavailableError(
                  `redis state store did not answer ${what} within ${o.operationTimeoutMs} ms`,
                  {
                    details: { operation: what, timeoutMs: o.operationTimeoutMs },
                  },
                ),
              ),
            o.operationTimeoutMs,
          );
          timer.unref?.();
        }),
      ]);
    } catch (err) {
      if (err instanceof MeshError) throw err;
      const e = err as Error;
      if (e?.name === 'ReplyError') {
        throw new MeshError(ErrorCode.INTERNAL, `redis refused ${what}: ${e.message}`, { cause: err });
      }
      throw new StoreUnavailableError(`redis state store is unavailable (${what}): ${e?.message ?? String(err)}`, {
        cause: err,
        details: { operation: what },
      });
    } finally {
      if (timer) clearTimeout(timer);
    }
  };

  const decodeOutcome = (json: string): StoredOutcome => JSON.parse(json) as StoredOutcome;
  const quota = (r: [number, number, number]): QuotaDecision => ({
    allowed: Number(r[0]) === 1,
    remaining: Number(r[1]),
    retryAfterMs: Number(r[2]),
  });

  const store: RedisStateStore = {
    async claim(key, ownerId, ttlMs): Promise<IdempotencyClaim> {
      nonEmpty('key', key);
      nonEmpty('ownerId', ownerId);
      positive('ttlMs', ttlMs);
      const r = await run('claim', () =>
        scripted.mrClaim(idemKey(key, 'claim'), idemKey(key, 'done'), ownerId, Math.ceil(ttlMs)),
      );
      if (r[0] === 'completed') return { kind: 'completed', result: decodeOutcome(r[1] ?? 'null') };
      if (r[0] === 'in-progress') {
        const pttl = Number(r[2]);
        return {
          kind: 'in-progress',
          ownerId: String(r[1] ?? ''),
          ...(Number.isFinite(pttl) && pttl >= 0 ? { expiresInMs: pttl } : {}),
        };
      }
      return { kind: 'claimed' };
    },
    async complete(key, outcome, ttlMs) {
      nonEmpty('key', key);
      positive('ttlMs', ttlMs);
      const json = JSON.stringify(outcome);
      await run('complete', () =>
        scripted.mrComplete(idemKey(key, 'claim'), idemKey(key, 'done'), json, Math.ceil(ttlMs)),
      );
    },
    async release(key, ownerId) {
      nonEmpty('key', key);
      await run('release', () => scripted.mrRelease(idemKey(key, 'claim'), ownerId));
    },
    async outcome(key) {
      nonEmpty('key', key);
      const json = await run('outcome', () => client.get(idemKey(key, 'done')));
      return json === null ? undefined : decodeOutcome(json);
    },
    async spend(tenant, amount, limit, windowMs) {
      nonEmpty('tenant', tenant);
      if (!Number.isSafeInteger(amount) || amount < 0) {
        throw new ConfigError('amount', `must be a non-negative integer (micro-units), got ${amount}`);
      }
      positiveInt('limit', limit);
      positive('windowMs', windowMs);
      return quota(await run('spend', () => scripted.mrSpend(budgetKey(tenant), amount, limit, Math.ceil(windowMs))));
    },
    async hit(key, limit, windowMs, count = 1) {
      nonEmpty('key', key);
      positiveInt('limit', limit);
      positive('windowMs', windowMs);
      positiveInt('count', count);
      return quota(await run('hit', () => scripted.mrHit(rateKey(key), limit, Math.ceil(windowMs), count)));
    },
    async healthy() {
      if (closed || downSinceMs !== undefined) return false;
      try {
        return (await run('ping', () => client.ping())) === 'PONG';
      } catch {
        return false;
      }
    },
    degraded: () => downSinceMs !== undefined,
    onStatus(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    status(): AsyncIterable<RedisStoreStatusEvent> {
      return {
        [Symbol.asyncIterator]() {
          const queue: RedisStoreStatusEvent[] = [];
          let wake: (() => void) | undefined;
          let done = closed;
          const handler = (e: RedisStoreStatusEvent) => {
            queue.push(e);
            wake?.();
          };
          const stopOnClose = () => {
            done = true;
            wake?.();
          };
          handlers.add(handler);
          closeWaiters.add(stopOnClose);
          const finish = () => {
            handlers.delete(handler);
            closeWaiters.delete(stopOnClose);
          };
          return {
            async next(): Promise<IteratorResult<RedisStoreStatusEvent>> {
              for (;;) {
                const e = queue.shift();
                if (e) return { value: e, done: false };
                if (done) {
                  finish();
                  return { value: undefined, done: true };
                }
                await new Promise<void>((resolve) => {
                  wake = resolve;
                });
                wake = undefined;
              }
            },
            async return(): Promise<IteratorResult<RedisStoreStatusEvent>> {
              done = true;
              finish();
              return { value: undefined, done: true };
            },
          };
        },
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      client.off('ready', onReady);
      client.off('error', onError);
      client.off('close', onDown);
      client.off('end', onDown);
      for (const w of closeWaiters) w();
      handlers.clear();
      if (owned) {
        try {
          await client.quit();
        } catch {
          client.disconnect();
        }
      }
    },
  };
  return store;
}
