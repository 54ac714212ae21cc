/**
 * YAML with positions: parse a file with `yaml`'s `parseDocument` + `LineCounter`, validate its
 * structure against a small spec (unknown or misspelled keys, missing keys, wrong types), and map
 * every problem to `file:line:col` with a hint.
 */
import { createHash } from 'node:crypto';
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, Scalar } from 'yaml';

/** One problem in a policy bundle, located at `file:line:col` (1-based). */
export interface PolicyError {
  file: string;
  line: number;
  col: number;
  /** Stable error code, e.g. `unknown-key`, `cel-type`, `tenant-relaxes`. */
  code: string;
  message: string;
  /** What to do about it. */
  hint?: string;
}

/** A location in a file. */
export interface SourcePos {
  line: number;
  col: number;
}

/** The structure a YAML value must have. */
export type Spec =
  | { kind: 'map'; keys: Record<string, { spec: Spec; required?: boolean }> }
  | { kind: 'dict'; value: Spec; keyPattern?: RegExp; keyHint?: string }
  | { kind: 'seq'; item: Spec }
  | { kind: 'string'; pattern?: RegExp; patternHint?: string }
  | { kind: 'expr' }
  | { kind: 'int'; min?: number }
  | { kind: 'number'; min?: number }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'any' };

/** A parsed YAML file: its plain value and the position of every path. */
export interface SourceFile {
  path: string;
  value: unknown;
  /** Position of the value at a path such as `constraints.0.require`. */
  pos(path: string): SourcePos;
  /** Position of character `offset` inside the scalar at `path` (for CEL errors). */
  exprPos(path: string, offset: number): SourcePos;
}

