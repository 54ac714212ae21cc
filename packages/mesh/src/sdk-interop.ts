/**
 * Interop with the `cloudevents` npm SDK (v10). Its `CloudEvent` class is convenient for
 * emitting, but lenient on receive (it invents a missing `id`, replaces a bad `time` with the
 * current time, accepts specversion `0.1` in `validate()`), so every SDK event that enters
 * meshroute passes {@link validateEvent} first.
 */
import { Buffer } from 'node:buffer';
import { CloudEvent } from 'cloudevents';
import { type CloudEventJson, type EventValidationOptions, validateEvent } from './cloudevent.js';

/**
 * Turn a (strictly validated) meshroute event into an SDK `CloudEvent`, e.g. to send it with
 * the SDK's emitters. `data_base64` becomes binary `data` in the SDK's own way.
 * @throws InvalidEventError when the event is invalid
 */
export function toSdkEvent(event: CloudEventJson): CloudEvent<unknown> {
  return new CloudEvent<unknown>({ ...validateEvent(event) }, true);
}

function sdkBytes(data: ArrayBufferView): Uint8Array {
  if (data instanceof Uint8Array) return data;
  // The SDK decodes data_base64 into a Uint32Array holding one byte per element.
  if (data instanceof Uint32Array || data instanceof Uint16Array) return Uint8Array.from(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Turn an SDK `CloudEvent` (or any object shaped like one) into a strictly validated
 * {@link CloudEventJson}. Binary data becomes `data_base64`; unset attributes are dropped;
 * `time` is kept as written (the SDK's `toJSON()` would rewrite it). Note that the SDK itself
 * fills in a missing `id` or `time` when it builds the event, which cannot be undone here.
 * @throws InvalidEventError naming the attribute and rule
 */
export function fromSdkEvent(
  event: Readonly<Record<string, unknown>>,
  options?: EventValidationOptions,
): CloudEventJson {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(event)) {
    const v = event[key];
    if (v === undefined || key === 'data') continue;
    out[key] = v;
  }
  const data = event.data;
  if (data !== undefined && typeof out.data_base64 !== 'string') {
    if (ArrayBuffer.isView(data)) {
      const bytes = sdkBytes(data);
      out.data_base64 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
    } else out.data = data;
  }
  return validateEvent(out, options);
}
