/**
 * Decisions: the compiled fast path (`decide`) and the full, rule-by-rule evaluation behind
 * `explain`, the naive baseline and the reference-engine cross-check.
 *
 * Fast path: event-only parts are evaluated once per decision; expressions in the compilable subset
 * run as closures over the raw agent; expressions reading only `agent.jurisdiction` or only
 * `agent.backends` are evaluated once per distinct jurisdiction/backend set (the index); agent-only
 * expressions outside the subset are cached per registry revision and agent id.
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
import { type EvalOutcome, outcomeOf } from './reference-engine.js';
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

function firstLine(s: string): string {
  return (s.split('\n')[0] ?? s).trim();
}

function isActive(x: CompiledException, nowMs: number): boolean {
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

type RecordBase = Omit<DecisionRecord, 'excluded' | 'topK' | 'chosen' | 'outcome' | 'shadow' | 'evaluationUs'>;

function recordBase(
  loaded: LoadedBundle,
  event: Record<string, unknown>,
  agents: readonly AgentView[],
  o: ResolvedDecide,
): RecordBase {
  const tenant = typeof event.tenant === 'string' ? event.tenant : undefined;
  return {
    schema: 'meshroute.decision/v1',
    decisionId: o.decisionId,
    time: new Date(o.nowMs).toISOString(),
    ...(o.routerId === undefined ? {} : { routerId: o.routerId }),
    bundle: {
      digest: loaded.digest,
      policies: loaded.policies.map((p) => ({ name: p.name, version: p.version, hash: p.hash, mode: p.mode })),
    },
    engine: { name: loaded.engine.name, version: loaded.engine.version },
    event: {
      id: String(event.id ?? ''),
      type: String(event.type ?? ''),
      source: String(event.source ?? ''),
      ...(tenant === undefined ? {} : { tenant }),
      attributes: masked(event, loaded.vocabulary.auditAttributes),
    },
    ...(o.attempt === undefined ? {} : { attempt: o.attempt }),
    candidates: agents.length,
    registryRevision: o.registryRevision,
  };
}

function elapsedUs(started: number): number {
  return Math.max(0, Math.round((performance.now() - started) * 1000));
}

function errorDecision(
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
    ...(exceptionUse.size > 0
      ? {
          exceptions: [...exceptionUse.entries()].map(([x, u]) => ({
            rule: x.ruleId,
            constraint: u.rule,
            approvedBy: x.approvedBy,
            ticket: x.ticket,
            expires: x.expires,
            agentIds: u.agents,
          })),
        }
      : {}),
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

// ---------------------------------------------------------------------------------------------
// Fast path
// ---------------------------------------------------------------------------------------------

type Fn = (a: AgentView, i: number) => unknown;

const STATIC_TRUE: Fn = () => true;

/** Per-bundle caches for the fast path. */
export interface FastState {
  revision: number | undefined;
  /** Agent activations (for expressions outside the compiled subset), by agent id. */
  activations: Map<string, Record<string, unknown>>;
  /** Agent-only expression results, by expression then agent id. */
  agentOnly: Map<CompiledExpression, Map<string, EvalOutcome>>;
}

/** Fresh fast-path caches. */
export function createFastState(): FastState {
  return { revision: undefined, activations: new Map(), agentOnly: new Map() };
}

const THROW = Symbol('error');

/** The compiled fast path. Same results as {@link evaluateFully} with the primary engine, except
 * that `excluded` lists every failing rule only for enforce constraints (as the full path does). */
