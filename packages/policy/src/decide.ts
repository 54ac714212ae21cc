/**
 * Decisions: the full, rule-by-rule evaluation behind `explain`, the naive baseline and the
 * reference-engine cross-check, and the decision assembly shared with the compiled fast path
 * (`fast-path.ts`, behind `bundle.decide()`).
 */
import { randomUUID } from 'node:crypto';
import type { Clock, DecisionRecord } from '@meshroute/mesh';
import type { CelActivation, CompiledExpression } from './cel.js';
import type {
  CompiledConstraint,
  CompiledException,
  CompiledPolicy,
  CompiledPreference,
  LoadedBundle,
} from './loader.js';
import type { EvalOutcome } from './reference-engine.js';
import { type AgentView, activationOf, eventFacts } from './vocabulary.js';

/** The outcome of a decision. */
export type DecisionOutcome = 'routed' | 'no-eligible-agent' | 'policy-error';

/** The result of {@link PolicyBundle.decide}. */
export interface Decision {
  outcome: DecisionOutcome;
  /** The best-ranked eligible agent (eligibility does not depend on free slots). */
  chosen: AgentView | undefined;
  /** Every eligible agent, best first; ties broken by agent id. */
  ranking: { agentId: string; score: number }[];
  /** Every excluded agent with the ids of the rules that excluded it. */
  excluded: { agentId: string; rules: string[] }[];
  /** The audit record (`meshroute.decision/v1`). */
  record: DecisionRecord;
}

/** Options of {@link PolicyBundle.decide}. */
export interface DecideOptions {
  /** @default a random UUID */
  decisionId?: string;
  /** Decision time, epoch ms (record time, exception expiry). @default the bundle clock */
  nowMs?: number;
  /** The agent registry revision the agents come from; enables per-revision caching. @default 0, no caching */
  registryRevision?: number;
  /** How many scores the record keeps. @default 5 */
  topK?: number;
  /** Written into the record. */
  routerId?: string;
  /** Written into the record. */
  attempt?: number;
}

/** Default number of scores kept in a decision record. */
export const DEFAULT_TOP_K = 5;
/** Most evaluation errors kept in one decision record. */
export const MAX_RECORDED_ERRORS = 50;

type Evaluator = (expr: CompiledExpression, activation: CelActivation) => EvalOutcome;

// ---------------------------------------------------------------------------------------------
// Full evaluation (explain, naive baseline, reference cross-check)
// ---------------------------------------------------------------------------------------------

/** The status of one rule for one agent. */
export type RuleStatus = 'pass' | 'fail' | 'n/a' | 'error';

/** One constraint's result for one agent. */
export interface ConstraintResult {
  ruleId: string;
  policy: string;
  mode: 'enforce' | 'shadow';
  tenant?: string;
  status: RuleStatus;
  /** The rule's message (for `fail`), or the evaluation error (for `error`). */
  message?: string;
  /** Set when an approved exception relaxed the failure (status is then `pass`). */
  exception?: { id: string; ticket: string; approvedBy: string; expires: string };
}

/** One preference's result for one agent. */
export interface PreferenceResult {
  ruleId: string;
  policy: string;
  mode: 'enforce' | 'shadow';
  status: 'scored' | 'n/a' | 'error';
  weight: number;
  /** Clamped score in [0,1] (0 on error). */
  score: number;
  /** The raw value before clamping. */
  raw?: number;
  message?: string;
}

/** Every rule for one agent. */
export interface AgentExplanation {
  agentId: string;
  eligible: boolean;
  /** Normalised weighted score in [0,1]. */
  score: number;
  constraints: ConstraintResult[];
  preferences: PreferenceResult[];
}

/** The result of {@link PolicyBundle.explain}. */
export interface Explanation {
  eventId: string;
  tenant: string | undefined;
  /** Whether each policy's selector matched the event. */
  policies: { name: string; version: number; mode: 'enforce' | 'shadow'; selected: RuleStatus; message?: string }[];
  agents: AgentExplanation[];
  decision: Decision;
}

function masked(event: Record<string, unknown>, allow: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(event)) {
    if (k === 'data' || k === 'data_base64') continue;
    out[k] = allow.includes(k) ? v : '***';
  }
  return out;
}

