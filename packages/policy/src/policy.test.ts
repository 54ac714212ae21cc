import { describe, expect, it } from 'vitest';
import {
  type AgentView,
  createPolicyHolder,
  diffBundles,
  formatPolicySource,
  loadBundle,
  runPolicyTests,
} from './index.js';

const NOW = Date.parse('2026-06-01T00:00:00Z');

const policy = (over: Partial<Record<string, string>> = {}) =>
  `metadata:
  name: ${over.name ?? 'eu'}
  version: ${over.version ?? '1'}
  owner: compliance@example.com
mode: ${over.mode ?? 'enforce'}
selector: 'has(event.residency)'
constraints:
  - id: in-residency
    require: '${over.require ?? 'agent.jurisdiction in event.residency'}'
    message: '"agent " + agent.id + " is outside"'
preferences:
  - id: green
    weight: 1
    score: '1.0 - agent.carbonIntensity / 500.0'
${over.extra ?? ''}`;

const agent = (id: string, jurisdiction: string, extra: Partial<AgentView> = {}): AgentView => ({
  id,
  backends: ['wasm'],
  region: 'r',
  jurisdiction,
  carbonIntensity: 100,
  latencyP50Ms: 5,
  latencyP99Ms: 10,
  estimatedLatencyMs: 5,
  freeSlots: 1,
  inFlight: 0,
  queueDepth: 0,
  costPerJob: 0.01,
  labels: {},
  status: 'ready',
  workloads: [],
  ...extra,
});
const event = { specversion: '1.0', id: 'e1', source: '/t', type: 't', residency: 'eu', secret: 'x' };
const agents = [
  agent('us-1', 'US', { carbonIntensity: 0 }),
  agent('de-1', 'DE', { carbonIntensity: 200 }),
  agent('fr-1', 'FR', { carbonIntensity: 50 }),
];

const load = (content: string, path = 'eu.yaml') => loadBundle([{ path, content }], { nowMs: NOW });

describe('loadBundle errors', () => {
  it('reports a misspelled key at file:line:col with a hint', () => {
    const r = load(policy().replace('require:', 'requre:'));
    expect(r.bundle).toBeUndefined();
    const e = r.errors.find((x) => x.code === 'unknown-key');
    expect(e).toMatchObject({ file: 'eu.yaml', line: 9, col: 5, hint: 'did you mean `require`?' });
  });
  it('reports invalid YAML', () => {
    const r = load('metadata: [unclosed\n');
    expect(r.errors[0]?.code).toBe('yaml-syntax');
  });
  it('reports CEL type errors against the vocabulary, with the int/double hint', () => {
    const r = load(policy({ require: 'agent.carbonIntensity == 3' }));
    const e = r.errors.find((x) => x.code === 'cel-type');
    expect(e?.line).toBe(9);
    expect(e?.hint).toMatch(/3\.0/);
  });
  it('reports unknown fields of agent', () => {
    const r = load(policy({ require: 'agent.jurisdicton == "DE"' }));
    expect(r.errors.map((e) => e.code)).toContain('cel-type');
  });
  it('reports huge and deeply nested expressions', () => {
    expect(load(policy({ require: Array(300).fill('agent.freeSlots > 0').join(' && ') })).errors[0]?.code).toBe(
      'expression-too-large',
    );
    expect(load(policy({ require: `${'('.repeat(40)}true${')'.repeat(40)}` })).errors[0]?.code).toBe(
      'expression-too-deep',
    );
  });
  it('refuses a matches() pattern that is not a literal, or not RE2, at its line and column', () => {
    const dynamic = load(policy({ require: 'agent.region.matches(event.subject)' })).errors[0];
    expect(dynamic).toMatchObject({ code: 'regex-not-constant', line: 9, col: 36 });
    expect(dynamic?.hint).toMatch(/== or in/);
    const backref = load(policy({ require: 'agent.region.matches("(a)\\\\1")' })).errors[0];
    expect(backref).toMatchObject({ code: 'regex-invalid', line: 9 });
    expect(backref?.message).toMatch(/invalid escape sequence.*RE2 syntax/);
    expect(load(policy({ require: 'agent.region.matches("(?=a)")' })).errors[0]?.code).toBe('regex-invalid');
  });
  it('reports duplicate ids and duplicate policy names', () => {
    const dup = policy().replace('preferences:\n  - id: green', 'preferences:\n  - id: in-residency');
    expect(load(dup).errors.map((e) => e.code)).toContain('duplicate-id');
    const r = loadBundle(
      [
        { path: 'a.yaml', content: policy() },
        { path: 'b.yaml', content: policy() },
      ],
      { nowMs: NOW },
    );
    expect(r.errors.map((e) => e.code)).toContain('duplicate-id');
  });
  it('refuses a tenant block that relaxes', () => {
    const relax = policy({
      extra: 'tenants:\n  acme:\n    constraints:\n      - id: in-residency\n        require: "true"\n',
    });
    expect(load(relax).errors.map((e) => e.code)).toContain('tenant-relaxes');
    const mode = policy({ extra: 'tenants:\n  acme:\n    mode: shadow\n' });
    expect(load(mode).errors.map((e) => e.code)).toContain('tenant-relaxes');
  });
  it('refuses an expired exception and one without approval', () => {
    const x = (expires: string, approved = 'approvedBy: jane\n    ') =>
      policy({
        extra: `exceptions:\n  - id: grace\n    constraint: in-residency\n    ${approved}ticket: T-1\n    expires: "${expires}"\n`,
      });
    expect(load(x('2026-01-01T00:00:00Z')).errors.map((e) => e.code)).toEqual(['exception-expired']);
    expect(load(x('2027-01-01T00:00:00Z', '')).errors.map((e) => e.code)).toEqual(['exception-incomplete']);
  });
});

