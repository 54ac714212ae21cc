/**
 * Building correct CloudEvents for the mesh: id, source, time, data, the intent extensions and
 * the trace context, strictly validated before anything is sent.
 */
import { randomUUID } from 'node:crypto';
import {
  type CloudEventJson,
  type IntentInput,
  InvalidEventError,
  intentToAttributes,
  validateEvent,
} from '@meshroute/mesh';

/** The event a producer describes; the client fills in the rest. */
export interface EventInput {
  /** CloudEvents `type`, e.g. `com.example.order.created`. */
  type: string;
  /** CloudEvents `source` (URI-reference). @default the client's source */
  source?: string;
  /** CloudEvents `id`. @default a random UUID */
  id?: string;
  /** CloudEvents `subject`. */
  subject?: string;
  /** CloudEvents `time`. @default now */
  time?: Date | string;
  /**
   * The data. A `Uint8Array` is sent as binary (`data_base64` in JSON); a string under a non-JSON
   * `datacontenttype` as text; anything else as JSON.
   */
  data?: unknown;
  /** Media type of `data`. @default `application/json` for JSON data, `application/octet-stream` for bytes */
  datacontenttype?: string;
  /** CloudEvents `dataschema` (absolute URI). */
  dataschema?: string;
  /** Further extension attributes (lowercase a-z0-9 names; String, Boolean or Integer values). */
  extensions?: Readonly<Record<string, string | number | boolean>>;
}

/** What {@link buildEvent} needs beyond the input. */
export interface BuildEventDefaults {
  source: string;
  now: () => number;
  newId: () => string;
  maxEventBytes: number;
}

/** Default event source of a client. */
export const DEFAULT_CLIENT_SOURCE = '/meshroute/client';

/** Default `type` of events sent by `invoke`. */
export const DEFAULT_INVOKE_TYPE = 'dev.meshroute.invoke';

const JSON_TYPE_RE = /^application\/(?:[^;]*\+)?json(?:;|$)|^text\/json(?:;|$)/i;

/**
 * Build a strictly valid CloudEvent from `input` and `intent`.
 * @throws InvalidEventError naming the attribute; InvalidIntentError naming the intent attribute
 * @example
 * buildEvent({ type: 'demo.job', data: { n: 1 } }, { residency: 'eu' }, defaults)
 */
export function buildEvent(input: EventInput, intent: IntentInput, defaults: BuildEventDefaults): CloudEventJson {
  if (typeof input !== 'object' || input === null) {
    throw new InvalidEventError('(event)', 'object', 'the event must be an object with at least a type');
  }
  const event: CloudEventJson = {
    specversion: '1.0',
    id: input.id ?? defaults.newId(),
    source: input.source ?? defaults.source,
    type: input.type,
    time:
      input.time === undefined
        ? new Date(defaults.now()).toISOString()
        : input.time instanceof Date
          ? input.time.toISOString()
          : input.time,
  };
  if (input.subject !== undefined) event.subject = input.subject;
  if (input.dataschema !== undefined) event.dataschema = input.dataschema;
  for (const [k, v] of Object.entries(input.extensions ?? {})) {
    if (k in event) {
      throw new InvalidEventError(k, 'reserved', `extension ${JSON.stringify(k)} would overwrite a core attribute`);
    }
    event[k] = v;
  }
  for (const [k, v] of Object.entries(intentToAttributes(intent))) event[k] = v;
  const data = input.data;
  if (data instanceof Uint8Array) {
    event.datacontenttype = input.datacontenttype ?? 'application/octet-stream';
    event.data_base64 = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
  } else if (data !== undefined) {
    const ct = input.datacontenttype ?? 'application/json';
    event.datacontenttype = ct;
    if (!JSON_TYPE_RE.test(ct) && typeof data !== 'string') {
      throw new InvalidEventError(
        'data',
        'content-type',
        `data under the non-JSON content type ${JSON.stringify(ct)} must be a string or a Uint8Array`,
      );
    }
    event.data = data;
  } else if (input.datacontenttype !== undefined) {
    event.datacontenttype = input.datacontenttype;
  }
  return validateEvent(event, { maxEventBytes: defaults.maxEventBytes });
}

/** Default id generator: a random UUID. */
export const randomEventId = (): string => randomUUID();