interface PolicyPlan {
  policy: CompiledPolicy;
  constraints: CompiledConstraint[];
  preferences: { pref: CompiledPreference; weight: number }[];
}

function planFor(policy: CompiledPolicy, tenant: string | undefined): PolicyPlan {
  const t = tenant === undefined ? undefined : policy.tenants.get(tenant);
  return {
    policy,
    constraints: t ? [...policy.constraints, ...t.constraints] : policy.constraints,
    preferences: policy.preferences.map((pref) => ({ pref, weight: t?.weights.get(pref.id) ?? pref.weight })),
  };
}

/** First line of an error message, trimmed. */
export function firstLine(s: string): string {
  return (s.split('\n')[0] ?? s).trim();
}

/** Whether an exception is still in force at `nowMs`. */
export function isActive(x: CompiledException, nowMs: number): boolean {
  return x.expiresMs > nowMs;
}

/**
 * Evaluate every rule of every policy for every agent with `evaluator` (the primary engine for
 * `explain` and the naive baseline, `@bufbuild/cel` for the cross-check).
 */
export function evaluateFully(
  loaded: LoadedBundle,
  event: Record<string, unknown>,
  agents: readonly AgentView[],
  evaluator: Evaluator,
  options: ResolvedDecide,
): Explanation {
  const started = performance.now();
  const { vocabulary } = loaded;
  const base = recordBase(loaded, event, agents, options);
  let facts: Record<string, unknown>;
  let tenant: string | undefined;
  try {
    const f = eventFacts(event);
    facts = f.facts;
    tenant = f.intent.tenant;
  } catch (err) {
    const decision = errorDecision(base, [{ rule: 'intent', message: (err as Error).message }], started);
    return { eventId: String(event.id ?? ''), tenant: undefined, policies: [], agents: [], decision };
  }
  const ev = activationOf(vocabulary.event, facts);
  const policies: Explanation['policies'] = [];
  const plans: PolicyPlan[] = [];
  const errors: { rule: string; agentId?: string; message: string }[] = [];
  let selectorError = false;
  for (const p of loaded.policies) {
    let selected: RuleStatus = 'pass';
    let message: string | undefined;
    if (p.selector) {
      const r = evaluator(p.selector, { event: ev });
      if (!r.ok) {
        selected = 'error';
        message = r.error;
        errors.push({ rule: `${p.name}/selector`, message: r.error });
        if (p.mode === 'enforce') selectorError = true;
      } else if (r.value !== true) selected = 'n/a';
    }
    policies.push({ name: p.name, version: p.version, mode: p.mode, selected, ...(message ? { message } : {}) });
    if (selected === 'pass') plans.push(planFor(p, tenant));
  }
  const agentAct = agents.map((a) => activationOf(vocabulary.agent, a as unknown as Record<string, unknown>));
  const results: AgentExplanation[] = [];
  const exceptionUse = new Map<CompiledException, { rule: string; agents: string[] }>();
  const shadowScores = new Map<string, { num: number[]; den: number[]; ok: boolean[] }>();
  const numE: number[] = [];
  const denE: number[] = [];
  agents.forEach((agent, ai) => {
    const act: CelActivation = { event: ev, agent: agentAct[ai] as Record<string, unknown> };
    const constraints: ConstraintResult[] = [];
    const preferences: PreferenceResult[] = [];
    let eligible = true;
    let num = 0;
    let den = 0;
    for (const plan of plans) {
      const mode = plan.policy.mode;
      let shadowOk = true;
      let sNum = 0;
      let sDen = 0;
      for (const c of plan.constraints) {
        const res: ConstraintResult = {
          ruleId: c.ruleId,
          policy: c.policy,
          mode,
          status: 'pass',
          ...(c.tenant ? { tenant: c.tenant } : {}),
        };
        let applies = true;
        if (c.when) {
          const w = evaluator(c.when, act);
          if (!w.ok) {
            res.status = 'error';
            res.message = `when: ${firstLine(w.error)}`;
          } else if (w.value !== true) applies = false;
        }
        if (!applies) res.status = 'n/a';
        else if (res.status !== 'error') {
          const r = evaluator(c.require, act);
          if (!r.ok) {
            res.status = 'error';
            res.message = firstLine(r.error);
          } else if (r.value !== true) {
            res.status = 'fail';
            if (c.message) {
              const m = evaluator(c.message, act);
              res.message = m.ok ? String(m.value) : `(message failed: ${firstLine(m.error)})`;
            } else res.message = `${c.ruleId} does not hold`;
          }
        }
        if (res.status === 'fail' || res.status === 'error') {
          for (const x of c.exceptions) {
            if (!isActive(x, options.nowMs)) continue;
            const xw = x.when ? evaluator(x.when, act) : ({ ok: true, value: true } as EvalOutcome);
            if (xw.ok && xw.value === true) {
              res.exception = { id: x.id, ticket: x.ticket, approvedBy: x.approvedBy, expires: x.expires };
              res.status = 'pass';
              if (mode === 'enforce') {
                const u = exceptionUse.get(x) ?? { rule: c.ruleId, agents: [] };
                u.agents.push(agent.id);
                exceptionUse.set(x, u);
              }
              break;
            }
          }
        }
        if (res.status === 'error' && mode === 'enforce' && errors.length < MAX_RECORDED_ERRORS) {
          errors.push({ rule: c.ruleId, agentId: agent.id, message: res.message ?? 'error' });
        }
        if (res.status === 'fail' || res.status === 'error') {
          if (mode === 'enforce') eligible = false;
          else shadowOk = false;
        }
        constraints.push(res);
      }
      for (const { pref, weight } of plan.preferences) {
        const res: PreferenceResult = {
          ruleId: pref.ruleId,
          policy: pref.policy,
          mode,
          status: 'scored',
          weight,
          score: 0,
        };
        let applies = true;
        if (pref.when) {
          const w = evaluator(pref.when, act);
          if (!w.ok) {
            res.status = 'error';
            res.message = `when: ${firstLine(w.error)}`;
          } else if (w.value !== true) applies = false;
        }
        if (!applies) res.status = 'n/a';
        else if (res.status !== 'error') {
          const r = evaluator(pref.score, act);
          if (!r.ok || typeof r.value !== 'number' || Number.isNaN(r.value)) {
            res.status = 'error';
            res.message = r.ok ? `score is not a number: ${String(r.value)}` : firstLine(r.error);
          } else {
            res.raw = r.value;
            res.score = Math.min(1, Math.max(0, r.value));
          }
        }
        if (res.status !== 'n/a') {
          if (mode === 'enforce') {
            num += weight * res.score;
            den += weight;
          } else {
            sNum += weight * res.score;
            sDen += weight;
          }
        }
        preferences.push(res);
      }
      if (mode === 'shadow') {
        const s = shadowScores.get(plan.policy.name) ?? { num: [], den: [], ok: [] };
        s.num[ai] = sNum;
        s.den[ai] = sDen;
        s.ok[ai] = shadowOk;
        shadowScores.set(plan.policy.name, s);
      }
    }
    numE[ai] = num;
    denE[ai] = den;
    results.push({ agentId: agent.id, eligible, score: den > 0 ? num / den : 0, constraints, preferences });
  });
  if (selectorError) {
    const decision = errorDecision(base, errors, started);
    return { eventId: String(event.id ?? ''), tenant, policies, agents: results, decision };
  }
  const eligibleIdx: number[] = [];
  const scores: number[] = [];
  const excluded: { agentId: string; rules: string[] }[] = [];
  results.forEach((r, i) => {
    scores[i] = r.score;
    if (r.eligible) eligibleIdx.push(i);
    else
      excluded.push({
        agentId: r.agentId,
        rules: r.constraints
          .filter((c) => c.mode === 'enforce' && (c.status === 'fail' || c.status === 'error'))
          .map((c) => c.ruleId),
      });
  });
  const shadow = [...shadowScores.entries()].map(([name, s]) => {
    const idx = eligibleIdx.filter((i) => s.ok[i]);
    const sc = idx.map((i) => {
      const d = (denE[i] as number) + (s.den[i] as number);
      return d > 0 ? ((numE[i] as number) + (s.num[i] as number)) / d : 0;
    });
    const best = bestOf(idx, sc, agents);
    return { policy: name, chosen: best === undefined ? null : (agents[best] as AgentView).id };
  });
  const decision = buildDecision(
    base,
    agents,
    eligibleIdx,
    scores,
    excluded,
    shadow,
    errors,
    exceptionUse,
    options,
    started,
  );
  return { eventId: String(event.id ?? ''), tenant, policies, agents: results, decision };
}

