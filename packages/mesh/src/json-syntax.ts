/**
 * Where a JSON text breaks RFC 8259, as a line and a column. `JSON.parse` says *that* a body is not
 * JSON, but its message differs between engine versions and sometimes only quotes the text; a
 * producer needs the place and the rule. This is called only after `JSON.parse` has thrown, so it
 * costs nothing on valid input. Nesting is walked with an explicit stack (no recursion), so a
 * hostile body of a million `[` is located, not a stack overflow.
 */

/** Where and why a JSON text is not valid JSON. */
export interface JsonSyntaxLocation {
  /** Offset of the offending character in the text (UTF-16 code units, 0-based). */
  offset: number;
  /** 1-based line (lines end at `\n`). */
  line: number;
  /** 1-based column within the line (UTF-16 code units). */
  column: number;
  /** What is wrong there, e.g. `unexpected "}", expected a value`. */
  problem: string;
}

const OBJECT = 1;
const ARRAY = 2;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** `"x"`, `U+0001` for controls, or `the end of the text`. */
function shown(text: string, at: number): string {
  if (at >= text.length) return 'end of the text';
  const cp = text.codePointAt(at) as number;
  if (cp < 0x20 || cp === 0x7f) return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  return JSON.stringify(String.fromCodePoint(cp));
}

/**
 * Locate the first RFC 8259 violation in `text`; `undefined` when `text` is one valid JSON value
 * (surrounded by optional whitespace).
 * @example locateJsonSyntaxError('{"a":}') // { offset: 5, line: 1, column: 6, problem: 'unexpected "}", expected a value' }
 */
export function locateJsonSyntaxError(text: string): JsonSyntaxLocation | undefined {
  const n = text.length;
  const stack: number[] = [];
  let i = 0;

  const at = (offset: number, problem: string): JsonSyntaxLocation => {
    let line = 1;
    let lineStart = 0;
    for (let k = 0; k < offset && k < n; k++) {
      if (text.charCodeAt(k) === 0x0a) {
        line++;
        lineStart = k + 1;
      }
    }
    return { offset, line, column: offset - lineStart + 1, problem };
  };
  const skipWs = (): void => {
    while (i < n && isWs(text.charCodeAt(i))) i++;
  };

  /** Read a string starting at the `"` at `i`; `undefined` when it is well formed. */
  const readString = (): JsonSyntaxLocation | undefined => {
    const start = i;
    i++;
    for (;;) {
      if (i >= n) return at(start, 'a string is not closed (no ending ")');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return undefined;
      }
      if (c < 0x20) return at(i, `${shown(text, i)} inside a string (control characters must be escaped)`);
      if (c === 0x5c) {
        const e = text.charCodeAt(i + 1);
        if (e === 0x75) {
          for (let k = 2; k < 6; k++) {
            if (!isHex(text.charCodeAt(i + k))) {
              return at(i, 'invalid \\u escape (four hexadecimal digits expected)');
            }
          }
          i += 6;
          continue;
        }
        // " \ / b f n r t
        if (
          e === 0x22 ||
          e === 0x5c ||
          e === 0x2f ||
          e === 0x62 ||
          e === 0x66 ||
          e === 0x6e ||
          e === 0x72 ||
          e === 0x74
        ) {
          i += 2;
          continue;
        }
        return at(i, `invalid escape \\${i + 1 < n ? text[i + 1] : ''} in a string`);
      }
      i++;
    }
  };

  const readNumber = (): JsonSyntaxLocation | undefined => {
    if (text.charCodeAt(i) === 0x2d) i++;
    if (text.charCodeAt(i) === 0x30) {
      i++;
      if (isDigit(text.charCodeAt(i))) return at(i, 'a number has a leading zero');
    } else if (isDigit(text.charCodeAt(i))) {
      while (isDigit(text.charCodeAt(i))) i++;
    } else {
      return at(i, `unexpected ${shown(text, i)} in a number, expected a digit`);
    }
    if (text.charCodeAt(i) === 0x2e) {
      i++;
      if (!isDigit(text.charCodeAt(i)))
        return at(i, `unexpected ${shown(text, i)} after a decimal point, expected a digit`);
      while (isDigit(text.charCodeAt(i))) i++;
    }
    const e = text.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      i++;
      const s = text.charCodeAt(i);
      if (s === 0x2b || s === 0x2d) i++;
      if (!isDigit(text.charCodeAt(i))) return at(i, `unexpected ${shown(text, i)} in an exponent, expected a digit`);
      while (isDigit(text.charCodeAt(i))) i++;
    }
    return undefined;
  };

  /** A member name, then `:`. */
  const readKey = (): JsonSyntaxLocation | undefined => {
    if (text.charCodeAt(i) !== 0x22) return at(i, `unexpected ${shown(text, i)}, expected a double-quoted member name`);
    const bad = readString();
    if (bad) return bad;
    skipWs();
    if (text.charCodeAt(i) !== 0x3a) return at(i, `unexpected ${shown(text, i)}, expected ":" after a member name`);
    i++;
    return undefined;
  };

  skipWs();
  for (;;) {
    // A value starts at i (after whitespace).
    if (i >= n) return at(i, 'unexpected end of the text, expected a value');
    const c = text.charCodeAt(i);
    let bad: JsonSyntaxLocation | undefined;
    let opened = false;
    if (c === 0x7b || c === 0x5b) {
      i++;
      skipWs();
      const close = c === 0x7b ? 0x7d : 0x5d;
      if (text.charCodeAt(i) === close) {
        i++;
      } else {
        stack.push(c === 0x7b ? OBJECT : ARRAY);
        if (c === 0x7b) {
          bad = readKey();
          if (bad) return bad;
          skipWs();
        }
        opened = true;
      }
    } else if (c === 0x22) {
      bad = readString();
    } else if (c === 0x2d || isDigit(c)) {
      bad = readNumber();
    } else if (text.startsWith('true', i)) {
      i += 4;
    } else if (text.startsWith('false', i)) {
      i += 5;
    } else if (text.startsWith('null', i)) {
      i += 4;
    } else {
      return at(i, `unexpected ${shown(text, i)}, expected a value`);
    }
    if (bad) return bad;
    if (opened) continue;
    // After a value: close containers, or a comma and the next value.
    for (;;) {
      skipWs();
      const top = stack[stack.length - 1];
      if (top === undefined) {
        return i < n ? at(i, `unexpected ${shown(text, i)} after the end of the JSON value`) : undefined;
      }
      const d = text.charCodeAt(i);
      if (d === 0x2c) {
        i++;
        skipWs();
        if (top === OBJECT) {
          bad = readKey();
          if (bad) return bad;
          skipWs();
        }
        break;
      }
      if ((top === OBJECT && d === 0x7d) || (top === ARRAY && d === 0x5d)) {
        i++;
        stack.pop();
        continue;
      }
      const closer = top === OBJECT ? '"}"' : '"]"';
      if (i >= n) return at(i, `unexpected end of the text, expected "," or ${closer}`);
      return at(i, `unexpected ${shown(text, i)}, expected "," or ${closer}`);
    }
  }
}

/**
 * `line L, column C: problem` for a text `JSON.parse` refused, or the engine's own message when the
 * locator finds nothing (it agrees with `JSON.parse` on RFC 8259 JSON; this is only a fallback).
 */
export function describeJsonSyntaxError(
  text: string,
  cause: unknown,
): { message: string; location?: JsonSyntaxLocation } {
  const location = locateJsonSyntaxError(text);
  if (location) return { message: `line ${location.line}, column ${location.column}: ${location.problem}`, location };
  return { message: cause instanceof Error ? cause.message : String(cause) };
}
