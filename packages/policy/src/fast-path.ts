/**
 * The compiled fast path behind `bundle.decide()`. Same decisions and records as the full
 * evaluation with the primary engine ({@link evaluateFully}), organised by how often each part
 * changes:
 *
 * - once per bundle: every expression is classified (event-only, agent-only, keyed on
 *   `agent.jurisdiction` or `agent.backends`, mixed) and event-only expressions are compiled to
 *   plain closures;
 * - once per registry revision (an {@link AgentTable}): interned jurisdictions and backend sets
 *   with their buckets, every agent-only expression and agent-only preference score as typed
 *   columns, and the agents passing each set of agent-only constraints, bucketed by jurisdiction
 *   or backend set;
 * - once per event: intent parsing, selectors, event-only `when`/`require`, the slots (event-only
 *   subexpressions) of mixed expressions and keyed expressions (once per distinct key);
 * - per candidate: one generated loop (cached per plan shape) running only the mixed comparisons,
 *   over the buckets the keyed constraints let through, with no allocation per agent.
 *
 * Exclusions (with every failing rule id), evaluation errors and exceptions applied are
 * materialised on first read of `excluded` or `record`, from the same evaluators.
 */
import type { DecisionRecord } from '@meshroute/mesh';
import type { CompiledExpression } from './cel.js';
import {
  type Decision,
  type DecisionOutcome,
  elapsedUs,
  errorDecision,
  firstLine,
  isActive,
  MAX_RECORDED_ERRORS,
  type ResolvedDecide,
  recordBase,
  recordedExceptions,
} from './decide.js';
import type { CompiledConstraint, CompiledException, CompiledPreference, LoadedBundle } from './loader.js';
import { type AgentView, activationOf, eventActivation } from './vocabulary.js';

// ---------------------------------------------------------------------------------------------
// Per bundle: classified expressions
// ---------------------------------------------------------------------------------------------

const K_EVENT = 0;
const K_AGENT = 1;
const K_JUR = 2;
const K_BACK = 3;
const K_MIXED = 4;

interface ExprInfo {
  id: number;
  expr: CompiledExpression;
  kind: number;
}

interface PrepConstraint {
  c: CompiledConstraint;
  when: ExprInfo | undefined;
  require: ExprInfo;
  exceptions: { x: CompiledException; when: ExprInfo | undefined }[];
}

interface PrepPref {
  pref: CompiledPreference;
  when: ExprInfo | undefined;
  score: ExprInfo;
}

interface PrepPolicy {
  name: string;
  enforce: boolean;
  selector: ExprInfo | undefined;
  constraints: PrepConstraint[];
  tenants: ReadonlyMap<string, { constraints: PrepConstraint[]; weights: ReadonlyMap<string, number> }>;
  prefs: PrepPref[];
}

interface Prepared {
  exprs: ExprInfo[];
  policies: PrepPolicy[];
  plans: Map<string, Plan>;
}

function prepare(loaded: LoadedBundle): Prepared {
  const exprs: ExprInfo[] = [];
  const info = (expr: CompiledExpression): ExprInfo => {
    let kind = K_MIXED;
    if (!expr.readsAgent) kind = K_EVENT;
    else if (!expr.readsEvent) kind = K_AGENT;
    else if (expr.agentFields.size === 1 && expr.agentFields.has('jurisdiction')) kind = K_JUR;
    else if (expr.agentFields.size === 1 && expr.agentFields.has('backends')) kind = K_BACK;
    const x: ExprInfo = { id: exprs.length, expr, kind };
    exprs.push(x);
    return x;
  };
  const opt = (e: CompiledExpression | undefined) => (e === undefined ? undefined : info(e));
  const cons = (c: CompiledConstraint): PrepConstraint => ({
    c,
    when: opt(c.when),
    require: info(c.require),
    exceptions: c.exceptions.map((x) => ({ x, when: opt(x.when) })),
  });
  const policies = loaded.policies.map(
    (p): PrepPolicy => ({
      name: p.name,
      enforce: p.mode === 'enforce',
      selector: opt(p.selector),
      constraints: p.constraints.map(cons),
      tenants: new Map(
        [...p.tenants].map(([name, t]) => [name, { constraints: t.constraints.map(cons), weights: t.weights }]),
      ),
      prefs: p.preferences.map((pref) => ({ pref, when: opt(pref.when), score: info(pref.score) })),
    }),
  );
  return { exprs, policies, plans: new Map() };
}

// ---------------------------------------------------------------------------------------------
// Per registry revision: the agent table
// ---------------------------------------------------------------------------------------------

/** Results of an agent-only expression for every agent. */
interface AgentColumn {
  /** 1: `true`, 0: any other value, 2: evaluation error. */
  code: Uint8Array;
  values: unknown[];
  errors: unknown[];
}

/** An agent-only preference for every agent. */
interface PrefColumn {
  /** 0: not applicable, 1: scored, 2: error (scores 0). */
  status: Uint8Array;
  /** Clamped score. */
  score: Float64Array;
  errors: unknown[];
}

interface Interned {
  ids: Int32Array;
  keys: string[];
  /** The first agent with each key. */
  rep: number[];
}

function intern(n: number, keyOf: (i: number) => string): Interned {
  const ids = new Int32Array(n);
  const byKey = new Map<string, number>();
  const keys: string[] = [];
  const rep: number[] = [];
  for (let i = 0; i < n; i++) {
    const k = keyOf(i);
    let id = byKey.get(k);
    if (id === undefined) {
      id = keys.length;
      byKey.set(k, id);
      keys.push(k);
      rep.push(i);
    }
    ids[i] = id;
  }
  return { ids, keys, rep };
}

/** What the fast path keeps per registry revision. */
class AgentTable {
  readonly n: number;
  readonly ids: string[];
  readonly jur: Interned;
  readonly back: Interned;
  readonly columns: (AgentColumn | undefined)[] = [];
  readonly prefColumns = new Map<string, PrefColumn>();
  /** Agents passing a set of agent-only constraints, by driving key (plan base signature). */
  readonly buckets = new Map<string, Int32Array[]>();
  readonly activations: (Record<string, unknown> | undefined)[];
  readonly numerics = new Map<string, Float64Array>();

