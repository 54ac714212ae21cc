import { Buffer } from 'node:buffer';
import { type CloudEvent, HTTP, Kafka } from 'cloudevents';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type CloudEventJson, eventData } from './cloudevent.js';
import { InvalidEventError, PayloadTooLargeError, UnsupportedFormatError } from './errors.js';
import { decodeHeaderValue, percentEncodeHeaderValue } from './header-value.js';
import { decodeHttp, encodeHttpBatch, encodeHttpBinary, encodeHttpStructured } from './http-binding.js';
import { decodeKafka, encodeKafkaBinary, encodeKafkaStructured } from './kafka-binding.js';
import { decodeNats, encodeNatsBinary, encodeNatsStructured } from './nats-binding.js';
import { fromSdkEvent, toSdkEvent } from './sdk-interop.js';

const enc = new TextEncoder();
const BAD = /[\p{Cc}\p{Cs}\p{Noncharacter_Code_Point}]/u;
const RESERVED = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'datacontenttype',
  'dataschema',
  'subject',
  'time',
  'data',
  'residency',
  'latencybudgetms',
  'carbonmax',
  'costmax',
  'workload',
  'tenant',
  'deadline',
  'pii',
  'partitionkey',
]);

/** Unicode text that is a valid CloudEvents String, including characters that need percent-encoding. */
const text = (minLength: number) =>
  fc
    .oneof(
      fc.string({ unit: 'grapheme', minLength, maxLength: 24 }),
      fc.constantFrom('Euro \u20ac \u{1F600}', '100% "quoted"', ' lead and trail ', 'a%20b', 'caf\u00e9'),
    )
    .filter((s) => s.length >= minLength && !BAD.test(s));

const isoTime = fc
  .date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true })
  .map((d) => d.toISOString());

const source = fc.oneof(
  fc.webUrl({ withQueryParameters: true, withFragments: true }),
  fc.webPath().map((p) => (p === '' ? '/' : p)),
  fc.constantFrom('urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66', '/caf%C3%A9', '//edge-1/sensors', 'sensors/7'),
);

const extensions = fc.dictionary(
  fc.stringMatching(/^[a-z0-9]{1,20}$/).filter((k) => !RESERVED.has(k)),
  text(0),
  { maxKeys: 4 },
);

const intent = fc.record(
  {
    residency: fc.constantFrom('eu', 'eea', 'DE,FR', 'eu,CH'),
    latencybudgetms: fc.integer({ min: 1, max: 2_147_483_647 }),
    carbonmax: fc.integer({ min: 0, max: 1000 }),
    costmax: fc.constantFrom('0', '0.25', '12.5'),
    workload: fc.constantFrom('checksum', 'resize.v2'),
    tenant: fc.constantFrom('acme', 'tenant_2'),
    deadline: isoTime,
    pii: fc.boolean(),
    partitionkey: text(1),
  },
  { requiredKeys: [] },
);

/** Data in canonical form: JSON content types carry `data`, everything else `data_base64`. */
const payload = fc.oneof(
  fc.constant({}),
  fc.record({
    datacontenttype: fc.constantFrom('application/json', 'application/vnd.example+json; charset=utf-8', 'text/json'),
    data: fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)) as unknown),
  }),
  fc.record(
    {
      datacontenttype: fc.constantFrom('application/octet-stream', 'image/png', 'text/plain; charset=utf-8'),
      data_base64: fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => Buffer.from(b).toString('base64')),
    },
    { requiredKeys: ['data_base64'] },
  ),
);

const event: fc.Arbitrary<CloudEventJson> = fc
  .record(
    {
      id: text(1),
      source,
      type: text(1),
      subject: text(1),
      time: isoTime,
      dataschema: fc.webUrl(),
    },
    { requiredKeys: ['id', 'source', 'type'] },
  )
  .chain((core) =>
    fc
      .tuple(extensions, intent, payload)
      .map(([ext, int, data]) => ({ ...ext, ...int, ...core, ...data, specversion: '1.0' as const })),
  );

const runs = { numRuns: 300 };

