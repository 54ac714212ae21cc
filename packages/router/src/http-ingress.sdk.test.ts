/**
 * Interop with the real CloudEvents JS SDK (`cloudevents` v10): events encoded by the SDK's own
 * serializers and sent by its own emitter/transport reach the router exactly as they were sent.
 * Where the SDK departs from the HTTP binding 1.0.2 (it sends non-ASCII header values unencoded,
 * labels binary data `application/json` by default, has no batch emitter), the ingress answers a
 * clear 400 naming the attribute and rule, and the spec's way is shown to round-trip.
 */

import { CloudEvent, CONSTANTS, emitterFor, HTTP, httpTransport, type Message, Mode } from 'cloudevents';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type HttpIngress, startHttpIngress } from './http-ingress.js';
import type { RouterEvent } from './policy-port.js';
import type { Router } from './router.js';
import type { FakeMesh } from './test-support/fakes.js';
import { startRouterWithOneAgent } from './test-support/http-router.js';

/** Percent-encoding of a header value as the HTTP binding 1.0.2 §3.1.3.2 describes it (written here from the spec). */
function specPercentEncode(value: string, lowerHex = false): string {
  let out = '';
  for (const ch of value) {
    const cp = ch.codePointAt(0) as number;
    if (cp >= 0x21 && cp <= 0x7e && cp !== 0x22 && cp !== 0x25) {
      out += ch;
      continue;
    }
    for (const b of Buffer.from(ch, 'utf8')) {
      const hex = b.toString(16).padStart(2, '0');
      out += `%${lowerHex ? hex : hex.toUpperCase()}`;
    }
  }
  return out;
}

/** The SDK's binary-mode message with every `ce-` header value percent-encoded per the binding. */
function specBinary(event: CloudEvent<unknown>, lowerHex = false): Message {
  const msg = HTTP.binary(event);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(msg.headers)) {
    const v = String(value);
    headers[name] = name.startsWith('ce-') ? specPercentEncode(v, lowerHex) : v;
  }
  return { headers, body: msg.body };
}

