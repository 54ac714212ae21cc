import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type AgentView, type Decision, loadBundle, naiveDecide, type PolicyBundle } from './index.js';

const NOW = Date.parse('2026-06-01T00:00:00Z');

function shippedFiles(): { path: string; content: string }[] {
  const dir = new URL('../../../policies', import.meta.url).pathname;
  const files: { path: string; content: string }[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ya?ml|json)$/.test(e.name)) files.push({ path: relative(dir, p), content: readFileSync(p, 'utf8') });
    }
  };
  walk(dir);
  return files;
}

/** A policy exercising what the shipped ones do not: errors, keyed-on-backends, agent-only `when`. */
const EXTRA = `metadata:
  name: extra
  version: 1
  owner: test@example.com
mode: enforce
constraints:
  - id: gold-tier-for-gpu
    when: '"gpu" in agent.backends'
    require: 'agent.labels["tier"] == "gold"'
  - id: backend-wanted
    when: 'has(event.workload) && event.workload == "render"'
    require: '"gpu" in agent.backends || event.workload in agent.backends'
  - id: slots-for-deadline
    when: 'has(event.deadlinems)'
    require: 'agent.freeSlots > 0'
preferences:
  - id: labelled
    weight: 1
    score: 'agent.labels["score"] == "high" ? 1.0 : 0.5'
  - id: idle
    weight: 1
    when: 'agent.queueDepth > 0'
    score: '1.0 - double(agent.queueDepth) / 10.0'
tenants:
  acme:
    weights: { idle: 4 }
`;

let seed = 7;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
const JURISDICTIONS = ['DE', 'FR', 'NL', 'SE', 'NO', 'CH', 'US', 'JP'];
const BACKENDS = [['wasm'], ['gpu'], ['wasm', 'gpu'], ['quantum']];

function agentsOf(n: number): AgentView[] {
  return Array.from({ length: n }, (_, i) => {
    const p50 = 5 + rnd() * 40;
    const labels: Record<string, string> = {};
    if (rnd() < 0.5) labels.tier = pick(['gold', 'silver']);
    if (rnd() < 0.3) labels.score = 'high';
    return {
      id: i === 0 ? 'wasm-de-legacy' : `a-${String(Math.floor(rnd() * 1e6)).padStart(6, '0')}-${i}`,
      backends: pick(BACKENDS),
      region: 'r',
      jurisdiction: i === 0 ? 'DE' : pick(JURISDICTIONS),
      carbonIntensity: Math.round(rnd() * 500),
      latencyP50Ms: i === 0 ? 5 : p50,
      latencyP99Ms: p50 * 3,
      estimatedLatencyMs: i === 0 ? 90 : p50 + rnd() * 20,
      freeSlots: Math.floor(rnd() * 3),
      inFlight: 0,
      queueDepth: Math.floor(rnd() * 4),
      // Some ties on purpose (same score): ranking breaks them by id.
      costPerJob: Math.round(rnd() * 6) / 5,
      labels,
      status: rnd() < 0.1 ? 'draining' : 'ready',
      workloads: rnd() < 0.3 ? ['resize'] : [],
    };
  });
}

const EVENTS: Record<string, unknown>[] = [
  { residency: 'eu', latencybudgetms: 30, carbonmax: 400, pii: true, tenant: 'acme' },
  { latencybudgetms: 40, costmax: '0.5' },
  { residency: 'eea', carbonmax: 250, workload: 'resize' },
  { tenant: 'helvetia-bank', workload: 'render' },
  { residency: 'CH,DE', deadline: '2026-06-01T00:01:00Z', workload: 'render' },
  {},
  { residency: 'JP', latencybudgetms: 1 },
].map((e, i) => ({ specversion: '1.0', id: `e${i}`, source: '/t', type: 't', secret: 's', ...e }));

/**
 * Everything but the evaluation time; errors only for constraints (the fast path also records
 * preference errors, which the full evaluation reports per agent in `explain`).
 */
function comparable(d: Decision, prefIds: ReadonlySet<string>) {
  const { evaluationUs: _, errors, ...record } = d.record;
  const constraintErrors = (errors ?? []).filter((e) => !prefIds.has(e.rule));
  return {
    outcome: d.outcome,
    chosen: d.chosen?.id,
    ranking: d.ranking,
    excluded: d.excluded,
    record,
    constraintErrors,
  };
}

