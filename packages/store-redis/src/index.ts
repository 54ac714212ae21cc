/**
 * @module @meshroute/store-redis
 * StateStore on Redis (ioredis): idempotency keys, tenant budgets, rate limits, shared by several
 * routers. Atomic Lua scripts; typed connection status events.
 *
 * @example
 * import { redisStateStore } from '@meshroute/store-redis';
 * const store = redisStateStore('redis://127.0.0.1:6379', { keyPrefix: 'meshroute:' });
 * const claim = await store.claim(`${event.source}/${event.id}`, routerId, 60_000);
 */
export {
  DEFAULT_REDIS_KEY_PREFIX,
  DEFAULT_REDIS_MAX_RECONNECT_DELAY_MS,
  DEFAULT_REDIS_OPERATION_TIMEOUT_MS,
  type RedisStateStore,
  type RedisStateStoreOptions,
  type RedisStoreStatusEvent,
  redisStateStore,
} from './redis-state-store.js';
