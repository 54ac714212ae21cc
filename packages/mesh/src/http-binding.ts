/**
 * The CloudEvents HTTP protocol binding 1.0.2: binary mode (`ce-` headers, percent-encoded
 * values, `Content-Type` for `datacontenttype`), structured mode (`application/cloudevents+json`)
 * and batch mode (`application/cloudevents-batch+json`).
 */
import {
  addAttribute,
  attributeOfHeader,
  binaryParts,
  CE_BATCH_JSON,
  CE_JSON,
  type CollectedHeaders,
  decodeAttributeHeader,
  decodeBatchBody,
  decodeStructuredBody,
  encodeStructuredBody,
  finishBinary,
  newCollected,
  structuredKind,
} from './binary-mode.js';
import {
  type CloudEventJson,
  ENCODE_VALIDATION,
  type EventValidationOptions,
  resolveEventValidationOptions,
  validateEvent,
  withIndex,
} from './cloudevent.js';
import { InvalidEventError, UnsupportedFormatError } from './errors.js';
import { percentEncodeHeaderValue, utf8 } from './header-value.js';

/**
 * HTTP request or response headers: a record as Node's `IncomingHttpHeaders` (names in any
 * case, repeated headers as arrays), or any iterable of name/value pairs (`Headers`, `Map`).
 */
export type HttpHeadersInput =
  | Readonly<Record<string, string | readonly string[] | undefined>>
  | Iterable<readonly [string, string]>;

/** An HTTP message: headers (lowercase names) and body bytes. */
export interface HttpMessage {
  headers: Record<string, string>;
  body: Uint8Array;
}

/** The content mode of a decoded HTTP message. */
export type HttpContentMode = 'binary' | 'structured' | 'batch';

/** Options of {@link decodeHttp}. */
export interface HttpDecodeOptions extends EventValidationOptions {}

function isIterable(h: HttpHeadersInput): h is Iterable<readonly [string, string]> {
  return typeof (h as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function';
}

/** Lowercase only when needed (Node already gives lowercase names). */
function lower(name: string): string {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) return name.toLowerCase();
  }
  return name;
}

interface HttpCollect {
  c: CollectedHeaders;
  ceContentType: string | undefined;
}

/** What a header name means to the binding, computed once per distinct raw name. */
interface HeaderClass {
  /** The lowercase name. */
  name: string;
  /** The attribute a `ce-` header carries; `undefined` for other headers. */
  attr: string | undefined;
  /** Whether this is `content-type`. */
  contentType: boolean;
}

const headerClasses = new Map<string, HeaderClass>();
const MAX_HEADER_CLASSES = 512;

function classify(rawName: string): HeaderClass {
  const known = headerClasses.get(rawName);
  if (known !== undefined) return known;
  const name = lower(rawName);
  // A bare `ce-` header carries an attribute with an empty name: refused by name, not ignored.
  const ce =
    name.length >= 3 && name.charCodeAt(0) === 0x63 && name.charCodeAt(1) === 0x65 && name.charCodeAt(2) === 0x2d;
  const k: HeaderClass = {
    name,
    attr: ce ? attributeOfHeader(name, false) : undefined,
    contentType: name === 'content-type',
  };
  if (headerClasses.size < MAX_HEADER_CLASSES) headerClasses.set(rawName, k);
  return k;
}

function take(st: HttpCollect, rawName: string, raw: string | readonly string[] | undefined): void {
  if (raw === undefined) return;
  const k = classify(rawName);
  const name = k.name;
  const attr = k.attr;
  let value: string;
  if (typeof raw === 'string') value = raw;
  else {
    if (raw.length === 0) return;
    if (raw.length > 1 && (k.contentType || attr !== undefined)) {
      throw new InvalidEventError(
        attr ?? 'datacontenttype',
        'duplicate-header',
        `header ${name} appears more than once`,
      );
    }
    value = raw[0] as string;
  }
  const c = st.c;
  c.headerBytes += name.length + value.length;
  if (attr !== undefined) {
    const decoded = decodeAttributeHeader(value, name, attr);
    if (attr === 'datacontenttype') {
      if (st.ceContentType !== undefined) {
        throw new InvalidEventError(attr, 'duplicate-header', `header ${name} appears more than once`);
      }
      st.ceContentType = decoded;
    } else addAttribute(c, attr, decoded, name);
  } else if (k.contentType) {
    if (c.contentType !== undefined) {
      throw new InvalidEventError('datacontenttype', 'duplicate-header', 'header content-type appears more than once');
    }
    c.contentType = value;
  }
}

