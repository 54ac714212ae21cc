/**
 * The parts every binary content mode shares (HTTP, NATS, Kafka): attributes carried one per
 * header, data carried as the message body, and the JSON event format for structured mode.
 */

import { Buffer } from 'node:buffer';
import {
  type CloudEventJson,
  checkEvent,
  checkStringChars,
  ENCODE_VALIDATION,
  isJsonContentType,
  type ResolvedEventValidationOptions,
  validateBatch,
  validateEvent,
  withIndex,
} from './cloudevent.js';
import { InvalidEventError, PayloadTooLargeError } from './errors.js';
import { decodeHeaderValue, decodeUtf8, isPlainHeaderValue, utf8 } from './header-value.js';
import { firstRepeatedMember } from './json-members.js';
import { describeJsonSyntaxError } from './json-syntax.js';

/** Attributes gathered from the headers of one binary-mode message. */
export interface CollectedHeaders {
  /** Attribute name to its decoded string value. */
  attrs: Record<string, unknown>;
  /** The transport's own content type header (`content-type`, any case). */
  contentType: string | undefined;
  /** Bytes of header names and values, for the size limit. */
  headerBytes: number;
  /**
   * Every attribute name and value was checked as it was read (names by `addAttribute`, value
   * characters by `decodeAttributeHeader`), so `checkEvent` can skip those rules.
   */
  plain: boolean;
}

/** A fresh, empty {@link CollectedHeaders}. */
export function newCollected(): CollectedHeaders {
  return { attrs: {}, contentType: undefined, headerBytes: 0, plain: true };
}

/**
 * Decode a `ce-` header value (HTTP, NATS) and check the characters of the result, so that
 * {@link checkEvent} need not (see {@link CollectedHeaders.plain}).
 * @throws InvalidEventError as {@link decodeHeaderValue}
 */
export function decodeAttributeHeader(value: string, header: string, attribute: string): string {
  if (isPlainHeaderValue(value)) return value;
  const decoded = decodeHeaderValue(value, header, attribute);
  checkStringChars(attribute, decoded);
  return decoded;
}

/** Well-known attribute names, so that header names map to shared (internalized) attribute names. */
const KNOWN_ATTRIBUTES = [
  'specversion',
  'id',
  'source',
  'type',
  'datacontenttype',
  'dataschema',
  'subject',
  'time',
  'residency',
  'latencybudgetms',
  'carbonmax',
  'costmax',
  'workload',
  'tenant',
  'deadline',
  'pii',
  'partitionkey',
  'traceparent',
  'tracestate',
];
const HTTP_NATS_NAMES = new Map(KNOWN_ATTRIBUTES.map((a) => [`ce-${a}`, a]));
const KAFKA_NAMES = new Map(KNOWN_ATTRIBUTES.map((a) => [`ce_${a}`, a]));

/**
 * The attribute a lowercase `ce-` (HTTP, NATS) or `ce_` (Kafka) header carries.
 * @param header a lowercase header name that starts with the prefix
 */
export function attributeOfHeader(header: string, kafka: boolean): string {
  return (kafka ? KAFKA_NAMES : HTTP_NATS_NAMES).get(header) ?? header.slice(3);
}

/** Whether a name is a valid attribute name (a-z, 0-9, 1 to 20 characters), without a regex. */
function isAttributeName(name: string): boolean {
  const n = name.length;
  if (n === 0 || n > 20) return false;
  for (let i = 0; i < n; i++) {
    const ch = name.charCodeAt(i);
    if (!((ch >= 97 && ch <= 122) || (ch >= 48 && ch <= 57))) return false;
  }
  return true;
}

/**
 * Add one decoded attribute header.
 * @throws InvalidEventError for an invalid attribute name, `data` carried in a header, or a duplicate
 */