export function decideFast(
  loaded: LoadedBundle,
  state: FastState,
  event: Record<string, unknown>,
  agents: readonly AgentView[],
  o: ResolvedDecide,
): Decision {
  const started = performance.now();
  const base = recordBase(loaded, event, agents, o);
  let facts: Record<string, unknown>;
  let tenant: string | undefined;
  try {
    const f = eventFacts(event);
    facts = f.facts;
    tenant = f.intent.tenant;
  } catch (err) {
    return errorDecision(base, [{ rule: 'intent', message: (err as Error).message }], started);
  }
  const ev = activationOf(loaded.vocabulary.event, facts);
  const cacheable = o.registryRevision > 0;
  if (!cacheable || state.revision !== o.registryRevision) {
    state.activations.clear();
    state.agentOnly.clear();
    state.revision = cacheable ? o.registryRevision : undefined;
  }
  const agentAct = (a: AgentView): Record<string, unknown> => {
    let act = state.activations.get(a.id);
    if (act === undefined || !cacheable) {
      act = activationOf(loaded.vocabulary.agent, a as unknown as Record<string, unknown>);
      if (cacheable) state.activations.set(a.id, act);
    }
    return act;
  };
  const errors: { rule: string; agentId?: string; message: string }[] = [];

  /** Build a per-agent function for an expression; returns THROW-wrapped errors as thrown values. */
  const build = (expr: CompiledExpression): Fn => {
    if (!expr.readsAgent) {
      let v: unknown;
      try {
        v = expr.evaluate({ event: ev });
      } catch (err) {
        const e = err;
        return () => {
          throw e;
        };
      }
      return v === true ? STATIC_TRUE : () => v;
    }
    // Agent-reading expressions are prepared lazily: only when a closure is actually called.
    let made: Fn | undefined;
    return (a, i) => {
      made ??= make(expr);
      return made(a, i);
    };
  };
  const make = (expr: CompiledExpression): Fn => {
    let fn: Fn | undefined;
    if (expr.fast) {
      const slots: unknown[] = [];
      let ok = true;
      for (const s of expr.fast.slots) {
        try {
          slots.push(s(ev));
        } catch {
          ok = false;
          break;
        }
      }
      if (ok) {
        const run = expr.fast.run;
        fn = (a) => run(a, slots);
      }
    }
    if (!fn) {
      if (!expr.readsEvent && cacheable) {
        let cache = state.agentOnly.get(expr);
        if (!cache) {
          cache = new Map();
          state.agentOnly.set(expr, cache);
        }
        const c = cache;
        fn = (a) => {
          let r = c.get(a.id);
          if (r === undefined) {
            r = outcomeOf(() => expr.evaluate({ event: ev, agent: agentAct(a) }));
            c.set(a.id, r);
          }
          if (!r.ok) throw new Error(r.error);
          return r.value;
        };
      } else {
        fn = (a) => expr.evaluate({ event: ev, agent: agentAct(a) });
      }
    }
    // Index: expressions that read only the jurisdiction (or only the backends) run once per value.
    const fields = expr.agentFields;
    if (fields.size === 1 && (fields.has('jurisdiction') || fields.has('backends'))) {
      const memo = new Map<string, unknown>();
      const byJurisdiction = fields.has('jurisdiction');
      const inner = fn;
      fn = (a, i) => {
        const key = byJurisdiction ? a.jurisdiction : a.backends.join('\u0000');
        let r = memo.get(key);
        if (r === undefined) {
          try {
            r = inner(a, i);
          } catch (err) {
            r = { [THROW]: err };
          }
          memo.set(key, r);
        }
        if (r !== null && typeof r === 'object' && THROW in r) throw (r as { [THROW]: unknown })[THROW];
        return r;
      };
    }
    return fn;
  };

  interface PlannedConstraint {
    c: CompiledConstraint;
    when: Fn | undefined;
    require: Fn;
    exceptions: { x: CompiledException; when: Fn }[];
    rules: string[];
  }
  interface PlannedPref {
    scoreExpr: CompiledExpression;
    whenExpr: CompiledExpression | undefined;
    weight: number;
    when: Fn | undefined;
    score: Fn;
    ruleId: string;
  }
  const enforceC: PlannedConstraint[] = [];
  const enforceP: PlannedPref[] = [];
  const shadows: { name: string; c: PlannedConstraint[]; p: PlannedPref[] }[] = [];
  let selectorError = false;
  for (const p of loaded.policies) {
    if (p.selector) {
      let sel: unknown;
      try {
        sel = p.selector.evaluate({ event: ev });
      } catch (err) {
        errors.push({ rule: `${p.name}/selector`, message: firstLine((err as Error).message) });
        if (p.mode === 'enforce') selectorError = true;
        continue;
      }
      if (sel !== true) continue;
    }
    const plan = planFor(p, tenant);
    const cs: PlannedConstraint[] = [];
    for (const c of plan.constraints) {
      // Event-only `when` that is false: the constraint does not apply to anyone.
      let when: Fn | undefined;
      if (c.when) {
        if (!c.when.readsAgent) {
          let w: unknown;
          let failed = false;
          try {
            w = c.when.evaluate({ event: ev });
          } catch {
            failed = true;
          }
          if (!failed && w !== true) continue;
          when = failed ? build(c.when) : undefined;
        } else when = build(c.when);
      }
      const require = build(c.require);
      if (when === undefined && require === STATIC_TRUE) continue;
      const exceptions = c.exceptions
        .filter((x) => isActive(x, o.nowMs))
        .map((x) => ({ x, when: x.when ? build(x.when) : STATIC_TRUE }));
      cs.push({ c, when, require, exceptions, rules: [c.ruleId] });
    }
    const ps: PlannedPref[] = plan.preferences.map(({ pref, weight }) => ({
      weight,
      when: pref.when ? build(pref.when) : undefined,
      score: build(pref.score),
      ruleId: pref.ruleId,
      scoreExpr: pref.score,
      whenExpr: pref.when,
    }));
    if (p.mode === 'enforce') {
      enforceC.push(...cs);
      enforceP.push(...ps);
    } else shadows.push({ name: p.name, c: cs, p: ps });
  }
  if (selectorError) return errorDecision(base, errors, started);

  const exceptionUse = new Map<CompiledException, { rule: string; agents: string[] }>();
  const recordError = (rule: string, agentId: string, err: unknown) => {
    if (errors.length < MAX_RECORDED_ERRORS)
      errors.push({ rule, agentId, message: firstLine((err as Error)?.message ?? String(err)) });
  };
  /** 1: pass, 0: fail, -1: error */
  const check = (pc: PlannedConstraint, a: AgentView, i: number, record: boolean): boolean => {
    let ok: boolean;
    let error: unknown;
    let applies = true;
    if (pc.when) {
      try {
        applies = pc.when(a, i) === true;
      } catch (err) {
        error = err;
      }
    }
    if (!applies && error === undefined) return true;
    if (error === undefined) {
      try {
        ok = pc.require(a, i) === true;
      } catch (err) {
        error = err;
        ok = false;
      }
    } else ok = false;
    if (ok) return true;
    for (const { x, when } of pc.exceptions) {
      let holds = false;
      try {
        holds = when(a, i) === true;
      } catch {
        holds = false;
      }
      if (holds) {
        if (record) {
          const u = exceptionUse.get(x) ?? { rule: pc.c.ruleId, agents: [] };
          u.agents.push(a.id);
          exceptionUse.set(x, u);
        }
        return true;
      }
    }
    if (error !== undefined && record) recordError(pc.c.ruleId, a.id, error);
    return false;
  };
  const score = (ps: PlannedPref[], a: AgentView, i: number, record: boolean, out: { num: number; den: number }) => {
    for (const p of ps) {
      let v = 0;
      try {
        if (p.when && p.when(a, i) !== true) continue;
        let r = p.score(a, i);
        if (typeof r === 'bigint') r = Number(r);
        if (typeof r !== 'number' || Number.isNaN(r)) throw new Error(`score is not a number: ${String(r)}`);
        v = r < 0 ? 0 : r > 1 ? 1 : r;
      } catch (err) {
        if (record) recordError(p.ruleId, a.id, err);
        v = 0;
      }
      out.num += p.weight * v;
      out.den += p.weight;
    }
  };

  const n = agents.length;
  const scores = new Float64Array(n);
  const nums = shadows.length > 0 ? new Float64Array(n) : undefined;
  const dens = shadows.length > 0 ? new Float64Array(n) : undefined;
  let eligibleIdx: number[] = [];
  const excluded: { agentId: string; rules: string[] }[] = [];
  const acc = { num: 0, den: 0 };
  const fused = enforceC.length <= 31 ? fusedLoop(state, ev, enforceC, enforceP, check, score) : undefined;
  if (fused) {
    const failMask = new Int32Array(n);
    const elig = new Int32Array(n);
    const count = fused.run(agents, n, failMask, elig, scores, nums, dens);
    eligibleIdx = Array.from(elig.subarray(0, count));
    const byMask = new Map<number, string[]>();
    for (let i = 0; i < n; i++) {
      const m = failMask[i] as number;
      if (m === 0) continue;
      let rules = byMask.get(m);
      if (rules === undefined) {
        rules = enforceC.filter((_, k) => (m & (1 << k)) !== 0).map((pc) => pc.c.ruleId);
        byMask.set(m, rules);
      }
      excluded.push({ agentId: (agents[i] as AgentView).id, rules });
    }
  }
  for (let i = 0; fused === undefined && i < n; i++) {
    const a = agents[i] as AgentView;
    let failed: string[] | undefined;
    let shared = false;
    for (let k = 0; k < enforceC.length; k++) {
      const pc = enforceC[k] as PlannedConstraint;
      if (!check(pc, a, i, true)) {
        if (failed === undefined) {
          failed = pc.rules;
          shared = true;
        } else {
          if (shared) failed = [...failed];
          shared = false;
          failed.push(pc.c.ruleId);
        }
      }
    }
    if (failed !== undefined) {
      excluded.push({ agentId: a.id, rules: failed });
      continue;
    }
    acc.num = 0;
    acc.den = 0;
    score(enforceP, a, i, true, acc);
    scores[i] = acc.den > 0 ? acc.num / acc.den : 0;
    if (nums && dens) {
      nums[i] = acc.num;
      dens[i] = acc.den;
    }
    eligibleIdx.push(i);
  }
  const shadow = shadows.map((s) => {
    const idx: number[] = [];
    const sc: number[] = [];
    for (const i of eligibleIdx) {
      const a = agents[i] as AgentView;
      if (!s.c.every((pc) => check(pc, a, i, false))) continue;
      const out = { num: (nums as Float64Array)[i] as number, den: (dens as Float64Array)[i] as number };
      score(s.p, a, i, false, out);
      idx.push(i);
      sc.push(out.den > 0 ? out.num / out.den : 0);
    }
    const best = bestOf(idx, sc, agents);
    return { policy: s.name, chosen: best === undefined ? null : (agents[best] as AgentView).id };
  });
  return buildDecision(base, agents, eligibleIdx, scores, excluded, shadow, errors, exceptionUse, o, started);
}

