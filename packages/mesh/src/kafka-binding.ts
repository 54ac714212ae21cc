/**
 * The CloudEvents Kafka protocol binding 1.0.2: binary mode (`ce_<name>` headers carrying each
 * attribute's canonical string as UTF-8, `content-type` for `datacontenttype`), structured mode
 * (`content-type: application/cloudevents+json`), and the `partitionkey` extension mapped to the
 * record key when asked.
 */
import { Buffer } from 'node:buffer';
import {
  addAttribute,
  attributeOfHeader,
  binaryParts,
  CE_JSON,
  decodeStructuredBody,
  encodeStructuredBody,
  finishBinary,
  newCollected,
  structuredKind,
} from './binary-mode.js';
import { type CloudEventJson, type EventValidationOptions, resolveEventValidationOptions } from './cloudevent.js';
import { InvalidEventError, UnsupportedFormatError } from './errors.js';
import { decodeUtf8, decodeUtf8HeaderBytes } from './header-value.js';

/** A Kafka header value as clients deliver it: a string, bytes, or repeated values. */
export type KafkaHeaderValue = string | Uint8Array | readonly (string | Uint8Array)[] | undefined;

/** A Kafka record as received (the shape of kafkajs and confluent-kafka-javascript messages). */
export interface KafkaRecordInput {
  headers?: Readonly<Record<string, KafkaHeaderValue>> | undefined;
  key?: string | Uint8Array | null | undefined;
  value: Uint8Array | string | null | undefined;
}

/** A Kafka record to produce. */
export interface KafkaRecord {
  headers: Record<string, string>;
  key: string | null;
  value: Uint8Array;
}

/** Options of {@link decodeKafka}. */
export interface KafkaDecodeOptions extends EventValidationOptions {
  /**
   * When the record has a key and no `ce_partitionkey` header, set the `partitionkey`
   * extension from the key.
   * @default false
   */
  keyToPartitionKey?: boolean;
}

/** Options of {@link encodeKafkaBinary}. */
export interface KafkaEncodeOptions {
  /**
   * Use the event's `partitionkey` extension as the record key (the header is kept too).
   * @default false
   */
  partitionKeyToKey?: boolean;
}

function headerAttribute(name: string): string {
  if (name === 'content-type') return 'datacontenttype';
  return name.startsWith('ce_') ? name.slice(3) : name;
}

function headerString(name: string, value: KafkaHeaderValue): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return decodeUtf8HeaderBytes(value, name, headerAttribute(name));
  if (value.length === 0) return undefined;
  if (value.length > 1) {
    throw new InvalidEventError(headerAttribute(name), 'duplicate-header', `header ${name} appears more than once`);
  }
  return headerString(name, value[0]);
}

function keyString(key: string | Uint8Array | null | undefined): string | undefined {
  if (key === null || key === undefined) return undefined;
  return typeof key === 'string' ? key : decodeUtf8(key, 'partitionkey', 'the record key');
}

/**
 * Decode a Kafka record into a CloudEvent, strictly validated. Structured mode when the
 * `content-type` header is `application/cloudevents+json`; binary mode otherwise. A `null`
 * value (tombstone) in binary mode is an event without data.
 * @throws InvalidEventError naming the attribute (or header) and rule
 * @throws UnsupportedFormatError for another `application/cloudevents` format
 * @example
 * const event = decodeKafka({ headers: message.headers, key: message.key, value: message.value });
 */
export function decodeKafka(record: KafkaRecordInput, options?: KafkaDecodeOptions): CloudEventJson {
  const opts = resolveEventValidationOptions(options);
  const body = typeof record.value === 'string' ? Buffer.from(record.value, 'utf8') : (record.value ?? null);
  const c = newCollected();
  c.plain = false; // Kafka header values are raw UTF-8: every String rule applies
  const headers = record.headers ?? {};
  for (const rawName of Object.keys(headers)) {
    const name = rawName.toLowerCase();
    const value = headerString(name, headers[rawName]);
    if (value === undefined) continue;
    c.headerBytes += name.length + value.length;
    if (name.startsWith('ce_') && name.length > 3) {
      const attr = attributeOfHeader(name, true);
      if (attr === 'datacontenttype') {
        if (c.attrs.datacontenttype === undefined) c.attrs.datacontenttype = value;
        continue;
      }
      addAttribute(c, attr, value, name);
    } else if (name === 'content-type') {
      if (c.contentType !== undefined) {
        throw new InvalidEventError(
          'datacontenttype',
          'duplicate-header',
          'header content-type appears more than once',
        );
      }
      c.contentType = value;
    }
  }
  const kind = structuredKind(c.contentType);
  if (kind === 'structured') return decodeStructuredBody(body ?? new Uint8Array(0), opts);
  if (kind !== undefined) throw new UnsupportedFormatError(c.contentType as string);
  if (c.contentType !== undefined) c.attrs.datacontenttype = c.contentType;
  if (options?.keyToPartitionKey === true && c.attrs.partitionkey === undefined) {
    const key = keyString(record.key);
    if (key !== undefined) c.attrs.partitionkey = key;
  }
  return finishBinary(c, body, opts);
}

/**
 * Encode an event as a Kafka record in binary mode: `ce_<name>` headers (UTF-8 canonical
 * strings, no percent-encoding), `content-type` for `datacontenttype`, the data as the value.
 * @throws InvalidEventError when the event is invalid
 */
export function encodeKafkaBinary(event: CloudEventJson, options: KafkaEncodeOptions = {}): KafkaRecord {
  const parts = binaryParts(event);
  const headers: Record<string, string> = {};
  for (const [name, value] of parts.attributes) headers[`ce_${name}`] = value;
  if (parts.contentType !== undefined) headers['content-type'] = parts.contentType;
  const partitionKey = event.partitionkey;
  const key = options.partitionKeyToKey === true && partitionKey !== undefined ? String(partitionKey) : null;
  return { headers, key, value: parts.body };
}

/**
 * Encode an event as a Kafka record in structured mode (`content-type: application/cloudevents+json`).
 * @throws InvalidEventError when the event is invalid
 */
export function encodeKafkaStructured(event: CloudEventJson, options: KafkaEncodeOptions = {}): KafkaRecord {
  const partitionKey = event.partitionkey;
  const key = options.partitionKeyToKey === true && partitionKey !== undefined ? String(partitionKey) : null;
  return { headers: { 'content-type': CE_JSON }, key, value: encodeStructuredBody(event) };
}
