/**
 * OpenTelemetry instrumentation of the agent on `@opentelemetry/api` only (no-op unless the process
 * registered an SDK): one `execute <workload>` span per work item, child of the router's dispatch
 * span whose context arrives in the work item (`traceparent`/`tracestate`), and job metrics.
 */
import type { WorkItem, WorkResult } from '@meshroute/mesh';
import { context, metrics, type SpanContext, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';

/** Instrumentation scope of the agent's tracer and meter. */
export const AGENT_INSTRUMENTATION_SCOPE = '@meshroute/compute-agent';

const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function remoteContext(work: WorkItem | undefined): SpanContext | undefined {
  const m = typeof work?.traceparent === 'string' ? TRACEPARENT_RE.exec(work.traceparent) : null;
  if (!m) return undefined;
  const sc: SpanContext = {
    traceId: m[1] as string,
    spanId: m[2] as string,
    traceFlags: Number.parseInt(m[3] as string, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  return trace.isSpanContextValid(sc) ? sc : undefined;
}

/**
 * Wrap the agent's work handler with a span and job metrics.
 * @example const handle = tracedHandler(agentId, backendKind, handleWork);
 */
export function tracedHandler(
  agentId: string,
  backend: string,
  handler: (work: WorkItem) => Promise<WorkResult>,
): (work: WorkItem) => Promise<WorkResult> {
  const tracer = trace.getTracer(AGENT_INSTRUMENTATION_SCOPE);
  const meter = metrics.getMeter(AGENT_INSTRUMENTATION_SCOPE);
  const jobs = meter.createCounter('meshroute.agent.jobs', { description: 'Work items answered, by outcome' });
  const execution = meter.createHistogram('meshroute.agent.execution.duration', {
    description: 'Guest execution time',
    unit: 'ms',
  });
  const base = { 'meshroute.agent.id': agentId, 'meshroute.backend': backend };
  return async (work) => {
    const parent = remoteContext(work);
    const ctx = parent ? trace.setSpanContext(context.active(), parent) : context.active();
    const span = tracer.startSpan(
      `execute ${String(work?.workload)}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          ...base,
          'meshroute.workload': String(work?.workload),
          'meshroute.work.id': String(work?.workId),
          'meshroute.attempt': typeof work?.attempt === 'number' ? work.attempt : 0,
        },
      },
      ctx,
    );
    try {
      const r = await context.with(trace.setSpan(ctx, span), () => handler(work));
      span.setAttributes({
        'meshroute.ok': r.ok,
        'meshroute.execution_ms': r.executionMs,
        'meshroute.queue_ms': r.queueMs,
      });
      if (!r.ok) {
        span.setAttribute('error.type', r.error?.code ?? 'WORKLOAD_FAILED');
        span.setStatus({ code: SpanStatusCode.ERROR, message: r.error?.message ?? 'failed' });
      }
      jobs.add(1, { ...base, 'meshroute.outcome': r.ok ? 'ok' : (r.error?.code ?? 'WORKLOAD_FAILED') });
      if (r.ok) execution.record(r.executionMs, base);
      return r;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  };
}
