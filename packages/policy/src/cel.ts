/**
 * The CEL engine behind a small interface: `@marcbachmann/cel-js` parses, type-checks against the
 * vocabulary and evaluates; a closure compiler turns the common subset of a checked expression
 * into a plain JavaScript function (event-only subtrees become per-event slots) for the hot path.
 */
import { RE2JS } from '@bufbuild/re2';
import { type ASTNode, Environment, type ParseResult } from '@marcbachmann/cel-js';
import type { AgentView, FieldType, Vocabulary } from './vocabulary.js';

/** Name of the primary CEL engine. */
export const CEL_ENGINE_NAME = '@marcbachmann/cel-js';
/** Version of the primary CEL engine (pinned by the package's dependency range). */
export const CEL_ENGINE_VERSION = '8.0.0';

/** Limits on expression size, enforced at load time. */
export interface ExpressionLimits {
  /** Longest expression source, in characters. @default 2048 */
  maxExpressionChars: number;
  /** Most AST nodes in one expression. @default 256 */
  maxAstNodes: number;
  /** Deepest nesting of one expression. @default 32 */
  maxDepth: number;
}

/** Default {@link ExpressionLimits}. */
export const DEFAULT_EXPRESSION_LIMITS: ExpressionLimits = { maxExpressionChars: 2048, maxAstNodes: 256, maxDepth: 32 };

/** A compile failure, with the offset of the problem inside the expression source. */
export interface CelCompileError {
  code:
    | 'cel-parse'
    | 'cel-type'
    | 'expression-too-large'
    | 'expression-too-deep'
    | 'regex-not-constant'
    | 'regex-invalid';
  message: string;
  offset: number;
}

/** An evaluation activation: the CEL values of `event` and (for agent rules) `agent`. */
export interface CelActivation {
  event: Record<string, unknown>;
  agent?: Record<string, unknown>;
}

/** A compiled expression. */
export interface CompiledExpression {
  readonly source: string;
  /** The checked result type, e.g. `bool`, `double`. */
  readonly type: string;
  /** Whether the expression reads `agent` (else it depends on the event only). */
  readonly readsAgent: boolean;
  /** Whether the expression reads `event`. */
  readonly readsEvent: boolean;
  /** Agent fields read, for indexing (`jurisdiction`, `backends`, ...). */
  readonly agentFields: ReadonlySet<string>;
  /** Evaluate with the primary engine; throws on a CEL evaluation error. */
  evaluate(activation: CelActivation): unknown;
  /** The compiled closure form, when the expression is in the compilable subset. */
  readonly fast: FastExpression | undefined;
  /**
   * For an expression that reads no agent: a plain function over the event activation, when the
   * expression is in the compilable subset. Throws on an absent attribute (callers re-evaluate
   * with the engine to get its error message).
   */
  readonly eventFn: EventFn | undefined;
  /**
   * For an `a && b && ...` chain that reads the agent: its event-only conjuncts, compiled. When
   * one of them is `false`, the whole expression is `false` for every agent.
   */
  readonly eventConjuncts: readonly EventFn[];
}

/** A compiled event-only expression over the event activation. */
export type EventFn = (event: Record<string, unknown>) => unknown;

/** A closure-compiled expression: `slots` are event-only parts computed once per event. */
export interface FastExpression {
  /** Event-only subexpressions; each evaluates against the event activation. */
  readonly slots: readonly ((event: Record<string, unknown>) => unknown)[];
  /** The agent-dependent rest, over the raw {@link AgentView} and the slot values. */
  readonly run: (agent: AgentView, slots: readonly unknown[]) => unknown;
  /** The JavaScript source of `run`'s body: reads `a` (the agent) and `__s[i]` (slot values). */
  readonly code: string;
  /** The same, reading numeric agent fields from typed columns `__c_<field>[i]`. */
  readonly columnCode: string;
  /** The numeric agent fields `columnCode` reads from columns. */
  readonly numericFields: readonly string[];
}

/** The primary engine, bound to a vocabulary. */
export interface CelEngine {
  readonly name: string;
  readonly version: string;
  /** Parse and type-check. `expectType` is the required result type (`bool`, `double`, `string`). */
  compile(source: string, expectType?: 'bool' | 'number' | 'string'): CompiledExpression | CelCompileError;
}

