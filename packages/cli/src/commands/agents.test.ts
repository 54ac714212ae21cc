import { sampleCapacityReport } from '@meshroute/testing';
import { describe, expect, it } from 'vitest';
import { main } from '../main.js';
import { testContext } from '../test-support/context.js';
import { agentRows, agentState, formatAgentsTable, livenessThresholds } from './agents.js';

const NOW = 1_700_000_010_000;
const beat = (silentMs: number, status: 'ready' | 'degraded' | 'draining' | 'leaving' = 'ready') =>
  sampleCapacityReport({ sentAtMs: NOW - silentMs, heartbeatIntervalMs: 1_000, status });

describe('meshroute agents: lifecycle states as the router sees them', () => {
  it('names only the router lifecycle states: a silent ready agent is degraded, then lost after 3 missed beats', () => {
    expect(agentState(beat(500), NOW)).toBe('ready');
    expect(agentState(beat(2_500), NOW)).toBe('degraded');
    expect(agentState(beat(3_500), NOW)).toBe('lost');
    expect(agentState(beat(100, 'draining'), NOW)).toBe('draining');
    expect(agentState(beat(100, 'degraded'), NOW)).toBe('degraded');
    expect(agentState(beat(3_500, 'draining'), NOW)).toBe('lost');
  });

  it('shows an agent that left the mesh (announced leaving) as lost, not as "leaving"', () => {
    expect(agentState(beat(100, 'leaving'), NOW)).toBe('lost');
    const table = formatAgentsTable([beat(100, 'leaving')], NOW);
    expect(table).toMatch(/\blost\b/);
    expect(table).toContain('left the mesh');
    expect(table).not.toMatch(/\bleaving\b/);
  });

  it('counts the configured number of missed heartbeats (--missed-heartbeats)', () => {
    expect(agentState(beat(3_500), NOW, livenessThresholds(5))).toBe('degraded');
    expect(agentState(beat(5_500), NOW, livenessThresholds(5))).toBe('lost');
    expect(agentState(beat(1_500), NOW, livenessThresholds(1))).toBe('lost');
  });

  it('prints every registry field, labels included, and the lost reason', () => {
    const r = sampleCapacityReport({
      agentId: 'gpu-eu-1',
      backends: ['gpu'],
      region: 'eu-north',
      jurisdiction: 'SE',
      carbonIntensity: 35.9,
      latencyP50Ms: 12,
      latencyP99Ms: 48,
      slots: 2,
      freeSlots: 1,
      inFlight: 1,
      queueDepth: 3,
      costPerJob: '0.002',
      labels: { site: 'stockholm', tier: 'core' },
      versions: { 'compute-agent': '0.1.0' },
      sentAtMs: NOW - 4_000,
    });
    const [header, row] = formatAgentsTable([r], NOW).split('\n');
    for (const column of ['STATUS', 'gCO2/kWh', 'P50ms', 'P99ms', 'FREE', 'INFLIGHT', 'QUEUE', 'COST', 'LABELS']) {
      expect(header).toContain(column);
    }
    for (const cell of ['gpu-eu-1', 'gpu', 'eu-north', 'SE', 'lost', '36', '12', '48', '1/2', '0.002']) {
      expect(row).toContain(cell);
    }
    expect(row).toContain('site=stockholm,tier=core');
    expect(row).toContain('compute-agent=0.1.0');
    expect(row).toContain('no heartbeat for 4s');
  });

  it('gives --json rows the lifecycle state and the silence beside the heartbeat fields', () => {
    const [row] = agentRows([beat(2_500)], NOW);
    expect(row).toMatchObject({ agentId: 'edge-eu-1', state: 'degraded', silentMs: 2_500, status: 'ready' });
    expect(JSON.parse(JSON.stringify(row))).toEqual(row);
  });
});

describe('meshroute agents: flags', () => {
  it.each([
    [['--missed-heartbeats', '0'], /--missed-heartbeats: must be an integer from 1/],
    [['--missed-heartbeats', 'three'], /--missed-heartbeats: must be an integer/],
    [['--watch-ms', '99999999999'], /--watch-ms: must be an integer from 0 to 2147483647/],
    [['--watch-ms', '-1'], /--watch-ms: must be an integer/],
  ])('refuses %j with a clear CONFIG_ERROR and exit code 1, before connecting', async (args, message) => {
    const ctx = testContext();
    const code = await main(['node', 'meshroute', 'agents', '--nats-url', 'nats://127.0.0.1:1', ...args], ctx);
    expect(code).toBe(1);
    expect(ctx.err()).toMatch(/CONFIG_ERROR/);
    expect(ctx.err()).toMatch(message);
    expect(ctx.out()).toBe('');
  });
});