describe('HTTP ingress interop with the cloudevents SDK', () => {
  let _mesh: FakeMesh;
  let router: Router;
  let http: HttpIngress;
  /** Every event the ingress handed to the router, as it handed it. */
  let submitted: RouterEvent[];

  beforeEach(async () => {
    ({ _mesh, router } = await startRouterWithOneAgent('sdk-test', { options: { maxEventBytes: 64 * 1024 } }));
    submitted = [];
    const submit = router.submit.bind(router);
    router.submit = (event, options) => {
      submitted.push(structuredClone(event));
      return submit(event, options);
    };
    http = await startHttpIngress(router, { port: 0, host: '127.0.0.1' });
  });
  afterEach(async () => {
    await http?.close();
    await router?.stop({ drainTimeoutMs: 0 });
  });

  const deadline = new Date(Date.now() + 3_600_000).toISOString();
  /** Our intent attributes, as a producer sets them on an SDK event. */
  const intent = {
    residency: 'eu',
    latencybudgetms: 5000,
    carbonmax: 400,
    costmax: '0.25',
    workload: 'echo',
    tenant: 'acme',
    deadline,
    pii: false,
  };
  const sdkEvent = (id: string, extra: Record<string, unknown> = {}) =>
    new CloudEvent<unknown>({
      id,
      source: '/sdk/producer',
      type: 'com.example.job',
      subject: 'orders/42',
      dataschema: 'https://example.com/schemas/job.json',
      ...intent,
      ...extra,
    });
  const eventsUrl = (query = '') => `${http.url}/events${query}`;
  const json = (body: unknown) => JSON.parse(String(body)) as Record<string, unknown>;

  it('binary mode through emitterFor(httpTransport): every attribute and extension arrives as sent, intent typed', async () => {
    const ce = sdkEvent('sdk-bin-1', { data: { n: 21, text: 'héllo €' } });
    const emit = emitterFor(httpTransport(eventsUrl()), { mode: Mode.BINARY });
    const res = (await emit(ce)) as { body: string };
    expect(json(res.body)).toEqual({ id: 'sdk-bin-1' });
    expect(submitted).toEqual([
      {
        specversion: '1.0',
        id: 'sdk-bin-1',
        source: '/sdk/producer',
        type: 'com.example.job',
        subject: 'orders/42',
        dataschema: 'https://example.com/schemas/job.json',
        time: ce.time,
        // The SDK labels JSON data with its default Content-Type, which binary mode maps to datacontenttype.
        datacontenttype: CONSTANTS.DEFAULT_CONTENT_TYPE,
        ...intent,
        data: { n: 21, text: 'héllo €' },
      },
    ]);
  });

  it('structured mode through emitterFor(httpTransport): the event arrives exactly as the SDK serialized it', async () => {
    const ce = sdkEvent('sdk-str-1', {
      datacontenttype: 'application/json',
      subject: 'Zürich € 😀 "quoted" 100%',
      data: { nested: [1, { a: null }], s: 'ünïcödé' },
    });
    const emit = emitterFor(httpTransport(eventsUrl()), { mode: Mode.STRUCTURED });
    const res = (await emit(ce)) as { body: string };
    expect(json(res.body)).toEqual({ id: 'sdk-str-1' });
    expect(submitted).toEqual([JSON.parse(JSON.stringify(ce))]);
    expect(submitted[0]).toMatchObject({ ...intent, subject: 'Zürich € 😀 "quoted" 100%' });
  });

  it('binary data (Buffer, Uint8Array) arrives as data_base64 of the very bytes, in binary and structured mode', async () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const cases = [
      ['bin-buf', Mode.BINARY, Buffer.from(bytes)],
      ['bin-u8', Mode.BINARY, bytes],
      ['str-buf', Mode.STRUCTURED, Buffer.from(bytes)],
      ['str-u8', Mode.STRUCTURED, bytes],
    ] as const;
    for (const [id, mode, data] of cases) {
      const ce = sdkEvent(id, { datacontenttype: 'application/octet-stream', data });
      const res = (await emitterFor(httpTransport(eventsUrl()), { mode })(ce)) as { body: string };
      expect({ id, body: json(res.body) }).toEqual({ id, body: { id } });
    }
    expect(submitted.map((e) => e.id)).toEqual(cases.map(([id]) => id));
    for (const ev of submitted) {
      expect(ev.data).toBeUndefined();
      expect(ev.datacontenttype).toBe('application/octet-stream');
      expect(ev.data_base64).toBe(Buffer.from(bytes).toString('base64'));
      expect(ev).toMatchObject(intent);
    }
  });

  it('binary data without datacontenttype: the SDK labels it application/json, and the ingress says the data is not JSON', async () => {
    const ce = sdkEvent('sdk-mislabel', { data: Buffer.from([0xff, 0x00, 0x7b]) });
    const msg = HTTP.binary(ce);
    expect(msg.headers['content-type']).toBe(CONSTANTS.DEFAULT_CONTENT_TYPE);
    const res = await fetch(eventsUrl(), {
      method: 'POST',
      headers: msg.headers as Record<string, string>,
      body: msg.body as Buffer,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'INVALID_EVENT', attribute: 'data' });
    // Structured mode carries it as data_base64, which needs no content type.
    await emitterFor(httpTransport(eventsUrl()), { mode: Mode.STRUCTURED })(ce);
    expect(submitted).toHaveLength(1);
    expect(submitted[0]?.data_base64).toBe(Buffer.from([0xff, 0x00, 0x7b]).toString('base64'));
  });

  it('non-ASCII attribute values percent-encoded per the HTTP binding 1.0.2 round-trip exactly (upper- or lower-case hex)', async () => {
    const subject = 'Euro € 😀 Zürich "q" 100% a%20b';
    const tenant = 'acme';
    for (const lowerHex of [false, true]) {
      const id = `pct-${lowerHex}`;
      const ce = sdkEvent(id, { subject, note: 'ünïcödé value', tenant, data: { ok: true } });
      const msg = specBinary(ce, lowerHex);
      expect(msg.headers['ce-subject']).toBe(
        lowerHex
          ? 'Euro%20%e2%82%ac%20%f0%9f%98%80%20Z%c3%bcrich%20%22q%22%20100%25%20a%2520b'
          : 'Euro%20%E2%82%AC%20%F0%9F%98%80%20Z%C3%BCrich%20%22q%22%20100%25%20a%2520b',
      );
      const res = (await httpTransport(eventsUrl())(msg, {})) as { body: string };
      expect(json(res.body)).toEqual({ id });
    }
    expect(submitted).toHaveLength(2);
    for (const ev of submitted) expect(ev).toMatchObject({ subject, note: 'ünïcödé value', tenant });
  });

  it('the SDK sends Latin-1 header values unencoded: refused 400 naming the attribute and the header-chars rule', async () => {
    const ce = sdkEvent('sdk-latin1', { subject: 'Zürich', data: {} });
    const res = (await emitterFor(httpTransport(eventsUrl()), { mode: Mode.BINARY })(ce)) as {
      body: string;
      headers: Record<string, string>;
    };
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(json(res.body)).toMatchObject({
      status: 400,
      code: 'INVALID_EVENT',
      attribute: 'subject',
      rule: 'header-chars',
    });
    expect(submitted).toHaveLength(0);
  });

  it('reads every datacontenttype variant the SDK sends in binary mode', async () => {
    const cases: [string, unknown, Partial<RouterEvent>][] = [
      ['application/json; charset=utf-8', { a: 1 }, { data: { a: 1 } }],
      ['application/json;charset=UTF-8', [1, 'two'], { data: [1, 'two'] }],
      ['application/vnd.acme.order+json', { order: 7 }, { data: { order: 7 } }],
      ['application/ld+json; charset="utf-8"', { '@id': 'x' }, { data: { '@id': 'x' } }],
      ['text/json', { t: true }, { data: { t: true } }],
      // The SDK sends string data as is: under a JSON type it must already be JSON text.
      ['application/json', '{"pre":"serialized"}', { data: { pre: 'serialized' } }],
      ['text/plain', 'héllo wörld', { data_base64: Buffer.from('héllo wörld', 'utf8').toString('base64') }],
      ['text/plain; charset=utf-8', 'x', { data_base64: Buffer.from('x').toString('base64') }],
      ['application/xml', '<a>ü</a>', { data_base64: Buffer.from('<a>ü</a>', 'utf8').toString('base64') }],
    ];
    for (const [i, [datacontenttype, data, expected]] of cases.entries()) {
      const ce = sdkEvent(`dct-${i}`, { datacontenttype, data });
      const res = (await emitterFor(httpTransport(eventsUrl()), { mode: Mode.BINARY })(ce)) as { body: string };
      expect({ datacontenttype, body: json(res.body) }).toEqual({ datacontenttype, body: { id: `dct-${i}` } });
      expect(submitted.at(-1)).toEqual({ ...JSON.parse(JSON.stringify({ ...ce, data: undefined })), ...expected });
    }
    // A string that is not JSON text under a JSON type: the SDK sends it raw, the ingress says why it refuses it.
    const notJson = sdkEvent('dct-not-json', { datacontenttype: 'application/json', data: 'not json' });
    const refused = (await emitterFor(httpTransport(eventsUrl()), { mode: Mode.BINARY })(notJson)) as { body: string };
    expect(json(refused.body)).toMatchObject({ status: 400, attribute: 'data', rule: 'json' });
    // The same variants in structured mode keep data as the JSON value the SDK wrote.
    for (const [i, [datacontenttype, data]] of cases.entries()) {
      const ce = sdkEvent(`dct-s-${i}`, { datacontenttype, data });
      await emitterFor(httpTransport(eventsUrl()), { mode: Mode.STRUCTURED })(ce);
      expect(submitted.at(-1)).toEqual(JSON.parse(JSON.stringify(ce)));
    }
  });

  it('accepts a batch built the SDK way (JSON array of SDK events, application/cloudevents-batch+json)', async () => {
    const events = [
      sdkEvent('sdk-batch-1', { data: { n: 1 } }),
      sdkEvent('sdk-batch-2', { datacontenttype: 'application/octet-stream', data: Buffer.from([1, 2, 3]) }),
      sdkEvent('sdk-batch-3', { datacontenttype: 'text/plain', data: 'plain ü' }),
    ];
    // The SDK has no batch serializer or emitter (emitterFor refuses Mode.BATCH); it reads batches
    // as a JSON array under CONSTANTS.MIME_CE_BATCH, so that is how one is built.
    expect(() => emitterFor(httpTransport(eventsUrl()), { mode: Mode.BATCH })(events[0] as CloudEvent)).toThrow(
      /Unexpected transport mode/,
    );
    const message: Message = {
      headers: { 'content-type': `${CONSTANTS.MIME_CE_BATCH}; charset=utf-8` },
      body: JSON.stringify(events),
    };
    // The SDK reads its own batch back.
    expect((HTTP.toEvent(message) as CloudEvent[]).map((e) => e.id)).toEqual([
      'sdk-batch-1',
      'sdk-batch-2',
      'sdk-batch-3',
    ]);
    const res = (await httpTransport(eventsUrl())(message, {})) as { body: string };
    expect(json(res.body)).toEqual({ ids: ['sdk-batch-1', 'sdk-batch-2', 'sdk-batch-3'] });
    expect(submitted).toEqual(events.map((e) => JSON.parse(JSON.stringify(e))));
    expect(submitted[1]?.data_base64).toBe('AQID');
  });

  it('?wait=1 through the SDK transport answers the outcome, agent, decision and result', async () => {
    const ce = new CloudEvent({
      id: 'sdk-wait',
      source: '/sdk/producer',
      type: 'com.example.job',
      workload: 'echo',
      residency: 'eu',
      latencybudgetms: 5000,
      data: { n: 21 },
    });
    for (const mode of [Mode.BINARY, Mode.STRUCTURED]) {
      const res = (await emitterFor(httpTransport(eventsUrl('?wait=1')), { mode })(
        ce.cloneWith({ id: `sdk-wait-${mode}` }),
      )) as { body: string };
      const body = json(res.body);
      expect(body).toMatchObject({
        id: `sdk-wait-${mode}`,
        outcome: 'succeeded',
        agent: { id: 'de-1', region: 'eu-central', jurisdiction: 'DE' },
        result: { ok: true, output: { doubled: 42 } },
      });
      expect(typeof body.decisionId).toBe('string');
    }
  });

  it('refuses what the SDK lets through but the spec does not, naming the attribute and the rule', async () => {
    // The SDK accepts specversion 0.3 events and extension values of any type in non-strict mode.
    const old = new CloudEvent({ specversion: '0.3', id: 'v03', source: '/s', type: 't', workload: 'echo', data: {} });
    for (const mode of [Mode.BINARY, Mode.STRUCTURED]) {
      const res = (await emitterFor(httpTransport(eventsUrl()), { mode })(old)) as { body: string };
      expect({ mode, body: json(res.body) }).toMatchObject({
        mode,
        body: { status: 400, attribute: 'specversion', rule: 'specversion' },
      });
    }
    const badIntent = sdkEvent('bad-intent', { residency: 'atlantis', data: {} });
    const res = (await emitterFor(httpTransport(eventsUrl()), { mode: Mode.BINARY })(badIntent)) as { body: string };
    expect(json(res.body)).toMatchObject({ status: 400, code: 'INVALID_INTENT', attribute: 'residency' });
    expect(submitted).toHaveLength(0);
  });
});