  constructor(
    readonly revision: number,
    readonly agents: readonly AgentView[],
    private readonly loaded: LoadedBundle,
  ) {
    const n = agents.length;
    this.n = n;
    this.ids = agents.map((a) => a.id);
    this.jur = intern(n, (i) => (agents[i] as AgentView).jurisdiction);
    this.back = intern(n, (i) => (agents[i] as AgentView).backends.join('\u0000'));
    this.activations = new Array(n);
  }

  matches(revision: number, agents: readonly AgentView[]): boolean {
    if (revision !== this.revision || agents.length !== this.n) return false;
    // The same array at the same revision is the same registry; another array is checked by id.
    if (agents === this.agents) return true;
    const ids = this.ids;
    for (let i = 0; i < ids.length; i++) if ((agents[i] as AgentView).id !== ids[i]) return false;
    return true;
  }

  /** A numeric agent field as a typed column (snapshot of this revision's agents). */
  numeric(field: string): Float64Array {
    let col = this.numerics.get(field);
    if (col === undefined) {
      col = new Float64Array(this.n);
      for (let i = 0; i < this.n; i++) col[i] = (this.agents[i] as unknown as Record<string, number>)[field] as number;
      this.numerics.set(field, col);
    }
    return col;
  }

  activation(i: number): Record<string, unknown> {
    let act = this.activations[i];
    if (act === undefined) {
      act = activationOf(this.loaded.vocabulary.agent, this.agents[i] as unknown as Record<string, unknown>);
      this.activations[i] = act;
    }
    return act;
  }

  column(x: ExprInfo): AgentColumn {
    let col = this.columns[x.id];
    if (col !== undefined) return col;
    const n = this.n;
    col = { code: new Uint8Array(n), values: new Array(n), errors: [] };
    const expr = x.expr;
    let slots: unknown[] | undefined;
    if (expr.fast) {
      slots = [];
      for (const s of expr.fast.slots) {
        try {
          slots.push(s({}));
        } catch {
          slots = undefined;
          break;
        }
      }
    }
    for (let i = 0; i < n; i++) {
      let v: unknown;
      try {
        v =
          slots !== undefined && expr.fast
            ? expr.fast.run(this.agents[i] as AgentView, slots)
            : expr.evaluate({ event: {}, agent: this.activation(i) });
      } catch (err) {
        col.code[i] = 2;
        col.errors[i] = err;
        continue;
      }
      col.values[i] = v;
      col.code[i] = v === true ? 1 : 0;
    }
    this.columns[x.id] = col;
    return col;
  }

  prefColumn(p: PrepPref): PrefColumn {
    const key = p.pref.ruleId;
    let col = this.prefColumns.get(key);
    if (col !== undefined) return col;
    const n = this.n;
    col = { status: new Uint8Array(n), score: new Float64Array(n), errors: [] };
    const w = p.when === undefined ? undefined : this.column(p.when);
    const s = this.column(p.score);
    for (let i = 0; i < n; i++) {
      if (w !== undefined && w.code[i] === 0) continue;
      if (w !== undefined && w.code[i] === 2) {
        col.status[i] = 2;
        col.errors[i] = w.errors[i];
        continue;
      }
      if (s.code[i] === 2) {
        col.status[i] = 2;
        col.errors[i] = s.errors[i];
        continue;
      }
      let r = s.values[i];
      if (typeof r === 'bigint') r = Number(r);
      if (typeof r !== 'number' || Number.isNaN(r)) {
        col.status[i] = 2;
        col.errors[i] = new Error(`score is not a number: ${String(r)}`);
        continue;
      }
      col.status[i] = 1;
      col.score[i] = r < 0 ? 0 : r > 1 ? 1 : r;
    }
    this.prefColumns.set(key, col);
    return col;
  }
}

// ---------------------------------------------------------------------------------------------
// Per plan shape: the active rules and the generated candidate loop
// ---------------------------------------------------------------------------------------------

interface PlanConstraint {
  ruleId: string;
  when: ExprInfo | undefined;
  require: ExprInfo;
  exceptions: { x: CompiledException; when: ExprInfo | undefined }[];
  /** How the eager loop handles it: base (agent-only bucket), drive (keyed bucket), loop. */
  role: 'base' | 'drive' | 'loop';
}

interface PlanPref {
  ruleId: string;
  weight: number;
  when: ExprInfo | undefined;
  score: ExprInfo;
  prep: PrepPref;
}

type LoopFn = (
  ctx: DecisionContext,
  buckets: readonly Int32Array[],
  elig: Int32Array,
  scores: Float64Array,
  nums: Float64Array,
  dens: Float64Array,
) => number;

interface Plan {
  enforce: PlanConstraint[];
  prefs: PlanPref[];
  shadows: { name: string; constraints: PlanConstraint[]; prefs: PlanPref[] }[];
  /** 0: all agents in one bucket, 1: buckets by jurisdiction, 2: by backend set. */
  drive: number;
  base: PlanConstraint[];
  drivers: PlanConstraint[];
  baseKey: string;
  /** Constraints with active exceptions (evaluated for every agent when the record is built). */
  withExceptions: PlanConstraint[];
  /** The candidate loop over the agent objects, and over the revision's typed columns. */
  loop: LoopFn;
  columnLoop: LoopFn;
  /** The exclusion pass (at most 31 enforce constraints, else undefined: generic evaluation). */
  masks: MaskFn | undefined;
  columnMasks: MaskFn | undefined;
}

/** Per-bundle caches for the fast path. */
export interface FastState {
  prepared: Prepared | undefined;
  table: AgentTable | undefined;
  /** Scratch buffers for the candidate loop (copied out per decision). */
  scratch: { elig: Int32Array; scores: Float64Array; nums: Float64Array; dens: Float64Array };
}

/** Fresh fast-path caches. */
export function createFastState(): FastState {
  return {
    prepared: undefined,
    table: undefined,
    scratch: {
      elig: new Int32Array(0),
      scores: new Float64Array(0),
      nums: new Float64Array(0),
      dens: new Float64Array(0),
    },
  };
}

