/**
 * `decide()` with the shipped policies over 1,000 and 10,000 agents, beside the naive evaluation
 * (every expression for every agent through cel-js, no compilation, caching or index) in the
 * same run. Targets: p50 <= 50 us at 1,000 agents; p99 <= 1 ms at 10,000 agents.
 *
 * `decide()` builds exclusions and the record lazily, so a second line per size reads
 * `decision.record` too (what the router does), against the same naive baseline. Each line also
 * carries p90, CPU time per call and the 1-minute load average: wall-clock tails on a shared
 * machine are mostly preemption.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, relative } from 'node:path';
import { type AgentView, loadBundle, naiveDecide } from '@meshroute/policy';
import { benchLine, percentiles, reportBench, sampleSync } from '@meshroute/testing';

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
const { bundle, errors } = loadBundle(files);
if (!bundle) throw new Error(`shipped policies do not load: ${JSON.stringify(errors)}`);

// Deterministic pseudo-random agents.
let seed = 42;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};
const JURISDICTIONS = ['DE', 'FR', 'NL', 'IE', 'SE', 'PL', 'IT', 'ES', 'NO', 'CH', 'US', 'GB', 'JP', 'SG', 'CA'];
const BACKENDS = [['wasm'], ['wasm'], ['wasm'], ['gpu'], ['wasm', 'gpu'], ['quantum']];
function agentsOf(n: number): AgentView[] {
  return Array.from({ length: n }, (_, i) => {
    const p50 = 5 + rnd() * 60;
    return {
      id: `agent-${String(i).padStart(5, '0')}`,
      backends: BACKENDS[Math.floor(rnd() * BACKENDS.length)] as string[],
      region: 'r',
      jurisdiction: JURISDICTIONS[Math.floor(rnd() * JURISDICTIONS.length)] as string,
      carbonIntensity: Math.round(rnd() * 600),
      latencyP50Ms: p50,
      latencyP99Ms: p50 * 3,
      estimatedLatencyMs: p50 + rnd() * 20,
      freeSlots: Math.floor(rnd() * 4),
      inFlight: 1,
      queueDepth: 0,
      costPerJob: Math.round(rnd() * 120) / 100,
      labels: {},
      status: rnd() < 0.05 ? 'draining' : 'ready',
      workloads: [],
    };
  });
}

const events = [
  {
    specversion: '1.0',
    id: 'e1',
    source: '/bench',
    type: 'job',
    residency: 'eu',
    latencybudgetms: 50,
    carbonmax: 400,
    pii: true,
    tenant: 'acme',
  },
  { specversion: '1.0', id: 'e2', source: '/bench', type: 'job', latencybudgetms: 40, costmax: '0.5' },
  { specversion: '1.0', id: 'e3', source: '/bench', type: 'job', residency: 'eea', carbonmax: 250, workload: 'resize' },
];

function cpuMicrosPerCall(fn: (i: number) => unknown, calls: number): number {
  const c0 = process.cpuUsage();
  for (let i = 0; i < calls; i++) fn(i);
  const c = process.cpuUsage(c0);
  return Math.round(((c.user + c.system) / calls) * 1000) / 1000;
}

function p90(samples: readonly number[]): number {
  const s = [...samples].sort((a, b) => a - b);
  return Math.round((s[Math.ceil(0.9 * s.length) - 1] ?? Number.NaN) * 1000) / 1000;
}

type BenchEvent = (typeof events)[number];

for (const [n, iterations, naiveIterations] of [
  [1_000, 4_000, 100],
  [10_000, 2_000, 10],
] as const) {
  const agents = agentsOf(n);
  // Same decisions, or the comparison means nothing.
  for (const e of events) {
    const a = bundle.decide(e, agents, { registryRevision: 1 });
    const b = naiveDecide(bundle, e, agents);
    if (
      a.chosen?.id !== b.chosen?.id ||
      a.excluded.length !== b.excluded.length ||
      a.ranking.length !== b.ranking.length ||
      JSON.stringify(a.record.topK) !== JSON.stringify(b.record.topK)
    ) {
      throw new Error(`fast and naive disagree on ${e.id}: ${a.chosen?.id} vs ${b.chosen?.id}`);
    }
  }
  const decide = (i: number) =>
    bundle.decide(events[i % events.length] as BenchEvent, agents, { registryRevision: 1, decisionId: 'b' });
  const decideAndRecord = (i: number) => decide(i).record;
  const naiveSamples = sampleSync(
    (i) => naiveDecide(bundle, events[i % events.length] as BenchEvent, agents, { decisionId: 'b' }),
    { iterations: naiveIterations, warmup: 2 },
  );
  const naive = percentiles(naiveSamples);
  const common = {
    agents: n,
    policies: bundle.policies.length,
    baselineName: 'naive (every expression for every agent, cel-js)',
    cores: cpus().length,
  };
  const oursSamples = sampleSync(decide, { iterations });
  reportBench(
    benchLine(`policy.decide.${n}-agents`, 'us', percentiles(oursSamples), naive, {
      ...common,
      target: n === 1_000 ? 'p50 <= 50' : 'p99 <= 1000',
      p90: p90(oursSamples),
      cpu_us_per_call: cpuMicrosPerCall(decide, iterations),
      loadavg_1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
    }),
  );
  const withRecord = sampleSync(decideAndRecord, { iterations: Math.ceil(iterations / 10) });
  reportBench(
    benchLine(`policy.decide-and-record.${n}-agents`, 'us', percentiles(withRecord), naive, {
      ...common,
      p90: p90(withRecord),
      cpu_us_per_call: cpuMicrosPerCall(decideAndRecord, Math.ceil(iterations / 10)),
      loadavg_1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
    }),
  );
}