describe('decide and explain', () => {
  const { bundle } = load(policy());
  it('routes to the best eligible agent and records exclusions', () => {
    if (!bundle) throw new Error('no bundle');
    const d = bundle.decide(event, agents, { nowMs: NOW, decisionId: 'd1', registryRevision: 3 });
    expect(d.outcome).toBe('routed');
    expect(d.chosen?.id).toBe('fr-1');
    expect(d.ranking.map((r) => r.agentId)).toEqual(['fr-1', 'de-1']);
    expect(d.excluded).toEqual([{ agentId: 'us-1', rules: ['eu/in-residency'] }]);
    expect(d.record).toMatchObject({
      decisionId: 'd1',
      outcome: 'routed',
      candidates: 3,
      registryRevision: 3,
      bundle: { digest: bundle.digest },
    });
    expect(d.record.event.attributes.secret).toBe('***');
    expect(d.record.event.attributes.residency).toBe('eu');
  });
  it('says no-eligible-agent explicitly', () => {
    const d = bundle?.decide(event, [agents[0] as AgentView], { nowMs: NOW });
    expect(d?.outcome).toBe('no-eligible-agent');
    expect(d?.chosen).toBeUndefined();
  });
  it('breaks ties by agent id', () => {
    const d = bundle?.decide(event, [agent('b', 'DE'), agent('a', 'DE')], { nowMs: NOW });
    expect(d?.chosen?.id).toBe('a');
  });
  it('fails closed on an evaluation error and records it', () => {
    const { bundle: b } = load(policy({ require: 'agent.labels["tier"] == "gold"' }));
    const d = b?.decide(event, [agent('de-1', 'DE')], { nowMs: NOW });
    expect(d?.outcome).toBe('no-eligible-agent');
    expect(d?.record.errors?.[0]?.rule).toBe('eu/in-residency');
  });
  it('evaluates matches() with RE2 in linear time: a backtracking pattern cannot stall decide() on a hostile attribute', () => {
    // With JavaScript RegExp this pattern takes exponential time on "aaaa...!" (30 characters: seconds).
    const { bundle: b, errors } = load(
      policy({ require: '!has(event.subject) || event.subject.matches("^(a+)+$") || agent.jurisdiction == "DE"' }),
    );
    expect(errors).toEqual([]);
    const hostile = { ...event, subject: `${'a'.repeat(5000)}!` };
    const d = b?.decide(hostile, agents, { nowMs: NOW });
    expect(d?.outcome).toBe('routed');
    expect(d?.chosen?.id).toBe('de-1');
    expect(b?.decide({ ...event, subject: 'aaa' }, agents, { nowMs: NOW })?.chosen?.id).toBe('us-1'); // matches: all eligible, greenest wins
    expect(b?.explain(hostile, agents, { nowMs: NOW }).decision.outcome).toBe('routed');
  });
  it('explains every rule for every agent', () => {
    const x = bundle?.explain(event, agents, { nowMs: NOW });
    const us = x?.agents.find((a) => a.agentId === 'us-1');
    expect(us?.constraints[0]).toMatchObject({
      ruleId: 'eu/in-residency',
      status: 'fail',
      message: 'agent us-1 is outside',
    });
    expect(x?.agents.find((a) => a.agentId === 'fr-1')?.preferences[0]).toMatchObject({ score: 0.9, weight: 1 });
  });
  it('records shadow agreement', () => {
    const r = loadBundle(
      [
        { path: 'a.yaml', content: policy() },
        {
          path: 'b.yaml',
          content: policy({ name: 'strict', mode: 'shadow', require: 'agent.carbonIntensity <= 60.0' }),
        },
      ],
      { nowMs: NOW },
    );
    const d = r.bundle?.decide(event, agents, { nowMs: NOW });
    expect(d?.record.shadow).toEqual([{ policy: 'strict', outcome: 'routed', chosen: 'fr-1', agree: true }]);
  });
});

