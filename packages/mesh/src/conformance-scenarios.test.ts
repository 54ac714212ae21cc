/**
 * The scenarios of the CloudEvents conformance project (github.com/cloudevents/conformance,
 * `features/http-protocol-binding.feature` and `features/kafka-protocol-binding.feature`), restated
 * here: the same messages, the same expected attributes and data.
 */
import { describe, expect, it } from 'vitest';
import { decodeHttp } from './http-binding.js';
import { decodeKafka } from './kafka-binding.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const expected = {
  id: '1234-1234-1234',
  specversion: '1.0',
  type: 'com.example.someevent',
  source: '/mycontext/subcontext',
  time: '2018-04-05T03:56:24Z',
};
const data = { message: 'Hello World!' };
const structuredBody = `{
    "specversion": "1.0",
    "type": "com.example.someevent",
    "time": "2018-04-05T03:56:24Z",
    "id": "1234-1234-1234",
    "source": "/mycontext/subcontext",
    "datacontenttype": "application/json",
    "data": {
        "message": "Hello World!"
    }
}`;

describe('CloudEvents conformance scenarios: HTTP protocol binding', () => {
  it.each(['application/json', 'application/json; charset=utf-8'])('binary content mode (%s)', (contentType) => {
    const { mode, events } = decodeHttp(
      {
        host: 'example.com',
        'ce-specversion': '1.0',
        'ce-type': 'com.example.someevent',
        'ce-time': '2018-04-05T03:56:24Z',
        'ce-id': '1234-1234-1234',
        'ce-source': '/mycontext/subcontext',
        'content-type': contentType,
      },
      enc('{\n    "message": "Hello World!"\n}'),
    );
    expect(mode).toBe('binary');
    expect(events).toEqual([{ ...expected, datacontenttype: contentType, data }]);
  });

  it.each(['application/cloudevents+json', 'application/cloudevents+json; charset=utf-8'])(
    'structured content mode (%s)',
    (contentType) => {
      const { mode, events } = decodeHttp({ host: 'example.com', 'content-type': contentType }, enc(structuredBody));
      expect(mode).toBe('structured');
      expect(events).toEqual([{ ...expected, datacontenttype: 'application/json', data }]);
    },
  );
});

describe('CloudEvents conformance scenarios: Kafka protocol binding', () => {
  it('binary content mode', () => {
    const event = decodeKafka({
      headers: {
        ce_specversion: '1.0',
        ce_id: '1234-1234-1234',
        ce_type: 'com.example.someevent',
        ce_source: '/mycontext/subcontext',
        ce_time: '2018-04-05T03:56:24Z',
        'content-type': 'application/json',
      },
      key: null,
      value: enc('{"message": "Hello World!"}'),
    });
    expect(event).toEqual({ ...expected, datacontenttype: 'application/json', data });
  });

  it.each(['application/cloudevents+json', 'application/cloudevents+json; charset=utf-8'])(
    'structured content mode (%s)',
    (contentType) => {
      const event = decodeKafka({ headers: { 'content-type': contentType }, key: null, value: enc(structuredBody) });
      expect(event).toEqual({ ...expected, datacontenttype: 'application/json', data });
    },
  );
});
