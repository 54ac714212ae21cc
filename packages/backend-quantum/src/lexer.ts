/**
 * OpenQASM 2.0 lexer. Token classes follow the grammar of the OpenQASM 2.0 paper (Cross et al.,
 * arXiv:1707.03429, appendix): `id := [a-z][A-Za-z0-9_]*`, `real := ([0-9]+\.[0-9]*|[0-9]*\.[0-9]+)([eE][-+]?[0-9]+)?`,
 * `nninteger := [1-9]+[0-9]*|0`, strings in double quotes, `//` comments to the end of the line.
 * `U`, `CX` and `OPENQASM` are keywords that start with a capital letter.
 */
import { QasmError, type SourcePosition } from './errors.js';

/** The kind of a token. */
export type TokenKind = 'id' | 'keyword' | 'real' | 'int' | 'string' | 'symbol' | 'eof';

/** One token with where it starts. */
export interface Token {
  kind: TokenKind;
  /** The token text (for strings: without the quotes). */
  text: string;
  /** The numeric value of `real` and `int` tokens. */
  value: number;
  pos: SourcePosition;
}

/** Reserved words of OpenQASM 2.0 (cannot name a register, gate, parameter or qubit). */
export const QASM_KEYWORDS: ReadonlySet<string> = new Set([
  'OPENQASM',
  'include',
  'qreg',
  'creg',
  'gate',
  'opaque',
  'measure',
  'reset',
  'barrier',
  'if',
  'U',
  'CX',
  'pi',
  'sin',
  'cos',
  'tan',
  'exp',
  'ln',
  'sqrt',
]);

const SYMBOLS2 = ['->', '=='];
const SYMBOLS1 = ';,()[]{}+-*/^';

function isDigit(c: string): boolean {
  return c >= '0' && c <= '9';
}
function isIdStart(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_';
}
function isIdPart(c: string): boolean {
  return isIdStart(c) || isDigit(c);
}

/**
 * Split `source` into tokens.
 * @throws QasmError `syntax` on a character no token can start with, an unterminated string or
 *   comment, or an identifier that starts with a capital letter (other than `U`, `CX`, `OPENQASM`).
 */
export function tokenize(source: string, file: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const n = source.length;
  const here = (at: number): SourcePosition => ({ file, line, col: at - lineStart + 1 });
  while (i < n) {
    const c = source[i] as string;
    if (c === '\n') {
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') {
      i++;
      continue;
    }
    if (c === '/' && source[i + 1] === '/') {
      while (i < n && source[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && source[i + 1] === '*') {
      const start = here(i);
      i += 2;
      while (i < n && !(source[i] === '*' && source[i + 1] === '/')) {
        if (source[i] === '\n') {
          line++;
          lineStart = i + 1;
        }
        i++;
      }
      if (i >= n) throw new QasmError('syntax', start, 'unterminated comment');
      i += 2;
      continue;
    }
    const pos = here(i);
    if (isDigit(c) || (c === '.' && isDigit(source[i + 1] ?? ''))) {
      const m = /^(?:[0-9]+\.[0-9]*|[0-9]*\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?/.exec(source.slice(i, i + 400));
      const text = (m as RegExpExecArray)[0];
      const isReal = /[.eE]/.test(text);
      if (!isReal && text.length > 1 && text[0] === '0') {
        throw new QasmError('syntax', pos, `integer "${text}" has a leading zero`);
      }
      if (isIdStart(source[i + text.length] ?? '')) {
        throw new QasmError('syntax', pos, `malformed number "${text}${source[i + text.length]}"`);
      }
      tokens.push({ kind: isReal ? 'real' : 'int', text, value: Number(text), pos });
      i += text.length;
      continue;
    }
    if (isIdStart(c)) {
      let j = i + 1;
      while (j < n && isIdPart(source[j] as string)) j++;
      const text = source.slice(i, j);
      if (QASM_KEYWORDS.has(text)) {
        tokens.push({ kind: 'keyword', text, value: 0, pos });
      } else if (!(c >= 'a' && c <= 'z')) {
        throw new QasmError(
          'syntax',
          pos,
          `identifier "${text}" must start with a lowercase letter (OpenQASM 2.0: [a-z][A-Za-z0-9_]*)`,
        );
      } else {
        tokens.push({ kind: 'id', text, value: 0, pos });
      }
      i = j;
      continue;
    }
    if (c === '"') {
      let j = i + 1;
      while (j < n && source[j] !== '"' && source[j] !== '\n') j++;
      if (source[j] !== '"') throw new QasmError('syntax', pos, 'unterminated string');
      tokens.push({ kind: 'string', text: source.slice(i + 1, j), value: 0, pos });
      i = j + 1;
      continue;
    }
    const two = source.slice(i, i + 2);
    if (SYMBOLS2.includes(two)) {
      tokens.push({ kind: 'symbol', text: two, value: 0, pos });
      i += 2;
      continue;
    }
    if (SYMBOLS1.includes(c)) {
      tokens.push({ kind: 'symbol', text: c, value: 0, pos });
      i++;
      continue;
    }
    throw new QasmError('syntax', pos, `unexpected character ${JSON.stringify(c)}`);
  }
  tokens.push({ kind: 'eof', text: '', value: 0, pos: here(i) });
  return tokens;
}