function celTypeOf(t: FieldType): string {
  return t;
}

/** Build the primary engine for a vocabulary. */
export function createCelEngine(vocab: Vocabulary, limits: ExpressionLimits = DEFAULT_EXPRESSION_LIMITS): CelEngine {
  const schemaOf = (fields: Readonly<Record<string, FieldType>>) => {
    const s: Record<string, string> = {};
    for (const [k, v] of Object.entries(fields)) s[k] = celTypeOf(v);
    return s;
  };
  // `matches` is evaluated with RE2 (linear time, the syntax the CEL spec names) instead of cel-js's
  // JavaScript RegExp, which backtracks: `event.subject.matches('^(a+)+$')` on 30 characters of an
  // event took over a second, 40 would hold the router for hours. Expressions calling `matches` are
  // rewritten to call RE2_MATCHES on their constant pattern, compiled once.
  const patterns = new Map<string, RE2JS>();
  const env = new Environment({ limits: { maxAstNodes: limits.maxAstNodes, maxDepth: limits.maxDepth } })
    .registerVariable({ name: 'event', schema: schemaOf(vocab.event) })
    .registerVariable({ name: 'agent', schema: schemaOf(vocab.agent) })
    .registerFunction(`${RE2_MATCHES}(string, string): bool`, (text: string, pattern: string) => {
      let re = patterns.get(pattern);
      if (re === undefined) {
        re = RE2JS.compile(pattern);
        patterns.set(pattern, re);
      }
      return re.test(text);
    });

  const compile = (source: string, expectType?: 'bool' | 'number' | 'string'): CompiledExpression | CelCompileError => {
    if (source.length > limits.maxExpressionChars) {
      return {
        code: 'expression-too-large',
        message: `expression is ${source.length} characters, over the limit of ${limits.maxExpressionChars}`,
        offset: 0,
      };
    }
    let parsed: ParseResult;
    try {
      parsed = env.parse(source);
    } catch (err) {
      const e = err as { code?: string; summary?: string; message: string; range?: { start: number } };
      if (e.code === 'limit_exceeded') {
        const deep = /maxDepth/.test(e.message);
        return {
          code: deep ? 'expression-too-deep' : 'expression-too-large',
          message: (e.summary ?? e.message.split('\n')[0] ?? e.message).trim(),
          offset: e.range?.start ?? 0,
        };
      }
      return {
        code: 'cel-parse',
        message: (e.summary ?? e.message.split('\n')[0] ?? '').trim(),
        offset: e.range?.start ?? 0,
      };
    }
    const patterns = checkPatterns(parsed.ast);
    if (patterns.error !== undefined) return patterns.error;
    if (patterns.found) {
      // The same expression with every `x.matches(p)` as RE2_MATCHES(x, p): evaluated, compiled and
      // typed from here on (errors above were located in the source as written).
      try {
        parsed = env.parse(unparse(withRe2Matches(parsed.ast)));
      } catch (err) {
        return { code: 'cel-parse', message: (err as Error).message.split('\n')[0] ?? 'parse error', offset: 0 };
      }
    }
    const checked = parsed.check();
    if (!checked.valid) {
      const e = checked.error as { summary?: string; message: string; range?: { start: number } } | undefined;
      return {
        code: 'cel-type',
        message: (e?.summary ?? e?.message.split('\n')[0] ?? 'type error').trim(),
        offset: e?.range?.start ?? 0,
      };
    }
    const type = checked.type ?? 'dyn';
    if (expectType !== undefined) {
      const ok =
        type === 'dyn' ||
        (expectType === 'bool' && type === 'bool') ||
        (expectType === 'string' && type === 'string') ||
        (expectType === 'number' && (type === 'double' || type === 'int'));
      if (!ok) {
        return {
          code: 'cel-type',
          message: `expression must be of type ${expectType === 'number' ? 'double' : expectType}, got ${type}`,
          offset: 0,
        };
      }
    }
    const agentFields = new Set<string>();
    const reads = { agent: false, event: false };
    walk(parsed.ast, (n) => {
      if (n.op === 'id') {
        if (n.args === 'agent') reads.agent = true;
        if (n.args === 'event') reads.event = true;
      }
      if (n.op === '.' && n.args[0].op === 'id' && n.args[0].args === 'agent') agentFields.add(n.args[1]);
    });
    let fast: FastExpression | undefined;
    try {
      fast = reads.agent ? compileFast(parsed.ast, vocab, env) : undefined;
    } catch (err) {
      if (!(err instanceof Unsupported)) throw err;
      fast = undefined;
    }
    const eventFn = reads.agent ? undefined : compileEventFn(parsed.ast, vocab);
    const eventConjuncts: EventFn[] = [];
    if (reads.agent && reads.event && parsed.ast.op === '&&') {
      for (const c of conjuncts(parsed.ast)) {
        if (readsVar(c, 'agent')) continue;
        const f = compileEventFn(c, vocab);
        if (f) eventConjuncts.push(f);
      }
    }
    return {
      source,
      type,
      readsAgent: reads.agent,
      readsEvent: reads.event,
      agentFields,
      evaluate: (activation) => parsed(activation),
      fast,
      eventFn,
      eventConjuncts,
    };
  };
  return { name: CEL_ENGINE_NAME, version: CEL_ENGINE_VERSION, compile };
}

