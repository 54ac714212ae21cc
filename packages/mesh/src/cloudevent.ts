/**
 * Strict CloudEvents 1.0 validation of the structured-mode JSON shape ({@link CloudEventJson}),
 * the canonical in-memory form of an event in meshroute.
 *
 * Stricter than the `cloudevents` npm SDK v10 on purpose: that SDK invents a missing `id`,
 * replaces an unparsable `time` with the current time, lets specversion `0.1` through
 * `validate()` and accepts any string as `source`; here each of those is an
 * {@link InvalidEventError} naming the attribute and the rule.
 */
import { Buffer } from 'node:buffer';
import { ConfigError, InvalidEventError, InvalidIntentError, PayloadTooLargeError } from './errors.js';
import { parseRfc3339, validateIntent } from './intent.js';

/**
 * A CloudEvent in structured-mode JSON shape (JSON event format 1.0), the canonical in-memory
 * form. Extension attributes are further members; their values are String, Boolean or Integer.
 */
export type CloudEventJson = {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  datacontenttype?: string;
  dataschema?: string;
  subject?: string;
  time?: string;
  data?: unknown;
  data_base64?: string;
  [extension: string]: unknown;
};

/**
 * Default limit on the size of one event, 1 MiB: the body of a binary-mode message (the data),
 * the whole JSON of a structured-mode one.
 */
export const DEFAULT_MAX_EVENT_BYTES = 1_048_576;

/**
 * Default limit on the attributes of one binary-mode message (`ce-` header names and values),
 * 64 KiB: far above an HTTP server's header limit (Node: 16 KiB), so that an event an HTTP
 * ingress accepted is accepted again when it travels on over NATS or Kafka.
 */
export const DEFAULT_MAX_ATTRIBUTE_BYTES = 65_536;

/** Options of {@link validateEvent} and every decoder. */
export interface EventValidationOptions {
  /**
   * Largest accepted event, in bytes: for binary-mode decoders the body (the data, as it came:
   * `data_base64` counts its decoded bytes); for structured mode the whole JSON; for
   * {@link validateEvent} the attribute names and values plus the data.
   * @default DEFAULT_MAX_EVENT_BYTES (1 MiB)
   */
  maxEventBytes?: number;
  /**
   * Largest accepted attributes of a binary-mode message, in bytes (`ce-` header names and
   * values), checked by binary-mode decoders apart from the body.
   * @default DEFAULT_MAX_ATTRIBUTE_BYTES (64 KiB)
   */
  maxAttributeBytes?: number;
  /**
   * Also validate the intent extension attributes (`residency`, `latencybudgetms`, ...) through
   * `validateIntent` (the rules of `parseIntent`), so that an invalid intent is an {@link InvalidIntentError} naming it.
   * @default true
   */
  validateIntent?: boolean;
}

/** {@link EventValidationOptions} with every field filled. */
export interface ResolvedEventValidationOptions {
  readonly maxEventBytes: number;
  readonly maxAttributeBytes: number;
  readonly validateIntent: boolean;
}

const DEFAULT_OPTIONS: ResolvedEventValidationOptions = Object.freeze({
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
  maxAttributeBytes: DEFAULT_MAX_ATTRIBUTE_BYTES,
  validateIntent: true,
});

/**
 * What encoders validate with: every rule but the size limit, which is the receiver's to set
 * (a producer's encoder must not refuse an event the receiving router is configured to take).
 * @internal
 */
export const ENCODE_VALIDATION: ResolvedEventValidationOptions = Object.freeze({
  maxEventBytes: Number.MAX_SAFE_INTEGER,
  maxAttributeBytes: Number.MAX_SAFE_INTEGER,
  validateIntent: true,
});

/**
 * Resolve {@link EventValidationOptions} into a filled object.
 * @throws ConfigError for a `maxEventBytes` or `maxAttributeBytes` that is not a positive integer
 */