describe('exact round trips (property)', () => {
  it('HTTP binary', () => {
    fc.assert(
      fc.property(event, (ev) => {
        const msg = encodeHttpBinary(ev);
        for (const [k, v] of Object.entries(msg.headers)) if (k.startsWith('ce-')) expect(v).toMatch(/^[!-~]*$/);
        expect(decodeHttp(msg.headers, msg.body)).toEqual({ mode: 'binary', events: [ev] });
      }),
      runs,
    );
  });

  it('HTTP structured and batch', () => {
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 3 }), (evs) => {
        const s = encodeHttpStructured(evs[0] as CloudEventJson);
        expect(decodeHttp(s.headers, s.body)).toEqual({ mode: 'structured', events: [evs[0]] });
        const b = encodeHttpBatch(evs);
        expect(decodeHttp(b.headers, b.body)).toEqual({ mode: 'batch', events: evs });
      }),
      runs,
    );
  });

  it('NATS binary and structured', () => {
    fc.assert(
      fc.property(event, (ev) => {
        const bin = encodeNatsBinary(ev);
        for (const v of bin.headers.values()) expect(v).toMatch(/^[!-~]*$/);
        expect(decodeNats(bin.headers, bin.body)).toEqual(ev);
        const st = encodeNatsStructured(ev);
        expect(decodeNats(st.headers, st.body)).toEqual(ev);
      }),
      runs,
    );
  });

  it('Kafka binary (with and without the partition key as record key) and structured', () => {
    fc.assert(
      fc.property(event, (ev) => {
        const bin = encodeKafkaBinary(ev);
        expect(bin.key).toBeNull();
        expect(decodeKafka(bin)).toEqual(ev);
        const keyed = encodeKafkaBinary(ev, { partitionKeyToKey: true });
        expect(keyed.key).toBe(ev.partitionkey ?? null);
        // bytes on the wire, as Kafka clients deliver them
        const headers = Object.fromEntries(Object.entries(keyed.headers).map(([k, v]) => [k, Buffer.from(v)]));
        expect(decodeKafka({ headers, key: keyed.key, value: Buffer.from(keyed.value) })).toEqual(ev);
        const st = encodeKafkaStructured(ev);
        expect(decodeKafka(st)).toEqual(ev);
      }),
      runs,
    );
  });

  it('percent-encoding of header values round-trips any valid string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        const e = percentEncodeHeaderValue(s);
        expect(e).toMatch(/^[!#$&-~%]*$/);
        expect(decodeHeaderValue(e, 'ce-x')).toBe(s);
      }),
      runs,
    );
  });
});

