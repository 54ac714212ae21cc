/**
 * The policy bundle: `loadBundle(files)` → `{ bundle, digest, errors }`, `bundle.decide()`,
 * `bundle.explain()`, the policy test runner with the reference-engine cross-check, and the
 * naive evaluator used as the benchmark baseline.
 */
import { systemClock } from '@meshroute/mesh';
import type { CelActivation, CompiledExpression } from './cel.js';
import { type DecideOptions, type Decision, type Explanation, evaluateFully, resolveDecide } from './decide.js';
import { createFastState, decideFast } from './fast-path.js';
import { type LoadedBundle, type LoadOptions, loadCompiled, type PolicyMode, type PolicyTest } from './loader.js';
import {
  createReferenceEngine,
  type EvalOutcome,
  outcomeOf,
  outcomesAgree,
  REFERENCE_ENGINE_NAME,
} from './reference-engine.js';
import type { AgentView, Vocabulary } from './vocabulary.js';
import type { PolicyError } from './yaml-source.js';

/** A loaded, validated, compiled policy bundle. Immutable. */
export interface PolicyBundle {
  /** sha256 of the bundle's files. */
  readonly digest: string;
  /** Each policy's name, version, hash and mode. */
  readonly policies: readonly { name: string; version: number; hash: string; mode: PolicyMode }[];
  /** The vocabulary expressions are checked against. */
  readonly vocabulary: Vocabulary;
  /** The bundle's tests. */
  readonly tests: readonly PolicyTest[];
  /** Every rule id (constraints, preferences, tenant constraints), for coverage and diffs. */
  readonly ruleIds: readonly string[];
  /** Decide where an event runs. Synchronous, no I/O. */
  decide(event: Readonly<Record<string, unknown>>, agents: readonly AgentView[], options?: DecideOptions): Decision;
  /** Every rule for every agent, every score and weight, and the decision. */
  explain(event: Readonly<Record<string, unknown>>, agents: readonly AgentView[], options?: DecideOptions): Explanation;
  /** @internal The compiled content. */
  readonly loaded: LoadedBundle;
}

/** The result of {@link loadBundle}. */
export interface LoadBundleResult {
  bundle: PolicyBundle | undefined;
  digest: string;
  errors: PolicyError[];
}

const primary = (expr: CompiledExpression, act: CelActivation): EvalOutcome => outcomeOf(() => expr.evaluate(act));

/** Wrap compiled content as a {@link PolicyBundle}. */
export function bundleOf(loaded: LoadedBundle, options: LoadOptions = {}): PolicyBundle {
  const clock = options.clock ?? systemClock;
  const state = createFastState();
  const ruleIds: string[] = [];
  for (const p of loaded.policies) {
    for (const c of p.constraints) ruleIds.push(c.ruleId);
    for (const t of p.tenants.values()) for (const c of t.constraints) ruleIds.push(c.ruleId);
    for (const r of p.preferences) ruleIds.push(r.ruleId);
  }
  return {
    digest: loaded.digest,
    policies: loaded.policies.map((p) => ({ name: p.name, version: p.version, hash: p.hash, mode: p.mode })),
    vocabulary: loaded.vocabulary,
    tests: loaded.tests,
    ruleIds,
    loaded,
    decide: (event, agents, o) =>
      decideFast(loaded, state, event as Record<string, unknown>, agents, resolveDecide(o, clock)),
    explain: (event, agents, o) =>
      evaluateFully(loaded, event as Record<string, unknown>, agents, primary, resolveDecide(o, clock)),
  };
}

/**
 * Load a bundle from file contents (paths relative to the policies directory). Pure, no I/O.
 * @example
 * const { bundle, errors } = loadBundle([{ path: 'eu.yaml', content }]);
 */
export function loadBundle(
  files: readonly { path: string; content: string }[],
  options: LoadOptions = {},
): LoadBundleResult {
  const r = loadCompiled(files, options);
  return { bundle: r.loaded ? bundleOf(r.loaded, options) : undefined, digest: r.digest, errors: r.errors };
}

/**
 * The naive baseline: every expression for every agent through the primary engine, no caching,
 * no compilation to closures, no index. Same decisions as {@link PolicyBundle.decide}.
 */
