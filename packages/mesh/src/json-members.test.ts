import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { countEventMembers, firstRepeatedMember, repeatedMembers } from './json-members.js';

const enc = new TextEncoder();
const bytes = (text: string) => enc.encode(text);

/** A JSON string literal spelling every character of `s` as a \u escape. */
const escapedName = (s: string) =>
  `"${Array.from({ length: s.length }, (_, i) => `\\u${s.charCodeAt(i).toString(16).padStart(4, '0')}`).join('')}"`;

const members = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 8 });

describe('repeated member names of the JSON event format', () => {
  it('counts the members of an object without repeats as its keys, whatever nests inside (property)', () => {
    fc.assert(
      fc.property(members, fc.constantFrom(undefined, 1, '\t'), (obj, space) => {
        const body = bytes(JSON.stringify(obj, null, space));
        const parsed: unknown = JSON.parse(JSON.stringify(obj));
        expect(countEventMembers(body, 1)).toBe(Object.keys(obj).length);
        expect(repeatedMembers(body, 1)).toEqual([]);
        expect(firstRepeatedMember(body, parsed, 1)).toBeUndefined();
        const batch = bytes(JSON.stringify([obj, [obj], 'x', obj], null, space));
        expect(firstRepeatedMember(batch, JSON.parse(JSON.stringify([obj, [obj], 'x', obj])), 2)).toBeUndefined();
      }),
    );
  });

  it('finds a repeated name, plain or escaped, next to any other members (property)', () => {
    fc.assert(
      fc.property(members, fc.string({ maxLength: 8, unit: 'grapheme' }), fc.boolean(), (obj, name, escaped) => {
        const rest = JSON.stringify(obj).slice(1, -1);
        const text = `{${JSON.stringify(name)}:1${rest ? `,${rest}` : ''},${escaped ? escapedName(name) : JSON.stringify(name)}:{${JSON.stringify(name)}:2}}`;
        const body = bytes(text);
        expect(firstRepeatedMember(body, JSON.parse(text), 1)).toEqual({ name, index: 0 });
        const batchText = `[${JSON.stringify(obj)},${text}]`;
        expect(firstRepeatedMember(bytes(batchText), JSON.parse(batchText), 2)).toEqual({ name, index: 1 });
      }),
    );
  });

  it('names the first repeat of each event of a batch, up to a limit', () => {
    const body = bytes('[{"a":1,"b":2,"a":3,"b":4},{"x":{"y":1,"y":2}},{"c":"}","c":"{"},[{"d":1,"d":2}]]');
    expect(repeatedMembers(body, 2)).toEqual([
      { name: 'a', index: 0 },
      { name: 'c', index: 2 },
    ]);
    expect(repeatedMembers(body, 2, 1)).toEqual([{ name: 'a', index: 0 }]);
  });

  it('counts a __proto__ member like any other', () => {
    const text = '{"__proto__":1,"a":2}';
    expect(firstRepeatedMember(bytes(text), JSON.parse(text), 1)).toBeUndefined();
    const twice = '{"__proto__":1,"__proto__":2}';
    expect(firstRepeatedMember(bytes(twice), JSON.parse(twice), 1)).toEqual({ name: '__proto__', index: 0 });
  });
});