const MAX_PLANS = 512;

// ---------------------------------------------------------------------------------------------
// Per decision
// ---------------------------------------------------------------------------------------------

const NOT_DONE = 0;
const DONE_OK = 1;
const DONE_ERR = 2;

/** Per-decision evaluation state; also kept by the decision to materialise exclusions lazily. */
class DecisionContext {
  readonly evState: Uint8Array;
  readonly evValue: unknown[];
  /** Slot values of mixed expressions (undefined: a slot failed, use the engine). */
  readonly slots: (unknown[] | undefined)[];
  readonly slotState: Uint8Array;
  readonly keyed: (AgentColumn | undefined)[];
  readonly prefErrors: { i: number; rule: string; error: unknown }[] = [];
  readonly errors: { rule: string; agentId?: string; message: string }[] = [];
  exceptionUse: Map<CompiledException, { rule: string; agents: string[] }> | undefined;

  constructor(
    readonly prep: Prepared,
    readonly table: AgentTable,
    readonly agents: readonly AgentView[],
    readonly ev: Record<string, unknown>,
  ) {
    const m = prep.exprs.length;
    this.evState = new Uint8Array(m);
    this.evValue = new Array(m);
    this.slots = new Array(m);
    this.slotState = new Uint8Array(m);
    this.keyed = new Array(m);
  }

  /** Evaluate an event-only expression once; returns DONE_OK or DONE_ERR (value/error in evValue). */
  event(x: ExprInfo): number {
    const st = this.evState[x.id] as number;
    if (st !== NOT_DONE) return st;
    const ev = this.ev;
    let v: unknown;
    let state = DONE_OK;
    const fn = x.expr.eventFn;
    try {
      v = fn === undefined ? x.expr.evaluate({ event: ev }) : fn(ev);
    } catch (err) {
      v = err;
      state = DONE_ERR;
      // The engine's own error message (and result) is authoritative.
      if (fn !== undefined) {
        try {
          v = x.expr.evaluate({ event: ev });
          state = DONE_OK;
        } catch (e) {
          v = e;
        }
      }
    }
    this.evValue[x.id] = v;
    this.evState[x.id] = state;
    return state;
  }

  /** Slot values of a mixed expression, or undefined when it must run through the engine. */
  slotsOf(x: ExprInfo): unknown[] | undefined {
    if (this.slotState[x.id] !== NOT_DONE) return this.slots[x.id];
    let out: unknown[] | undefined;
    const fast = x.expr.fast;
    if (fast) {
      out = [];
      for (const s of fast.slots) {
        try {
          out.push(s(this.ev));
        } catch {
          out = undefined;
          break;
        }
      }
    }
    this.slots[x.id] = out;
    this.slotState[x.id] = out === undefined ? DONE_ERR : DONE_OK;
    return out;
  }

  /** A keyed expression, evaluated once per distinct jurisdiction / backend set. */
  keyedOf(x: ExprInfo): AgentColumn {
    let col = this.keyed[x.id];
    if (col !== undefined) return col;
    const interned = x.kind === K_JUR ? this.table.jur : this.table.back;
    const k = interned.keys.length;
    col = { code: new Uint8Array(k), values: new Array(k), errors: [] };
    for (let key = 0; key < k; key++) {
      try {
        const v = this.mixed(x, interned.rep[key] as number);
        col.values[key] = v;
        col.code[key] = v === true ? 1 : 0;
      } catch (err) {
        col.code[key] = 2;
        col.errors[key] = err;
      }
    }
    this.keyed[x.id] = col;
    return col;
  }

  mixed(x: ExprInfo, i: number): unknown {
    const slots = this.slotsOf(x);
    const fast = x.expr.fast;
    if (slots !== undefined && fast !== undefined) return fast.run(this.agents[i] as AgentView, slots);
    return x.expr.evaluate({ event: this.ev, agent: this.table.activation(i) });
  }

  /** The value of any expression for agent `i`; throws its evaluation error. */
  value(x: ExprInfo, i: number): unknown {
    switch (x.kind) {
      case K_EVENT:
        if (this.event(x) === DONE_ERR) throw this.evValue[x.id];
        return this.evValue[x.id];
      case K_AGENT: {
        const col = this.table.column(x);
        if (col.code[i] === 2) throw col.errors[i];
        return col.values[i];
      }
      case K_JUR:
      case K_BACK: {
        const col = this.keyedOf(x);
        const key = ((x.kind === K_JUR ? this.table.jur : this.table.back).ids[i] as number) ?? 0;
        if (col.code[key] === 2) throw col.errors[key];
        return col.values[key];
      }
      default:
        return this.mixed(x, i);
    }
  }

  /** 0: pass, 1: fail, 2: error. With `record`, errors and exceptions used are recorded. */
  status(pc: PlanConstraint, i: number, record: boolean): number {
    let error: unknown;
    let failed = false;
    let applies = true;
    if (pc.when !== undefined) {
      try {
        applies = this.value(pc.when, i) === true;
      } catch (err) {
        error = err;
        failed = true;
      }
    }
    if (!applies && !failed) return 0;
    if (!failed) {
      try {
        if (this.value(pc.require, i) === true) return 0;
      } catch (err) {
        error = err;
        failed = true;
      }
    }
    for (const { x, when } of pc.exceptions) {
      let holds = true;
      if (when !== undefined) {
        try {
          holds = this.value(when, i) === true;
        } catch {
          holds = false;
        }
      }
      if (holds) {
        if (record) {
          this.exceptionUse ??= new Map();
          const u = this.exceptionUse.get(x) ?? { rule: pc.ruleId, agents: [] };
          u.agents.push((this.agents[i] as AgentView).id);
          this.exceptionUse.set(x, u);
        }
        return 0;
      }
    }
    if (failed) {
      if (record) this.recordError(pc.ruleId, i, error);
      return 2;
    }
    return 1;
  }

