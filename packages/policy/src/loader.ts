/**
 * `loadBundle(files)`: parse, validate and compile a policy bundle. Pure: the caller reads files.
 *
 * File roles by path: `_schema.yaml` declares the vocabulary; `*.tests.yaml` hold tests;
 * files under `fixtures/` (and any `.json`) are fixtures; every other `*.yaml`/`*.yml` is a policy.
 */
import { type Clock, parseRfc3339, systemClock } from '@meshroute/mesh';
import { parseAgentViews } from './agents.js';
import {
  type CelEngine,
  type CompiledExpression,
  createCelEngine,
  DEFAULT_EXPRESSION_LIMITS,
  type ExpressionLimits,
  isCompileError,
} from './cel.js';
import { type AgentView, DEFAULT_VOCABULARY, FIELD_TYPES, type FieldType, type Vocabulary } from './vocabulary.js';
import {
  canonicalJson,
  closest,
  type PolicyError,
  readYaml,
  type SourceFile,
  type SourcePos,
  type Spec,
  sha256,
} from './yaml-source.js';

/** A policy's mode: `enforce` decides, `shadow` is evaluated and compared only. */
export type PolicyMode = 'enforce' | 'shadow';

/** A compiled hard constraint. */
export interface CompiledConstraint {
  /** `<policy>/<id>`: what decisions and tests name. */
  ruleId: string;
  id: string;
  policy: string;
  /** Set for a constraint added by a tenant block. */
  tenant: string | undefined;
  description: string | undefined;
  when: CompiledExpression | undefined;
  require: CompiledExpression;
  message: CompiledExpression | undefined;
  exceptions: CompiledException[];
  file: string;
  pos: SourcePos;
}

/** A compiled soft preference. */
export interface CompiledPreference {
  ruleId: string;
  id: string;
  policy: string;
  description: string | undefined;
  weight: number;
  when: CompiledExpression | undefined;
  score: CompiledExpression;
  file: string;
  pos: SourcePos;
}

/** An approved, expiring relaxation of one constraint. */
export interface CompiledException {
  /** `<policy>/exception:<id>`. */
  ruleId: string;
  id: string;
  /** The constraint it relaxes. */
  constraint: string;
  when: CompiledExpression | undefined;
  approvedBy: string;
  ticket: string;
  expires: string;
  expiresMs: number;
}

/** A tenant block: extra constraints and weight changes. */
export interface CompiledTenant {
  constraints: CompiledConstraint[];
  weights: ReadonlyMap<string, number>;
}

/** A compiled policy. */
export interface CompiledPolicy {
  name: string;
  version: number;
  owner: string;
  description: string | undefined;
  mode: PolicyMode;
  /** sha256 of the policy's canonical content. */
  hash: string;
  file: string;
  selector: CompiledExpression | undefined;
  constraints: CompiledConstraint[];
  preferences: CompiledPreference[];
  tenants: ReadonlyMap<string, CompiledTenant>;
  exceptions: CompiledException[];
  /** Canonical JSON of each rule's definition, by rule id (for diffs). */
  ruleSources: ReadonlyMap<string, string>;
}

/** The expectation of a policy test. */
export interface PolicyTestExpect {
  /** Agent id, or `none` for no eligible agent. */
  chosen: string;
  outcome: string | undefined;
  /** Agents that must be excluded, with (at least) these rule ids. */
  excluded: Readonly<Record<string, readonly string[]>>;
}

/** One policy test. */
export interface PolicyTest {
  name: string;
  /** The file (policy or `*.tests.yaml`) that declares it. */
  file: string;
  pos: SourcePos;
  event: Record<string, unknown>;
  agents: AgentView[];
  /** Evaluation time (for exception expiry), epoch ms. */
  nowMs: number | undefined;
  expect: PolicyTestExpect;
}

/** The validated, compiled content of a bundle, before it becomes a {@link PolicyBundle}. */
export interface LoadedBundle {
  digest: string;
  vocabulary: Vocabulary;
  engine: CelEngine;
  policies: CompiledPolicy[];
  tests: PolicyTest[];
}

/** Options of {@link loadBundle}. */
export interface LoadOptions {
  /** Expression size limits. */
  limits?: Partial<ExpressionLimits>;
  /**
   * The current time, epoch ms: exceptions that expired before it are load errors.
   * @default clock.now()
   */
  nowMs?: number;
  /** Clock used when `nowMs` is not given, and by decisions. @default systemClock */
  clock?: Clock;
}

