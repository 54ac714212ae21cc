import { type CloudEvent, HTTP } from 'cloudevents';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type CloudEventJson, validateBatch, validateEvent } from './cloudevent.js';
import { InvalidEventError, InvalidIntentError, PayloadTooLargeError } from './errors.js';
import { decodeHttp } from './http-binding.js';
import { parseIntent, parseRfc3339, validateIntent } from './intent.js';

const base: CloudEventJson = {
  specversion: '1.0',
  id: 'evt-1',
  source: '/producers/sensor-7',
  type: 'com.example.reading',
  time: '2026-01-31T12:00:00Z',
  datacontenttype: 'application/json',
  data: { celsius: 21.5 },
};

/** [description, change to the base event (undefined deletes), expected attribute, expected rule] */
const invalid: [string, Record<string, unknown>, string, string][] = [
  ['specversion missing', { specversion: undefined }, 'specversion', 'required'],
  ['specversion null', { specversion: null }, 'specversion', 'required'],
  ['specversion 0.1', { specversion: '0.1' }, 'specversion', 'specversion'],
  ['specversion 0.3', { specversion: '0.3' }, 'specversion', 'specversion'],
  ['specversion number 1', { specversion: 1 }, 'specversion', 'specversion'],
  ['specversion "1.0 "', { specversion: '1.0 ' }, 'specversion', 'specversion'],
  ['id missing', { id: undefined }, 'id', 'required'],
  ['id empty', { id: '' }, 'id', 'non-empty'],
  ['id a number', { id: 42 }, 'id', 'string'],
  ['id with a newline', { id: 'a\nb' }, 'id', 'string-chars'],
  ['id with a lone surrogate', { id: 'a\uD800b' }, 'id', 'string-chars'],
  ['id with a noncharacter', { id: 'a\uFFFEb' }, 'id', 'string-chars'],
  ['id with a C1 control', { id: 'a\u0085b' }, 'id', 'string-chars'],
  ['source missing', { source: undefined }, 'source', 'required'],
  ['source empty', { source: '' }, 'source', 'non-empty'],
  ['source with a space', { source: '/a b' }, 'source', 'uri-reference'],
  ['source with a bad percent-escape', { source: '/a%zz' }, 'source', 'uri-reference'],
  ['source with a truncated percent-escape', { source: '/a%2' }, 'source', 'uri-reference'],
  ['source with a non-ASCII character', { source: '/caf\u00e9' }, 'source', 'uri-reference'],
  ['source with a backslash', { source: 'a\\b' }, 'source', 'uri-reference'],
  ['source with two fragments', { source: '/a#b#c' }, 'source', 'uri-reference'],
  ['source with a bad scheme', { source: '1http://x' }, 'source', 'uri-reference'],
  ['source with a colon in the first relative segment', { source: '1a:b/c' }, 'source', 'uri-reference'],
  ['source with a bad port', { source: 'http://host:80a/' }, 'source', 'uri-reference'],
  ['source with a bracket outside the host', { source: '/a[1]' }, 'source', 'uri-reference'],
  ['source a number', { source: 7 }, 'source', 'string'],
  ['type missing', { type: undefined }, 'type', 'required'],
  ['type empty', { type: '' }, 'type', 'non-empty'],
  ['type an object', { type: { a: 1 } }, 'type', 'string'],
  ['subject empty', { subject: '' }, 'subject', 'non-empty'],
  ['subject a boolean', { subject: true }, 'subject', 'string'],
  ['time not RFC 3339', { time: '31/01/2026' }, 'time', 'rfc3339'],
  ['time without offset', { time: '2026-01-31T12:00:00' }, 'time', 'rfc3339'],
  ['time date only', { time: '2026-01-31' }, 'time', 'rfc3339'],
  ['time February 30th', { time: '2026-02-30T12:00:00Z' }, 'time', 'rfc3339'],
  ['time hour 24', { time: '2026-01-31T24:00:00Z' }, 'time', 'rfc3339'],
  ['time empty', { time: '' }, 'time', 'non-empty'],
  ['time a number', { time: 1738324800000 }, 'time', 'string'],
  ['dataschema relative', { dataschema: '/schemas/reading.json' }, 'dataschema', 'absolute-uri'],
  ['dataschema with a space', { dataschema: 'https://x/a b' }, 'dataschema', 'absolute-uri'],
  ['dataschema empty', { dataschema: '' }, 'dataschema', 'non-empty'],
  ['datacontenttype without subtype', { datacontenttype: 'json' }, 'datacontenttype', 'media-type'],
  ['datacontenttype with a bad parameter', { datacontenttype: 'text/plain; charset' }, 'datacontenttype', 'media-type'],
  ['datacontenttype with spaces', { datacontenttype: 'text / plain' }, 'datacontenttype', 'media-type'],
  ['datacontenttype a number', { datacontenttype: 5 }, 'datacontenttype', 'string'],
  ['extension name uppercase', { Region: 'eu' }, 'Region', 'extension-name'],
  ['extension name with a dash', { 'my-ext': 'x' }, 'my-ext', 'extension-name'],
  ['extension name with an underscore', { my_ext: 'x' }, 'my_ext', 'extension-name'],
  ['extension name of 21 characters', { abcdefghijklmnopqrstu: 'x' }, 'abcdefghijklmnopqrstu', 'extension-name'],
  ['extension value a float', { ratio: 0.5 }, 'ratio', 'integer'],
  ['extension value over 2^31-1', { big: 2147483648 }, 'big', 'integer-range'],
  ['extension value under -2^31', { small: -2147483649 }, 'small', 'integer-range'],
  ['extension value NaN', { nan: Number.NaN }, 'nan', 'integer'],
  ['extension value an object', { ext: { a: 1 } }, 'ext', 'extension-type'],
  ['extension value an array', { ext: ['a'] }, 'ext', 'extension-type'],
  ['extension value with a control character', { ext: 'a\u0007' }, 'ext', 'string-chars'],
  ['data and data_base64 together', { data_base64: 'AAEC' }, 'data', 'data-exclusive'],
  [
    'data_base64 not base64',
    { data: undefined, datacontenttype: 'application/octet-stream', data_base64: 'not base64!' },
    'data_base64',
    'base64',
  ],
  [
    'data_base64 without padding',
    { data: undefined, datacontenttype: 'application/octet-stream', data_base64: 'AAE' },
    'data_base64',
    'base64',
  ],
  ['data_base64 a number', { data: undefined, data_base64: 5 }, 'data_base64', 'string'],
  ['non-JSON data that is not a string', { datacontenttype: 'text/plain', data: { a: 1 } }, 'data', 'data-string'],
];

