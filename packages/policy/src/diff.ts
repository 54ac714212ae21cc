/**
 * `policy diff`: rules added, removed or changed between two bundles, then the behavioural diff:
 * events replayed through both, listing every event whose outcome changes.
 */
import type { PolicyBundle } from './bundle.js';
import type { DecideOptions } from './decide.js';
import type { AgentView } from './vocabulary.js';

/** A case to replay: an event and the agents it was decided against. */
export interface ReplayCase {
  /** Where the case came from, e.g. `test:eu-only` or `decisions.jsonl:12`. */
  label: string;
  event: Record<string, unknown>;
  agents: AgentView[];
  /** Decision time, epoch ms. */
  nowMs?: number;
}

/** One event whose decision changes. */
export interface BehaviourChange {
  label: string;
  eventId: string;
  before: { outcome: string; chosen: string | null };
  after: { outcome: string; chosen: string | null };
}

/** The result of {@link diffBundles}. */
export interface BundleDiff {
  policies: {
    name: string;
    change: 'added' | 'removed' | 'changed' | 'mode';
    before?: number;
    after?: number;
    versionBumped?: boolean;
  }[];
  rules: { added: string[]; removed: string[]; changed: string[] };
  /** How many cases were replayed. */
  replayed: number;
  changes: BehaviourChange[];
}

/** Compare two bundles structurally and behaviourally over `cases` (plus both bundles' tests). */
export function diffBundles(
  a: PolicyBundle,
  b: PolicyBundle,
  cases: readonly ReplayCase[] = [],
  options: DecideOptions = {},
): BundleDiff {
  const policies: BundleDiff['policies'] = [];
  for (const p of b.loaded.policies) {
    const q = a.loaded.policies.find((x) => x.name === p.name);
    if (!q) policies.push({ name: p.name, change: 'added', after: p.version });
    else if (q.hash !== p.hash) {
      policies.push({
        name: p.name,
        change: q.mode !== p.mode ? 'mode' : 'changed',
        before: q.version,
        after: p.version,
        versionBumped: p.version > q.version,
      });
    }
  }
  for (const q of a.loaded.policies)
    if (!b.loaded.policies.some((x) => x.name === q.name))
      policies.push({ name: q.name, change: 'removed', before: q.version });
  const ra = new Map(a.loaded.policies.flatMap((p) => [...p.ruleSources]));
  const rb = new Map(b.loaded.policies.flatMap((p) => [...p.ruleSources]));
  const rules = {
    added: [...rb.keys()].filter((k) => !ra.has(k)).sort(),
    removed: [...ra.keys()].filter((k) => !rb.has(k)).sort(),
    changed: [...rb.keys()].filter((k) => ra.has(k) && ra.get(k) !== rb.get(k)).sort(),
  };
  const all: ReplayCase[] = [...cases];
  for (const bundle of [a, b]) {
    for (const t of bundle.tests) {
      const label = `test:${t.name}`;
      if (!all.some((c) => c.label === label))
        all.push({ label, event: t.event, agents: t.agents, ...(t.nowMs === undefined ? {} : { nowMs: t.nowMs }) });
    }
  }
  const changes: BehaviourChange[] = [];
  for (const c of all) {
    const o = { ...options, ...(c.nowMs === undefined ? {} : { nowMs: c.nowMs }) };
    const da = a.decide(c.event, c.agents, o);
    const db = b.decide(c.event, c.agents, o);
    const before = { outcome: da.outcome, chosen: da.chosen?.id ?? null };
    const after = { outcome: db.outcome, chosen: db.chosen?.id ?? null };
    if (before.outcome !== after.outcome || before.chosen !== after.chosen) {
      changes.push({ label: c.label, eventId: String(c.event.id ?? ''), before, after });
    }
  }
  return { policies, rules, replayed: all.length, changes };
}