export function resolveEventValidationOptions(options?: EventValidationOptions): ResolvedEventValidationOptions {
  if (options === undefined) return DEFAULT_OPTIONS;
  if ((options as ResolvedEventValidationOptions) === DEFAULT_OPTIONS) return DEFAULT_OPTIONS;
  if ((options as ResolvedEventValidationOptions) === ENCODE_VALIDATION) return ENCODE_VALIDATION;
  const maxEventBytes = options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  if (!Number.isSafeInteger(maxEventBytes) || maxEventBytes <= 0) {
    throw new ConfigError('maxEventBytes', `must be a positive integer, got ${String(options.maxEventBytes)}`);
  }
  const maxAttributeBytes = options.maxAttributeBytes ?? DEFAULT_MAX_ATTRIBUTE_BYTES;
  if (!Number.isSafeInteger(maxAttributeBytes) || maxAttributeBytes <= 0) {
    throw new ConfigError('maxAttributeBytes', `must be a positive integer, got ${String(options.maxAttributeBytes)}`);
  }
  return { maxEventBytes, maxAttributeBytes, validateIntent: options.validateIntent ?? true };
}

/** The context attributes defined by CloudEvents 1.0 core (not extensions). */
export const CORE_ATTRIBUTES: ReadonlySet<string> = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'datacontenttype',
  'dataschema',
  'subject',
  'time',
]);

/** Extension attribute names: lowercase a-z and 0-9, 1 to 20 characters. */
export const EXTENSION_NAME_RE = /^[a-z0-9]{1,20}$/;
/** Characters a CloudEvents String must not contain: controls, lone surrogates, noncharacters. */
const BAD_STRING_CHAR_RE = /[\p{Cc}\p{Cs}\p{Noncharacter_Code_Point}]/u;
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
/** RFC 2046 / RFC 7231 media type: `type/subtype` with optional `; name=value` parameters. */
const MEDIA_TYPE_RE = new RegExp(`^${TOKEN}/${TOKEN}(?:[ \\t]*;[ \\t]*${TOKEN}=(?:${TOKEN}|"(?:[^"\\\\]|\\\\.)*"))*$`);
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

// RFC 3986 components (Appendix B split, then each part checked against its grammar).
const URI_SPLIT_RE = /^(?:([^:/?#]+):)?(?:\/\/([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$/;
const PCT = '%[0-9A-Fa-f]{2}';
const SCHEME_RE = /^[A-Za-z][A-Za-z0-9+.-]*$/;
const USERINFO_RE = new RegExp(`^(?:[A-Za-z0-9._~!$&'()*+,;=:-]|${PCT})*$`);
const REG_NAME_RE = new RegExp(`^(?:[A-Za-z0-9._~!$&'()*+,;=-]|${PCT})*$`);
const IP_LITERAL_RE = /^\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+)\]$/;
const PORT_RE = /^[0-9]*$/;
const PATH_RE = new RegExp(`^(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|${PCT})*$`);
const QUERY_RE = new RegExp(`^(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|${PCT})*$`);
/** Fast path: a plain URI-reference made of the most common characters only. */
const SIMPLE_PATH_REF_RE = /^[A-Za-z0-9._~\-/]*$/;
/** Fast path: `scheme://host[:port][/path]` with the most common characters only. */
const SIMPLE_URL_RE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[A-Za-z0-9._~-]+(?::[0-9]+)?(?:\/[A-Za-z0-9._~\-/]*)?$/;

function checkAuthority(authority: string): boolean {
  let rest = authority;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    if (!USERINFO_RE.test(rest.slice(0, at))) return false;
    rest = rest.slice(at + 1);
  }
  let host = rest;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) return false;
    host = rest.slice(0, close + 1);
    const after = rest.slice(close + 1);
    if (after !== '' && !(after.startsWith(':') && PORT_RE.test(after.slice(1)))) return false;
    return IP_LITERAL_RE.test(host);
  }
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    if (!PORT_RE.test(rest.slice(colon + 1))) return false;
    host = rest.slice(0, colon);
  }
  return REG_NAME_RE.test(host);
}

/**
 * Whether a string is an RFC 3986 URI-reference (a URI or a relative reference).
 * @param absolute require a scheme (an RFC 3986 URI, fragment allowed)
 */