/** Resolved {@link LoadOptions}. */
export interface ResolvedLoadOptions {
  limits: ExpressionLimits;
  nowMs: number;
  clock: Clock;
}

/** Resolve {@link LoadOptions} into a filled object. */
export function resolveLoadOptions(options: LoadOptions = {}): ResolvedLoadOptions {
  const clock = options.clock ?? systemClock;
  return {
    limits: { ...DEFAULT_EXPRESSION_LIMITS, ...options.limits },
    nowMs: options.nowMs ?? clock.now(),
    clock,
  };
}

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$/;
const NAME_HINT = 'use lowercase letters, digits and `-` (1-64 characters), e.g. `eu-residency`';

const exprSpec: Spec = { kind: 'expr' };
const constraintSpec: Spec = {
  kind: 'map',
  keys: {
    id: { spec: { kind: 'string', pattern: NAME_RE, patternHint: NAME_HINT }, required: true },
    description: { spec: { kind: 'string' } },
    when: { spec: exprSpec },
    require: { spec: exprSpec, required: true },
    message: { spec: exprSpec },
  },
};
const preferenceSpec: Spec = {
  kind: 'map',
  keys: {
    id: { spec: { kind: 'string', pattern: NAME_RE, patternHint: NAME_HINT }, required: true },
    description: { spec: { kind: 'string' } },
    weight: { spec: { kind: 'number', min: 0 }, required: true },
    when: { spec: exprSpec },
    score: { spec: exprSpec, required: true },
  },
};
const exceptionSpec: Spec = {
  kind: 'map',
  keys: {
    id: { spec: { kind: 'string', pattern: NAME_RE, patternHint: NAME_HINT }, required: true },
    description: { spec: { kind: 'string' } },
    constraint: { spec: { kind: 'string' }, required: true },
    when: { spec: exprSpec },
    approvedBy: { spec: { kind: 'string' } },
    ticket: { spec: { kind: 'string' } },
    expires: { spec: { kind: 'string' } },
  },
};
const testSpec: Spec = {
  kind: 'map',
  keys: {
    name: { spec: { kind: 'string' }, required: true },
    description: { spec: { kind: 'string' } },
    event: { spec: { kind: 'any' }, required: true },
    agents: { spec: { kind: 'any' }, required: true },
    now: { spec: { kind: 'string' } },
    expect: {
      spec: {
        kind: 'map',
        keys: {
          chosen: { spec: { kind: 'string' }, required: true },
          outcome: { spec: { kind: 'enum', values: ['routed', 'no-eligible-agent', 'policy-error'] } },
          excluded: { spec: { kind: 'dict', value: { kind: 'seq', item: { kind: 'string' } } } },
        },
      },
      required: true,
    },
  },
};
/** The structure of a policy file. */
export const POLICY_FILE_SPEC: Spec = {
  kind: 'map',
  keys: {
    metadata: {
      spec: {
        kind: 'map',
        keys: {
          name: { spec: { kind: 'string', pattern: NAME_RE, patternHint: NAME_HINT }, required: true },
          version: { spec: { kind: 'int', min: 1 }, required: true },
          owner: { spec: { kind: 'string' }, required: true },
          description: { spec: { kind: 'string' } },
        },
      },
      required: true,
    },
    mode: { spec: { kind: 'enum', values: ['enforce', 'shadow'] }, required: true },
    selector: { spec: exprSpec },
    variables: {
      spec: {
        kind: 'dict',
        value: exprSpec,
        keyPattern: /^[A-Za-z_][A-Za-z0-9_]*$/,
        keyHint: 'variable names are identifiers',
      },
    },
    constraints: { spec: { kind: 'seq', item: constraintSpec } },
    preferences: { spec: { kind: 'seq', item: preferenceSpec } },
    tenants: {
      spec: {
        kind: 'dict',
        keyPattern: /^[A-Za-z0-9]([A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$/,
        keyHint: 'tenant names are letters, digits, `_` or `-`',
        value: { kind: 'any' },
      },
    },
    exceptions: { spec: { kind: 'seq', item: exceptionSpec } },
    tests: { spec: { kind: 'seq', item: testSpec } },
  },
};
const TENANT_KEYS = ['constraints', 'weights'] as const;
const TESTS_FILE_SPEC: Spec = {
  kind: 'map',
  keys: { tests: { spec: { kind: 'seq', item: testSpec }, required: true } },
};
const SCHEMA_FILE_SPEC: Spec = {
  kind: 'map',
  keys: {
    event: { spec: { kind: 'dict', value: { kind: 'enum', values: FIELD_TYPES } }, required: true },
    agent: { spec: { kind: 'dict', value: { kind: 'enum', values: FIELD_TYPES } }, required: true },
    audit: { spec: { kind: 'map', keys: { allowAttributes: { spec: { kind: 'seq', item: { kind: 'string' } } } } } },
  },
};

/** The role of a file in a bundle, from its path. */
export function fileRole(path: string): 'schema' | 'tests' | 'fixture' | 'policy' | 'ignored' {
  const base = path.split('/').pop() ?? path;
  if (base === '_schema.yaml' || base === '_schema.yml') return 'schema';
  if (/\.tests\.ya?ml$/.test(base)) return 'tests';
  if (path.startsWith('fixtures/') || path.includes('/fixtures/') || base.endsWith('.json')) return 'fixture';
  if (/\.ya?ml$/.test(base)) return 'policy';
  return 'ignored';
}

/** The result of {@link loadBundle} before the bundle is wrapped. */
export interface LoadResult {
  loaded: LoadedBundle | undefined;
  digest: string;
  errors: PolicyError[];
}

/** Parse, validate and compile. See {@link loadBundle}. */
export function loadCompiled(
  files: readonly { path: string; content: string }[],
  options: LoadOptions = {},
): LoadResult {
  const opts = resolveLoadOptions(options);
  const errors: PolicyError[] = [];
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const digest = sha256(sorted.map((f) => `${f.path}\u0000${f.content}\u0000`).join(''));
  const push = (file: string, pos: SourcePos, code: string, message: string, hint?: string) => {
    errors.push({ file, line: pos.line, col: pos.col, code, message, ...(hint ? { hint } : {}) });
  };

  // Vocabulary.
  let vocabulary = DEFAULT_VOCABULARY;
  const schemaFiles = sorted.filter((f) => fileRole(f.path) === 'schema');
  for (const f of schemaFiles) {
    const r = readYaml(f.path, f.content, SCHEMA_FILE_SPEC);
    errors.push(...r.errors);
    if (r.file && r.errors.length === 0) {
      const v = r.file.value as {
        event: Record<string, FieldType>;
        agent: Record<string, FieldType>;
        audit?: { allowAttributes?: string[] };
      };
      vocabulary = {
        event: v.event,
        agent: v.agent,
        auditAttributes: v.audit?.allowAttributes ?? DEFAULT_VOCABULARY.auditAttributes,
      };
    }
  }
  const engine = createCelEngine(vocabulary, opts.limits);

  // Fixtures.
  const fixtures = new Map<string, unknown>();
  for (const f of sorted.filter((x) => fileRole(x.path) === 'fixture')) {
    const r = readYaml(f.path, f.content, undefined);
    errors.push(...r.errors);
    if (r.file) fixtures.set(f.path, r.file.value);
  }

  const compileExpr = (
    file: SourceFile,
    path: string,
    source: string,
    expect: 'bool' | 'number' | 'string' | undefined,
    vars: ReadonlyMap<string, string>,
  ): CompiledExpression | undefined => {
    const used: string[] = [];
    let unknown: string | undefined;
    const expanded = source.replace(/\bvars\.([A-Za-z_][A-Za-z0-9_]*)/g, (_m, name: string) => {
      const v = vars.get(name);
      if (v === undefined) {
        unknown ??= name;
        return 'null';
      }
      used.push(name);
      return `(${v})`;
    });
    if (unknown !== undefined) {
      const guess = closest(unknown, vars.keys());
      push(
        file.path,
        file.exprPos(path, source.indexOf(`vars.${unknown}`)),
        'unknown-variable',
        `unknown variable \`vars.${unknown}\``,
        guess ? `did you mean \`vars.${guess}\`?` : 'declare it under `variables:`',
      );
      return undefined;
    }
    const r = engine.compile(expanded, expect);
    if (isCompileError(r)) {
      const hint =
        r.code === 'cel-type' && /double|int/.test(r.message)
          ? 'CEL does not mix int and double: write doubles with a decimal point (`3.0`), or convert with double()/int()'
          : r.code === 'cel-type' && /No such key/i.test(r.message)
            ? `the vocabulary in _schema.yaml declares: event.{${Object.keys(vocabulary.event).join(', ')}}, agent.{${Object.keys(vocabulary.agent).join(', ')}}`
            : r.code === 'expression-too-large' || r.code === 'expression-too-deep'
              ? 'split the expression into variables or several rules'
              : r.code === 'cel-parse'
                ? 'see docs/policy-guide.md for the supported CEL subset'
                : r.code === 'regex-not-constant'
                  ? 'write the pattern in the policy; to compare with an event attribute use == or in'
                  : r.code === 'regex-invalid'
                    ? 'matches() takes RE2 syntax: no backreferences or lookaround (see docs/policy-guide.md)'
                    : undefined;
      push(file.path, file.exprPos(path, used.length > 0 ? 0 : r.offset), r.code, `${path}: ${r.message}`, hint);
      return undefined;
    }
    return r;
  };

  const policies: CompiledPolicy[] = [];
  const tests: PolicyTest[] = [];
  const policyNames = new Map<string, string>();

  const readTests = (file: SourceFile, list: unknown, basePath: string) => {
    if (!Array.isArray(list)) return;
    const dir = file.path.includes('/') ? file.path.slice(0, file.path.lastIndexOf('/') + 1) : '';
    list.forEach((raw, i) => {
      const t = raw as {
        name: string;
        event: unknown;
        agents: unknown;
        now?: string;
        expect: { chosen: string; outcome?: string; excluded?: Record<string, string[]> };
      };
      const p = `${basePath}.${i}`;
      let agentsValue: unknown = t.agents;
      if (typeof t.agents === 'string') {
        const key = fixtures.has(dir + t.agents) ? dir + t.agents : t.agents;
        if (!fixtures.has(key)) {
          push(
            file.path,
            file.pos(`${p}.agents`),
            'fixture-missing',
            `test \`${t.name}\`: fixture file \`${t.agents}\` is not in the bundle`,
            'paths are relative to the policies directory, e.g. `fixtures/agents.yaml`',
          );
          return;
        }
        agentsValue = fixtures.get(key);
      }
      const parsed = parseAgentViews(agentsValue);
      for (const e of parsed.errors)
        push(file.path, file.pos(`${p}.agents`), 'invalid-fixture', `test \`${t.name}\`: ${e}`);
      if (t.event === null || typeof t.event !== 'object' || Array.isArray(t.event)) {
        push(
          file.path,
          file.pos(`${p}.event`),
          'invalid-type',
          `test \`${t.name}\`: event must be a mapping (a CloudEvent in JSON form)`,
        );
        return;
      }
      let nowMs: number | undefined;
      if (t.now !== undefined) {
        nowMs = parseRfc3339(t.now);
        if (nowMs === undefined)
          push(
            file.path,
            file.pos(`${p}.now`),
            'invalid-value',
            `test \`${t.name}\`: now must be an RFC 3339 timestamp`,
          );
      }
      if (tests.some((x) => x.name === t.name)) {
        push(
          file.path,
          file.pos(`${p}.name`),
          'duplicate-id',
          `duplicate test name \`${t.name}\``,
          'test names must be unique in the bundle',
        );
      }
      if (parsed.errors.length > 0) return;
      tests.push({
        name: t.name,
        file: file.path,
        pos: file.pos(p),
        event: t.event as Record<string, unknown>,
        agents: parsed.agents,
        nowMs,
        expect: { chosen: t.expect.chosen, outcome: t.expect.outcome, excluded: t.expect.excluded ?? {} },
      });
    });
  };

  for (const f of sorted) {
    const role = fileRole(f.path);
    if (role === 'tests') {
      const r = readYaml(f.path, f.content, TESTS_FILE_SPEC);
      errors.push(...r.errors);
      if (r.file && r.errors.length === 0) readTests(r.file, (r.file.value as { tests: unknown }).tests, 'tests');
      continue;
    }
    if (role !== 'policy') continue;
    const r = readYaml(f.path, f.content, POLICY_FILE_SPEC);
    errors.push(...r.errors);
    if (!r.file || r.errors.length > 0) continue;
    const file = r.file;
    const doc = file.value as {
      metadata: { name: string; version: number; owner: string; description?: string };
      mode: PolicyMode;
      selector?: string;
      variables?: Record<string, string>;
      constraints?: { id: string; description?: string; when?: string; require: string; message?: string }[];
      preferences?: { id: string; description?: string; weight: number; when?: string; score: string }[];
      tenants?: Record<string, unknown>;
      exceptions?: {
        id: string;
        constraint: string;
        when?: string;
        approvedBy?: string;
        ticket?: string;
        expires?: string;
      }[];
      tests?: unknown[];
    };
    const name = doc.metadata.name;
    const prev = policyNames.get(name);
    if (prev !== undefined) {
      push(
        f.path,
        file.pos('metadata.name'),
        'duplicate-id',
        `duplicate policy name \`${name}\` (also in ${prev})`,
        'policy names must be unique in the bundle',
      );
      continue;
    }
    policyNames.set(name, f.path);
    const before = errors.length;

    // Variables, in order; each may use earlier ones.
    const vars = new Map<string, string>();
    for (const [vn, vsrc] of Object.entries(doc.variables ?? {})) {
      const c = compileExpr(file, `variables.${vn}`, vsrc, undefined, vars);
      if (c === undefined) continue;
      vars.set(
        vn,
        vsrc.replace(/\bvars\.([A-Za-z_][A-Za-z0-9_]*)/g, (_m, n: string) => `(${vars.get(n) ?? 'null'})`),
      );
    }

    const selector = doc.selector === undefined ? undefined : compileExpr(file, 'selector', doc.selector, 'bool', vars);
    if (selector?.readsAgent) {
      push(
        f.path,
        file.pos('selector'),
        'selector-reads-agent',
        'selector may only read `event`',
        'move agent conditions into a constraint `when`',
      );
    }

    const ids = new Set<string>();
    const compileConstraint = (
      c: { id: string; description?: string; when?: string; require: string; message?: string },
      path: string,
      tenant: string | undefined,
    ): CompiledConstraint | undefined => {
      if (ids.has(c.id)) {
        push(
          f.path,
          file.pos(`${path}.id`),
          tenant ? 'tenant-relaxes' : 'duplicate-id',
          tenant
            ? `tenant \`${tenant}\` redefines constraint \`${c.id}\`: a tenant block may only add constraints or change weights`
            : `duplicate rule id \`${c.id}\` in policy \`${name}\``,
          tenant
            ? 'give the tenant constraint a new id; it then applies in addition to the base constraint'
            : 'rule ids must be unique within a policy',
        );
        return undefined;
      }
      ids.add(c.id);
      const when = c.when === undefined ? undefined : compileExpr(file, `${path}.when`, c.when, 'bool', vars);
      const require = compileExpr(file, `${path}.require`, c.require, 'bool', vars);
      const message =
        c.message === undefined ? undefined : compileExpr(file, `${path}.message`, c.message, 'string', vars);
      if (!require || (c.when !== undefined && !when) || (c.message !== undefined && !message)) return undefined;
      return {
        ruleId: `${name}/${c.id}`,
        id: c.id,
        policy: name,
        tenant,
        description: c.description,
        when,
        require,
        message,
        exceptions: [],
        file: f.path,
        pos: file.pos(path),
      };
    };

    const constraints: CompiledConstraint[] = [];
    (doc.constraints ?? []).forEach((c, i) => {
      const cc = compileConstraint(c, `constraints.${i}`, undefined);
      if (cc) constraints.push(cc);
    });
    const preferences: CompiledPreference[] = [];
    (doc.preferences ?? []).forEach((p, i) => {
      const path = `preferences.${i}`;
      if (ids.has(p.id)) {
        push(
          f.path,
          file.pos(`${path}.id`),
          'duplicate-id',
          `duplicate rule id \`${p.id}\` in policy \`${name}\``,
          'rule ids must be unique within a policy',
        );
        return;
      }
      ids.add(p.id);
      const when = p.when === undefined ? undefined : compileExpr(file, `${path}.when`, p.when, 'bool', vars);
      const score = compileExpr(file, `${path}.score`, p.score, 'number', vars);
      if (!score || (p.when !== undefined && !when)) return;
      preferences.push({
        ruleId: `${name}/${p.id}`,
        id: p.id,
        policy: name,
        description: p.description,
        weight: p.weight,
        when,
        score,
        file: f.path,
        pos: file.pos(path),
      });
    });

    const tenants = new Map<string, CompiledTenant>();
    for (const [tn, raw] of Object.entries(doc.tenants ?? {})) {
      const tp = `tenants.${tn}`;
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        push(
          f.path,
          file.pos(tp),
          'invalid-type',
          `\`${tp}\` must be a mapping with \`constraints\` and/or \`weights\``,
        );
        continue;
      }
      const block = raw as Record<string, unknown>;
      let ok = true;
      for (const k of Object.keys(block)) {
        if ((TENANT_KEYS as readonly string[]).includes(k)) continue;
        ok = false;
        const relax = [
          'mode',
          'selector',
          'exceptions',
          'preferences',
          'disable',
          'remove',
          'override',
          'variables',
        ].includes(k);
        push(
          f.path,
          file.pos(`${tp}.${k}`),
          relax ? 'tenant-relaxes' : 'unknown-key',
          relax
            ? `tenant \`${tn}\` may not set \`${k}\`: a tenant block may only add constraints or change weights`
            : `unknown key \`${k}\` in tenant block \`${tn}\``,
          relax
            ? 'relaxations need an approved, expiring entry under `exceptions:`'
            : `allowed keys: ${TENANT_KEYS.join(', ')}`,
        );
      }
      const tcs: CompiledConstraint[] = [];
      if (block.constraints !== undefined) {
        if (!Array.isArray(block.constraints)) {
          push(f.path, file.pos(`${tp}.constraints`), 'invalid-type', `\`${tp}.constraints\` must be a list`);
          ok = false;
        } else {
          const sub: PolicyError[] = [];
          readYamlSubcheck(file, block.constraints, `${tp}.constraints`, sub);
          errors.push(...sub);
          if (sub.length > 0) ok = false;
          else
            (block.constraints as { id: string; require: string }[]).forEach((c, i) => {
              const cc = compileConstraint(c, `${tp}.constraints.${i}`, tn);
              if (cc) tcs.push(cc);
            });
        }
      }
      const weights = new Map<string, number>();
      if (block.weights !== undefined) {
        if (block.weights === null || typeof block.weights !== 'object' || Array.isArray(block.weights)) {
          push(
            f.path,
            file.pos(`${tp}.weights`),
            'invalid-type',
            `\`${tp}.weights\` must map preference ids to weights`,
          );
          ok = false;
        } else {
          for (const [pid, w] of Object.entries(block.weights as Record<string, unknown>)) {
            if (!preferences.some((p) => p.id === pid)) {
              const guess = closest(
                pid,
                preferences.map((p) => p.id),
              );
              push(
                f.path,
                file.pos(`${tp}.weights.${pid}`),
                'unknown-rule',
                `tenant \`${tn}\` sets the weight of unknown preference \`${pid}\``,
                guess ? `did you mean \`${guess}\`?` : 'weights name preferences of this policy',
              );
              ok = false;
            } else if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) {
              push(
                f.path,
                file.pos(`${tp}.weights.${pid}`),
                'invalid-value',
                `tenant \`${tn}\` weight of \`${pid}\` must be a non-negative number`,
              );
              ok = false;
            } else weights.set(pid, w);
          }
        }
      }
      if (ok) tenants.set(tn, { constraints: tcs, weights });
    }

    const exceptions: CompiledException[] = [];
    (doc.exceptions ?? []).forEach((x, i) => {
      const path = `exceptions.${i}`;
      const missing = (['approvedBy', 'ticket', 'expires'] as const).filter((k) => x[k] === undefined || x[k] === '');
      if (missing.length > 0) {
        push(
          f.path,
          file.pos(path),
          'exception-incomplete',
          `exception \`${x.id}\` is missing ${missing.map((m) => `\`${m}\``).join(', ')}`,
          'every relaxation needs `approvedBy`, `ticket` and `expires` (RFC 3339)',
        );
        return;
      }
      const expiresMs = parseRfc3339(x.expires as string);
      if (expiresMs === undefined) {
        push(
          f.path,
          file.pos(`${path}.expires`),
          'invalid-value',
          `exception \`${x.id}\`: expires must be an RFC 3339 timestamp, got ${JSON.stringify(x.expires)}`,
          'e.g. `2026-12-31T23:59:59Z`',
        );
        return;
      }
      if (expiresMs <= opts.nowMs) {
        push(
          f.path,
          file.pos(`${path}.expires`),
          'exception-expired',
          `exception \`${x.id}\` (ticket ${x.ticket}) expired at ${x.expires}`,
          'renew it with a new approval and expiry, or remove it',
        );
        return;
      }
      const target = [...constraints, ...[...tenants.values()].flatMap((t) => t.constraints)].find(
        (c) => c.id === x.constraint,
      );
      if (!target) {
        const guess = closest(
          x.constraint,
          constraints.map((c) => c.id),
        );
        push(
          f.path,
          file.pos(`${path}.constraint`),
          'unknown-rule',
          `exception \`${x.id}\` relaxes unknown constraint \`${x.constraint}\``,
          guess ? `did you mean \`${guess}\`?` : 'name a constraint id of this policy',
        );
        return;
      }
      if (ids.has(`exception:${x.id}`)) {
        push(f.path, file.pos(`${path}.id`), 'duplicate-id', `duplicate exception id \`${x.id}\``);
        return;
      }
      ids.add(`exception:${x.id}`);
      const when = x.when === undefined ? undefined : compileExpr(file, `${path}.when`, x.when, 'bool', vars);
      if (x.when !== undefined && !when) return;
      const ce: CompiledException = {
        ruleId: `${name}/exception:${x.id}`,
        id: x.id,
        constraint: x.constraint,
        when,
        approvedBy: x.approvedBy as string,
        ticket: x.ticket as string,
        expires: x.expires as string,
        expiresMs,
      };
      exceptions.push(ce);
      target.exceptions.push(ce);
    });

    if (doc.tests) readTests(file, doc.tests, 'tests');
    if (errors.length > before) continue;

    const ruleSources = new Map<string, string>();
    ruleSources.set(`${name}/selector`, canonicalJson(doc.selector ?? null));
    ruleSources.set(`${name}/variables`, canonicalJson(doc.variables ?? {}));
    for (const c of doc.constraints ?? []) ruleSources.set(`${name}/${c.id}`, canonicalJson(c));
    for (const p of doc.preferences ?? []) ruleSources.set(`${name}/${p.id}`, canonicalJson(p));
    for (const [tn, b] of Object.entries(doc.tenants ?? {})) ruleSources.set(`${name}/tenant:${tn}`, canonicalJson(b));
    for (const x of doc.exceptions ?? []) ruleSources.set(`${name}/exception:${x.id}`, canonicalJson(x));

    const { tests: _t, ...rest } = doc;
    policies.push({
      name,
      version: doc.metadata.version,
      owner: doc.metadata.owner,
      description: doc.metadata.description,
      mode: doc.mode,
      hash: sha256(canonicalJson(rest)),
      file: f.path,
      selector,
      constraints,
      preferences,
      tenants,
      exceptions,
      ruleSources,
    });
  }

  if (errors.length > 0) return { loaded: undefined, digest, errors };
  return { loaded: { digest, vocabulary, engine, policies, tests }, digest, errors };
}

