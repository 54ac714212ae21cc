import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { describeJsonSyntaxError, locateJsonSyntaxError } from './json-syntax.js';

const parses = (text: string): boolean => {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
};

describe('locateJsonSyntaxError', () => {
  it.each([
    ['{"a":}', 1, 6, 'unexpected "}", expected a value'],
    ['{"specversion":"1.0","id":"b4",', 1, 32, 'unexpected end of the text, expected a double-quoted member name'],
    ['{\n  "a": 1,\n  "b": x\n}', 3, 8, 'unexpected "x", expected a value'],
    ['[1,2] x', 1, 7, 'unexpected "x" after the end of the JSON value'],
    ['[1,]', 1, 4, 'unexpected "]", expected a value'],
    ['{"a":1,}', 1, 8, 'unexpected "}", expected a double-quoted member name'],
    ["{'a':1}", 1, 2, `unexpected "'", expected a double-quoted member name`],
    ['{"a" 1}', 1, 6, 'unexpected "1", expected ":" after a member name'],
    ['[1 2]', 1, 4, 'unexpected "2", expected "," or "]"'],
    ['{"a":1', 1, 7, 'unexpected end of the text, expected "," or "}"'],
    ['"abc', 1, 1, 'a string is not closed (no ending ")'],
    ['"a\tb"', 1, 3, 'U+0009 inside a string (control characters must be escaped)'],
    ['"\\x"', 1, 2, 'invalid escape \\x in a string'],
    ['"\\u12G4"', 1, 2, 'invalid \\u escape (four hexadecimal digits expected)'],
    ['01', 1, 2, 'a number has a leading zero'],
    ['1.', 1, 3, 'unexpected end of the text after a decimal point, expected a digit'],
    ['1e+', 1, 4, 'unexpected end of the text in an exponent, expected a digit'],
    ['-', 1, 2, 'unexpected end of the text in a number, expected a digit'],
    ['tru', 1, 1, 'unexpected "t", expected a value'],
    ['', 1, 1, 'unexpected end of the text, expected a value'],
    ['\uFEFF{}', 1, 1, 'unexpected "\uFEFF", expected a value'],
  ])('%j → line %i, column %i: %s', (text, line, column, problem) => {
    expect(parses(text)).toBe(false);
    expect(locateJsonSyntaxError(text)).toMatchObject({ line, column, problem });
  });

  it('finds nothing in valid JSON, whitespace and escapes included', () => {
    for (const ok of [
      ' {"a": [1, -0.5e-3, true, false, null, "\\u00e9\\n\\"", {}], "b": {"c": []}} ',
      '0',
      '"x"',
      '[]',
    ]) {
      expect(locateJsonSyntaxError(ok)).toBeUndefined();
    }
  });

  it('locates the fault in hostile nesting without overflowing the stack', () => {
    const levels = 1_000_000;
    expect(locateJsonSyntaxError(`${'['.repeat(levels)}}`)).toMatchObject({
      line: 1,
      column: levels + 1,
      problem: 'unexpected "}", expected a value',
    });
    expect(locateJsonSyntaxError(`${'['.repeat(levels)}${']'.repeat(levels)}`)).toBeUndefined();
  });

  it('agrees with JSON.parse on what is JSON (property, random texts and broken JSON)', () => {
    const broken = fc
      .tuple(
        fc.json(),
        fc.nat(),
        fc.constantFrom('', ',', '}', ']', '"', ':', '\\', '\n', 'x', '0', '[', '{', '-', '.', 'e'),
      )
      .map(([text, cut, insert]) => {
        const k = cut % (text.length + 1);
        return text.slice(0, k) + insert + text.slice(k + (cut % 2));
      });
    fc.assert(
      fc.property(fc.oneof(fc.json(), broken, fc.string()), (text) => {
        expect(locateJsonSyntaxError(text) === undefined).toBe(parses(text));
      }),
      { numRuns: 5000 },
    );
  });
});

describe('describeJsonSyntaxError', () => {
  it('says the line and the column', () => {
    const text = '{\n"a": nope}';
    let cause: unknown;
    try {
      JSON.parse(text);
    } catch (e) {
      cause = e;
    }
    expect(describeJsonSyntaxError(text, cause)).toMatchObject({
      message: 'line 2, column 6: unexpected "n", expected a value',
      location: { line: 2, column: 6, offset: 7 },
    });
  });
});