export function isUriReference(value: string, absolute = false): boolean {
  if (SIMPLE_URL_RE.test(value)) return true;
  if (!absolute && SIMPLE_PATH_REF_RE.test(value)) {
    // path-only relative reference: the first segment must not contain ':' (it has none here)
    return !value.startsWith('//') || REG_NAME_RE.test(value.slice(2).split('/')[0] as string);
  }
  const m = URI_SPLIT_RE.exec(value);
  if (!m) return false;
  const [, scheme, authority, path = '', query, fragment] = m;
  if (scheme !== undefined) {
    if (!SCHEME_RE.test(scheme)) return false;
  } else {
    if (absolute) return false;
    // relative-ref without authority: the first path segment must not contain ':'
    if (authority === undefined && path.split('/')[0]?.includes(':')) return false;
  }
  if (authority !== undefined) {
    if (!checkAuthority(authority)) return false;
    if (path !== '' && !path.startsWith('/')) return false;
  } else if (path.startsWith('//')) return false;
  if (!PATH_RE.test(path)) return false;
  if (query !== undefined && !QUERY_RE.test(query)) return false;
  if (fragment !== undefined && !QUERY_RE.test(fragment)) return false;
  return true;
}

/** Whether a string is an RFC 2046 media type (`type/subtype` with parameters). */
export function isMediaType(value: string): boolean {
  return MEDIA_TYPE_RE.test(value);
}

const jsonTypeCache = new Map<string, boolean>();

/**
 * Whether a `datacontenttype` declares JSON-formatted data: its media type without parameters
 * is `* /json` or `* /*+json` (JSON event format §3.1.1). `undefined` counts as JSON
 * (`application/json` is implied).
 */
export function isJsonContentType(contentType: string | undefined): boolean {
  if (contentType === undefined) return true;
  const cached = jsonTypeCache.get(contentType);
  if (cached !== undefined) return cached;
  const semi = contentType.indexOf(';');
  const essence = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  const slash = essence.indexOf('/');
  const subtype = slash < 0 ? '' : essence.slice(slash + 1);
  const json = subtype === 'json' || subtype.endsWith('+json');
  if (jsonTypeCache.size < 256) jsonTypeCache.set(contentType, json);
  return json;
}

function invalid(attribute: string, rule: string, message: string): InvalidEventError {
  return new InvalidEventError(attribute, rule, `${attribute}: ${message}`);
}

function checkString(attribute: string, value: unknown, allowEmpty: boolean, plain = false): string {
  if (typeof value !== 'string') {
    throw invalid(attribute, 'string', `must be a String, got ${describe(value)}`);
  }
  if (!allowEmpty && value.length === 0) throw invalid(attribute, 'non-empty', 'must be a non-empty String');
  if (!plain) checkStringChars(attribute, value);
  return value;
}

/**
 * Check the characters of a String attribute value (rule `string-chars`).
 * @internal
 */