function readYamlSubcheck(file: SourceFile, value: unknown, path: string, errors: PolicyError[]): void {
  // Validate tenant constraints with the same structure as policy constraints.
  if (!Array.isArray(value)) return;
  value.forEach((c, i) => {
    const p = `${path}.${i}`;
    if (c === null || typeof c !== 'object' || Array.isArray(c)) {
      const at = file.pos(p);
      errors.push({
        file: file.path,
        line: at.line,
        col: at.col,
        code: 'invalid-type',
        message: `\`${p}\` must be a mapping`,
      });
      return;
    }
    const keys = (constraintSpec as { keys: Record<string, { required?: boolean }> }).keys;
    for (const k of Object.keys(c)) {
      if (!(k in keys)) {
        const at = file.pos(`${p}.${k}`);
        const guess = closest(k, Object.keys(keys));
        errors.push({
          file: file.path,
          line: at.line,
          col: at.col,
          code: 'unknown-key',
          message: `unknown key \`${k}\` in \`${p}\``,
          ...(guess ? { hint: `did you mean \`${guess}\`?` } : {}),
        });
      }
    }
    for (const [k, s] of Object.entries(keys)) {
      const v = (c as Record<string, unknown>)[k];
      if (s.required && v === undefined) {
        const at = file.pos(p);
        errors.push({
          file: file.path,
          line: at.line,
          col: at.col,
          code: 'missing-key',
          message: `missing required key \`${k}\` in \`${p}\``,
        });
      } else if (v !== undefined && typeof v !== 'string') {
        const at = file.pos(`${p}.${k}`);
        errors.push({
          file: file.path,
          line: at.line,
          col: at.col,
          code: 'invalid-type',
          message: `\`${p}.${k}\` must be a string`,
        });
      }
    }
  });
}