/**
 * Decode an HTTP message into CloudEvents, strictly validated. The mode is chosen by
 * `Content-Type`: `application/cloudevents-batch+json` is a batch, `application/cloudevents+json`
 * is structured, any other `application/cloudevents+<format>` is an {@link UnsupportedFormatError},
 * anything else is binary mode.
 *
 * In binary mode each `ce-<name>` header value is unescaped (RFC 7230 quoted-string) and
 * percent-decoded once; malformed escapes and invalid UTF-8 are rejected. `Content-Type` becomes
 * `datacontenttype` (a `ce-datacontenttype` header is accepted when `Content-Type` is absent);
 * a JSON body is parsed into `data`, any other body becomes `data_base64`.
 *
 * @throws InvalidEventError naming the attribute (or header) and rule; for batches, the index
 * @throws InvalidIntentError naming the intent attribute
 * @throws PayloadTooLargeError over `maxEventBytes`
 * @example
 * const { mode, events } = decodeHttp(req.headers, body);
 */
export function decodeHttp(
  headers: HttpHeadersInput,
  body: Uint8Array,
  options?: HttpDecodeOptions,
): { mode: HttpContentMode; events: CloudEventJson[] } {
  const opts = resolveEventValidationOptions(options);
  const st: HttpCollect = { c: newCollected(), ceContentType: undefined };
  if (isIterable(headers)) for (const [name, value] of headers) take(st, name, value);
  else for (const name of Object.keys(headers)) take(st, name, headers[name]);
  const c = st.c;
  const ceContentType = st.ceContentType;

  const kind = structuredKind(c.contentType);
  if (kind === 'structured') return { mode: 'structured', events: [decodeStructuredBody(body, opts)] };
  if (kind === 'batch') return { mode: 'batch', events: decodeBatchBody(body, opts) };
  if (kind === 'unsupported') throw new UnsupportedFormatError(c.contentType as string);
  if (c.contentType !== undefined) {
    if (ceContentType !== undefined && ceContentType !== c.contentType) {
      throw new InvalidEventError(
        'datacontenttype',
        'conflict',
        `datacontenttype: Content-Type ${JSON.stringify(c.contentType)} and ce-datacontenttype ${JSON.stringify(ceContentType)} disagree`,
      );
    }
    c.attrs.datacontenttype = c.contentType;
  } else if (ceContentType !== undefined) c.attrs.datacontenttype = ceContentType;
  return { mode: 'binary', events: [finishBinary(c, body, opts)] };
}

/**
 * Encode an event in HTTP binary mode: one `ce-<name>` header per attribute (percent-encoded),
 * `content-type` for `datacontenttype`, the data as the body.
 * @throws InvalidEventError when the event is invalid
 */
export function encodeHttpBinary(event: CloudEventJson): HttpMessage {
  const parts = binaryParts(event);
  const headers: Record<string, string> = {};
  for (const [name, value] of parts.attributes) headers[`ce-${name}`] = percentEncodeHeaderValue(value);
  if (parts.contentType !== undefined) headers['content-type'] = parts.contentType;
  return { headers, body: parts.body };
}

/**
 * Encode an event in HTTP structured mode (`application/cloudevents+json`).
 * @throws InvalidEventError when the event is invalid
 */
export function encodeHttpStructured(event: CloudEventJson): HttpMessage {
  return { headers: { 'content-type': CE_JSON }, body: encodeStructuredBody(event) };
}

/**
 * Encode events in HTTP batch mode (`application/cloudevents-batch+json`).
 * @throws InvalidEventError naming the index of an invalid event
 */
export function encodeHttpBatch(events: readonly CloudEventJson[]): HttpMessage {
  const valid = events.map((e, index) => {
    try {
      return validateEvent(e, ENCODE_VALIDATION);
    } catch (err) {
      throw withIndex(err, index);
    }
  });
  return { headers: { 'content-type': CE_BATCH_JSON }, body: utf8(JSON.stringify(valid)) };
}