describe('the cloudevents SDK accepts what we produce', () => {
  it('structured mode passes HTTP.toEvent and validate()', () => {
    fc.assert(
      fc.property(event, (ev) => {
        const msg = encodeHttpStructured(ev);
        const sdk = HTTP.toEvent({
          headers: msg.headers,
          body: Buffer.from(msg.body).toString(),
        }) as CloudEvent<unknown>;
        expect(sdk.validate()).toBe(true);
        expect(sdk.id).toBe(ev.id);
        expect(sdk.type).toBe(ev.type);
      }),
      { numRuns: 100 },
    );
  });

  it('binary mode passes HTTP.toEvent and validate()', () => {
    const ev: CloudEventJson = {
      specversion: '1.0',
      id: 'evt-1',
      source: '/producers/sensor-7',
      type: 'com.example.reading',
      time: '2026-01-31T12:00:00Z',
      residency: 'eu',
      latencybudgetms: 50,
      datacontenttype: 'application/json',
      data: { celsius: 21.5 },
    };
    const msg = encodeHttpBinary(ev);
    const sdk = HTTP.toEvent({ headers: msg.headers, body: Buffer.from(msg.body).toString() }) as CloudEvent<unknown>;
    expect(sdk.validate()).toBe(true);
    expect(sdk.data).toEqual({ celsius: 21.5 });
    expect(sdk.residency).toBe('eu');
  });

  it('Kafka binary and structured records pass Kafka.toEvent and validate()', () => {
    const ev: CloudEventJson = {
      specversion: '1.0',
      id: 'evt-3',
      source: '/producers/sensor-7',
      type: 'com.example.reading',
      time: '2026-01-31T12:00:00.000Z', // the SDK's Kafka structured decoder throws without one
      // (and it always sets partitionkey from the record key)
      datacontenttype: 'application/json',
      data: { celsius: 21.5 },
      partitionkey: 'sensor-7',
      residency: 'eu',
    };
    for (const rec of [
      encodeKafkaBinary(ev, { partitionKeyToKey: true }),
      encodeKafkaStructured(ev, { partitionKeyToKey: true }),
    ]) {
      const text = Buffer.from(rec.value).toString();
      const sdk = Kafka.toEvent({ headers: rec.headers, key: rec.key ?? undefined, value: text, body: text });
      expect((sdk as CloudEvent<unknown>).validate()).toBe(true);
      expect(fromSdkEvent(sdk as unknown as Record<string, unknown>)).toEqual(ev);
    }
  });

  it('toSdkEvent / fromSdkEvent round-trip, binary data included', () => {
    const ev: CloudEventJson = {
      specversion: '1.0',
      id: 'evt-2',
      source: 'urn:example:edge',
      type: 'com.example.blob',
      time: '2026-01-31T12:00:00.5+01:00',
      datacontenttype: 'application/octet-stream',
      data_base64: 'AAECAwQ=',
      pii: true,
    };
    const sdk = toSdkEvent(ev);
    expect(sdk.validate()).toBe(true);
    expect(fromSdkEvent(sdk as unknown as Record<string, unknown>)).toEqual(ev);
    // what the SDK's own structured decoder makes of binary data (a Uint32Array) comes back intact
    const msg = encodeHttpStructured(ev);
    const decoded = HTTP.toEvent({ headers: msg.headers, body: Buffer.from(msg.body).toString() });
    // (the SDK's structured decoder rewrites time into UTC; the instant is the same)
    expect(fromSdkEvent(decoded as unknown as Record<string, unknown>)).toEqual({
      ...ev,
      time: '2026-01-31T11:00:00.500Z',
    });
    const { data_base64: _b64, ...rest } = sdk as unknown as Record<string, unknown>;
    expect(fromSdkEvent({ ...rest, data: new Uint8Array([0, 1, 2, 3, 4]) })).toEqual(ev);
  });
});