export function naiveDecide(
  bundle: PolicyBundle,
  event: Readonly<Record<string, unknown>>,
  agents: readonly AgentView[],
  options?: DecideOptions,
): Decision {
  return evaluateFully(
    bundle.loaded,
    event as Record<string, unknown>,
    agents,
    primary,
    resolveDecide(options, systemClock),
  ).decision;
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/** Coverage of one rule over a test run. */
export interface RuleCoverage {
  ruleId: string;
  kind: 'constraint' | 'preference';
  /** How many (test, agent) evaluations saw the rule pass / fail / not apply / error. */
  pass: number;
  fail: number;
  na: number;
  error: number;
}

/** The result of one policy test. */
export interface PolicyTestResult {
  name: string;
  file: string;
  line: number;
  passed: boolean;
  /** What went wrong (expectation mismatches, engine disagreements). */
  failures: string[];
}

/** The result of {@link runPolicyTests}. */
export interface PolicyTestRun {
  results: PolicyTestResult[];
  passed: number;
  failed: number;
  coverage: RuleCoverage[];
}

/** Options of {@link runPolicyTests}. */
export interface RunTestsOptions {
  /** Time for tests that set no `now`, epoch ms. @default the bundle clock */
  nowMs?: number;
  /** Cross-check every evaluation with `@bufbuild/cel`. @default true */
  reference?: boolean;
}

function summary(d: Decision): {
  outcome: string;
  chosen: string;
  excluded: Record<string, string>;
  scores: Map<string, number>;
} {
  const excluded: Record<string, string> = {};
  for (const e of d.excluded) excluded[e.agentId] = [...e.rules].sort().join(',');
  return {
    outcome: d.outcome,
    chosen: d.chosen?.id ?? 'none',
    excluded,
    scores: new Map(d.ranking.map((r) => [r.agentId, r.score])),
  };
}

function compareDecisions(a: Decision, b: Decision, aName: string, bName: string): string[] {
  const sa = summary(a);
  const sb = summary(b);
  const out: string[] = [];
  if (sa.outcome !== sb.outcome) out.push(`outcome: ${aName} says ${sa.outcome}, ${bName} says ${sb.outcome}`);
  if (sa.chosen !== sb.chosen) out.push(`chosen: ${aName} says ${sa.chosen}, ${bName} says ${sb.chosen}`);
  const ids = new Set([...Object.keys(sa.excluded), ...Object.keys(sb.excluded)]);
  for (const id of ids) {
    if (sa.excluded[id] !== sb.excluded[id]) {
      out.push(`excluded ${id}: ${aName} says [${sa.excluded[id] ?? ''}], ${bName} says [${sb.excluded[id] ?? ''}]`);
    }
  }
  for (const [id, s] of sa.scores) {
    const t = sb.scores.get(id);
    if (t === undefined || Math.abs(s - t) > 1e-9)
      out.push(`score of ${id}: ${aName} says ${s}, ${bName} says ${t ?? 'ineligible'}`);
  }
  return out;
}

/**
 * Run the bundle's tests. Each test runs through the compiled fast path, the full evaluation with
 * the primary engine and (by default) the full evaluation with the `@bufbuild/cel` reference engine;
 * any disagreement between them fails the test, as does any mismatch with the expectation.
 */
export function runPolicyTests(bundle: PolicyBundle, options: RunTestsOptions = {}): PolicyTestRun {
  const loaded = bundle.loaded;
  const ref = options.reference === false ? undefined : createReferenceEngine();
  const refCache = new Map<CompiledExpression, (a: CelActivation) => EvalOutcome>();
  const refEval = (expr: CompiledExpression, act: CelActivation): EvalOutcome => {
    let fn = refCache.get(expr);
    if (!fn) {
      fn = (ref as NonNullable<typeof ref>).compile(expr.source);
      refCache.set(expr, fn);
    }
    return fn(act);
  };
  const coverage = new Map<string, RuleCoverage>();
  const prefIds = new Set(loaded.policies.flatMap((p) => p.preferences.map((r) => r.ruleId)));
  for (const id of bundle.ruleIds) {
    coverage.set(id, {
      ruleId: id,
      kind: prefIds.has(id) ? 'preference' : 'constraint',
      pass: 0,
      fail: 0,
      na: 0,
      error: 0,
    });
  }
  const results: PolicyTestResult[] = [];
  for (const t of loaded.tests) {
    const failures: string[] = [];
    const o = { nowMs: t.nowMs ?? options.nowMs ?? systemClock.now(), decisionId: `test:${t.name}` };
    const fast = bundle.decide(t.event, t.agents, o);
    const full = evaluateFully(loaded, t.event, t.agents, primary, resolveDecide(o, systemClock));
    failures.push(...compareDecisions(fast, full.decision, 'compiled', 'cel-js'));
    if (ref) {
      const r = evaluateFully(loaded, t.event, t.agents, refEval, resolveDecide(o, systemClock));
      // Rule-level agreement between the two engines.
      full.agents.forEach((ag, i) => {
        const rag = r.agents[i];
        ag.constraints.forEach((c, j) => {
          const rc = rag?.constraints[j];
          if (rc && (rc.status === 'error') !== (c.status === 'error')) {
            failures.push(
              `engine disagreement on ${c.ruleId} for ${ag.agentId}: cel-js ${c.status}, ${REFERENCE_ENGINE_NAME} ${rc.status}`,
            );
          } else if (rc && rc.status !== c.status) {
            failures.push(
              `engine disagreement on ${c.ruleId} for ${ag.agentId}: cel-js ${c.status}, ${REFERENCE_ENGINE_NAME} ${rc.status}`,
            );
          }
        });
        ag.preferences.forEach((p, j) => {
          const rp = rag?.preferences[j];
          if (rp && !outcomesAgree({ ok: true, value: p.score }, { ok: true, value: rp.score })) {
            failures.push(
              `engine disagreement on ${p.ruleId} for ${ag.agentId}: cel-js ${p.score}, ${REFERENCE_ENGINE_NAME} ${rp.score}`,
            );
          }
        });
      });
      failures.push(...compareDecisions(full.decision, r.decision, 'cel-js', REFERENCE_ENGINE_NAME));
    }
    // Expectations.
    const chosen = fast.chosen?.id ?? 'none';
    if (chosen !== t.expect.chosen) failures.push(`expected chosen ${t.expect.chosen}, got ${chosen}`);
    if (t.expect.outcome !== undefined && t.expect.outcome !== fast.outcome) {
      failures.push(`expected outcome ${t.expect.outcome}, got ${fast.outcome}`);
    }
    for (const [agentId, rules] of Object.entries(t.expect.excluded)) {
      const ex = fast.excluded.find((e) => e.agentId === agentId);
      if (!ex) {
        failures.push(`expected ${agentId} to be excluded (by ${rules.join(', ')}), but it was not`);
        continue;
      }
      for (const r of rules) {
        if (!ex.rules.includes(r))
          failures.push(`expected ${agentId} excluded by ${r}; excluded by ${ex.rules.join(', ')}`);
      }
    }
    // Coverage.
    const seen = new Set<string>();
    for (const ag of full.agents) {
      for (const c of ag.constraints) {
        const cov = coverage.get(c.ruleId);
        if (!cov) continue;
        seen.add(c.ruleId);
        if (c.status === 'pass') cov.pass++;
        else if (c.status === 'fail') cov.fail++;
        else if (c.status === 'error') cov.error++;
        else cov.na++;
      }
      for (const p of ag.preferences) {
        const cov = coverage.get(p.ruleId);
        if (!cov) continue;
        seen.add(p.ruleId);
        if (p.status === 'scored') cov.pass++;
        else if (p.status === 'error') cov.error++;
        else cov.na++;
      }
    }
    for (const cov of coverage.values()) if (!seen.has(cov.ruleId)) cov.na += t.agents.length;
    results.push({ name: t.name, file: t.file, line: t.pos.line, passed: failures.length === 0, failures });
  }
  const passed = results.filter((r) => r.passed).length;
  return { results, passed, failed: results.length - passed, coverage: [...coverage.values()] };
}

/** Re-export for the holder and CLI. */
export type { DecideOptions, Decision, Explanation };