/** Levenshtein distance, for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0] as number;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j] as number;
      dp[j] = Math.min((dp[j] as number) + 1, (dp[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length] as number;
}

/** The closest candidate within distance 3 (or a case-insensitive match). */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = c.toLowerCase() === word.toLowerCase() ? 0 : editDistance(word, c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/**
 * Parse and structurally validate a YAML (or JSON) file.
 * Returns the file (when it parsed) and every problem found.
 */
export function readYaml(
  path: string,
  content: string,
  spec: Spec | undefined,
): { file: SourceFile | undefined; errors: PolicyError[] } {
  const lc = new LineCounter();
  const doc = parseDocument(content, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true });
  const errors: PolicyError[] = [];
  const at = (offset: number): SourcePos => lc.linePos(offset);
  for (const e of doc.errors) {
    const p = at(e.pos[0]);
    errors.push({
      file: path,
      line: p.line,
      col: p.col,
      code: e.code === 'DUPLICATE_KEY' ? 'duplicate-key' : 'yaml-syntax',
      message: e.message.split('\n')[0] ?? e.message,
      hint:
        e.code === 'DUPLICATE_KEY'
          ? 'each key may appear once in a mapping'
          : 'fix the YAML syntax (indentation, quoting, colons)',
    });
  }
  if (errors.length > 0) return { file: undefined, errors };
  const nodes = new Map<string, Node>();
  const keyNodes = new Map<string, Node>();
  const record = (node: Node | null | undefined, p: string) => {
    if (!node) return;
    nodes.set(p, node);
    if (isMap(node)) {
      for (const pair of node.items) {
        const k = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        const cp = p === '' ? k : `${p}.${k}`;
        if (pair.key && isScalar(pair.key)) keyNodes.set(cp, pair.key);
        record(pair.value as Node | null, cp);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        record(item as Node, p === '' ? String(i) : `${p}.${i}`);
      });
    }
  };
  record(doc.contents as Node | null, '');
  const posOf = (p: string): SourcePos => {
    let cur = p;
    for (;;) {
      const n = nodes.get(cur) ?? keyNodes.get(cur);
      if (n?.range) return at(n.range[0]);
      if (cur === '') return { line: 1, col: 1 };
      const i = cur.lastIndexOf('.');
      cur = i < 0 ? '' : cur.slice(0, i);
    }
  };
  const keyPos = (p: string): SourcePos => {
    const k = keyNodes.get(p);
    return k?.range ? at(k.range[0]) : posOf(p);
  };
  const exprPos = (p: string, offset: number): SourcePos => {
    const n = nodes.get(p);
    if (!n || !isScalar(n) || !n.range) return posOf(p);
    const start = n.range[0];
    if (n.type === Scalar.PLAIN) return at(start + offset);
    if (n.type === Scalar.QUOTE_DOUBLE || n.type === Scalar.QUOTE_SINGLE) return at(start + 1 + offset);
    // Block scalar: content starts on the next line, after the indentation.
    const nl = content.indexOf('\n', start);
    if (nl < 0) return at(start);
    let i = nl + 1;
    while (content[i] === ' ') i++;
    const value = String(n.value);
    const firstLineLen = value.indexOf('\n') < 0 ? value.length : value.indexOf('\n');
    return at(offset <= firstLineLen ? i + offset : i);
  };
  const value = doc.toJS({ maxAliasCount: 0 }) as unknown;
  const file: SourceFile = { path, value, pos: posOf, exprPos };
  if (spec) check(spec, value, '', errors, file, keyPos);
  return { file, errors };
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function check(
  spec: Spec,
  value: unknown,
  path: string,
  errors: PolicyError[],
  file: SourceFile,
  keyPos: (p: string) => SourcePos,
): void {
  const err = (p: string, code: string, message: string, hint?: string, pos?: SourcePos) => {
    const at = pos ?? file.pos(p);
    errors.push({ file: file.path, line: at.line, col: at.col, code, message, ...(hint ? { hint } : {}) });
  };
  const where = path === '' ? 'the document' : `\`${path}\``;
  switch (spec.kind) {
    case 'any':
      return;
    case 'map': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        err(path, 'invalid-type', `${where} must be a mapping, got ${describe(value)}`);
        return;
      }
      const obj = value as Record<string, unknown>;
      for (const [k, v] of Object.entries(obj)) {
        const cp = path === '' ? k : `${path}.${k}`;
        const sub = spec.keys[k];
        if (!sub) {
          const guess = closest(k, Object.keys(spec.keys));
          err(
            cp,
            'unknown-key',
            `unknown key \`${k}\` in ${where}`,
            guess ? `did you mean \`${guess}\`?` : `allowed keys: ${Object.keys(spec.keys).join(', ')}`,
            keyPos(cp),
          );
          continue;
        }
        check(sub.spec, v, cp, errors, file, keyPos);
      }
      for (const [k, sub] of Object.entries(spec.keys)) {
        if (sub.required && obj[k] === undefined) {
          err(path, 'missing-key', `missing required key \`${k}\` in ${where}`, `add \`${k}:\``);
        }
      }
      return;
    }
    case 'dict': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        err(path, 'invalid-type', `${where} must be a mapping, got ${describe(value)}`);
        return;
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        const cp = path === '' ? k : `${path}.${k}`;
        if (spec.keyPattern && !spec.keyPattern.test(k)) {
          err(cp, 'invalid-value', `invalid name \`${k}\` in ${where}`, spec.keyHint, keyPos(cp));
        }
        check(spec.value, v, cp, errors, file, keyPos);
      }
      return;
    }
    case 'seq': {
      if (!Array.isArray(value)) {
        err(path, 'invalid-type', `${where} must be a list, got ${describe(value)}`);
        return;
      }
      value.forEach((v, i) => {
        check(spec.item, v, path === '' ? String(i) : `${path}.${i}`, errors, file, keyPos);
      });
      return;
    }
    case 'string':
    case 'expr': {
      if (typeof value !== 'string') {
        err(
          path,
          'invalid-type',
          `${where} must be a string, got ${describe(value)}`,
          spec.kind === 'expr' ? "quote CEL expressions, e.g. 'agent.freeSlots > 0'" : undefined,
        );
        return;
      }
      if (spec.kind === 'string' && spec.pattern && !spec.pattern.test(value)) {
        err(path, 'invalid-value', `${where} has an invalid value ${JSON.stringify(value)}`, spec.patternHint);
      }
      return;
    }
    case 'int':
    case 'number': {
      const ok =
        typeof value === 'number' && Number.isFinite(value) && (spec.kind === 'number' || Number.isInteger(value));
      if (!ok) {
        err(
          path,
          'invalid-type',
          `${where} must be ${spec.kind === 'int' ? 'an integer' : 'a number'}, got ${describe(value)}`,
        );
        return;
      }
      if (spec.min !== undefined && (value as number) < spec.min) {
        err(path, 'invalid-value', `${where} must be at least ${spec.min}, got ${value as number}`);
      }
      return;
    }
    case 'enum': {
      if (typeof value !== 'string' || !spec.values.includes(value)) {
        const guess = typeof value === 'string' ? closest(value, spec.values) : undefined;
        err(
          path,
          'invalid-value',
          `${where} must be one of ${spec.values.join(', ')}, got ${describe(value)}`,
          guess ? `did you mean \`${guess}\`?` : undefined,
        );
      }
      return;
    }
  }
}

/** Canonical JSON (sorted keys), for hashing. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v ?? null);
  if (v instanceof Date) return JSON.stringify(v.toISOString());
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(v as object).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
}

/** `sha256:<hex>` of a string. */
export function sha256(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}