const binaryHeaders = {
  'ce-specversion': '1.0',
  'ce-id': 'evt-1',
  'ce-source': '/producers/sensor-7',
  'ce-type': 'com.example.reading',
};

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('HTTP binding details', () => {
  it('reads the example of the JSON format spec (XML data stays bytes)', () => {
    const { mode, events } = decodeHttp(
      { ...binaryHeaders, 'content-type': 'application/xml' },
      enc.encode('<much wow="xml"/>'),
    );
    expect(mode).toBe('binary');
    expect(events[0]).toMatchObject({ datacontenttype: 'application/xml' });
    expect(Buffer.from(events[0]?.data_base64 as string, 'base64').toString()).toBe('<much wow="xml"/>');
  });

  it('unescapes RFC 7230 quoted strings and accepts lower-case hex', () => {
    const { events } = decodeHttp({ ...binaryHeaders, 'ce-subject': '"a \\"b\\" %e2%82%ac"' }, new Uint8Array());
    expect(events[0]?.subject).toBe('a "b" \u20ac');
  });

  it('rejects raw non-ASCII header values, malformed escapes and overlong UTF-8, naming the attribute', () => {
    const cases: [Record<string, string>, string, string][] = [
      [{ 'ce-subject': 'caf\u00e9' }, 'subject', 'header-chars'],
      [{ 'ce-subject': '%zz' }, 'subject', 'percent-encoding'],
      [{ 'ce-subject': 'a%' }, 'subject', 'percent-encoding'],
      [{ 'ce-subject': '%C0%A0' }, 'subject', 'utf-8'],
      [{ 'ce-subject': '%FF' }, 'subject', 'utf-8'],
      [{ 'ce-subject': '%00' }, 'subject', 'string-chars'],
      [{ 'ce-subject': 'a\tb' }, 'subject', 'string-chars'],
      [{ 'ce-subject': '%EF%BF%BE' }, 'subject', 'string-chars'],
      [{ 'ce-id': '%C2%85' }, 'id', 'string-chars'],
      [{ 'ce-subject': '"a"b"' }, 'subject', 'quoted-string'],
      [{ 'ce-my_ext': 'x' }, 'my_ext', 'extension-name'],
      [{ 'ce-data': 'x' }, 'data', 'reserved'],
      [{ 'ce-latencybudgetms': '1.5' }, 'latencybudgetms', 'integer'],
    ];
    for (const [extra, attribute, rule] of cases) {
      expect(caught(() => decodeHttp({ ...binaryHeaders, ...extra }, new Uint8Array()))).toMatchObject({
        attribute,
        rule,
      });
    }
  });

  it('rejects repeated ce- headers and a Content-Type that disagrees with ce-datacontenttype', () => {
    expect(caught(() => decodeHttp({ ...binaryHeaders, 'ce-subject': ['a', 'b'] }, new Uint8Array()))).toMatchObject({
      attribute: 'subject',
      rule: 'duplicate-header',
    });
    expect(
      caught(() =>
        decodeHttp(
          { ...binaryHeaders, 'content-type': 'text/plain', 'ce-datacontenttype': 'application/json' },
          enc.encode('x'),
        ),
      ),
    ).toMatchObject({ attribute: 'datacontenttype', rule: 'conflict' });
  });

  it('reads an extension named like an Object.prototype member', () => {
    expect(decodeHttp({ ...binaryHeaders, 'ce-constructor': 'x' }, new Uint8Array()).events[0]?.constructor).toBe('x');
  });

  it('accepts fetch Headers and mixed-case names', () => {
    const h = new Headers({ 'CE-SpecVersion': '1.0', 'Ce-Id': 'x', 'ce-source': '/s', 'ce-type': 't' });
    expect(decodeHttp(h, new Uint8Array()).events[0]).toEqual({ specversion: '1.0', id: 'x', source: '/s', type: 't' });
    const rec = { 'CE-SPECVERSION': '1.0', 'CE-ID': 'x', 'CE-SOURCE': '/s', 'CE-TYPE': 't' };
    expect(decodeHttp(rec, new Uint8Array()).events[0]?.id).toBe('x');
  });

  it('rejects a JSON body that is not JSON, and unsupported event formats', () => {
    const json = { ...binaryHeaders, 'content-type': 'application/json' };
    expect(caught(() => decodeHttp(json, enc.encode('{nope')))).toMatchObject({
      attribute: 'data',
      rule: 'json',
      message:
        'data: datacontenttype application/json declares JSON but the body is not JSON: line 1, column 2: unexpected "n", expected a double-quoted member name',
      details: { line: 1, column: 2 },
    });
    expect(caught(() => decodeHttp(json, new Uint8Array([0x22, 0xff, 0x22])))).toMatchObject({
      attribute: 'data',
      rule: 'utf-8',
    });
    const err = caught(() => decodeHttp({ 'content-type': 'application/cloudevents+xml' }, enc.encode('<e/>')));
    expect(err).toBeInstanceOf(UnsupportedFormatError);
    expect(err).toMatchObject({ code: 'UNSUPPORTED_FORMAT' });
    expect(
      caught(() => decodeHttp({ 'content-type': 'application/cloudevents+json' }, enc.encode('{"specversion":'))),
    ).toMatchObject({ attribute: 'event', rule: 'json-syntax' });
  });

  it('names the index of an invalid event in a batch body', () => {
    const body = enc.encode(
      JSON.stringify([
        { specversion: '1.0', id: '1', source: '/s', type: 't' },
        { specversion: '1.0', id: '2', source: 'a b', type: 't' },
      ]),
    );
    const err = caught(() => decodeHttp({ 'content-type': 'application/cloudevents-batch+json' }, body));
    expect(err).toBeInstanceOf(InvalidEventError);
    expect(err).toMatchObject({ attribute: 'source', rule: 'uri-reference', index: 1 });
  });

  it('enforces maxEventBytes on body and headers before parsing', () => {
    const body = enc.encode(JSON.stringify({ blob: 'x'.repeat(5000) }));
    const headers = { ...binaryHeaders, 'content-type': 'application/json' };
    expect(caught(() => decodeHttp(headers, body, { maxEventBytes: 4096 }))).toBeInstanceOf(PayloadTooLargeError);
    expect(decodeHttp(headers, body, { maxEventBytes: 8192 }).events).toHaveLength(1);
    const structured = encodeHttpStructured({ specversion: '1.0', id: 'a', source: '/s', type: 't' });
    expect(caught(() => decodeHttp(structured.headers, structured.body, { maxEventBytes: 10 }))).toMatchObject({
      code: 'PAYLOAD_TOO_LARGE',
    });
  });

  it('sets the implied application/json when re-encoding data without datacontenttype', () => {
    const ev: CloudEventJson = { specversion: '1.0', id: '1', source: '/s', type: 't', data: "I'm just a string" };
    const msg = encodeHttpBinary(ev);
    expect(msg.headers['content-type']).toBe('application/json');
    expect(Buffer.from(msg.body).toString()).toBe('"I\'m just a string"');
    expect(decodeHttp(msg.headers, msg.body).events[0]).toEqual({ ...ev, datacontenttype: 'application/json' });
  });

  it('refuses to encode an invalid event', () => {
    const bad = { specversion: '1.0', id: '', source: '/s', type: 't' } as CloudEventJson;
    expect(caught(() => encodeHttpBinary(bad))).toMatchObject({ attribute: 'id', rule: 'non-empty' });
    expect(caught(() => encodeHttpBatch([bad]))).toMatchObject({ attribute: 'id', index: 0 });
  });
});