/** Whether a compile result is an error. */
export function isCompileError(r: CompiledExpression | CelCompileError): r is CelCompileError {
  return 'code' in r && 'offset' in r;
}

function children(n: ASTNode): ASTNode[] {
  switch (n.op) {
    case 'value':
    case 'id':
      return [];
    case '.':
    case '.?':
      return [n.args[0]];
    case 'call':
      return n.args[1];
    case 'rcall':
      return [n.args[1], ...n.args[2]];
    case 'list':
      return n.args;
    case 'map':
      return n.args.flat();
    case '?:':
      return [...n.args];
    case '!_':
    case '-_':
      return [n.args];
    default:
      return [...(n.args as [ASTNode, ASTNode])];
  }
}

function walk(n: ASTNode, fn: (n: ASTNode) => void): void {
  fn(n);
  for (const c of children(n)) walk(c, fn);
}

function readsVar(n: ASTNode, name: string): boolean {
  let found = false;
  walk(n, (x) => {
    if (x.op === 'id' && x.args === name) found = true;
  });
  return found;
}

function literal(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}`;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (v === null) return 'null';
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return 'double("NaN")';
    if (!Number.isFinite(v)) return v > 0 ? 'double("Infinity")' : 'double("-Infinity")';
    const s = String(v);
    return /[.eE]/.test(s) ? s : `${s}.0`;
  }
  if (v instanceof Uint8Array) return `b"${[...v].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}"`;
  throw new Unsupported();
}

/** The function `matches` calls are rewritten to (RE2, linear time). */
const RE2_MATCHES = 'meshroute_re2_matches';

function isMatches(n: ASTNode): boolean {
  return (n.op === 'rcall' && n.args[0] === 'matches') || (n.op === 'call' && n.args[0] === 'matches');
}

/**
 * Whether the expression calls `matches`, and the first pattern at fault: every pattern must be a
 * string literal (a pattern taken from the event would let a producer choose the regular
 * expression) in RE2 syntax (the CEL spec's; no backreferences or lookaround).
 */
function checkPatterns(root: ASTNode): { found: boolean; error?: CelCompileError } {
  let error: CelCompileError | undefined;
  let found = false;
  walk(root, (n) => {
    if (error !== undefined || !isMatches(n)) return;
    found = true;
    let args: readonly ASTNode[];
    if (n.op === 'rcall') args = n.args[2];
    else if (n.op === 'call') args = n.args[1].slice(1);
    else return;
    const pattern = args[0];
    if (pattern === undefined) return; // an arity error, reported by the type check
    if (pattern.op !== 'value' || typeof pattern.args !== 'string') {
      error = {
        code: 'regex-not-constant',
        message: 'the pattern of matches() must be a string literal',
        offset: pattern.range?.start ?? n.range?.start ?? 0,
      };
      return;
    }
    try {
      RE2JS.compile(pattern.args);
    } catch (err) {
      error = {
        code: 'regex-invalid',
        message: `matches(): ${(err as Error).message} (RE2 syntax)`,
        offset: pattern.range?.start ?? 0,
      };
    }
  });
  return error === undefined ? { found } : { found, error };
}

/** A copy of the tree with `x.matches(p)` and `matches(x, p)` as `RE2_MATCHES(x, p)`. */
function withRe2Matches(n: ASTNode): ASTNode {
  const map = (x: ASTNode): ASTNode => withRe2Matches(x);
  switch (n.op) {
    case 'rcall':
      if (n.args[0] === 'matches') {
        return { ...n, op: 'call', args: [RE2_MATCHES, [map(n.args[1]), ...n.args[2].map(map)]] } as unknown as ASTNode;
      }
      return { ...n, args: [n.args[0], map(n.args[1]), n.args[2].map(map)] } as ASTNode;
    case 'call':
      return {
        ...n,
        args: [n.args[0] === 'matches' ? RE2_MATCHES : n.args[0], n.args[1].map(map)],
      } as ASTNode;
    case 'value':
    case 'id':
      return n;
    case '.':
    case '.?':
      return { ...n, args: [map(n.args[0]), n.args[1]] } as ASTNode;
    case 'list':
      return { ...n, args: n.args.map(map) } as ASTNode;
    case 'map':
      return { ...n, args: n.args.map(([k, v]) => [map(k), map(v)]) } as ASTNode;
    case '?:':
      return { ...n, args: [map(n.args[0]), map(n.args[1]), map(n.args[2])] } as ASTNode;
    case '!_':
    case '-_':
      return { ...n, args: map(n.args) } as ASTNode;
    default: {
      const [l, r] = n.args as [ASTNode, ASTNode];
      return { ...n, args: [map(l), map(r)] } as ASTNode;
    }
  }
}

/** Turn a cel-js AST back into CEL source (fully parenthesized). */
export function unparse(n: ASTNode): string {
  switch (n.op) {
    case 'value':
      return literal(n.args);
    case 'id':
      return n.args;
    case '.':
      return `${unparse(n.args[0])}.${n.args[1]}`;
    case '.?':
      return `${unparse(n.args[0])}.?${n.args[1]}`;
    case '[]':
      return `${unparse(n.args[0])}[${unparse(n.args[1])}]`;
    case '[?]':
      return `${unparse(n.args[0])}[?${unparse(n.args[1])}]`;
    case 'call':
      return `${n.args[0]}(${n.args[1].map(unparse).join(', ')})`;
    case 'rcall':
      return `${unparse(n.args[1])}.${n.args[0]}(${n.args[2].map(unparse).join(', ')})`;
    case 'list':
      return `[${n.args.map(unparse).join(', ')}]`;
    case 'map':
      return `{${n.args.map(([k, v]) => `${unparse(k)}: ${unparse(v)}`).join(', ')}}`;
    case '?:':
      return `(${unparse(n.args[0])} ? ${unparse(n.args[1])} : ${unparse(n.args[2])})`;
    case '!_':
      return `(!${unparse(n.args)})`;
    case '-_':
      return `(-${unparse(n.args)})`;
    default: {
      const [l, r] = n.args as [ASTNode, ASTNode];
      return `(${unparse(l)} ${n.op} ${unparse(r)})`;
    }
  }
}

class Unsupported extends Error {}

/** Sets of per-event lists (shared lists such as residency are reused across events). */
const listSets = new WeakMap<readonly unknown[], Set<unknown>>();

type GenType = 'int' | 'double' | 'string' | 'bool' | 'list';
interface Gen {
  code: string;
  type: GenType;
}

function toJs(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  // Lists of strings are returned as they are (shared per-event lists stay shared).
  if (Array.isArray(v)) return v.some((x) => typeof x === 'bigint' || Array.isArray(x)) ? v.map(toJs) : v;
  return v;
}

function genTypeOf(celType: string): GenType {
  if (celType === 'int' || celType === 'double' || celType === 'string' || celType === 'bool') return celType;
  if (celType === 'list<string>' || celType === 'list<int>' || celType === 'list<double>') return 'list';
  throw new Unsupported();
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Marks numeric agent field reads in generated code (control characters: JSON.stringify escapes
 * them, so no string literal contains them), replaced by object or typed-column reads.
 */
const MARK_OPEN = String.fromCharCode(1);
const MARK_CLOSE = String.fromCharCode(2);
const FIELD_MARK = new RegExp(`${MARK_OPEN}(\\w+)${MARK_CLOSE}`, 'g');

function compileFast(root: ASTNode, vocab: Vocabulary, env: Environment): FastExpression {
  const slots: ((event: Record<string, unknown>) => unknown)[] = [];
  const num = (g: Gen) => g.type === 'int' || g.type === 'double';
  const gen = (n: ASTNode): Gen => {
    if (!readsVar(n, 'agent') && n.op !== 'value') {
      const src = unparse(n);
      const checked = env.check(src);
      if (!checked.valid || checked.type === undefined) throw new Unsupported();
      const type = genTypeOf(checked.type);
      const fn = env.parse(src);
      const i = slots.length;
      slots.push(directSlot(n, vocab) ?? ((event) => toJs(fn({ event }))));
      return { code: `__s[${i}]`, type };
    }
    switch (n.op) {
      case 'value': {
        const v = n.args;
        if (typeof v === 'bigint') return { code: `(${Number(v)})`, type: 'int' };
        if (typeof v === 'number' && Number.isFinite(v)) return { code: `(${v})`, type: 'double' };
        if (typeof v === 'string') return { code: JSON.stringify(v), type: 'string' };
        if (typeof v === 'boolean') return { code: String(v), type: 'bool' };
        throw new Unsupported();
      }
      case '.': {
        const [obj, field] = n.args;
        if (obj.op !== 'id' || obj.args !== 'agent' || !IDENT.test(field)) throw new Unsupported();
        const t = vocab.agent[field];
        if (t === undefined || t === 'map<string, string>') throw new Unsupported();
        // Marked so that numeric reads can also be emitted as typed-column reads.
        const code = t === 'int' || t === 'double' ? `${MARK_OPEN}${field}${MARK_CLOSE}` : `a.${field}`;
        return { code, type: t === 'list<string>' ? 'list' : t };
      }
      case '&&':
      case '||': {
        const l = gen(n.args[0]);
        const r = gen(n.args[1]);
        if (l.type !== 'bool' || r.type !== 'bool') throw new Unsupported();
        return { code: `(${l.code} ${n.op} ${r.code})`, type: 'bool' };
      }
      case '!_': {
        const x = gen(n.args);
        if (x.type !== 'bool') throw new Unsupported();
        return { code: `(!${x.code})`, type: 'bool' };
      }
      case '-_': {
        const x = gen(n.args);
        if (!num(x)) throw new Unsupported();
        return { code: `(-${x.code})`, type: x.type };
      }
      case '?:': {
        const c = gen(n.args[0]);
        const t = gen(n.args[1]);
        const f = gen(n.args[2]);
        if (c.type !== 'bool' || t.type !== f.type || t.type === 'list') throw new Unsupported();
        return { code: `(${c.code} ? ${t.code} : ${f.code})`, type: t.type };
      }
      case '==':
      case '!=': {
        const l = gen(n.args[0]);
        const r = gen(n.args[1]);
        const same = (num(l) && num(r)) || (l.type === r.type && l.type !== 'list');
        if (!same) throw new Unsupported();
        return { code: `(${l.code} ${n.op === '==' ? '===' : '!=='} ${r.code})`, type: 'bool' };
      }
      case '<':
      case '<=':
      case '>':
      case '>=': {
        const l = gen(n.args[0]);
        const r = gen(n.args[1]);
        if (!num(l) || !num(r)) throw new Unsupported();
        return { code: `(${l.code} ${n.op} ${r.code})`, type: 'bool' };
      }
      case 'in': {
        const l = gen(n.args[0]);
        const r = gen(n.args[1]);
        if (r.type !== 'list' || l.type === 'list') throw new Unsupported();
        const slot = /^__s\[(\d+)\]$/.exec(r.code);
        if (slot) {
          // A list computed once per event: membership through a Set.
          const k = Number(slot[1]);
          const inner = slots[k] as (event: Record<string, unknown>) => unknown;
          slots[k] = (event) => {
            const list = inner(event) as unknown[];
            let set = listSets.get(list);
            if (set === undefined) {
              set = new Set(list);
              listSets.set(list, set);
            }
            return set;
          };
          return { code: `${r.code}.has(${l.code})`, type: 'bool' };
        }
        return { code: `${r.code}.includes(${l.code})`, type: 'bool' };
      }
      case '+':
      case '-':
      case '*':
      case '/': {
        const l = gen(n.args[0]);
        const r = gen(n.args[1]);
        if (n.op === '+' && l.type === 'string' && r.type === 'string') {
          return { code: `(${l.code} + ${r.code})`, type: 'string' };
        }
        if (!num(l) || !num(r) || l.type !== r.type) throw new Unsupported();
        if (n.op === '/' && l.type === 'int') throw new Unsupported();
        return { code: `(${l.code} ${n.op} ${r.code})`, type: l.type };
      }
      case 'call': {
        const [name, args] = n.args;
        if (name === 'size' && args.length === 1) {
          const x = gen(args[0] as ASTNode);
          if (x.type !== 'list') throw new Unsupported();
          return { code: `${x.code}.length`, type: 'int' };
        }
        if (name === 'double' && args.length === 1) {
          const x = gen(args[0] as ASTNode);
          if (!num(x)) throw new Unsupported();
          return { code: x.code, type: 'double' };
        }
        throw new Unsupported();
      }
      default:
        throw new Unsupported();
    }
  };
  const body = gen(root);
  const numericFields = new Set<string>();
  const code = body.code.replace(FIELD_MARK, (_, f: string) => {
    numericFields.add(f);
    return `a.${f}`;
  });
  const columnCode = body.code.replace(FIELD_MARK, (_, f: string) => `__c_${f}[i]`);
  // The generated code reads only declared agent fields, literal values and slot values.
  const run = new Function('a', '__s', `"use strict"; return ${code};`) as FastExpression['run'];
  return { slots, run, code, columnCode, numericFields: [...numericFields] };
}

/** Thrown by direct slots for an absent event attribute (preallocated: no stack capture per event). */
const ABSENT = new Error('No such key');

/**
 * Slots of the form `event.f`, `double(event.f)` and `has(event.f)` read the activation directly
 * (same results as the engine: an absent attribute is an error, except under `has`).
 */
function directSlot(n: ASTNode, vocab: Vocabulary): ((event: Record<string, unknown>) => unknown) | undefined {
  const field = (x: ASTNode | undefined): string | undefined =>
    x?.op === '.' && x.args[0].op === 'id' && x.args[0].args === 'event' && vocab.event[x.args[1]] !== undefined
      ? x.args[1]
      : undefined;
  const f = field(n);
  if (f !== undefined) {
    return (event) => {
      const v = event[f];
      if (v === undefined) throw ABSENT;
      return toJs(v);
    };
  }
  if (n.op === 'call' && n.args[1].length === 1) {
    const g = field(n.args[1][0]);
    if (g === undefined) return undefined;
    if (n.args[0] === 'has') return (event) => event[g] !== undefined;
    if (n.args[0] === 'double' && vocab.event[g] === 'int') {
      return (event) => {
        const v = event[g];
        if (v === undefined) throw ABSENT;
        return Number(v);
      };
    }
  }
  return undefined;
}

function conjuncts(n: ASTNode): ASTNode[] {
  return n.op === '&&' ? [...conjuncts(n.args[0]), ...conjuncts(n.args[1])] : [n];
}

type EvType = 'bool' | 'int' | 'double' | 'string' | 'list';
interface EvGen {
  fn: EventFn;
  type: EvType;
}

/**
 * Compile an event-only expression into plain closures over the event activation (ints are
 * bigint there, as for the engine). Same results as the engine, with CEL's error absorption for
 * `&&`/`||`; the only error is an absent attribute. `undefined` outside the subset.
 */
function compileEventFn(root: ASTNode, vocab: Vocabulary): EventFn | undefined {
  const isNum = (t: EvType) => t === 'int' || t === 'double';
  const field = (x: ASTNode | undefined): string | undefined =>
    x?.op === '.' && x.args[0].op === 'id' && x.args[0].args === 'event' && vocab.event[x.args[1]] !== undefined
      ? x.args[1]
      : undefined;
  const gen = (n: ASTNode): EvGen => {
    switch (n.op) {
      case 'value': {
        const v = n.args;
        if (typeof v === 'bigint') return { fn: () => v, type: 'int' };
        if (typeof v === 'number') return { fn: () => v, type: 'double' };
        if (typeof v === 'string') return { fn: () => v, type: 'string' };
        if (typeof v === 'boolean') return { fn: () => v, type: 'bool' };
        throw new Unsupported();
      }
      case '.': {
        const f = field(n);
        const t = f === undefined ? undefined : vocab.event[f];
        if (f === undefined || t === undefined || t === 'map<string, string>') throw new Unsupported();
        return {
          fn: (ev) => {
            const v = ev[f];
            if (v === undefined) throw ABSENT;
            return v;
          },
          type: t === 'list<string>' ? 'list' : t,
        };
      }
      case 'list': {
        const items = n.args.map(gen);
        if (!items.every((x) => x.type === 'string')) throw new Unsupported();
        return { fn: (ev) => items.map((x) => x.fn(ev)), type: 'list' };
      }
      case '!_': {
        const x = gen(n.args);
        if (x.type !== 'bool') throw new Unsupported();
        const f = x.fn;
        return { fn: (ev) => !f(ev), type: 'bool' };
      }
      case '&&':
      case '||': {
        const l = gen(n.args[0]);
        const r = gen(n.args[1]);
        if (l.type !== 'bool' || r.type !== 'bool') throw new Unsupported();
        const lf = l.fn;
        const rf = r.fn;
        // CEL: a decisive operand wins over an error on the other side.
        const decisive = n.op !== '&&';
        return {
          fn: (ev) => {
            let lv: unknown;
            try {
              lv = lf(ev);
            } catch (err) {
              if (rf(ev) === decisive) return decisive;
              throw err;
            }
            if (lv === decisive) return decisive;
            return rf(ev);
          },
          type: 'bool',
        };
      }
      case '?:': {
        const c = gen(n.args[0]);
        const t = gen(n.args[1]);
        const f = gen(n.args[2]);
        if (c.type !== 'bool' || t.type !== f.type) throw new Unsupported();
        const [cf, tf, ff] = [c.fn, t.fn, f.fn];
        return { fn: (ev) => (cf(ev) === true ? tf(ev) : ff(ev)), type: t.type };
      }
      case '==':
      case '!=': {
        const l = gen(n.args[0]);
        const r = gen(n.args[1]);
        if (l.type !== r.type || l.type === 'list') throw new Unsupported();
        const [lf, rf] = [l.fn, r.fn];
        return n.op === '=='
          ? { fn: (ev) => lf(ev) === rf(ev), type: 'bool' }
          : { fn: (ev) => lf(ev) !== rf(ev), type: 'bool' };
      }
      case '<':
      case '<=':
      case '>':
      case '>=': {
        const l = gen(n.args[0]);
        const r = gen(n.args[1]);
        if (!isNum(l.type) || !isNum(r.type)) throw new Unsupported();
        const [lf, rf] = [l.fn, r.fn] as [
          (ev: Record<string, unknown>) => number,
          (ev: Record<string, unknown>) => number,
        ];
        switch (n.op) {
          case '<':
            return { fn: (ev) => lf(ev) < rf(ev), type: 'bool' };
          case '<=':
            return { fn: (ev) => lf(ev) <= rf(ev), type: 'bool' };
          case '>':
            return { fn: (ev) => lf(ev) > rf(ev), type: 'bool' };
          default:
            return { fn: (ev) => lf(ev) >= rf(ev), type: 'bool' };
        }
      }
      case 'in': {
        const l = gen(n.args[0]);
        const r = gen(n.args[1]);
        if (r.type !== 'list' || l.type !== 'string') throw new Unsupported();
        const [lf, rf] = [l.fn, r.fn];
        return { fn: (ev) => (rf(ev) as unknown[]).includes(lf(ev)), type: 'bool' };
      }
      case 'call': {
        const [name, args] = n.args;
        if (args.length !== 1) throw new Unsupported();
        if (name === 'has') {
          const f = field(args[0]);
          if (f === undefined) throw new Unsupported();
          return { fn: (ev) => ev[f] !== undefined, type: 'bool' };
        }
        const x = gen(args[0] as ASTNode);
        const xf = x.fn;
        if (name === 'double' && isNum(x.type)) return { fn: (ev) => Number(xf(ev)), type: 'double' };
        if (name === 'size' && x.type === 'list')
          return { fn: (ev) => BigInt((xf(ev) as unknown[]).length), type: 'int' };
        throw new Unsupported();
      }
      default:
        throw new Unsupported();
    }
  };
  try {
    return gen(root).fn;
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  }
}
