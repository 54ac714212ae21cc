import { simulatedClock } from '@meshroute/testing';
import { describe, expect, it } from 'vitest';
import { AgentRegistry, type RegistryChange } from './agent-registry.js';
import { capacity } from './test-support/fakes.js';

const make = () => {
  const clock = simulatedClock(1_000_000);
  const registry = new AgentRegistry({
    clock,
    heartbeatIntervalMs: 1000,
    missedHeartbeatsBeforeDegraded: 2,
    missedHeartbeatsBeforeLost: 3,
    initialRttMs: 1,
    rttEwmaAlpha: 0.5,
    carbonMemoryMs: 86_400_000,
  });
  const changes: RegistryChange[] = [];
  registry.onChange((c) => changes.push(c));
  return { clock, registry, changes };
};

describe('agent registry and lifecycle', () => {
  it('joins on the first heartbeat, degrades when silent, and is lost after 3 missed heartbeats', () => {
    const { clock, registry, changes } = make();
    registry.apply(capacity('a', { sentAtMs: clock.now() }));
    expect(registry.get('a')?.state).toBe('ready');
    expect(changes.slice(0, 2)).toEqual([
      { type: 'agentJoined', agentId: 'a' },
      { type: 'agentState', agentId: 'a', state: 'ready' },
    ]);
    clock.advance(2000);
    expect(registry.get('a')?.state).toBe('degraded');
    expect(registry.views().map((v) => v.status)).toEqual(['degraded']);
    clock.advance(999);
    expect(registry.get('a')).toBeDefined();
    clock.advance(1);
    expect(registry.get('a')).toBeUndefined();
    expect(changes.at(-1)).toMatchObject({ type: 'agentLost', agentId: 'a' });
  });

  it('keeps an agent alive while it heartbeats and brings a degraded one back to ready', () => {
    const { clock, registry } = make();
    registry.apply(capacity('a', { sentAtMs: clock.now() }));
    for (let i = 0; i < 10; i++) {
      clock.advance(900);
      registry.apply(capacity('a', { sentAtMs: clock.now() }));
    }
    expect(registry.get('a')?.state).toBe('ready');
    clock.advance(2500);
    expect(registry.get('a')?.state).toBe('degraded');
    registry.apply(capacity('a', { sentAtMs: clock.now() }));
    expect(registry.get('a')?.state).toBe('ready');
  });

  it('follows announced statuses: draining agents are not routable, leaving agents are lost at once', () => {
    const { clock, registry } = make();
    registry.apply(capacity('a', { sentAtMs: clock.now() }));
    registry.apply(capacity('a', { status: 'draining', sentAtMs: clock.now() }));
    expect(registry.get('a')?.state).toBe('draining');
    expect(registry.views()).toEqual([]);
    registry.apply(capacity('a', { status: 'leaving', sentAtMs: clock.now() }));
    expect(registry.get('a')).toBeUndefined();
  });

  it('ignores stale heartbeats of the same instance and accepts a restarted instance', () => {
    const { clock, registry } = make();
    registry.apply(capacity('a', { seq: 10, carbonIntensity: 100, sentAtMs: clock.now() }));
    expect(registry.apply(capacity('a', { seq: 9, carbonIntensity: 999, sentAtMs: clock.now() }))).toBe(false);
    expect(registry.get('a')?.report.carbonIntensity).toBe(100);
    expect(registry.apply(capacity('a', { seq: 1, instanceId: 'a-2', carbonIntensity: 50 }))).toBe(true);
    expect(registry.get('a')?.report.carbonIntensity).toBe(50);
  });

  it("counts this router's reserved slots and other routers' busy slots and increments the revision on change", () => {
    const { clock, registry } = make();
    registry.apply(capacity('a', { slots: 3, freeSlots: 2, sentAtMs: clock.now() }));
    const entry = registry.get('a');
    if (!entry) throw new Error('missing');
    expect(registry.freeSlots(entry)).toBe(2);
    registry.reserve('a');
    registry.reserve('a');
    expect(registry.freeSlots(entry)).toBe(0);
    const rev = registry.revision;
    // The other router's job finished: 2 busy are ours, so one slot is free again.
    registry.apply(capacity('a', { slots: 3, freeSlots: 1, sentAtMs: clock.now() }));
    expect(registry.revision).toBeGreaterThan(rev);
    expect(registry.freeSlots(entry)).toBe(1);
    registry.release('a');
    expect(registry.freeSlots(entry)).toBe(2);
    // Another router took all free slots.
    registry.apply(capacity('a', { slots: 3, freeSlots: 0, sentAtMs: clock.now() }));
    expect(registry.freeSlots(entry)).toBe(0);
  });

  it('estimates latency as measured RTT + queue wait + observed p50', () => {
    const { clock, registry } = make();
    registry.apply(capacity('a', { slots: 1, freeSlots: 1, latencyP50Ms: 20, queueDepth: 1, sentAtMs: clock.now() }));
    registry.observeRtt('a', 9);
    const entry = registry.get('a');
    if (!entry) throw new Error('missing');
    expect(registry.view(entry).estimatedLatencyMs).toBe(5 + 20);
    registry.reserve('a');
    expect(registry.view(entry).estimatedLatencyMs).toBe(5 + 2 * 20 + 20);
  });

  it('ignores snapshot reports older than the loss window', () => {
    const { clock, registry } = make();
    expect(registry.apply(capacity('old', { sentAtMs: clock.now() - 10_000 }), { fromSnapshot: true })).toBe(false);
    expect(registry.apply(capacity('new', { sentAtMs: clock.now() - 500 }), { fromSnapshot: true })).toBe(true);
  });
});
