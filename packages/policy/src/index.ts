/**
 * @module @meshroute/policy
 * Routing policies: load, validate, compile and evaluate YAML + CEL policy bundles. Pure, no I/O:
 * the caller reads the files.
 *
 * @example
 * import { loadBundle } from '@meshroute/policy';
 * const { bundle, errors } = loadBundle(files, { nowMs: Date.now() });
 * if (!bundle) throw new Error(errors.map((e) => `${e.file}:${e.line}:${e.col} ${e.message}`).join('\n'));
 * const decision = bundle.decide(event, agents, { registryRevision: 7 });
 */
export { AGENT_FIXTURE_DEFAULTS, parseAgentViews } from './agents.js';
export {
  type LoadBundleResult,
  loadBundle,
  naiveDecide,
  type PolicyBundle,
  type PolicyTestResult,
  type PolicyTestRun,
  type RuleCoverage,
  type RunTestsOptions,
  runPolicyTests,
} from './bundle.js';
export {
  CEL_ENGINE_NAME,
  CEL_ENGINE_VERSION,
  DEFAULT_EXPRESSION_LIMITS,
  type ExpressionLimits,
} from './cel.js';
export {
  type AgentExplanation,
  type ConstraintResult,
  DEFAULT_TOP_K,
  type DecideOptions,
  type Decision,
  type DecisionOutcome,
  type Explanation,
  type PreferenceResult,
  type RuleStatus,
} from './decide.js';
export { type BehaviourChange, type BundleDiff, diffBundles, type ReplayCase } from './diff.js';
export { formatPolicySource, POLICY_KEY_ORDER } from './fmt.js';
export { createPolicyHolder, type PolicyHolder, type ProposeOptions, type ProposeResult } from './holder.js';
export { fileRole, type LoadOptions, type PolicyMode, type PolicyTest, type PolicyTestExpect } from './loader.js';
export { REFERENCE_ENGINE_NAME } from './reference-engine.js';
export { type AgentView, DEFAULT_VOCABULARY, type FieldType, type Vocabulary } from './vocabulary.js';
export type { PolicyError, SourcePos } from './yaml-source.js';