// ---------------------------------------------------------------------------------------------
// Shared decision assembly
// ---------------------------------------------------------------------------------------------

/** Resolved decide options. */
export interface ResolvedDecide {
  decisionId: string;
  nowMs: number;
  registryRevision: number;
  topK: number;
  routerId: string | undefined;
  attempt: number | undefined;
}

/** Resolve {@link DecideOptions}. */
export function resolveDecide(options: DecideOptions | undefined, clock: Clock): ResolvedDecide {
  return {
    decisionId: options?.decisionId ?? randomUUID(),
    nowMs: options?.nowMs ?? clock.now(),
    registryRevision: options?.registryRevision ?? 0,
    topK: options?.topK ?? DEFAULT_TOP_K,
    routerId: options?.routerId,
    attempt: options?.attempt,
  };
}

/** The decision-independent part of a record. */
export type RecordBase = Omit<DecisionRecord, 'excluded' | 'topK' | 'chosen' | 'outcome' | 'shadow' | 'evaluationUs'>;

/**
 * The `bundle` and `engine` sections of a bundle's records, built once per bundle and frozen:
 * every record of a bundle shares them (and the mesh encoder validates and serialises a frozen
 * section once).
 */
const recordSections = new WeakMap<LoadedBundle, Pick<DecisionRecord, 'bundle' | 'engine'>>();