describe('NATS binding details', () => {
  const h = (entries: Record<string, string>) => new Map(Object.entries(entries));

  it('follows the binding: datacontenttype travels as ce-datacontenttype', () => {
    const msg = encodeNatsBinary({
      specversion: '1.0',
      id: '1',
      source: '/s',
      type: 't',
      datacontenttype: 'application/json',
      data: [1],
    });
    expect(msg.headers.get('ce-datacontenttype')).toBe('application/json');
    expect(msg.headers.has('content-type')).toBe(false);
  });

  it('reads other SDKs: capitalised Content-Type with charset, Content-Type as datacontenttype', () => {
    const structured = encodeNatsStructured({ specversion: '1.0', id: '1', source: '/s', type: 't' });
    expect(
      decodeNats(h({ 'Content-Type': 'Application/CloudEvents+JSON; charset=utf-8' }), structured.body),
    ).toMatchObject({ id: '1' });
    const ev = decodeNats(
      h({
        'CE-SpecVersion': '1.0',
        'Ce-Id': '2',
        'ce-source': '/s',
        'ce-type': 't',
        'Content-Type': 'application/json',
      }),
      enc.encode('{"a":1}'),
    );
    expect(ev).toEqual({
      specversion: '1.0',
      id: '2',
      source: '/s',
      type: 't',
      datacontenttype: 'application/json',
      data: { a: 1 },
    });
  });

  it('reads the bare application/cloudevents content type as JSON structured mode', () => {
    const structured = encodeNatsStructured({ specversion: '1.0', id: '1', source: '/s', type: 't' });
    expect(decodeNats(h({ 'Content-Type': 'application/cloudevents' }), structured.body)).toMatchObject({ id: '1' });
  });

  it('reads a message without headers (servers before 2.2) as structured', () => {
    const structured = encodeNatsStructured({ specversion: '1.0', id: '1', source: '/s', type: 't' });
    expect(decodeNats(undefined, structured.body)).toEqual({ specversion: '1.0', id: '1', source: '/s', type: 't' });
  });

  it('has no batch mode', () => {
    expect(
      caught(() => decodeNats(h({ 'content-type': 'application/cloudevents-batch+json' }), enc.encode('[]'))),
    ).toBeInstanceOf(UnsupportedFormatError);
  });

  it('percent-decodes and rejects invalid UTF-8', () => {
    const base = { 'ce-specversion': '1.0', 'ce-id': 'a%20b', 'ce-source': '/s', 'ce-type': 't' };
    expect(decodeNats(h(base), new Uint8Array()).id).toBe('a b');
    expect(caught(() => decodeNats(h({ ...base, 'ce-type': '%C3%28' }), new Uint8Array()))).toMatchObject({
      attribute: 'type',
      rule: 'utf-8',
    });
  });
});

