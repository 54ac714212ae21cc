/**
 * The CloudEvents NATS protocol binding as on the spec's main branch (1.0.3-wip): binary mode
 * with every attribute, `datacontenttype` included, in a `ce-<name>` header (percent-encoded
 * like HTTP), and structured mode (`Content-Type: application/cloudevents+json`, or a message
 * without headers, as from servers older than NATS 2.2).
 */
import {
  addAttribute,
  attributeOfHeader,
  binaryParts,
  CE_JSON,
  decodeAttributeHeader,
  decodeStructuredBody,
  encodeStructuredBody,
  finishBinary,
  newCollected,
  structuredKind,
} from './binary-mode.js';
import { type CloudEventJson, type EventValidationOptions, resolveEventValidationOptions } from './cloudevent.js';
import { InvalidEventError, UnsupportedFormatError } from './errors.js';
import { percentEncodeHeaderValue } from './header-value.js';

/** A NATS message as the bindings see it: headers (lowercase names) and payload. */
export interface NatsMessageParts {
  headers: Map<string, string>;
  body: Uint8Array;
}

/** Options of {@link decodeNats}. */
export interface NatsDecodeOptions extends EventValidationOptions {}

/**
 * Decode a NATS message into a CloudEvent, strictly validated.
 *
 * Structured mode when `Content-Type` (any case) is `application/cloudevents+json`, or when the
 * message has no `ce-specversion` header; binary mode otherwise. The reader is tolerant of other
 * SDKs: header names in any case, `datacontenttype` from `ce-datacontenttype` (the binding) or,
 * when that is absent, from `Content-Type`; media type parameters such as `charset` allowed.
 * Header values are unescaped and percent-decoded once, as in the HTTP binding.
 *
 * @param headers the message headers as a map (names in any case), `undefined` for none
 * @throws InvalidEventError naming the attribute (or header) and rule
 * @throws UnsupportedFormatError for `application/cloudevents-batch+json` (the NATS binding has no
 * batch mode) or another `application/cloudevents+<format>`
 * @example
 * const event = decodeNats(new Map(msg.headers ?? []), msg.data);
 */
export function decodeNats(
  headers: ReadonlyMap<string, string> | undefined,
  body: Uint8Array,
  options?: NatsDecodeOptions,
): CloudEventJson {
  const opts = resolveEventValidationOptions(options);
  if (headers === undefined || headers.size === 0) return decodeStructuredBody(body, opts);
  const c = newCollected();
  let ceContentType: string | undefined;
  for (const [rawName, value] of headers) {
    const name = rawName.toLowerCase();
    c.headerBytes += name.length + value.length;
    if (name.startsWith('ce-') && name.length > 3) {
      const attr = attributeOfHeader(name, false);
      const decoded = decodeAttributeHeader(value, name, attr);
      if (attr === 'datacontenttype') {
        if (ceContentType !== undefined) {
          throw new InvalidEventError(attr, 'duplicate-header', `header ${name} appears more than once`);
        }
        ceContentType = decoded;
      } else addAttribute(c, attr, decoded, name);
    } else if (name === 'content-type') {
      if (c.contentType !== undefined) {
        throw new InvalidEventError(
          'datacontenttype',
          'duplicate-header',
          'header content-type appears more than once',
        );
      }
      c.contentType = value.trim();
    }
  }
  const kind = structuredKind(c.contentType);
  if (kind === 'structured') return decodeStructuredBody(body, opts);
  if (kind !== undefined) throw new UnsupportedFormatError(c.contentType as string);
  if (c.attrs.specversion === undefined && ceContentType === undefined) return decodeStructuredBody(body, opts);
  const dct = ceContentType ?? c.contentType;
  if (dct !== undefined) c.attrs.datacontenttype = dct;
  return finishBinary(c, body, opts);
}

/**
 * Encode an event in NATS binary mode: every attribute, `datacontenttype` included, as a
 * percent-encoded `ce-<name>` header; the data as the payload.
 * @throws InvalidEventError when the event is invalid
 */
export function encodeNatsBinary(event: CloudEventJson): NatsMessageParts {
  const parts = binaryParts(event);
  const headers = new Map<string, string>();
  for (const [name, value] of parts.attributes) headers.set(`ce-${name}`, percentEncodeHeaderValue(value));
  if (parts.contentType !== undefined) headers.set('ce-datacontenttype', percentEncodeHeaderValue(parts.contentType));
  return { headers, body: parts.body };
}

/**
 * Encode an event in NATS structured mode: `Content-Type: application/cloudevents+json`, the
 * JSON event format as the payload.
 * @throws InvalidEventError when the event is invalid
 */
export function encodeNatsStructured(event: CloudEventJson): NatsMessageParts {
  return { headers: new Map([['content-type', CE_JSON]]), body: encodeStructuredBody(event) };
}