function sectionsOf(loaded: LoadedBundle): Pick<DecisionRecord, 'bundle' | 'engine'> {
  let s = recordSections.get(loaded);
  if (s === undefined) {
    s = {
      bundle: Object.freeze({
        digest: loaded.digest,
        policies: Object.freeze(
          loaded.policies.map((p) => Object.freeze({ name: p.name, version: p.version, hash: p.hash, mode: p.mode })),
        ) as DecisionRecord['bundle']['policies'],
      }),
      engine: Object.freeze({ name: loaded.engine.name, version: loaded.engine.version }),
    };
    recordSections.set(loaded, s);
  }
  return s;
}

/** The `exceptions` section of a record: each approved exception used, and for which agents. */
export function recordedExceptions(
  exceptionUse: ReadonlyMap<CompiledException, { rule: string; agents: string[] }>,
): NonNullable<DecisionRecord['exceptions']> {
  return [...exceptionUse.entries()].map(([x, u]) => ({
    rule: x.ruleId,
    constraint: u.rule,
    approvedBy: x.approvedBy,
    ticket: x.ticket,
    expires: x.expires,
    agentIds: u.agents,
  }));
}

/** The decision-independent part of a record. */
export function recordBase(
  loaded: LoadedBundle,
  event: Record<string, unknown>,
  agents: readonly AgentView[],
  o: ResolvedDecide,
): RecordBase {
  const tenant = typeof event.tenant === 'string' ? event.tenant : undefined;
  const sections = sectionsOf(loaded);
  // Built field by field in record order, without spreading optional parts: one hidden class per
  // combination of optional fields instead of a fresh copy per record (this is per event).
  const recordEvent: RecordBase['event'] = {
    id: String(event.id ?? ''),
    type: String(event.type ?? ''),
    source: String(event.source ?? ''),
  } as RecordBase['event'];
  if (tenant !== undefined) recordEvent.tenant = tenant;
  recordEvent.attributes = masked(event, loaded.vocabulary.auditAttributes);
  const base = {
    schema: 'meshroute.decision/v1',
    decisionId: o.decisionId,
    time: new Date(o.nowMs).toISOString(),
  } as RecordBase;
  if (o.routerId !== undefined) base.routerId = o.routerId;
  base.bundle = sections.bundle;
  base.engine = sections.engine;
  base.event = recordEvent;
  if (o.attempt !== undefined) base.attempt = o.attempt;
  base.candidates = agents.length;
  base.registryRevision = o.registryRevision;
  return base;
}