describe('Kafka binding details', () => {
  it('rejects header bytes that are not UTF-8, naming the attribute', () => {
    const headers = {
      ce_specversion: Buffer.from('1.0'),
      ce_id: Buffer.from([0xc3, 0x28]),
      ce_source: '/s',
      ce_type: 't',
    };
    expect(caught(() => decodeKafka({ headers, key: null, value: null }))).toMatchObject({
      attribute: 'id',
      rule: 'utf-8',
    });
  });

  it('reads a tombstone as an event without data, and the key as partitionkey when asked', () => {
    const headers = { ce_specversion: '1.0', ce_id: '1', ce_source: '/s', ce_type: 't' };
    expect(decodeKafka({ headers, key: 'k1', value: null })).toEqual({
      specversion: '1.0',
      id: '1',
      source: '/s',
      type: 't',
    });
    expect(decodeKafka({ headers, key: Buffer.from('k1'), value: null }, { keyToPartitionKey: true })).toMatchObject({
      partitionkey: 'k1',
    });
  });

  it('keeps header values unencoded (Kafka headers are UTF-8 bytes)', () => {
    const rec = encodeKafkaBinary({ specversion: '1.0', id: '1', source: '/s', type: 't', subject: 'Euro \u20ac' });
    expect(rec.headers.ce_subject).toBe('Euro \u20ac');
  });
});