export function addAttribute(c: CollectedHeaders, name: string, value: string, header: string): void {
  if (!isAttributeName(name)) {
    throw new InvalidEventError(
      name,
      'extension-name',
      `header ${header}: an attribute name must be 1 to 20 lowercase letters (a-z) or digits (0-9)`,
    );
  }
  if (name === 'data') {
    throw new InvalidEventError('data', 'reserved', `header ${header}: in binary mode the data is the message body`);
  }
  if (Object.hasOwn(c.attrs, name)) {
    throw new InvalidEventError(name, 'duplicate-header', `header ${header} appears more than once`);
  }
  c.attrs[name] = value;
}

const INT_RE = /^-?(0|[1-9][0-9]{0,9})$/;

/** Header strings of intent attributes whose type is not String become typed (Integer, Boolean). */
function coerceIntent(attrs: Record<string, unknown>): void {
  const l = attrs.latencybudgetms;
  if (typeof l === 'string' && INT_RE.test(l)) attrs.latencybudgetms = Number(l);
  const c = attrs.carbonmax;
  if (typeof c === 'string' && INT_RE.test(c)) attrs.carbonmax = Number(c);
  const p = attrs.pii;
  if (p === 'true') attrs.pii = true;
  else if (p === 'false') attrs.pii = false;
}

/**
 * Build and validate the event of a binary-mode message from its collected headers and body.
 * JSON content types parse the body into `data`; any other body becomes `data_base64`; an empty
 * body means no data.
 */
export function finishBinary(
  c: CollectedHeaders,
  body: Uint8Array | null | undefined,
  opts: ResolvedEventValidationOptions,
): CloudEventJson {
  const bodyBytes = body ? body.byteLength : 0;
  if (bodyBytes > opts.maxEventBytes) throw new PayloadTooLargeError('event', bodyBytes, opts.maxEventBytes);
  if (c.headerBytes > opts.maxAttributeBytes) {
    throw new PayloadTooLargeError('attributes', c.headerBytes, opts.maxAttributeBytes);
  }
  const attrs = c.attrs;
  if (attrs.specversion === undefined) {
    throw new InvalidEventError('specversion', 'required', 'specversion: the required attribute is missing');
  }
  coerceIntent(attrs);
  if (body && bodyBytes > 0) {
    const ct = attrs.datacontenttype;
    if (typeof ct === 'string' && isJsonContentType(ct)) {
      const text = decodeUtf8(body, 'data', 'the JSON body');
      try {
        attrs.data = JSON.parse(text);
      } catch (cause) {
        const { message, location } = describeJsonSyntaxError(text, cause);
        throw new InvalidEventError(
          'data',
          'json',
          `data: datacontenttype ${ct} declares JSON but the body is not JSON: ${message}`,
          { cause, details: location ? { line: location.line, column: location.column } : {} },
        );
      }
    } else {
      attrs.data_base64 = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('base64');
    }
  }
  return checkEvent(attrs, opts, c.plain);
}

/** One attribute of an event as a header: the attribute name and its canonical string. */
export type AttributeEntry = readonly [name: string, value: string];

/** An event split for binary mode: attribute entries (without datacontenttype), content type and body. */
export interface BinaryParts {
  attributes: AttributeEntry[];
  contentType: string | undefined;
  body: Uint8Array;
}

/**
 * Split a (validated) event for binary mode. JSON data is serialized; when the event has
 * `data` but no `datacontenttype`, `application/json` is set explicitly, as the JSON format
 * requires when re-serializing into another binding.
 */
export function binaryParts(event: CloudEventJson): BinaryParts {
  const valid = validateEvent(event, ENCODE_VALIDATION);
  const attributes: AttributeEntry[] = [];
  let contentType: string | undefined;
  let body: Uint8Array = new Uint8Array(0);
  for (const key of Object.keys(valid)) {
    const v = valid[key];
    if (key === 'data' || key === 'data_base64' || v === undefined) continue;
    if (key === 'datacontenttype') {
      contentType = v as string;
      continue;
    }
    attributes.push([key, typeof v === 'string' ? v : String(v)]);
  }
  if (typeof valid.data_base64 === 'string') {
    body = new Uint8Array(Buffer.from(valid.data_base64, 'base64'));
  } else if ('data' in valid && valid.data !== undefined) {
    if (isJsonContentType(contentType)) {
      contentType ??= 'application/json';
      body = utf8(JSON.stringify(valid.data));
    } else body = utf8(valid.data as string);
  }
  return { attributes, contentType, body };
}

