/**
 * OpenTelemetry SDK setup for meshroute processes (the only place the SDK is used; libraries take
 * `@opentelemetry/api` only). Configured by the standard `OTEL_*` variables:
 *
 * - `OTEL_SDK_DISABLED=true` turns everything off.
 * - Traces: `OTEL_TRACES_EXPORTER` (`otlp`, `console`, `none`; default `otlp` when an OTLP endpoint
 *   is set, else `none`), `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
 *   `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER` (+`_ARG`), `OTEL_BSP_SCHEDULE_DELAY`.
 * - Metrics: `OTEL_METRICS_EXPORTER` (`otlp`, `prometheus`, `none`, comma-separated),
 *   `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, `OTEL_METRIC_EXPORT_INTERVAL`; a Prometheus endpoint on
 *   `MESHROUTE_METRICS_PORT` (`/metrics`).
 * - `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`.
 *
 * W3C trace context propagation is registered, and an AsyncLocalStorage context manager (see
 * {@link TelemetryOptions.asyncContext}); {@link traceLogFields} puts the active trace and span ids
 * on pino lines written inside a span.
 */

import { ConfigError } from '@meshroute/mesh';
import { context, metrics, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { type IMetricReader, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  type Sampler,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';

/** Default interval of OTLP metric exports. */
export const DEFAULT_METRIC_EXPORT_INTERVAL_MS = 60_000;

/** What {@link startTelemetry} started. */
export interface Telemetry {
  readonly tracing: boolean;
  readonly metrics: boolean;
  /** The Prometheus endpoint port, when serving one. */
  readonly prometheusPort: number | undefined;
  /** Flush and stop exporters. Idempotent. */
  shutdown(): Promise<void>;
}

/** Options of {@link startTelemetry}. */
export interface TelemetryOptions {
  /** The environment (only `cli` reads it). */
  env: Readonly<Record<string, string | undefined>>;
  /** `service.name` unless `OTEL_SERVICE_NAME` says otherwise. */
  serviceName: string;
  /**
   * Register the AsyncLocalStorage context manager, so that log lines written inside a span
   * (`context.with`) carry its trace and span ids. The libraries pass trace context explicitly and
   * do not need it; it costs the router about 13% of its throughput on Node 20 (see
   * `bench/tracing-overhead.bench.ts`), so it is off for `meshroute-router` by default.
   * `MESHROUTE_OTEL_ASYNC_CONTEXT=true|false` overrides.
   * @default serviceName !== 'meshroute-router'
   */
  asyncContext?: boolean;
}

function asyncContext(env: TelemetryOptions['env'], options: TelemetryOptions): boolean {
  const v = env.MESHROUTE_OTEL_ASYNC_CONTEXT?.trim().toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  if (v !== undefined && v !== '') {
    throw new ConfigError('MESHROUTE_OTEL_ASYNC_CONTEXT', `must be true or false, got ${JSON.stringify(v)}`);
  }
  return options.asyncContext ?? options.serviceName !== 'meshroute-router';
}

function keyValues(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (raw ?? '').split(',')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    out[decodeURIComponent(part.slice(0, i).trim())] = decodeURIComponent(part.slice(i + 1).trim());
  }
  return out;
}

function sampler(env: TelemetryOptions['env']): Sampler {
  const name = (env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on').trim().toLowerCase();
  const ratio = (): number => {
    const v = Number(env.OTEL_TRACES_SAMPLER_ARG ?? '1');
    if (!(v >= 0 && v <= 1))
      throw new ConfigError('OTEL_TRACES_SAMPLER_ARG', `must be in [0, 1], got ${env.OTEL_TRACES_SAMPLER_ARG}`);
    return v;
  };
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio());
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) });
    default:
      throw new ConfigError('OTEL_TRACES_SAMPLER', `unknown sampler ${JSON.stringify(name)}`);
  }
}

function exporters(raw: string | undefined, fallback: string): string[] {
  return (raw ?? fallback)
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '' && s !== 'none');
}

function signalUrl(env: TelemetryOptions['env'], specific: string | undefined, path: string): string | undefined {
  if (specific) return specific;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT;
  return base ? `${base.replace(/\/+$/, '')}${path}` : undefined;
}