describe('tests, holder, diff, fmt', () => {
  const withTest = (chosen: string, version = '1') =>
    policy({
      version,
      extra: `tests:\n  - name: t1\n    event: { specversion: "1.0", id: x, source: /t, type: t, residency: eu }\n    agents: [{ id: de-1, jurisdiction: DE }, { id: us-1, jurisdiction: US }]\n    expect: { chosen: ${chosen}, excluded: { us-1: [eu/in-residency] } }\n`,
    });
  it('runs tests through both engines', () => {
    const ok = runPolicyTests(load(withTest('de-1')).bundle as never, { nowMs: NOW });
    expect([ok.passed, ok.failed]).toEqual([1, 0]);
    const bad = runPolicyTests(load(withTest('us-1')).bundle as never, { nowMs: NOW });
    expect(bad.failed).toBe(1);
    expect(bad.results[0]?.failures[0]).toMatch(/expected chosen us-1, got de-1/);
  });
  it('runs matches() the same in both engines (RE2 in each)', () => {
    const content = policy({
      require: 'agent.jurisdiction in event.residency && agent.id.matches("^[a-z]{2}-[0-9]+$")',
      extra: `tests:\n  - name: re\n    event: { specversion: "1.0", id: x, source: /t, type: t, residency: eu }\n    agents: [{ id: de-1, jurisdiction: DE }, { id: DE_2, jurisdiction: DE }]\n    expect: { chosen: de-1, excluded: { DE_2: [eu/in-residency] } }\n`,
    });
    const r = runPolicyTests(load(content).bundle as never, { nowMs: NOW });
    expect([r.passed, r.failed]).toEqual([1, 0]);
  });
  it('holder keeps the last good bundle and refuses a lower or unchanged version', () => {
    const h = createPolicyHolder();
    const first = h.propose([{ path: 'eu.yaml', content: withTest('de-1', '2') }], { source: 't', nowMs: NOW });
    expect(first.ok).toBe(true);
    const lower = h.propose([{ path: 'eu.yaml', content: withTest('de-1', '1') }], { source: 't', nowMs: NOW });
    expect(lower.ok ? [] : lower.errors.map((e) => e.code)).toEqual(['version-lower']);
    const same = h.propose([{ path: 'eu.yaml', content: withTest('de-1', '2').replace('weight: 1', 'weight: 2') }], {
      source: 't',
      nowMs: NOW,
    });
    expect(same.ok ? [] : same.errors.map((e) => e.code)).toEqual(['version-not-increased']);
    const failing = h.propose([{ path: 'eu.yaml', content: withTest('us-1', '3') }], { source: 't', nowMs: NOW });
    expect(failing.ok).toBe(false);
    const broken = h.propose([{ path: 'eu.yaml', content: 'metadata: [' }], { source: 't', nowMs: NOW });
    expect(broken.ok).toBe(false);
    expect(h.current()?.policies[0]?.version).toBe(2);
  });
  it('diffs rules and behaviour', () => {
    const a = load(policy()).bundle;
    const b = load(policy({ version: '2', require: 'agent.jurisdiction == "US"' })).bundle;
    if (!a || !b) throw new Error('load');
    const d = diffBundles(a, b, [{ label: 'c1', event, agents }], { nowMs: NOW });
    expect(d.rules.changed).toEqual(['eu/in-residency']);
    expect(d.changes).toEqual([
      {
        label: 'c1',
        eventId: 'e1',
        before: { outcome: 'routed', chosen: 'fr-1' },
        after: { outcome: 'routed', chosen: 'us-1' },
      },
    ]);
  });
  it('fmt is idempotent and orders keys', () => {
    const messy = `mode: enforce\nmetadata:\n  owner: x\n  version: 1\n  name: eu\nconstraints:\n  - id: a\n    require: 'true'\n`;
    const once = formatPolicySource(messy) as string;
    expect(once.startsWith('metadata:\n  name: eu\n  version: 1')).toBe(true);
    expect(formatPolicySource(once)).toBe(once);
  });
});
