import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { freePort } from '@meshroute/transport-nats';
import { metrics, trace } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import { startTelemetry, type Telemetry, traceLogFields } from './telemetry.js';

describe('startTelemetry', () => {
  let t: Telemetry | undefined;
  afterEach(async () => {
    await t?.shutdown();
    t = undefined;
  });

  it('registers nothing when no OTEL_* variable asks for it, or when the SDK is disabled', () => {
    t = startTelemetry({ env: {}, serviceName: 's' });
    expect(t).toMatchObject({ tracing: false, metrics: false });
    expect(trace.getTracer('x').startSpan('a').isRecording()).toBe(false);
    t = startTelemetry({
      env: { OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x:4318' },
      serviceName: 's',
    });
    expect(t.tracing).toBe(false);
  });

  it('rejects invalid variables, naming them', () => {
    expect(() =>
      startTelemetry({
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x:4318', OTEL_TRACES_SAMPLER: 'sometimes' },
        serviceName: 's',
      }),
    ).toThrow(/OTEL_TRACES_SAMPLER: unknown sampler "sometimes"/);
    expect(() => startTelemetry({ env: { OTEL_TRACES_EXPORTER: 'otlp' }, serviceName: 's' })).toThrow(
      /OTEL_EXPORTER_OTLP_ENDPOINT/,
    );
    expect(() => startTelemetry({ env: { MESHROUTE_METRICS_PORT: 'abc' }, serviceName: 's' })).toThrow(
      /MESHROUTE_METRICS_PORT/,
    );
    expect(() =>
      startTelemetry({
        env: { OTEL_TRACES_EXPORTER: 'console', MESHROUTE_OTEL_ASYNC_CONTEXT: 'maybe' },
        serviceName: 's',
      }),
    ).toThrow(/MESHROUTE_OTEL_ASYNC_CONTEXT/);
  });

  it('records spans at 100% and puts their ids on log lines written inside them', async () => {
    let posted = 0;
    const sink = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        posted++;
        res.end('{}');
      });
    });
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
    t = startTelemetry({
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(sink.address() as AddressInfo).port}`,
        OTEL_METRICS_EXPORTER: 'none',
      },
      serviceName: 'meshroute-agent',
    });
    expect(t.tracing).toBe(true);
    const tracer = trace.getTracer('test');
    const fields = tracer.startActiveSpan('work', (span) => {
      const f = traceLogFields();
      span.end();
      return { f, sc: span.spanContext() };
    });
    expect(fields.f).toEqual({ trace_id: fields.sc.traceId, span_id: fields.sc.spanId, trace_flags: '01' });
    expect(traceLogFields()).toEqual({});
    await t.shutdown();
    expect(posted).toBe(1);
    sink.close();
  });

  it('serves the metrics of the process on a Prometheus endpoint', async () => {
    const port = await freePort('127.0.0.1');
    t = startTelemetry({
      env: { MESHROUTE_METRICS_PORT: String(port), MESHROUTE_METRICS_HOST: '127.0.0.1' },
      serviceName: 's',
    });
    metrics.getMeter('test').createCounter('meshroute.test.things').add(3, { kind: 'a' });
    let text = '';
    for (let i = 0; i < 50 && !text.includes('meshroute_test_things'); i++) {
      text = await fetch(`http://127.0.0.1:${port}/metrics`).then(
        (r) => r.text(),
        () => '',
      );
    }
    expect(text).toMatch(/meshroute_test_things_total\{[^}]*kind="a"[^}]*\} 3/);
  });
});