/** The JSON event format media type. */
export const CE_JSON = 'application/cloudevents+json';
/** The JSON batch format media type. */
export const CE_BATCH_JSON = 'application/cloudevents-batch+json';

/** Which structured format a content type names: `structured`, `batch`, another CE format, or none. */
export function structuredKind(contentType: string | undefined): StructuredKind {
  if (contentType === undefined) return undefined;
  const cached = kindCache.get(contentType);
  if (cached !== undefined) return cached === 'none' ? undefined : cached;
  const kind = computeStructuredKind(contentType);
  if (kindCache.size < 256) kindCache.set(contentType, kind ?? 'none');
  return kind;
}

/** The structured format a content type names, if any. */
export type StructuredKind = 'structured' | 'batch' | 'unsupported' | undefined;
const kindCache = new Map<string, Exclude<StructuredKind, undefined> | 'none'>();

function computeStructuredKind(contentType: string): StructuredKind {
  const semi = contentType.indexOf(';');
  const essence = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  if (!essence.startsWith('application/cloudevents')) return undefined;
  // The bare `application/cloudevents` is how the NATS binding names structured mode; JSON is
  // the one format every binding must support.
  if (essence === CE_JSON || essence === 'application/cloudevents') return 'structured';
  if (essence === CE_BATCH_JSON) return 'batch';
  return 'unsupported';
}

function parseJsonBody(body: Uint8Array, opts: ResolvedEventValidationOptions): unknown {
  if (body.byteLength > opts.maxEventBytes) {
    throw new PayloadTooLargeError('event', body.byteLength, opts.maxEventBytes);
  }
  const text = decodeUtf8(body, 'event', 'the structured-mode body');
  try {
    return JSON.parse(text);
  } catch (cause) {
    const { message, location } = describeJsonSyntaxError(text, cause);
    throw new InvalidEventError('event', 'json-syntax', `the structured-mode body is not valid JSON: ${message}`, {
      cause,
      details: location ? { line: location.line, column: location.column } : {},
    });
  }
}

/** The error for a member name repeated within one event (without a batch index). */
export function duplicateMemberError(name: string): InvalidEventError {
  const shown = name.length > 64 ? `${name.slice(0, 64)}...` : name;
  return new InvalidEventError(
    name,
    'duplicate-member',
    `member ${JSON.stringify(shown)} appears more than once in the event; JSON readers disagree on which one counts`,
  );
}

/**
 * Decode and validate a JSON event format body.
 * @throws InvalidEventError rule `duplicate-member` when the event repeats a member name (names
 * inside `data` may repeat), before any other rule of the event
 */
export function decodeStructuredBody(body: Uint8Array, opts: ResolvedEventValidationOptions): CloudEventJson {
  const value = parseJsonBody(body, opts);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidEventError('event', 'object', 'a structured-mode body must be a JSON object');
  }
  const repeated = firstRepeatedMember(body, value, 1);
  if (repeated !== undefined) throw duplicateMemberError(repeated.name);
  return checkEvent(value as Record<string, unknown>, opts);
}

/**
 * Decode and validate a JSON batch format body; errors name the event's index, the lowest one at
 * fault. Within one event a repeated member name (rule `duplicate-member`) comes before its other rules.
 */
export function decodeBatchBody(body: Uint8Array, opts: ResolvedEventValidationOptions): CloudEventJson[] {
  const value = parseJsonBody(body, opts);
  const repeated = firstRepeatedMember(body, value, 2);
  if (repeated === undefined) return validateBatch(value, opts);
  // The events before the one that repeats a name are checked first, so the error names the first index at fault.
  validateBatch((value as unknown[]).slice(0, repeated.index), opts);
  throw withIndex(duplicateMemberError(repeated.name), repeated.index);
}

/** The JSON event format body of a (validated) event. */
export function encodeStructuredBody(event: CloudEventJson): Uint8Array {
  return utf8(JSON.stringify(validateEvent(event, ENCODE_VALIDATION)));
}