function mutate(change: Record<string, unknown>): Record<string, unknown> {
  const ev: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(change)) {
    if (v === undefined) delete ev[k];
    else ev[k] = v;
  }
  return ev;
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('validateEvent rejects invalid events attribute by attribute', () => {
  it('accepts the base event', () => {
    expect(validateEvent(base)).toEqual(base);
  });

  it.each(invalid)('%s', (_name, change, attribute, rule) => {
    const err = caught(() => validateEvent(mutate(change)));
    expect(err).toBeInstanceOf(InvalidEventError);
    expect(err).toMatchObject({ code: 'INVALID_EVENT', attribute, rule, details: { attribute, rule } });
    expect((err as Error).message).toContain(attribute);
  });

  it('rejects what is not an object', () => {
    for (const v of [null, 'x', 5, []]) expect(caught(() => validateEvent(v))).toMatchObject({ rule: 'object' });
  });
});

describe('validateEvent accepts what the spec allows', () => {
  it.each([
    ['absolute URI source', { source: 'https://example.com/sensors/7?x=1#frag' }],
    ['URN source', { source: 'urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66' }],
    ['percent-encoded source', { source: '/caf%C3%A9' }],
    ['IPv6 authority', { source: 'http://[2001:db8::1]:8080/x' }],
    ['network-path reference', { source: '//example.com/x' }],
    ['mailto URI', { source: 'mailto:ops@example.com' }],
    ['fractional seconds and offset', { time: '2026-01-31T12:00:00.123456+05:30' }],
    ['leap day', { time: '2024-02-29T00:00:00Z' }],
    ['media type with parameters', { datacontenttype: 'application/json; charset=utf-8' }],
    ['media type with a quoted parameter', { datacontenttype: 'text/plain; charset="utf-8"', data: 'hi' }],
    ['dataschema absolute', { dataschema: 'https://example.com/schemas/reading.json' }],
    ['integer extremes', { lo: -2147483648, hi: 2147483647 }],
    ['boolean extension', { flag: false }],
    ['extension of 20 characters', { abcdefghijklmnopqrst: 'x' }],
    ['explicit null data', { data: null }],
    ['unicode subject', { subject: 'Euro \u20ac \u{1F600}' }],
    ['binary data', { data: undefined, datacontenttype: 'image/png', data_base64: 'iVBORw0KGgo=' }],
    ['empty data_base64', { data: undefined, data_base64: '' }],
  ])('%s', (_name, change) => {
    const ev = mutate(change);
    expect(validateEvent(ev)).toEqual(ev);
  });

  it('treats JSON null attributes as unset and drops them (JSON format 2.2)', () => {
    const out = validateEvent({ ...base, subject: null, ext: null });
    expect(out).toEqual(base);
    expect('subject' in out).toBe(false);
  });
});