describe('a member name repeated in a structured-mode event', () => {
  // JSON.parse keeps the last of repeated names: a first-wins reader would place this event in the US.
  const head = '{"specversion":"1.0","id":"dm","source":"/p","type":"t","workload":"echo"';
  const repeated = `${head},"residency":"US","residency":"EU"}`;
  const nats = (body: string, headers?: Record<string, string>) =>
    decodeNats(headers ? new Map(Object.entries(headers)) : undefined, enc.encode(body));
  const expectDuplicate = (fn: () => unknown, attribute: string, index?: number) => {
    const err = caught(fn);
    expect(err).toBeInstanceOf(InvalidEventError);
    expect(err).toMatchObject({ code: 'INVALID_EVENT', attribute, rule: 'duplicate-member', index });
    expect((err as Error).message).toContain(JSON.stringify(attribute));
  };

  it('is refused by the NATS decoder, with or without a content type, naming the attribute', () => {
    expectDuplicate(() => nats(repeated), 'residency');
    expectDuplicate(() => nats(repeated, { 'content-type': 'application/cloudevents+json' }), 'residency');
    expectDuplicate(() => nats(repeated, { 'Content-Type': 'application/cloudevents; charset=utf-8' }), 'residency');
    // Any intent or core attribute, first or last member.
    expectDuplicate(() => nats(`${head},"latencybudgetms":5,"latencybudgetms":500}`), 'latencybudgetms');
    expectDuplicate(() => nats(`{"id":"x",${head.slice(1)}}`), 'id');
    // Even when the first value alone would be invalid: the ambiguity is named, not the value.
    expectDuplicate(() => nats(`${head},"residency":"??","residency":"EU"}`), 'residency');
  });

  it('sees through escaped spellings of the name', () => {
    expectDuplicate(() => nats(`${head},"residency":"US","resid\\u0065ncy":"EU"}`), 'residency');
    expectDuplicate(() => nats(`${head},"\\u0072esidency":"US","residency":"EU"}`), 'residency');
    expectDuplicate(() => nats(`${head},"carbonmax":1,"carbon\\u006Dax":2}`), 'carbonmax');
  });

  it('accepts names repeated inside data, in string values, or in two events of a batch', () => {
    const inData = nats(`${head},"residency":"EU","data":{"a":1,"a":2,"residency":"US","n":[{"c":1,"c":2}]}}`);
    expect(inData).toMatchObject({ id: 'dm', residency: 'EU', data: { a: 2, residency: 'US' } });
    const inString = nats(`${head},"subject":"\\"residency\\":\\"US\\",{[","residency":"EU"}`);
    expect(inString).toMatchObject({ residency: 'EU', subject: '"residency":"US",{[' });
    const batch = decodeHttp(
      { 'content-type': 'application/cloudevents-batch+json' },
      enc.encode(`[${head},"residency":"EU"},${head.replace('"dm"', '"dm2"')},"residency":"EU"}]`),
    );
    expect(batch.events.map((e) => e.id)).toEqual(['dm', 'dm2']);
  });

  it('is refused by the HTTP structured decoder and by the Kafka structured decoder', () => {
    expectDuplicate(
      () => decodeHttp({ 'content-type': 'application/cloudevents+json' }, enc.encode(repeated)),
      'residency',
    );
    expectDuplicate(
      () => decodeKafka({ headers: { 'content-type': 'application/cloudevents+json' }, value: repeated }),
      'residency',
    );
    expectDuplicate(
      () =>
        decodeKafka({
          headers: { 'content-type': Buffer.from('application/cloudevents+json') },
          key: null,
          value: enc.encode(`${head},"tenant":"a","tenant":"b"}`),
        }),
      'tenant',
    );
  });

  it('names the batch index, the first event at fault winning', () => {
    const ok = JSON.stringify({ specversion: '1.0', id: 'ok', source: '/p', type: 't' });
    const batch = (body: string) => () =>
      decodeHttp({ 'content-type': 'application/cloudevents-batch+json' }, enc.encode(body));
    expectDuplicate(batch(`[${ok},${ok.replace('"ok"', '"ok2"')},${head},"tenant":"a","tenant":"b"}]`), 'tenant', 2);
    const err = caught(batch(`[${ok},${head},"tenant":"a","tenant":"b"}]`));
    expect((err as Error).message).toMatch(/^batch\[1\]: member "tenant" appears more than once/);
    // An earlier invalid event is named first; within one event the repeated name comes first.
    expect(caught(batch(`[${ok},[1,2],${head},"tenant":"a","tenant":"b"}]`))).toMatchObject({
      rule: 'object',
      index: 1,
    });
    expectDuplicate(batch(`[${ok},{"specversion":"0.1","id":"x","id":"y","source":"/p","type":"t"}]`), 'id', 1);
    // A later invalid event does not hide the repeated name.
    expectDuplicate(batch(`[${head},"pii":true,"pii":false},{"specversion":"0.1"}]`), 'pii', 0);
  });

  it('leaves binary mode alone: its JSON data is the payload', () => {
    const headers = { 'ce-specversion': '1.0', 'ce-id': '1', 'ce-source': '/s', 'ce-type': 't' };
    const body = enc.encode('{"residency":"US","residency":"EU"}');
    expect(decodeNats(new Map(Object.entries({ ...headers, 'ce-datacontenttype': 'application/json' })), body)).toEqual(
      expect.objectContaining({ data: { residency: 'EU' } }),
    );
    expect(decodeHttp({ ...headers, 'content-type': 'application/json' }, body).events[0]?.data).toEqual({
      residency: 'EU',
    });
  });
});

describe('eventData', () => {
  const base = { specversion: '1.0' as const, id: '1', source: '/s', type: 't' };
  it('gives the job input bytes for every data form', () => {
    expect(Buffer.from(eventData({ ...base, data: { a: 1 } }).bytes).toString()).toBe('{"a":1}');
    expect(eventData({ ...base, data: { a: 1 } }).contentType).toBe('application/json');
    expect([...eventData({ ...base, data_base64: 'AAEC' }).bytes]).toEqual([0, 1, 2]);
    expect(Buffer.from(eventData({ ...base, datacontenttype: 'text/plain', data: 'hi' }).bytes).toString()).toBe('hi');
    expect(eventData(base).bytes.byteLength).toBe(0);
  });
});
