import { ConfigError } from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_MISSED_HEARTBEATS_BEFORE_LOST,
  resolveRouterOptions,
} from './options.js';
import { backoffDelayMs } from './work-item-machine.js';

describe('router options', () => {
  it('fills defaults: heartbeats every 1 s, lost after 3 missed', () => {
    const o = resolveRouterOptions();
    expect(o.heartbeatIntervalMs).toBe(DEFAULT_HEARTBEAT_INTERVAL_MS);
    expect(o.missedHeartbeatsBeforeLost).toBe(DEFAULT_MISSED_HEARTBEATS_BEFORE_LOST);
    expect(o.maxEventBytes).toBe(1_048_576);
    expect(o.httpPort).toBe(8080);
  });

  it('names the invalid option', () => {
    expect(() => resolveRouterOptions({ maxAttempts: 0 })).toThrow(ConfigError);
    expect(() => resolveRouterOptions({ maxAttempts: 0 })).toThrow(/maxAttempts/);
    expect(() => resolveRouterOptions({ backoffBaseMs: 100, backoffMaxMs: 10 })).toThrow(/backoffMaxMs/);
    expect(() => resolveRouterOptions({ deferThresholdRatio: 2 })).toThrow(/deferThresholdRatio/);
  });
});

describe('backoff', () => {
  it('is full jitter within an exponentially growing, capped window', () => {
    expect(backoffDelayMs(1, 100, 1000, () => 0.999)).toBe(99);
    expect(backoffDelayMs(3, 100, 1000, () => 0.999)).toBe(399);
    expect(backoffDelayMs(10, 100, 1000, () => 0.999)).toBe(999);
    expect(backoffDelayMs(10, 100, 1000, () => 0)).toBe(0);
  });
});
