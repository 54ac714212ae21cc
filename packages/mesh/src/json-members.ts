/**
 * Repeated member names in the JSON event format. `JSON.parse` keeps the last of two members with
 * the same name without a word, so `{"residency":"US","residency":"EU"}` is `EU` here while a
 * first-wins reader upstream saw `US`: two components would disagree on where the data may be
 * processed. Structured-mode decoders refuse such an event (rule `duplicate-member`).
 *
 * Only an event's own members count: names repeated inside `data` (or any nested value) are the
 * payload's business. The check costs one pass over the bytes that allocates nothing (member
 * colons at the event's depth counted and compared with the parsed object's keys); names are only
 * read when the counts differ.
 */
import { Buffer } from 'node:buffer';

/** A member name repeated within one event object, and the event's index in its batch (0 for one event). */
export interface RepeatedMember {
  /** The member name, unescaped (`"resid\u0065ncy"` is `residency`). */
  readonly name: string;
  /** The event's index in a batch body; 0 for a structured-mode body. */
  readonly index: number;
}

/**
 * Depth of the event objects in a body: 1 for a structured-mode body (the event is the top-level
 * object), 2 for a batch body (an array of events).
 */
export type EventDepth = 1 | 2;

/** Index of the byte after the string that starts with the quote at `start` (or `body.length`). */
function skipString(body: Uint8Array, start: number): number {
  const n = body.length;
  for (let i = start + 1; i < n; i++) {
    const c = body[i] as number;
    if (c === 0x22) return i + 1;
    if (c === 0x5c) i++;
  }
  return n;
}

/**
 * How many members the objects at `eventDepth` of the JSON text in `body` have, all together
 * (repeats included): the `:` outside strings at that depth. Does not validate the JSON.
 */
export function countEventMembers(body: Uint8Array, eventDepth: EventDepth): number {
  const n = body.length;
  let depth = 0;
  let count = 0;
  for (let i = 0; i < n; i++) {
    const b = body[i] as number;
    if (b === 0x22) i = skipString(body, i) - 1;
    else if (b === 0x3a) {
      if (depth === eventDepth) count++;
    } else if (b === 0x7b || b === 0x5b) depth++;
    else if (b === 0x7d || b === 0x5d) depth--;
  }
  return count;
}

/**
 * Every event of the JSON text in `body` that repeats a member name, in body order, each with its
 * first repeated name; at most `limit` of them. Call it on a body that parsed (it does not
 * validate JSON).
 * @param eventDepth 1: `body` is one event object; 2: `body` is a batch (an array of events)
 * @example repeatedMembers(utf8('{"a":1,"b":{"a":2},"a":3}'), 1) // [{ name: 'a', index: 0 }]
 */
export function repeatedMembers(
  body: Uint8Array,
  eventDepth: EventDepth,
  limit = Number.POSITIVE_INFINITY,
): RepeatedMember[] {
  const out: RepeatedMember[] = [];
  const n = body.length;
  let depth = 0;
  let index = 0;
  let names = new Set<string>();
  let inEvent = false;
  let found = false;
  let expectName = false;
  for (let i = 0; i < n && out.length < limit; i++) {
    const b = body[i] as number;
    if (b === 0x22) {
      const end = skipString(body, i);
      if (expectName && inEvent && depth === eventDepth && !found) {
        expectName = false;
        const name = memberName(body, i, end);
        if (names.has(name)) {
          out.push({ name, index });
          found = true;
        } else names.add(name);
      }
      i = end - 1;
    } else if (b === 0x7b || b === 0x5b) {
      depth++;
      if (depth === eventDepth) {
        inEvent = b === 0x7b;
        expectName = inEvent;
        found = false;
        names = new Set();
      }
    } else if (b === 0x7d || b === 0x5d) depth--;
    else if (b === 0x2c) {
      if (depth === eventDepth) expectName = inEvent;
      else if (depth === 1 && eventDepth === 2) index++;
    }
  }
  return out;
}

/** The unescaped name of the JSON string `body[start, end)` (quotes included). */
function memberName(body: Uint8Array, start: number, end: number): string {
  let escaped = false;
  for (let i = start + 1; i < end - 1; i++) {
    if (body[i] === 0x5c) {
      escaped = true;
      break;
    }
  }
  const raw = Buffer.from(body.buffer, body.byteOffset + start, end - start).toString('utf8');
  // Only a name with an escape is parsed (one short string), never the body again.
  return escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
}

/**
 * The first event of a parsed JSON event (`eventDepth` 1) or batch (`eventDepth` 2) body that
 * repeats a member name; `undefined` when none does. `parsed` is what `JSON.parse` made of
 * `body`: the member count of the body is compared with its objects' keys, and names are read only
 * when they differ.
 * @example firstRepeatedMember(body, JSON.parse(text), 1)
 */
export function firstRepeatedMember(
  body: Uint8Array,
  parsed: unknown,
  eventDepth: EventDepth,
): RepeatedMember | undefined {
  let keys = 0;
  if (eventDepth === 1) {
    if (!isObject(parsed)) return undefined;
    keys = Object.keys(parsed).length;
  } else {
    if (!Array.isArray(parsed)) return undefined;
    for (const item of parsed) if (isObject(item)) keys += Object.keys(item).length;
  }
  if (countEventMembers(body, eventDepth) === keys) return undefined;
  return repeatedMembers(body, eventDepth, 1)[0];
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