/**
 * Start the OpenTelemetry SDK for this process from the `OTEL_*` environment. With nothing
 * configured it registers nothing and the libraries' instrumentation stays a no-op.
 * @throws ConfigError for an invalid variable
 */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  const env = options.env;
  const off: Telemetry = { tracing: false, metrics: false, prometheusPort: undefined, shutdown: async () => {} };
  if ((env.OTEL_SDK_DISABLED ?? '').toLowerCase() === 'true') return off;
  const resource = resourceFromAttributes({
    ...keyValues(env.OTEL_RESOURCE_ATTRIBUTES),
    'service.name': env.OTEL_SERVICE_NAME ?? options.serviceName,
  });
  const headers = keyValues(env.OTEL_EXPORTER_OTLP_HEADERS);
  const traceUrl = signalUrl(env, env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, '/v1/traces');
  const metricUrl = signalUrl(env, env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, '/v1/metrics');
  const shutdowns: (() => Promise<void>)[] = [];

  const processors: SpanProcessor[] = [];
  const delay = env.OTEL_BSP_SCHEDULE_DELAY === undefined ? undefined : Number(env.OTEL_BSP_SCHEDULE_DELAY);
  if (delay !== undefined && !(delay >= 0)) {
    throw new ConfigError(
      'OTEL_BSP_SCHEDULE_DELAY',
      `must be a non-negative number, got ${env.OTEL_BSP_SCHEDULE_DELAY}`,
    );
  }
  for (const name of exporters(env.OTEL_TRACES_EXPORTER, traceUrl ? 'otlp' : 'none')) {
    if (name === 'otlp') {
      if (!traceUrl) throw new ConfigError('OTEL_EXPORTER_OTLP_ENDPOINT', 'the otlp trace exporter needs an endpoint');
      processors.push(
        new BatchSpanProcessor({
          exporter: new OTLPTraceExporter({ url: traceUrl, headers }),
          ...(delay !== undefined ? { scheduledDelayMillis: delay } : {}),
        }),
      );
    } else if (name === 'console') {
      processors.push(new BatchSpanProcessor({ exporter: new ConsoleSpanExporter() }));
    } else {
      throw new ConfigError('OTEL_TRACES_EXPORTER', `unknown exporter ${JSON.stringify(name)} (otlp, console, none)`);
    }
  }
  const readers: IMetricReader[] = [];
  const interval = Number(env.OTEL_METRIC_EXPORT_INTERVAL ?? DEFAULT_METRIC_EXPORT_INTERVAL_MS);
  for (const name of exporters(env.OTEL_METRICS_EXPORTER, metricUrl ? 'otlp' : 'none')) {
    if (name === 'otlp') {
      if (!metricUrl)
        throw new ConfigError('OTEL_EXPORTER_OTLP_ENDPOINT', 'the otlp metric exporter needs an endpoint');
      readers.push(
        new PeriodicExportingMetricReader({
          exporter: new OTLPMetricExporter({ url: metricUrl, headers }),
          exportIntervalMillis: interval,
          exportTimeoutMillis: Math.min(30_000, interval),
        }),
      );
    } else if (name !== 'prometheus') {
      throw new ConfigError(
        'OTEL_METRICS_EXPORTER',
        `unknown exporter ${JSON.stringify(name)} (otlp, prometheus, none)`,
      );
    }
  }
  let prometheusPort: number | undefined;
  if (env.MESHROUTE_METRICS_PORT !== undefined && env.MESHROUTE_METRICS_PORT !== '') {
    prometheusPort = Number(env.MESHROUTE_METRICS_PORT);
    if (!Number.isInteger(prometheusPort) || prometheusPort < 0 || prometheusPort > 65_535) {
      throw new ConfigError('MESHROUTE_METRICS_PORT', `must be a port number, got ${env.MESHROUTE_METRICS_PORT}`);
    }
    readers.push(new PrometheusExporter({ port: prometheusPort, host: env.MESHROUTE_METRICS_HOST ?? '0.0.0.0' }));
  }
  if (processors.length === 0 && readers.length === 0) return off;

  if (asyncContext(env, options)) context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  if (processors.length > 0) {
    const provider = new TracerProvider({ resource, sampler: sampler(env), spanProcessors: processors });
    trace.setGlobalTracerProvider(provider);
    shutdowns.push(() => provider.shutdown());
  }
  if (readers.length > 0) {
    const provider = new MeterProvider({ resource, readers });
    metrics.setGlobalMeterProvider(provider);
    shutdowns.push(() => provider.shutdown());
  }
  let done: Promise<void> | undefined;
  return {
    tracing: processors.length > 0,
    metrics: readers.length > 0,
    prometheusPort,
    shutdown() {
      done ??= Promise.allSettled(shutdowns.map((s) => s())).then(() => {
        trace.disable();
        metrics.disable();
        propagation.disable();
        context.disable();
      });
      return done;
    },
  };
}

/**
 * The active trace and span ids, for pino's `mixin` (empty outside a span).
 * @example pino({ mixin: traceLogFields })
 */
export function traceLogFields(): Record<string, string> {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const sc = span.spanContext();
  if (!trace.isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId, trace_flags: `0${sc.traceFlags.toString(16)}`.slice(-2) };
}