describe('intent attributes', () => {
  it.each([
    ['residency', 'mars'],
    ['residency', 'UK'],
    ['latencybudgetms', 0],
    ['latencybudgetms', 'fast'],
    ['carbonmax', -1],
    ['costmax', '1,50'],
    ['workload', 'Not A Name'],
    ['tenant', 'a b'],
    ['deadline', 'tomorrow'],
    ['pii', 'yes'],
  ])('an invalid %s (%j) is an InvalidIntentError naming it', (attribute, value) => {
    const err = caught(() => validateEvent({ ...base, [attribute]: value }));
    expect(err).toBeInstanceOf(InvalidIntentError);
    expect(err).toMatchObject({ code: 'INVALID_INTENT', attribute });
  });

  it('accepts valid intent and can skip intent validation', () => {
    const ev = { ...base, residency: 'eu,CH', latencybudgetms: 50, carbonmax: 200, costmax: '0.25', pii: false };
    expect(validateEvent(ev)).toEqual(ev);
    const bad = { ...base, residency: 'mars' };
    expect(validateEvent(bad, { validateIntent: false })).toEqual(bad);
  });
});

describe('size limit', () => {
  it('rejects an event over maxEventBytes with PayloadTooLargeError', () => {
    const ev = { ...base, data: { blob: 'x'.repeat(2000) } };
    const err = caught(() => validateEvent(ev, { maxEventBytes: 1000 }));
    expect(err).toBeInstanceOf(PayloadTooLargeError);
    expect(err).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { limitBytes: 1000 } });
    expect(validateEvent(ev, { maxEventBytes: 4000 })).toEqual(ev);
  });

  it('rejects a bad maxEventBytes option', () => {
    expect(caught(() => validateEvent(base, { maxEventBytes: 0 }))).toMatchObject({ code: 'CONFIG_ERROR' });
  });
});

describe('batches', () => {
  it('names the index of the invalid event', () => {
    const err = caught(() => validateBatch([base, base, { ...base, time: 'noon' }]));
    expect(err).toBeInstanceOf(InvalidEventError);
    expect(err).toMatchObject({ attribute: 'time', rule: 'rfc3339', index: 2, details: { index: 2 } });
  });

  it('names the index of an invalid intent', () => {
    const err = caught(() => validateBatch([{ ...base, pii: 'maybe' }]));
    expect(err).toMatchObject({ code: 'INVALID_INTENT', attribute: 'pii', details: { index: 0 } });
  });

  it('rejects a batch that is not an array', () => {
    expect(caught(() => validateBatch(base))).toMatchObject({ rule: 'batch-array' });
  });
});

