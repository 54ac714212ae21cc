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

/**
 * Turn an SDK `CloudEvent` (or any object shaped like one) into a strictly validated
 * {@link CloudEventJson}. Binary data becomes `data_base64`; unset attributes are dropped;
 * `time` is kept as written (the SDK's `toJSON()` would rewrite it).
 * @throws InvalidEventError naming the attribute and rule
 */
export function fromSdkEvent(
  event: Readonly<Record<string, unknown>>,
  options?: EventValidationOptions,
): CloudEventJson {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(event)) {
    const v = event[key];
    if (v === undefined) continue;
    if (key === 'data' && v instanceof Uint8Array) continue;
    out[key] = v;
  }
  const data = event.data;
  if (data instanceof Uint8Array) {
    out.data_base64 = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
  }
  return validateEvent(out, options);
}