  /** A preference's clamped score for agent `i` (0 on error), or -1 when it does not apply. */
  score(pp: PlanPref, i: number, record: boolean): number {
    try {
      if (pp.when !== undefined && this.value(pp.when, i) !== true) return -1;
      let r = this.value(pp.score, i);
      if (typeof r === 'bigint') r = Number(r);
      if (typeof r !== 'number' || Number.isNaN(r)) throw new Error(`score is not a number: ${String(r)}`);
      return r < 0 ? 0 : r > 1 ? 1 : r;
    } catch (err) {
      if (record) this.prefErrors.push({ i, rule: pp.ruleId, error: err });
      return 0;
    }
  }

  /** Called by the generated loop when an agent-only preference column holds an error. */
  prefColumnError(j: number, i: number, plan: Plan): void {
    const pp = plan.prefs[j] as PlanPref;
    this.prefErrors.push({ i, rule: pp.ruleId, error: this.table.prefColumn(pp.prep).errors[i] });
  }

  /** Called by the generated loop for a NaN score of a compiled preference. */
  prefNaN(j: number, i: number, plan: Plan): void {
    const pp = plan.prefs[j] as PlanPref;
    this.prefErrors.push({ i, rule: pp.ruleId, error: new Error('score is not a number: NaN') });
  }

  recordError(rule: string, i: number, err: unknown): void {
    if (this.errors.length < MAX_RECORDED_ERRORS)
      this.errors.push({
        rule,
        agentId: (this.agents[i] as AgentView).id,
        message: firstLine((err as Error)?.message ?? String(err)),
      });
  }
}

// ---------------------------------------------------------------------------------------------
// Planning (per event, cached by shape)
// ---------------------------------------------------------------------------------------------

/**
 * Evaluate the event-level parts and return the plan key: selectors, tenant, event-only `when` and
 * `require`, exceptions in force, which mixed expressions compile (their slots evaluate).
 * Pushes selector errors into `ctx.errors`; `selectorError` is set for an enforce policy's.
 */
function planKey(
  ctx: DecisionContext,
  tenant: string | undefined,
  nowMs: number,
): { key: string; selectorError: boolean } {
  let key = '';
  let selectorError = false;
  const prep = ctx.prep;
  for (let pi = 0; pi < prep.policies.length; pi++) {
    const p = prep.policies[pi] as PrepPolicy;
    if (p.selector !== undefined) {
      const st = ctx.event(p.selector);
      if (st === DONE_ERR) {
        ctx.errors.push({
          rule: `${p.name}/selector`,
          message: firstLine((ctx.evValue[p.selector.id] as Error)?.message ?? String(ctx.evValue[p.selector.id])),
        });
        if (p.enforce) selectorError = true;
        key += 'E';
        continue;
      }
      if (ctx.evValue[p.selector.id] !== true) {
        key += '-';
        continue;
      }
    }
    key += '+';
    const t = tenant === undefined ? undefined : p.tenants.get(tenant);
    if (t !== undefined) key += `[${tenant}]`;
    key += constraintsKey(ctx, p.constraints, nowMs);
    if (t !== undefined) key += constraintsKey(ctx, t.constraints, nowMs);
    for (const pp of p.prefs) key += exprKey(ctx, pp.when) + exprKey(ctx, pp.score);
  }
  return { key, selectorError };
}

function exprKey(ctx: DecisionContext, x: ExprInfo | undefined): string {
  if (x === undefined) return '.';
  switch (x.kind) {
    case K_EVENT:
      if (ctx.event(x) === DONE_ERR) return 'e';
      return ctx.evValue[x.id] === true ? 't' : 'f';
    case K_AGENT:
      return 'a';
    default: {
      for (const g of x.expr.eventConjuncts) {
        try {
          if (g(ctx.ev) === false) return '0';
        } catch {
          // undecided: the whole expression decides per agent
        }
      }
      return ctx.slotsOf(x) === undefined ? 'c' : 'm';
    }
  }
}

function constraintsKey(ctx: DecisionContext, cs: readonly PrepConstraint[], nowMs: number): string {
  let key = '';
  for (const pc of cs) {
    key += exprKey(ctx, pc.when) + exprKey(ctx, pc.require);
    for (const x of pc.exceptions) key += isActive(x.x, nowMs) ? exprKey(ctx, x.when) : 'x';
    key += ';';
  }
  return key;
}

/** Whether an expression is constantly false for this event (event-only, or a false event conjunct). */
function constFalse(ctx: DecisionContext, x: ExprInfo): boolean {
  const k = exprKey(ctx, x);
  return k === 'f' || k === '0';
}

function constTrue(ctx: DecisionContext, x: ExprInfo): boolean {
  return exprKey(ctx, x) === 't';
}

