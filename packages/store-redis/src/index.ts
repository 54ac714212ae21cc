/**
 * @module @meshroute/store-redis
 * StateStore on Redis (ioredis): idempotency keys, tenant budgets, rate limits.
 */
export {};