interface PlannedForFuse {
  c: CompiledConstraint;
  when: Fn | undefined;
  exceptions: readonly unknown[];
}

interface FusedRun {
  run(
    agents: readonly AgentView[],
    n: number,
    failMask: Int32Array,
    elig: Int32Array,
    scores: Float64Array,
    nums: Float64Array | undefined,
    dens: Float64Array | undefined,
  ): number;
}

const fusedCache = new WeakMap<FastState, Map<string, (...args: unknown[]) => number>>();

/** Inline code and slot values of an agent-reading expression, when it compiles and its slots evaluate. */
function inlineOf(
  expr: CompiledExpression | undefined,
  ev: Record<string, unknown>,
): { code: string; slots: unknown[] } | undefined {
  if (!expr?.readsAgent || !expr.fast) return undefined;
  const slots: unknown[] = [];
  for (const f of expr.fast.slots) {
    try {
      slots.push(f(ev));
    } catch {
      return undefined;
    }
  }
  return { code: expr.fast.code, slots };
}

/**
 * One generated loop over all agents for this decision's plan: constraints and preferences in the
 * compiled subset are inlined; the rest call back into per-rule closures. Cached per plan shape.
 */
function fusedLoop(
  state: FastState,
  ev: Record<string, unknown>,
  constraints: readonly PlannedForFuse[],
  prefs: readonly { weight: number; when: Fn | undefined; score: Fn; ruleId: string }[],
  check: (pc: never, a: AgentView, i: number, record: boolean) => boolean,
  score: (ps: never, a: AgentView, i: number, record: boolean, out: { num: number; den: number }) => void,
): FusedRun | undefined {
  const S: unknown[][] = [];
  const F: ((a: AgentView, i: number) => unknown)[] = [];
  const W: number[] = [];
  const lines: string[] = [];
  const slotRef = (code: string, slots: unknown[]) => {
    const t = S.length;
    S.push(slots);
    return code.replace(/__s\[/g, `S${t}[`);
  };
  constraints.forEach((pc, k) => {
    const bit = 1 << k;
    const req = inlineOf(pc.c.require, ev);
    const whenNeeded = pc.when !== undefined;
    const when = whenNeeded ? inlineOf(pc.c.when, ev) : undefined;
    const f = F.length;
    F.push((a, i) => check(pc as never, a, i, true));
    if (!req || (whenNeeded && !when)) {
      lines.push(`if (!F${f}(a, i)) m |= ${bit};`);
      return;
    }
    const cond = when
      ? `(!(${slotRef(when.code, when.slots)}) || (${slotRef(req.code, req.slots)}))`
      : `(${slotRef(req.code, req.slots)})`;
    // On failure, a constraint with exceptions asks the closure (which checks and records them).
    lines.push(pc.exceptions.length > 0 ? `if (!${cond} && !F${f}(a, i)) m |= ${bit};` : `if (!${cond}) m |= ${bit};`);
  });
  const prefLines: string[] = [];
  prefs.forEach((p, j) => {
    W.push(p.weight);
    const expr = (p as unknown as { scoreExpr?: CompiledExpression }).scoreExpr;
    const whenExpr = (p as unknown as { whenExpr?: CompiledExpression }).whenExpr;
    const sc = inlineOf(expr, ev);
    const wh = whenExpr ? inlineOf(whenExpr, ev) : undefined;
    if (!sc || (whenExpr && !wh)) {
      const f = F.length;
      const one = [p];
      F.push((a, i) => {
        const out = { num: 0, den: 0 };
        score(one as never, a, i, true, out);
        return out;
      });
      prefLines.push(`{ const o = F${f}(a, i); num += o.num; den += o.den; }`);
      return;
    }
    const body = `let v = ${slotRef(sc.code, sc.slots)}; if (!(v >= 0)) v = 0; else if (v > 1) v = 1; num += W[${j}] * v; den += W[${j}];`;
    prefLines.push(wh ? `if (${slotRef(wh.code, wh.slots)}) { ${body} }` : `{ ${body} }`);
  });
  const src = [
    ...S.map((_, t) => `const S${t} = S[${t}];`),
    ...F.map((_, f) => `const F${f} = F[${f}];`),
    'let count = 0;',
    'for (let i = 0; i < n; i++) {',
    '  const a = agents[i];',
    '  let m = 0;',
    ...lines.map((l) => `  ${l}`),
    '  if (m !== 0) { failMask[i] = m; continue; }',
    '  let num = 0; let den = 0;',
    ...prefLines.map((l) => `  ${l}`),
    '  scores[i] = den > 0 ? num / den : 0;',
    '  if (nums !== undefined) { nums[i] = num; dens[i] = den; }',
    '  elig[count++] = i;',
    '}',
    'return count;',
  ].join('\n');
  let cache = fusedCache.get(state);
  if (!cache) {
    cache = new Map();
    fusedCache.set(state, cache);
  }
  let fn = cache.get(src);
  if (!fn) {
    fn = new Function(
      'S',
      'F',
      'W',
      'agents',
      'n',
      'failMask',
      'elig',
      'scores',
      'nums',
      'dens',
      `"use strict";\n${src}`,
    ) as (...args: unknown[]) => number;
    if (cache.size > 256) cache.clear();
    cache.set(src, fn);
  }
  const f = fn;
  return {
    run: (agents, n, failMask, elig, scores, nums, dens) => f(S, F, W, agents, n, failMask, elig, scores, nums, dens),
  };
}
