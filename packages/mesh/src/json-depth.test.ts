import { describe, expect, it } from 'vitest';
import { jsonDeeperThan } from './json-depth.js';

const bytes = (s: string) => new TextEncoder().encode(s);

describe('jsonDeeperThan', () => {
  it('counts arrays and objects, not brackets inside strings or escaped quotes', () => {
    expect(jsonDeeperThan(bytes('{"a":[1,{"b":[]}]}'), 4)).toBe(false);
    expect(jsonDeeperThan(bytes('{"a":[1,{"b":[]}]}'), 3)).toBe(true);
    expect(jsonDeeperThan(bytes('{"a":"[[[[[[[[","b":"\\"[[[[[["}'), 1)).toBe(false);
    expect(jsonDeeperThan(bytes('"just a string"'), 0)).toBe(false);
  });

  it('answers in one pass for hostile nesting that JSON.stringify cannot handle', () => {
    const levels = 1_000_000;
    expect(jsonDeeperThan(bytes(`${'['.repeat(levels)}${']'.repeat(levels)}`), 128)).toBe(true);
  });
});
