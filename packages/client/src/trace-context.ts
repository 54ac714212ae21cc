/**
 * W3C trace context on CloudEvents (the distributed tracing extension: `traceparent`,
 * `tracestate`), written from an OpenTelemetry span context without needing a registered
 * propagator.
 */
import { type SpanContext, TraceFlags } from '@opentelemetry/api';

const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * The `traceparent` value of a span context (version 00), or `undefined` when the context is
 * invalid (the no-op tracer's).
 * @example traceparentOf(span.spanContext()) // '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
 */
export function traceparentOf(ctx: SpanContext): string | undefined {
  if (!/^[0-9a-f]{32}$/.test(ctx.traceId) || /^0+$/.test(ctx.traceId)) return undefined;
  if (!/^[0-9a-f]{16}$/.test(ctx.spanId) || /^0+$/.test(ctx.spanId)) return undefined;
  const flags = (ctx.traceFlags & 0xff).toString(16).padStart(2, '0');
  return `00-${ctx.traceId}-${ctx.spanId}-${flags}`;
}

/**
 * Parse a `traceparent` (and optional `tracestate`) into a remote span context, or `undefined`
 * when it is not a valid version-00 value.
 */
export function spanContextOfTraceparent(traceparent: unknown, tracestate?: unknown): SpanContext | undefined {
  if (typeof traceparent !== 'string') return undefined;
  const m = TRACEPARENT_RE.exec(traceparent.trim());
  if (!m) return undefined;
  const [, traceId, spanId, flags] = m as unknown as [string, string, string, string];
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  const sc: SpanContext = {
    traceId,
    spanId,
    traceFlags: Number.parseInt(flags, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  if (typeof tracestate === 'string' && tracestate !== '') {
    sc.traceState = parseTraceState(tracestate);
  }
  return sc;
}

function parseTraceState(value: string): SpanContext['traceState'] {
  const entries = new Map<string, string>();
  for (const part of value.split(',')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    entries.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  const make = (m: Map<string, string>): NonNullable<SpanContext['traceState']> => ({
    set: (k, v) => make(new Map([[k, v], ...[...m].filter(([key]) => key !== k)])),
    unset: (k) => make(new Map([...m].filter(([key]) => key !== k))),
    get: (k) => m.get(k),
    serialize: () => [...m].map(([k, v]) => `${k}=${v}`).join(','),
  });
  return make(entries);
}