function check(bundle: PolicyBundle, agents: AgentView[], revision: number) {
  const prefIds = new Set(bundle.loaded.policies.flatMap((p) => p.preferences.map((r) => r.ruleId)));
  for (const event of EVENTS) {
    const o = { nowMs: NOW, decisionId: 'd', registryRevision: revision };
    const fast = bundle.decide(event, agents, o);
    const full = naiveDecide(bundle, event, agents, o);
    const a = comparable(fast, prefIds);
    const b = comparable(full, prefIds);
    // Both cap the record at 50 errors; preference errors (fast path only) share the cap.
    if ((fast.record.errors?.length ?? 0) >= 50)
      b.constraintErrors = b.constraintErrors.slice(0, a.constraintErrors.length);
    expect(a, String(event.id)).toEqual(b);
  }
}

describe('fast path agrees with the full evaluation', () => {
  const shipped = loadBundle(shippedFiles(), { nowMs: NOW }).bundle as PolicyBundle;
  const extra = loadBundle([...shippedFiles(), { path: 'extra.yaml', content: EXTRA }], { nowMs: NOW })
    .bundle as PolicyBundle;

  it('loads both bundles', () => {
    expect(shipped).toBeDefined();
    expect(extra).toBeDefined();
  });

  it('on the shipped policies over random agents, with and without a registry revision', () => {
    const agents = agentsOf(300);
    check(shipped, agents, 0);
    check(shipped, agents, 5);
    // Same revision again: the cached table is reused.
    check(shipped, agents, 5);
  });

  it('with evaluation errors, keyed-on-backends rules, agent-only whens and tenant weights', () => {
    const agents = agentsOf(200);
    check(extra, agents, 0);
    check(extra, agents, 9);
    const d = extra.decide(EVENTS[1] as Record<string, unknown>, agents, { nowMs: NOW });
    expect(d.record.errors?.some((e) => e.rule === 'extra/gold-tier-for-gpu')).toBe(true);
    expect(d.record.errors?.some((e) => e.rule === 'extra/labelled' && /score/.test(e.message))).toBe(true);
  });

  it('records the approved exception for the agent it relaxed', () => {
    const agents = agentsOf(50);
    const d = shipped.decide({ specversion: '1.0', id: 'x', source: '/t', type: 't', latencybudgetms: 20 }, agents, {
      nowMs: NOW,
    });
    expect(d.record.exceptions?.[0]).toMatchObject({
      rule: 'latency-budget/exception:legacy-probe-grace',
      constraint: 'latency-budget/within-budget',
      agentIds: ['wasm-de-legacy'],
    });
    expect(d.ranking.some((r) => r.agentId === 'wasm-de-legacy')).toBe(true);
  });

  it('rebuilds its table when another agent set comes with the same revision', () => {
    const a = agentsOf(40);
    const b = agentsOf(40);
    check(shipped, a, 11);
    check(shipped, b, 11);
  });

  it('sees changed agent numbers at the same revision when the array is new', () => {
    const agents = agentsOf(30).map((a) => ({ ...a, jurisdiction: 'DE', status: 'ready', carbonIntensity: 100 }));
    const event = { specversion: '1.0', id: 'x', source: '/t', type: 't', carbonmax: 150 };
    const before = shipped.decide(event, agents, { nowMs: NOW, registryRevision: 3 });
    const hot = agents.map((a) => ({ ...a, carbonIntensity: 200 }));
    const after = shipped.decide(event, hot, { nowMs: NOW, registryRevision: 3 });
    expect(before.outcome).toBe('routed');
    expect(after.outcome).toBe('no-eligible-agent');
  });

  it('reports an invalid intent as a policy error naming the attribute', () => {
    const d = shipped.decide({ specversion: '1.0', id: 'x', source: '/t', type: 't', carbonmax: 'lots' }, agentsOf(3));
    expect(d.outcome).toBe('policy-error');
    expect(d.record.errors?.[0]?.message).toMatch(/carbonmax/);
  });
});