export function checkStringChars(attribute: string, value: string): void {
  if (BAD_STRING_CHAR_RE.test(value)) {
    throw invalid(
      attribute,
      'string-chars',
      'must not contain control characters (U+0000-U+001F, U+007F-U+009F), lone surrogates or noncharacters',
    );
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}...` : value);
  return `${typeof value} ${String(value)}`;
}

function checkExtensionValue(name: string, value: unknown, plain: boolean): void {
  switch (typeof value) {
    case 'string':
      checkString(name, value, true, plain);
      return;
    case 'boolean':
      return;
    case 'number':
      if (!Number.isInteger(value)) {
        throw invalid(name, 'integer', `a number must be an Integer (CloudEvents has no floating point), got ${value}`);
      }
      if (value < INT32_MIN || value > INT32_MAX) {
        throw invalid(name, 'integer-range', `an Integer must be within the signed 32-bit range, got ${value}`);
      }
      return;
    default:
      throw invalid(
        name,
        'extension-type',
        `an extension value must be a String, Boolean or Integer (or a URI, URI-reference, Timestamp or Binary as a String), got ${describe(value)}`,
      );
  }
}

/** Approximate size in bytes of an event given as an object (names, values and data). */
function approximateSize(event: Record<string, unknown>): number {
  let size = 2;
  for (const key of Object.keys(event)) {
    const v = event[key];
    size += key.length + 4;
    if (key === 'data') {
      if (typeof v === 'string') size += Buffer.byteLength(v);
      else if (v instanceof Uint8Array) size += v.byteLength;
      else size += Buffer.byteLength(JSON.stringify(v) ?? '');
    } else if (key === 'data_base64' && typeof v === 'string') {
      // The bytes it stands for (what travels as the body in binary mode), not its base64 text.
      size += Math.floor((v.length * 3) / 4);
    } else if (typeof v === 'string') size += v.length;
    else size += 8;
  }
  return size;
}

/**
 * Validate an event in structured-mode JSON shape against CloudEvents 1.0, strictly, and return
 * it in canonical form (members with a JSON `null` value are treated as absent and dropped, as
 * the JSON format requires).
 *
 * Rules (each failure is an {@link InvalidEventError} with `attribute` and `rule`):
 * `required`, `string`, `non-empty`, `string-chars`, `specversion` (exactly `1.0`),
 * `uri-reference` (source), `absolute-uri` (dataschema), `media-type` (datacontenttype),
 * `rfc3339` (time), `extension-name`, `extension-type`, `integer`, `integer-range`,
 * `data-exclusive`, `base64`, `data-string`; the size limit is a {@link PayloadTooLargeError};
 * intent attributes are checked by `validateIntent` ({@link InvalidIntentError}).
 *
 * @example
 * const event = validateEvent(JSON.parse(body));
 */
export function validateEvent(value: unknown, options?: EventValidationOptions): CloudEventJson {
  const opts = resolveEventValidationOptions(options);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidEventError('event', 'object', `a CloudEvent must be a JSON object, got ${describe(value)}`);
  }
  const ev = value as Record<string, unknown>;
  const size = approximateSize(ev);
  if (size > opts.maxEventBytes) throw new PayloadTooLargeError('event', size, opts.maxEventBytes);
  return checkEvent(ev, opts);
}

/**
 * The validator proper, without the size check (decoders measure the real size themselves).
 * @param plain set by binary-mode decoders when every attribute name and the characters of every
 * value except `datacontenttype` were already checked as the headers were read, so the
 * `extension-name` and `string-chars` checks are skipped here
 * @internal
 */
export function checkEvent(
  ev: Record<string, unknown>,
  opts: ResolvedEventValidationOptions,
  plain = false,
): CloudEventJson {
  const specversion = ev.specversion;
  if (specversion === undefined || specversion === null) {
    throw invalid('specversion', 'required', 'the required attribute is missing');
  }
  if (specversion !== '1.0') {
    throw invalid('specversion', 'specversion', `must be "1.0", got ${describe(specversion)}`);
  }
  if (ev.id === undefined || ev.id === null) throw invalid('id', 'required', 'the required attribute is missing');
  checkString('id', ev.id, false, plain);
  if (ev.source === undefined || ev.source === null) {
    throw invalid('source', 'required', 'the required attribute is missing');
  }
  const source = checkString('source', ev.source, false, plain);
  if (!isUriReference(source)) {
    throw invalid('source', 'uri-reference', `must be an RFC 3986 URI-reference, got ${describe(source)}`);
  }
  if (ev.type === undefined || ev.type === null) throw invalid('type', 'required', 'the required attribute is missing');
  checkString('type', ev.type, false, plain);

  let hasNull = false;
  let hasData = false;
  let hasIntent = false;
  let contentType: string | undefined;
  for (const key of Object.keys(ev)) {
    const v = ev[key];
    if (v === undefined || v === null) {
      // JSON null means unset (JSON format §2.2), except for data, where it is an explicit null payload
      if (key === 'data' && v === null) hasData = true;
      else hasNull = true;
      continue;
    }
    switch (key) {
      case 'specversion':
      case 'id':
      case 'source':
      case 'type':
        break;
      case 'datacontenttype':
        contentType = checkString(key, v, false);
        if (!MEDIA_TYPE_RE.test(contentType)) {
          throw invalid(
            key,
            'media-type',
            `must be an RFC 2046 media type such as "application/json", got ${describe(v)}`,
          );
        }
        break;
      case 'dataschema':
        if (!isUriReference(checkString(key, v, false, plain), true)) {
          throw invalid(key, 'absolute-uri', `must be an absolute URI (with a scheme), got ${describe(v)}`);
        }
        break;
      case 'subject':
        checkString(key, v, false, plain);
        break;
      case 'time':
        if (parseRfc3339(checkString(key, v, false, plain)) === undefined) {
          throw invalid(
            key,
            'rfc3339',
            `must be an RFC 3339 timestamp such as "2026-01-31T12:00:00Z", got ${describe(v)}`,
          );
        }
        break;
      case 'data':
        hasData = true;
        break;
      case 'data_base64':
        if (typeof v !== 'string') throw invalid(key, 'string', `must be a Base64 String, got ${describe(v)}`);
        if (!BASE64_RE.test(v))
          throw invalid(key, 'base64', 'must be valid RFC 4648 Base64 (standard alphabet, padded)');
        break;
      default:
        if (!plain && !EXTENSION_NAME_RE.test(key)) {
          throw invalid(
            key,
            'extension-name',
            'an attribute name must be 1 to 20 lowercase letters (a-z) or digits (0-9)',
          );
        }
        checkExtensionValue(key, v, plain);
        if (!hasIntent && INTENT_NAMES.has(key)) hasIntent = true;
    }
  }
  if (hasData && ev.data_base64 !== undefined && ev.data_base64 !== null) {
    throw invalid('data', 'data-exclusive', '"data" and "data_base64" are mutually exclusive');
  }
  if (hasData && !isJsonContentType(contentType) && ev.data !== null && typeof ev.data !== 'string') {
    throw invalid(
      'data',
      'data-string',
      `datacontenttype ${JSON.stringify(contentType)} does not declare JSON, so "data" must be a String (or use "data_base64")`,
    );
  }
  let out = ev;
  if (hasNull) {
    out = {};
    for (const key of Object.keys(ev)) {
      const v = ev[key];
      if ((v !== null && v !== undefined) || (key === 'data' && v === null)) out[key] = v;
    }
  }
  if (hasIntent && opts.validateIntent) validateIntent(out);
  return out as CloudEventJson;
}

const INTENT_NAMES: ReadonlySet<string> = new Set([
  'residency',
  'latencybudgetms',
  'carbonmax',
  'costmax',
  'workload',
  'tenant',
  'deadline',
  'pii',
]);

/**
 * Validate every event of a batch (JSON batch format). An error names the event's `index`.
 * @throws InvalidEventError (rule `batch-array` when the value is not an array)
 */
export function validateBatch(value: unknown, options?: EventValidationOptions): CloudEventJson[] {
  const opts = resolveEventValidationOptions(options);
  if (!Array.isArray(value)) {
    throw new InvalidEventError('batch', 'batch-array', `a batch must be a JSON array, got ${describe(value)}`);
  }
  const out: CloudEventJson[] = new Array(value.length);
  for (let i = 0; i < value.length; i++) {
    try {
      const item: unknown = value[i];
      if (typeof item !== 'object' || item === null || Array.isArray(item)) {
        throw new InvalidEventError('event', 'object', `a CloudEvent must be a JSON object, got ${describe(item)}`);
      }
      out[i] = checkEvent(item as Record<string, unknown>, opts);
    } catch (err) {
      throw withIndex(err, i);
    }
  }
  return out;
}

/** Re-throwable copy of an event or intent error that names a batch index. @internal */
export function withIndex(err: unknown, index: number): unknown {
  if (err instanceof InvalidEventError) {
    return new InvalidEventError(err.attribute, err.rule, `batch[${index}]: ${err.message}`, { index, cause: err });
  }
  if (err instanceof InvalidIntentError) {
    return new InvalidIntentError(err.attribute, err.rule, `batch[${index}]: ${err.message}`, {
      cause: err,
      details: { index },
    });
  }
  return err;
}

/**
 * The event's data as bytes (the job input) and its content type: `data_base64` decoded;
 * JSON data (JSON content type, or none) serialized; a String under a non-JSON content type
 * as UTF-8. No data gives zero bytes.
 */
export function eventData(event: CloudEventJson): { bytes: Uint8Array; contentType: string | undefined } {
  const contentType = event.datacontenttype;
  if (typeof event.data_base64 === 'string') {
    return { bytes: new Uint8Array(Buffer.from(event.data_base64, 'base64')), contentType };
  }
  if (!('data' in event) || event.data === undefined) return { bytes: new Uint8Array(0), contentType };
  if (isJsonContentType(contentType)) {
    return {
      bytes: new Uint8Array(Buffer.from(JSON.stringify(event.data), 'utf8')),
      contentType: contentType ?? 'application/json',
    };
  }
  const data = event.data;
  return {
    bytes:
      data instanceof Uint8Array
        ? data
        : new Uint8Array(Buffer.from(typeof data === 'string' ? data : JSON.stringify(data))),
    contentType,
  };
}