/** Microseconds since `started` (a `performance.now()` value). */
export function elapsedUs(started: number): number {
  return Math.max(0, Math.round((performance.now() - started) * 1000));
}

/** A `policy-error` decision. */
export function errorDecision(
  base: RecordBase,
  errors: { rule: string; agentId?: string; message: string }[],
  started: number,
): Decision {
  const record: DecisionRecord = {
    ...base,
    excluded: [],
    topK: [],
    chosen: null,
    outcome: 'policy-error',
    shadow: [],
    errors: errors.slice(0, MAX_RECORDED_ERRORS),
    evaluationUs: elapsedUs(started),
  };
  return { outcome: 'policy-error', chosen: undefined, ranking: [], excluded: [], record };
}

function bestOf(idx: readonly number[], scores: readonly number[], agents: readonly AgentView[]): number | undefined {
  let best: number | undefined;
  let bestScore = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < idx.length; j++) {
    const i = idx[j] as number;
    const s = scores[j] as number;
    if (
      s > bestScore ||
      (s === bestScore && best !== undefined && (agents[i] as AgentView).id < (agents[best] as AgentView).id)
    ) {
      best = i;
      bestScore = s;
    }
  }
  return best;
}

function buildDecision(
  base: RecordBase,
  agents: readonly AgentView[],
  eligibleIdx: readonly number[],
  scoresByAgent: ArrayLike<number>,
  excluded: { agentId: string; rules: string[] }[],
  shadow: { policy: string; chosen: string | null }[],
  errors: { rule: string; agentId?: string; message: string }[],
  exceptionUse: ReadonlyMap<CompiledException, { rule: string; agents: string[] }>,
  o: ResolvedDecide,
  started: number,
): Decision {
  const elig = eligibleIdx.map((i) => scoresByAgent[i] as number);
  const bestIdx = bestOf(eligibleIdx, elig, agents);
  const chosen = bestIdx === undefined ? undefined : agents[bestIdx];
  const outcome: DecisionOutcome = chosen ? 'routed' : 'no-eligible-agent';
  // Top-k by partial selection; the full ranking is sorted lazily on first read.
  const cmp = (a: number, b: number) => {
    const d = (scoresByAgent[b] as number) - (scoresByAgent[a] as number);
    if (d !== 0) return d;
    const ia = (agents[a] as AgentView).id;
    const ib = (agents[b] as AgentView).id;
    return ia < ib ? -1 : ia > ib ? 1 : 0;
  };
  const top: number[] = [];
  for (const i of eligibleIdx) {
    if (top.length < o.topK) {
      top.push(i);
      top.sort(cmp);
    } else if (o.topK > 0 && cmp(i, top[top.length - 1] as number) < 0) {
      top[top.length - 1] = i;
      top.sort(cmp);
    }
  }
  const chosenId = chosen?.id ?? null;
  const record: DecisionRecord = {
    ...base,
    excluded,
    topK: top.map((i) => ({ agentId: (agents[i] as AgentView).id, score: scoresByAgent[i] as number })),
    chosen: chosen ? { agentId: chosen.id, region: chosen.region, jurisdiction: chosen.jurisdiction } : null,
    outcome,
    shadow: shadow.map((s) => ({
      policy: s.policy,
      outcome: s.chosen === null ? 'no-eligible-agent' : 'routed',
      chosen: s.chosen,
      agree: s.chosen === chosenId,
    })),
    ...(errors.length > 0 ? { errors: errors.slice(0, MAX_RECORDED_ERRORS) } : {}),
    ...(exceptionUse.size > 0 ? { exceptions: recordedExceptions(exceptionUse) } : {}),
    evaluationUs: 0,
  };
  let ranking: { agentId: string; score: number }[] | undefined;
  const decision = {
    outcome,
    chosen,
    excluded,
    record,
    get ranking(): { agentId: string; score: number }[] {
      ranking ??= [...eligibleIdx]
        .sort(cmp)
        .map((i) => ({ agentId: (agents[i] as AgentView).id, score: scoresByAgent[i] as number }));
      return ranking;
    },
  } as Decision;
  record.evaluationUs = elapsedUs(started);
  return decision;
}
