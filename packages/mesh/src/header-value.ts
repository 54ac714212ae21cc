/**
 * Header value encoding shared by the HTTP and NATS bindings: the percent-encoding of
 * CloudEvents attribute values (HTTP binding 1.0.2 §3.1.3.2, NATS binding on the spec's main
 * branch §3.1.3.2) and the RFC 7230 double-quoted string unescaping that receivers must support.
 */
import { InvalidEventError } from './errors.js';

/** Characters that may stay unencoded: printable ASCII except `"` (0x22) and `%` (0x25). */
const NEEDS_ENCODING_RE = /[^!#$&-~]/;
/** Characters a received header value may carry before decoding: printable ASCII, space and tab. */
const BAD_HEADER_CHAR_RE = /[^\t -~]/;
const HEX = '0123456789ABCDEF';
const utf8Encoder = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Percent-encode an attribute's canonical string for a header value: space, `"`, `%` and every
 * character outside U+0021..U+007E become `%XY` (upper-case hex) of their UTF-8 bytes.
 * @example percentEncodeHeaderValue('Euro € 😀') // 'Euro%20%E2%82%AC%20%F0%9F%98%80'
 */
export function percentEncodeHeaderValue(value: string): string {
  if (!NEEDS_ENCODING_RE.test(value)) return value;
  const bytes = utf8Encoder.encode(value);
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    if (b >= 0x21 && b <= 0x7e && b !== 0x22 && b !== 0x25) out += String.fromCharCode(b);
    else out += `%${HEX[b >> 4]}${HEX[b & 15]}`;
  }
  return out;
}

/**
 * Whether a header value has no `"`, `%`, control or non-ASCII character, so that it is the
 * attribute's value as is (a loop beats a regex here).
 */
export function isPlainHeaderValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x25) return false;
  }
  return true;
}

/**
 * Percent-decode a value whose escapes all encode ASCII bytes (the common `%20`, `%22`, `%25`);
 * `undefined` when an escape is malformed or encodes a byte of 0x80 or more.
 */
function decodeAsciiEscapes(v: string): string | undefined {
  let out = '';
  let from = 0;
  let i = v.indexOf('%');
  while (i >= 0) {
    if (i + 2 >= v.length) return undefined;
    const hi = hexValue(v.charCodeAt(i + 1));
    const lo = hi >= 0 && hi < 8 ? hexValue(v.charCodeAt(i + 2)) : -1;
    if (lo < 0) return undefined;
    out += v.slice(from, i) + String.fromCharCode((hi << 4) | lo);
    from = i + 3;
    i = v.indexOf('%', from);
  }
  return out + v.slice(from);
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  if (l >= 97 && l <= 102) return l - 87;
  return -1;
}

function unquote(value: string, header: string, attribute: string): string {
  // RFC 7230 §3.2.6 quoted-string: DQUOTE *( qdtext / quoted-pair ) DQUOTE
  let out = '';
  for (let i = 1; i < value.length - 1; i++) {
    const c = value[i] as string;
    if (c === '\\') {
      i++;
      if (i >= value.length - 1) {
        throw new InvalidEventError(
          attribute,
          'quoted-string',
          `header ${header}: dangling backslash in quoted string`,
        );
      }
      out += value[i];
    } else if (c === '"') {
      throw new InvalidEventError(attribute, 'quoted-string', `header ${header}: unescaped '"' inside a quoted string`);
    } else out += c;
  }
  return out;
}

/**
 * Decode one received header value into the attribute's string: unescape an RFC 7230
 * double-quoted string, then perform exactly one round of percent-decoding (lower-case hex
 * accepted), rejecting malformed escapes and byte sequences that are not valid UTF-8
 * (e.g. the overlong `%C0%A0`).
 * @param header the header name, for the message
 * @param attribute the attribute the header carries, named by the error
 * @throws InvalidEventError with rule `header-chars`, `quoted-string`, `percent-encoding` or `utf-8`
 */
export function decodeHeaderValue(value: string, header: string, attribute: string = header): string {
  if (isPlainHeaderValue(value)) return value;
  if (BAD_HEADER_CHAR_RE.test(value)) {
    throw new InvalidEventError(
      attribute,
      'header-chars',
      `header ${header} carries a character outside printable US-ASCII; non-ASCII attribute values must be percent-encoded`,
    );
  }
  let v = value;
  if (v.length >= 2 && v.charCodeAt(0) === 0x22 && v.charCodeAt(v.length - 1) === 0x22)
    v = unquote(v, header, attribute);
  if (v.indexOf('%') < 0) return v;
  const ascii = decodeAsciiEscapes(v);
  if (ascii !== undefined) return ascii;
  try {
    // One round of percent-decoding with UTF-8 validation (overlong forms and surrogates
    // rejected); on failure the loop below finds which rule was broken.
    return decodeURIComponent(v);
  } catch {
    // fall through to the precise decoder
  }
  const bytes = new Uint8Array(v.length);
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c !== 0x25) {
      bytes[n++] = c;
      continue;
    }
    const hi = i + 2 < v.length ? hexValue(v.charCodeAt(i + 1)) : -1;
    const lo = hi >= 0 ? hexValue(v.charCodeAt(i + 2)) : -1;
    if (lo < 0) {
      throw new InvalidEventError(
        attribute,
        'percent-encoding',
        `header ${header}: '%' at offset ${i} is not followed by two hexadecimal digits`,
      );
    }
    bytes[n++] = (hi << 4) | lo;
    i += 2;
  }
  try {
    return strictUtf8.decode(bytes.subarray(0, n));
  } catch (cause) {
    throw new InvalidEventError(attribute, 'utf-8', `header ${header}: percent-decoded bytes are not valid UTF-8`, {
      cause,
    });
  }
}

/**
 * Decode a header value given as bytes (Kafka): strict UTF-8, no percent-decoding.
 * @throws InvalidEventError with rule `utf-8`
 */
export function decodeUtf8HeaderBytes(value: Uint8Array, header: string, attribute: string = header): string {
  try {
    return strictUtf8.decode(value);
  } catch (cause) {
    throw new InvalidEventError(attribute, 'utf-8', `header ${header} is not valid UTF-8`, { cause });
  }
}

/**
 * Decode bytes as strict UTF-8.
 * @throws InvalidEventError naming `attribute` with rule `utf-8`
 */
export function decodeUtf8(bytes: Uint8Array, attribute: string, what: string): string {
  try {
    return strictUtf8.decode(bytes);
  } catch (cause) {
    throw new InvalidEventError(attribute, 'utf-8', `${what} is not valid UTF-8`, { cause });
  }
}

/** UTF-8 bytes of a string. */
export function utf8(value: string): Uint8Array {
  return utf8Encoder.encode(value);
}