function buildPlan(ctx: DecisionContext, tenant: string | undefined, nowMs: number): Plan {
  const enforce: PlanConstraint[] = [];
  const prefs: PlanPref[] = [];
  const shadows: Plan['shadows'] = [];
  for (const p of ctx.prep.policies) {
    if (p.selector !== undefined && (ctx.event(p.selector) === DONE_ERR || ctx.evValue[p.selector.id] !== true))
      continue;
    const t = tenant === undefined ? undefined : p.tenants.get(tenant);
    const cs: PlanConstraint[] = [];
    for (const pc of t ? [...p.constraints, ...t.constraints] : p.constraints) {
      let when = pc.when;
      if (when !== undefined) {
        if (constFalse(ctx, when)) continue;
        if (constTrue(ctx, when)) when = undefined;
      }
      if (when === undefined && constTrue(ctx, pc.require)) continue;
      const exceptions = pc.exceptions.filter((x) => isActive(x.x, nowMs));
      const role =
        exceptions.length === 0 && (when === undefined || when.kind === K_AGENT) && pc.require.kind === K_AGENT
          ? 'base'
          : exceptions.length === 0 && when === undefined && (pc.require.kind === K_JUR || pc.require.kind === K_BACK)
            ? 'drive'
            : 'loop';
      cs.push({ ruleId: pc.c.ruleId, when, require: pc.require, exceptions, role });
    }
    const ps: PlanPref[] = [];
    for (const pp of p.prefs) {
      let when = pp.when;
      if (when !== undefined) {
        if (constFalse(ctx, when)) continue;
        if (constTrue(ctx, when)) when = undefined;
      }
      ps.push({
        ruleId: pp.pref.ruleId,
        weight: t?.weights.get(pp.pref.id) ?? pp.pref.weight,
        when,
        score: pp.score,
        prep: pp,
      });
    }
    if (p.enforce) {
      enforce.push(...cs);
      prefs.push(...ps);
    } else shadows.push({ name: p.name, constraints: cs, prefs: ps });
  }
  // Drive the candidate loop by jurisdiction when a keyed constraint reads it, else by backends.
  let drive = 0;
  if (enforce.some((c) => c.role === 'drive' && c.require.kind === K_JUR)) drive = 1;
  else if (enforce.some((c) => c.role === 'drive' && c.require.kind === K_BACK)) drive = 2;
  for (const c of enforce) {
    if (c.role === 'drive' && c.require.kind !== (drive === 1 ? K_JUR : K_BACK)) c.role = 'loop';
  }
  const base = enforce.filter((c) => c.role === 'base');
  const drivers = enforce.filter((c) => c.role === 'drive');
  const baseKey = `${drive}:${base.map((c) => `${c.when?.id ?? ''}/${c.require.id}`).join(',')}`;
  const plan: Plan = {
    enforce,
    prefs,
    shadows,
    drive,
    base,
    drivers,
    baseKey,
    withExceptions: enforce.filter((c) => c.exceptions.length > 0),
    loop: undefined as unknown as LoopFn,
    columnLoop: undefined as unknown as LoopFn,
    masks: undefined,
    columnMasks: undefined,
  };
  plan.loop = generateLoop(ctx, plan, false);
  plan.columnLoop = generateLoop(ctx, plan, true);
  if (enforce.length <= 31) {
    plan.masks = generateMasks(ctx, plan, false);
    plan.columnMasks = generateMasks(ctx, plan, true);
  }
  return plan;
}

/**
 * Generate the candidate loop for a plan: for each agent of the buckets, the `loop` constraints
 * (inlined when compiled: agent-only columns, keyed results, compiled mixed code over the raw
 * agent and slot values; else through `ctx.status`), then the preferences.
 */