describe('where the cloudevents SDK v10 is lenient, we reject', () => {
  const headers = {
    'ce-specversion': '1.0',
    'ce-id': 'evt-1',
    'ce-source': '/producers/sensor-7',
    'ce-type': 'com.example.reading',
    'content-type': 'application/json',
  };
  const body = new TextEncoder().encode('{"celsius":21.5}');

  it('a missing id: the SDK invents one, we name id/required', () => {
    const json = JSON.stringify({ specversion: '1.0', source: '/x', type: 't' });
    const structured = { 'content-type': 'application/cloudevents+json' };
    const sdk = HTTP.toEvent({ headers: structured, body: json }) as CloudEvent<unknown>;
    expect(sdk.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(caught(() => decodeHttp(structured, new TextEncoder().encode(json)))).toMatchObject({
      attribute: 'id',
      rule: 'required',
    });
    const { 'ce-id': _id, ...noId } = headers;
    expect(caught(() => decodeHttp(noId, body))).toMatchObject({ attribute: 'id', rule: 'required' });
  });

  it('a bad time: the SDK replaces it with the current time, we name time/rfc3339', () => {
    const sdk = HTTP.toEvent({ headers: { ...headers, 'ce-time': 'yesterday' }, body: '{}' }) as CloudEvent<unknown>;
    expect(sdk.time).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    expect(caught(() => decodeHttp({ ...headers, 'ce-time': 'yesterday' }, body))).toMatchObject({
      attribute: 'time',
      rule: 'rfc3339',
    });
  });

  it('specversion 0.1: the SDK decodes it and validate() returns false without throwing, we name specversion', () => {
    const sdk = HTTP.toEvent({ headers: { ...headers, 'ce-specversion': '0.1' }, body: '{}' }) as CloudEvent<unknown>;
    expect(sdk.specversion).toBe('0.1');
    expect(sdk.validate()).toBe(false);
    expect(caught(() => decodeHttp({ ...headers, 'ce-specversion': '0.1' }, body))).toMatchObject({
      attribute: 'specversion',
      rule: 'specversion',
    });
  });

  it('percent-encoded header values: the SDK keeps them encoded, we decode them (and reject bad ones)', () => {
    const sdk = HTTP.toEvent({ headers: { ...headers, 'ce-subject': 'a%20b' }, body: '{}' }) as CloudEvent<unknown>;
    expect(sdk.subject).toBe('a%20b');
    expect(decodeHttp({ ...headers, 'ce-subject': 'a%20b' }, body).events[0]?.subject).toBe('a b');
    expect(caught(() => decodeHttp({ ...headers, 'ce-subject': 'a%2' }, body))).toMatchObject({
      attribute: 'subject',
      rule: 'percent-encoding',
    });
    expect(caught(() => decodeHttp({ ...headers, 'ce-subject': '%C0%A0' }, body))).toMatchObject({
      attribute: 'subject',
      rule: 'utf-8',
    });
  });

  it('a source that is not a URI-reference: HTTP.toEvent accepts it, we name source/uri-reference', () => {
    const sdk = HTTP.toEvent({ headers: { ...headers, 'ce-source': 'not a uri' }, body: '{}' }) as CloudEvent<unknown>;
    expect(sdk.source).toBe('not a uri');
    expect(caught(() => decodeHttp({ ...headers, 'ce-source': 'not%20a%20uri' }, body))).toMatchObject({
      attribute: 'source',
      rule: 'uri-reference',
    });
  });
});

describe('parseRfc3339 (hand-written hot path)', () => {
  it('agrees with Date for any instant, in UTC and with offsets', () => {
    fc.assert(
      fc.property(
        fc.date({ min: new Date('0001-01-02T00:00:00Z'), max: new Date('9998-12-31T23:59:59Z'), noInvalidDate: true }),
        fc.integer({ min: -23 * 60 - 59, max: 23 * 60 + 59 }),
        (d, offsetMin) => {
          expect(parseRfc3339(d.toISOString())).toBe(d.getTime());
          const local = new Date(d.getTime() + offsetMin * 60_000).toISOString().slice(0, 23);
          const abs = Math.abs(offsetMin);
          const off = `${offsetMin < 0 ? '-' : '+'}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
          expect(parseRfc3339(`${local}${off}`)).toBe(d.getTime());
        },
      ),
      { numRuns: 500 },
    );
  });

  it.each([
    '2026-02-29T00:00:00Z',
    '1900-02-29T00:00:00Z',
    '2026-04-31T00:00:00Z',
    '2026-01-31T23:59:60Z',
    '2026-01-31T24:00:00Z',
    '2026-01-31T12:60:00Z',
    '2026-01-31T12:00:00+24:00',
    '2026-01-31T12:00:00.Z',
    '2026-01-31T12:00:00',
    '2026-01-31 12:00:00Z',
    '+2026-01-31T12:00:00Z',
    '2026-1-31T12:00:00Z',
    '2026-01-31T12:00:00Zjunk',
  ])('rejects %s', (value) => {
    expect(parseRfc3339(value)).toBeUndefined();
  });

  it('accepts lowercase t and z, and truncates beyond milliseconds', () => {
    expect(parseRfc3339('2026-01-31t12:00:00.123456z')).toBe(Date.parse('2026-01-31T12:00:00.123Z'));
    expect(parseRfc3339('2000-02-29T00:00:00.5Z')).toBe(Date.parse('2000-02-29T00:00:00.500Z'));
  });

  it('accepts a leap second (RFC 3339 5.7) where one can occur, as the first second of the next day', () => {
    expect(parseRfc3339('2016-12-31T23:59:60Z')).toBe(Date.parse('2017-01-01T00:00:00Z'));
    expect(parseRfc3339('2015-06-30T23:59:60.5Z')).toBe(Date.parse('2015-07-01T00:00:00.500Z'));
    // The same instant with an offset (RFC 3339's own example).
    expect(parseRfc3339('1990-12-31T15:59:60-08:00')).toBe(Date.parse('1991-01-01T00:00:00Z'));
    expect(validateEvent({ ...base, time: '2016-12-31T23:59:60Z' }).time).toBe('2016-12-31T23:59:60Z');
    expect(parseRfc3339('2016-12-31T23:59:61Z')).toBeUndefined();
    expect(parseRfc3339('2016-12-31T22:59:60Z')).toBeUndefined();
  });
});

describe('validateIntent', () => {
  it('throws what parseIntent throws, and remembers valid residency values', () => {
    for (const bag of [{ residency: 'mars' }, { residency: 'eu,,DE' }, { pii: 'yes' }, { latencybudgetms: 0 }]) {
      const a = caught(() => parseIntent(bag)) as InvalidIntentError;
      const b = caught(() => validateIntent(bag)) as InvalidIntentError;
      expect([b.attribute, b.rule]).toEqual([a.attribute, a.rule]);
    }
    validateIntent({ residency: 'eu,CH' });
    validateIntent({ residency: 'eu,CH' });
    expect(caught(() => validateIntent({ residency: 'eu,CH', tenant: 'a b' }))).toMatchObject({ attribute: 'tenant' });
  });
});