/** Code generation helpers shared by the candidate loop and the exclusion masks. */
function codegen(ctx: DecisionContext, columns: boolean) {
  const decls = new Set<string>();
  const state = { usesAgent: false };
  const col = (x: ExprInfo) => {
    decls.add(`const A${x.id} = ctx.table.column(X[${x.id}]).code;`);
    return `A${x.id}[i]`;
  };
  const keyed = (x: ExprInfo) => {
    decls.add(`const K${x.id} = ctx.keyedOf(X[${x.id}]).code;`);
    decls.add(x.kind === K_JUR ? 'const JUR = ctx.table.jur.ids;' : 'const BACK = ctx.table.back.ids;');
    return `K${x.id}[${x.kind === K_JUR ? 'JUR' : 'BACK'}[i]]`;
  };
  const compiled = (x: ExprInfo): string | undefined => {
    const fast = x.expr.fast;
    if (fast === undefined || ctx.slotsOf(x) === undefined) return undefined;
    decls.add(`const S${x.id} = ctx.slots[${x.id}];`);
    const code = columns ? fast.columnCode : fast.code;
    if (columns)
      for (const f of fast.numericFields) decls.add(`const __c_${f} = ctx.table.numeric(${JSON.stringify(f)});`);
    if (code.includes('a.')) {
      decls.add('const AG = ctx.agents;');
      state.usesAgent = true;
    }
    return code.replace(/__s\[/g, `S${x.id}[`);
  };
  /** JS code true exactly when the expression is `true` (false on error), or undefined. */
  const isTrue = (x: ExprInfo): string | undefined => {
    if (x.kind === K_AGENT) return `(${col(x)} === 1)`;
    if (x.kind === K_JUR || x.kind === K_BACK) return `(${keyed(x)} === 1)`;
    if (x.kind === K_MIXED) {
      const c = compiled(x);
      return c === undefined ? undefined : `((${c}) === true)`;
    }
    return undefined;
  };
  /** JS code true when the expression is not `false` (true or an error), or undefined. */
  const notFalse = (x: ExprInfo): string | undefined => {
    if (x.kind === K_AGENT) return `(${col(x)} !== 0)`;
    if (x.kind === K_JUR || x.kind === K_BACK) return `(${keyed(x)} !== 0)`;
    if (x.kind === K_MIXED) {
      const c = compiled(x);
      return c === undefined ? undefined : `((${c}) === true)`;
    }
    return undefined;
  };
  /** Raw code of an agent-only column or keyed result for agent `i` (0, 1, 2 = error). */
  const code = (x: ExprInfo): string | undefined =>
    x.kind === K_AGENT ? col(x) : x.kind === K_JUR || x.kind === K_BACK ? keyed(x) : undefined;
  return { decls, state, compiled, isTrue, notFalse, code };
}

function generateLoop(ctx: DecisionContext, plan: Plan, columns: boolean): LoopFn {
  const { decls, state, compiled, isTrue, notFalse } = codegen(ctx, columns);
  const lines: string[] = [];
  plan.enforce.forEach((pc, k) => {
    if (pc.role !== 'loop') return;
    const when = pc.when === undefined ? 'false' : notFalse(pc.when);
    const req = isTrue(pc.require);
    const exc = pc.exceptions.map((x) => (x.when === undefined ? 'true' : isTrue(x.when)));
    if (when === undefined || req === undefined || exc.some((e) => e === undefined)) {
      lines.push(`if (ctx.status(P.enforce[${k}], i, false) !== 0) continue;`);
      return;
    }
    const whenPart = pc.when === undefined ? '' : `!${when} || `;
    lines.push(`if (!(${whenPart}${req}${exc.map((e) => ` || ${e}`).join('')})) continue;`);
  });
  const prefLines: string[] = [];
  plan.prefs.forEach((pp, j) => {
    const w = pp.weight;
    if (pp.score.kind === K_AGENT && (pp.when === undefined || pp.when.kind === K_AGENT)) {
      decls.add(`const PT${j} = ctx.table.prefColumn(P.prefs[${j}].prep).status;`);
      decls.add(`const PS${j} = ctx.table.prefColumn(P.prefs[${j}].prep).score;`);
      prefLines.push(
        `{ const st = PT${j}[i]; if (st !== 0) { num += ${w} * PS${j}[i]; den += ${w}; if (st === 2) ctx.prefColumnError(${j}, i, P); } }`,
      );
      return;
    }
    const sc = pp.score.kind === K_MIXED ? compiled(pp.score) : undefined;
    const wh = pp.when === undefined ? 'true' : pp.when.kind === K_MIXED ? compiled(pp.when) : undefined;
    if (sc !== undefined && wh !== undefined) {
      const body = `let v = ${sc}; if (v !== v) { ctx.prefNaN(${j}, i, P); v = 0; } else if (v < 0) v = 0; else if (v > 1) v = 1; num += ${w} * v; den += ${w};`;
      prefLines.push(pp.when === undefined ? `{ ${body} }` : `if ((${wh}) === true) { ${body} }`);
      return;
    }
    prefLines.push(`{ const v = ctx.score(P.prefs[${j}], i, true); if (v >= 0) { num += ${w} * v; den += ${w}; } }`);
  });
  const src = [
    '"use strict";',
    ...decls,
    'let count = 0;',
    'for (let b = 0; b < buckets.length; b++) {',
    '  const bucket = buckets[b];',
    '  for (let q = 0; q < bucket.length; q++) {',
    '    const i = bucket[q];',
    state.usesAgent ? '    const a = AG[i];' : '',
    ...lines.map((l) => `    ${l}`),
    '    let num = 0; let den = 0;',
    ...prefLines.map((l) => `    ${l}`),
    '    elig[count] = i; scores[count] = den > 0 ? num / den : 0; nums[count] = num; dens[count] = den;',
    '    count++;',
    '  }',
    '}',
    'return count;',
  ].join('\n');
  const make = new Function('X', 'P', `return (ctx, buckets, elig, scores, nums, dens) => {\n${src}\n};`) as (
    x: readonly ExprInfo[],
    p: Plan,
  ) => LoopFn;
  return make(ctx.prep.exprs, plan);
}

type MaskFn = (ctx: DecisionContext, masks: Int32Array) => void;

/**
 * Generate the exclusion pass for a plan: every agent's bitmask of failing enforce constraints
 * (an agent is eligible exactly when its mask is 0). Definite passes and error-free failures are
 * decided inline; errors and exceptions go through `ctx.status`, which records them, in agent
 * order then rule order.
 */
function generateMasks(ctx: DecisionContext, plan: Plan, columns: boolean): MaskFn {
  const { decls, state, isTrue, notFalse, code } = codegen(ctx, columns);
  const lines: string[] = [];
  plan.enforce.forEach((pc, k) => {
    const bit = `${1 << k}`;
    const generic = `if (ctx.status(P.enforce[${k}], i, true) !== 0) m |= ${bit};`;
    const when = pc.when === undefined ? undefined : notFalse(pc.when);
    const req = isTrue(pc.require);
    if ((pc.when !== undefined && when === undefined) || req === undefined) {
      lines.push(generic);
      return;
    }
    const pass = pc.when === undefined ? req : `(!${when} || ${req})`;
    const errs = [pc.when, pc.require]
      .map((x) => (x === undefined ? undefined : code(x)))
      .filter((c): c is string => c !== undefined)
      .map((c) => `${c} === 2`);
    if (pc.exceptions.length > 0) lines.push(`if (!${pass}) { ${generic} }`);
    else if (errs.length === 0) lines.push(`if (!${pass}) m |= ${bit};`);
    else lines.push(`if (!${pass}) { if (${errs.join(' || ')}) { ${generic} } else m |= ${bit}; }`);
  });
  const src = [
    '"use strict";',
    ...decls,
    'const n = masks.length;',
    'for (let i = 0; i < n; i++) {',
    state.usesAgent ? '  const a = AG[i];' : '',
    '  let m = 0;',
    ...lines.map((l) => `  ${l}`),
    '  masks[i] = m;',
    '}',
  ].join('\n');
  const make = new Function('X', 'P', `return (ctx, masks) => {\n${src}\n};`) as (
    x: readonly ExprInfo[],
    p: Plan,
  ) => MaskFn;
  return make(ctx.prep.exprs, plan);
}

/** The agents passing the plan's agent-only constraints, by driving key (cached per revision). */
function baseBuckets(table: AgentTable, plan: Plan): Int32Array[] {
  let b = table.buckets.get(plan.baseKey);
  if (b !== undefined) return b;
  const n = table.n;
  const whenCols = plan.base.map((c) => (c.when === undefined ? undefined : table.column(c.when).code));
  const reqCols = plan.base.map((c) => table.column(c.require).code);
  const keyIds = plan.drive === 1 ? table.jur.ids : plan.drive === 2 ? table.back.ids : undefined;
  const nKeys = plan.drive === 1 ? table.jur.keys.length : plan.drive === 2 ? table.back.keys.length : 1;
  const lists: number[][] = Array.from({ length: nKeys }, () => []);
  for (let i = 0; i < n; i++) {
    let ok = true;
    for (let k = 0; k < reqCols.length && ok; k++) {
      const w = whenCols[k];
      const wc = w === undefined ? 1 : (w[i] as number);
      if (wc === 0) continue;
      ok = wc === 1 && (reqCols[k] as Uint8Array)[i] === 1;
    }
    if (ok) (lists[keyIds === undefined ? 0 : (keyIds[i] as number)] as number[]).push(i);
  }
  b = lists.map((l) => Int32Array.from(l));
  if (table.buckets.size > 256) table.buckets.clear();
  table.buckets.set(plan.baseKey, b);
  return b;
}

// ---------------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------------

/** Whether agent `a` ranks before agent `b` (score desc, then id asc, then position). */
function before(sa: number, ia: number, sb: number, ib: number, ids: readonly string[]): boolean {
  if (sa !== sb) return sa > sb;
  const xa = ids[ia] as string;
  const xb = ids[ib] as string;
  if (xa !== xb) return xa < xb;
  return ia < ib;
}

class FastDecision implements Decision {
  readonly outcome: DecisionOutcome;
  readonly chosen: AgentView | undefined;
  #ranking: { agentId: string; score: number }[] | undefined;
  #excluded: { agentId: string; rules: string[] }[] | undefined;
  #record: DecisionRecord | undefined;

  #elig: Int32Array | undefined;
  #scores: Float64Array | undefined;

  constructor(
    private readonly ctx: DecisionContext,
    private readonly plan: Plan,
    private readonly loop: LoopFn,
    private readonly buckets: readonly Int32Array[],
    private readonly count: number,
    private readonly event: Record<string, unknown>,
    private readonly loaded: LoadedBundle,
    private readonly o: ResolvedDecide,
    /** Top-k agent indices and scores, best first. */
    private readonly topIdx: number[],
    private readonly topScores: number[],
    chosen: number,
    private readonly shadow: { policy: string; chosen: string | null }[],
    private readonly evaluationUs: number,
  ) {
    this.chosen = chosen < 0 ? undefined : ctx.agents[chosen];
    this.outcome = chosen < 0 ? 'no-eligible-agent' : 'routed';
  }

  /**
   * The eligible agents and their scores. Not copied out of the shared buffers at decision time
   * (at 10,000 agents that is most of the garbage per decision): the candidate loop is
   * deterministic over this decision's context, so it runs again, once, on first read.
   */
  #eligible(): { elig: Int32Array; scores: Float64Array } {
    if (this.#elig === undefined || this.#scores === undefined) {
      const n = this.count;
      const elig = new Int32Array(n);
      const scores = new Float64Array(n);
      this.ctx.prefErrors.length = 0;
      this.loop(this.ctx, this.buckets, elig, scores, new Float64Array(n), new Float64Array(n));
      this.#elig = elig;
      this.#scores = scores;
    }
    return { elig: this.#elig, scores: this.#scores };
  }

  get ranking(): { agentId: string; score: number }[] {
    if (this.#ranking === undefined) {
      const ids = this.ctx.table.ids;
      const { elig: e, scores: s } = this.#eligible();
      const order = Array.from({ length: e.length }, (_, k) => k);
      order.sort((x, y) =>
        before(s[x] as number, e[x] as number, s[y] as number, e[y] as number, ids) ? -1 : x === y ? 0 : 1,
      );
      this.#ranking = order.map((k) => ({ agentId: ids[e[k] as number] as string, score: s[k] as number }));
    }
    return this.#ranking;
  }

  get excluded(): { agentId: string; rules: string[] }[] {
    if (this.#excluded === undefined) this.#materialise();
    return this.#excluded as { agentId: string; rules: string[] }[];
  }

  get record(): DecisionRecord {
    if (this.#record === undefined) {
      const excluded = this.excluded;
      const ctx = this.ctx;
      const ids = ctx.table.ids;
      const chosenId = this.chosen?.id ?? null;
      const chosen = this.chosen;
      const exceptionUse = ctx.exceptionUse;
      // The base is this record's own object: the decision's fields are added to it in record
      // order (no copy of the base per record).
      const record = recordBase(this.loaded, this.event, ctx.agents, this.o) as DecisionRecord;
      record.excluded = excluded;
      const topK: { agentId: string; score: number }[] = [];
      for (let k = 0; k < this.topIdx.length; k++)
        topK.push({ agentId: ids[this.topIdx[k] as number] as string, score: this.topScores[k] as number });
      record.topK = topK;
      record.chosen = chosen ? { agentId: chosen.id, region: chosen.region, jurisdiction: chosen.jurisdiction } : null;
      record.outcome = this.outcome;
      const shadow: DecisionRecord['shadow'] = [];
      for (const s of this.shadow)
        shadow.push({
          policy: s.policy,
          outcome: s.chosen === null ? 'no-eligible-agent' : 'routed',
          chosen: s.chosen,
          agree: s.chosen === chosenId,
        });
      record.shadow = shadow;
      if (ctx.errors.length > 0) record.errors = ctx.errors.slice(0, MAX_RECORDED_ERRORS);
      if (exceptionUse !== undefined && exceptionUse.size > 0) record.exceptions = recordedExceptions(exceptionUse);
      record.evaluationUs = this.evaluationUs;
      this.#record = record;
    }
    return this.#record;
  }

  /** Every agent's failing enforce rules, evaluation errors and exceptions used, in agent order. */
  #materialise(): void {
    const ctx = this.ctx;
    const plan = this.plan;
    const n = ctx.table.n;
    const prefErrors = [...ctx.prefErrors].sort((a, b) => a.i - b.i);
    let pe = 0;
    const excluded: { agentId: string; rules: string[] }[] = [];
    const ids = ctx.table.ids;
    const maskFn = this.loop === plan.columnLoop ? plan.columnMasks : plan.masks;
    if (maskFn === undefined) {
      // More than 31 enforce constraints: rule by rule.
      for (let i = 0; i < n; i++) {
        const rules: string[] = [];
        for (const pc of plan.enforce) if (ctx.status(pc, i, true) !== 0) rules.push(pc.ruleId);
        if (rules.length > 0) excluded.push({ agentId: ids[i] as string, rules });
        else pe = this.#prefErrorsOf(i, prefErrors, pe);
      }
      this.#excluded = excluded;
      return;
    }
    const masks = new Int32Array(n);
    maskFn(ctx, masks);
    // One rules array per failure mask, shared by the agents with that mask (as before).
    const byMask: (string[] | undefined)[] = [];
    const byLargeMask = new Map<number, string[]>();
    for (let i = 0; i < n; i++) {
      const m = masks[i] as number;
      if (m === 0) {
        pe = this.#prefErrorsOf(i, prefErrors, pe);
        continue;
      }
      let rules = m > 0 && m < 4096 ? byMask[m] : byLargeMask.get(m);
      if (rules === undefined) {
        rules = plan.enforce.filter((_, k) => (m & (1 << k)) !== 0).map((pc) => pc.ruleId);
        if (m > 0 && m < 4096) byMask[m] = rules;
        else byLargeMask.set(m, rules);
      }
      excluded.push({ agentId: ids[i] as string, rules });
    }
    this.#excluded = excluded;
  }

  /** Record the eager loop's preference errors of eligible agent `i` (sorted by agent). */
  #prefErrorsOf(i: number, prefErrors: { i: number; rule: string; error: unknown }[], from: number): number {
    let pe = from;
    while (pe < prefErrors.length && (prefErrors[pe] as { i: number }).i === i) {
      const e = prefErrors[pe++] as { i: number; rule: string; error: unknown };
      this.ctx.recordError(e.rule, i, e.error);
    }
    return pe;
  }

  toJSON(): Record<string, unknown> {
    return {
      outcome: this.outcome,
      chosen: this.chosen,
      excluded: this.excluded,
      record: this.record,
      ranking: this.ranking,
    };
  }
}

/** The compiled fast path. Same results as {@link evaluateFully} with the primary engine. */
export function decideFast(
  loaded: LoadedBundle,
  state: FastState,
  event: Record<string, unknown>,
  agents: readonly AgentView[],
  o: ResolvedDecide,
): Decision {
  const started = performance.now();
  let ev: Record<string, unknown>;
  let tenant: string | undefined;
  try {
    const f = eventActivation(loaded.vocabulary.event, event);
    ev = f.activation;
    tenant = f.intent.tenant;
  } catch (err) {
    return errorDecision(
      recordBase(loaded, event, agents, o),
      [{ rule: 'intent', message: (err as Error).message }],
      started,
    );
  }
  state.prepared ??= prepare(loaded);
  const prep = state.prepared;
  let table = state.table;
  if (o.registryRevision <= 0 || table === undefined || !table.matches(o.registryRevision, agents)) {
    table = new AgentTable(o.registryRevision, agents, loaded);
    if (o.registryRevision > 0) state.table = table;
  }
  const ctx = new DecisionContext(prep, table, agents, ev);
  const { key, selectorError } = planKey(ctx, tenant, o.nowMs);
  if (selectorError) return errorDecision(recordBase(loaded, event, agents, o), ctx.errors, started);
  let plan = prep.plans.get(key);
  if (plan === undefined) {
    plan = buildPlan(ctx, tenant, o.nowMs);
    if (prep.plans.size >= MAX_PLANS) prep.plans.clear();
    prep.plans.set(key, plan);
  }

  // Candidates: the agent-only buckets the keyed constraints let through.
  const base = baseBuckets(table, plan);
  let buckets: Int32Array[];
  if (plan.drive === 0 || plan.drivers.length === 0) buckets = base;
  else {
    buckets = [];
    const codes = plan.drivers.map((d) => ctx.keyedOf(d.require).code);
    for (let key = 0; key < base.length; key++) {
      const bucket = base[key] as Int32Array;
      if (bucket.length === 0) continue;
      let ok = true;
      for (let d = 0; d < codes.length && ok; d++) ok = (codes[d] as Uint8Array)[key] === 1;
      if (ok) buckets.push(bucket);
    }
  }
  const n = agents.length;
  const scratch = state.scratch;
  if (scratch.elig.length < n) {
    scratch.elig = new Int32Array(n);
    scratch.scores = new Float64Array(n);
    scratch.nums = new Float64Array(n);
    scratch.dens = new Float64Array(n);
  }
  // The same agents array at the same revision: numeric reads come from the revision's columns.
  const loop = o.registryRevision > 0 && table.agents === agents ? plan.columnLoop : plan.loop;
  const count = loop(ctx, buckets, scratch.elig, scratch.scores, scratch.nums, scratch.dens);
  const elig = scratch.elig;
  const scores = scratch.scores;

  // Best and top-k (partial selection).
  const ids = table.ids;
  const topK = o.topK;
  const top: number[] = [];
  let best = -1;
  for (let k = 0; k < count; k++) {
    const s = scores[k] as number;
    const i = elig[k] as number;
    if (best < 0 || before(s, i, scores[best] as number, elig[best] as number, ids)) best = k;
    if (topK <= 0) continue;
    if (top.length === topK) {
      const last = top[topK - 1] as number;
      if (!before(s, i, scores[last] as number, elig[last] as number, ids)) continue;
      top.pop();
    }
    let p = top.length;
    while (p > 0) {
      const prev = top[p - 1] as number;
      if (!before(s, i, scores[prev] as number, elig[prev] as number, ids)) break;
      p--;
    }
    top.splice(p, 0, k);
  }

  // Shadow policies: their constraints over the eligible agents, their preferences added.
  let shadow: { policy: string; chosen: string | null }[] = [];
  if (plan.shadows.length > 0) {
    const nums = scratch.nums;
    const dens = scratch.dens;
    shadow = plan.shadows.map((s) => {
      let sb = -1;
      let sbScore = 0;
      for (let k = 0; k < count; k++) {
        const i = elig[k] as number;
        let ok = true;
        for (const pc of s.constraints) {
          if (ctx.status(pc, i, false) !== 0) {
            ok = false;
            break;
          }
        }
        if (!ok) continue;
        let num = nums[k] as number;
        let den = dens[k] as number;
        for (const pp of s.prefs) {
          const v = ctx.score(pp, i, false);
          if (v < 0) continue;
          num += pp.weight * v;
          den += pp.weight;
        }
        const sc = den > 0 ? num / den : 0;
        if (sb < 0 || before(sc, i, sbScore, sb, ids)) {
          sb = i;
          sbScore = sc;
        }
      }
      return { policy: s.name, chosen: sb < 0 ? null : (ids[sb] as string) };
    });
  }
  const chosen = best < 0 ? -1 : (elig[best] as number);
  const topIdx = top.map((k) => elig[k] as number);
  const topScores = top.map((k) => scores[k] as number);
  return new FastDecision(
    ctx,
    plan,
    loop,
    buckets,
    count,
    event,
    loaded,
    o,
    topIdx,
    topScores,
    chosen,
    shadow,
    elapsedUs(started),
  );
}
