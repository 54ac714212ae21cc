/**
 * OpenTelemetry instrumentation of the router, on `@opentelemetry/api` only (no-op unless the
 * process registered an SDK, which `cli` does). One span per event (`route <type>`), joined to the
 * producer's trace through the CloudEvents `traceparent`; one child span per decision and per
 * dispatch attempt, whose context travels to the agent in the work item. Metrics: events accepted,
 * routed, dead-lettered (by reason), decision and end-to-end latency, per-agent utilisation and
 * queue depth, estimated gCO2e per event.
 */
import {
  type Attributes,
  context,
  type Meter,
  metrics,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  type Tracer,
  trace,
} from '@opentelemetry/api';

/** Instrumentation scope name of the router's tracer and meter. */
export const ROUTER_INSTRUMENTATION_SCOPE = '@meshroute/router';

/**
 * Power assumed for one job when an agent announces none (label `powerWatts`), in watts; with the
 * agent's grid carbon intensity and the job's execution time it gives the gCO2e estimate.
 */
export const DEFAULT_ASSUMED_JOB_POWER_W = 15;

const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The remote span context of a W3C `traceparent`, or `undefined` when it is not a valid one. */
export function spanContextOf(traceparent: unknown, tracestate: unknown): SpanContext | undefined {
  if (typeof traceparent !== 'string') return undefined;
  const m = TRACEPARENT_RE.exec(traceparent.trim());
  if (!m) return undefined;
  const traceId = m[1] as string;
  const spanId = m[2] as string;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  const sc: SpanContext = {
    traceId,
    spanId,
    traceFlags: Number.parseInt(m[3] as string, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  if (typeof tracestate === 'string' && tracestate !== '') {
    const value = tracestate;
    sc.traceState = {
      get: (k) =>
        value
          .split(',')
          .find((p) => p.startsWith(`${k}=`))
          ?.slice(k.length + 1),
      set() {
        return this;
      },
      unset() {
        return this;
      },
      serialize: () => value,
    };
  }
  return sc;
}

/** The `traceparent` of a span, or `undefined` for a non-recording no-op span. */
export function traceparentOfSpan(span: Span): string | undefined {
  const sc = span.spanContext();
  if (!trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** What the router reports about one agent for the utilisation and queue gauges. */
export interface AgentLoad {
  agentId: string;
  slots: number;
  inFlight: number;
  queueDepth: number;
}

/** The router's instruments. */
export interface RouterTelemetry {
  readonly tracer: Tracer;
  /**
   * Start the span of an event, child of the producer's span when the event carries a trace
   * context. `attributes` is called only when the span records (no SDK, or not sampled: no cost).
   */
  startEvent(event: Record<string, unknown> | undefined, attributes: () => Attributes): Span;
  /** A child span of `parent`; `attributes` is called only when the span records. */
  startChild(parent: Span, name: string, kind: SpanKind, attributes: () => Attributes): Span;
  /** End a span, marking an error when `error` is given. */
  end(span: Span, error?: { code: string; message: string }): void;
  /** Count an event accepted from ingress. */
  accepted(): void;
  /** Count a dispatch to `agentId`. */
  routed(agentId: string): void;
  /** Count an event dead-lettered for `reason`. */
  deadLettered(reason: string): void;
  /** Record a policy decision's duration, by its outcome. */
  decisionMs(ms: number, outcome: string): void;
  /** Record an event's time from its `time` (or receipt) to its outcome. */
  endToEndMs(ms: number, outcome: string): void;
  /** Record an event's estimated emissions on `agentId`. */
  carbonGrams(grams: number, agentId: string): void;
}

/**
 * Attribute sets by one varying value, built once: the hot path records metrics for every event
 * and must not allocate an attribute object each time. Bounded (agents, outcomes and reasons are
 * few; past the bound the oldest set is dropped).
 */
function attributeCache(base: Attributes, key: string): (value: string) => Attributes {
  const cache = new Map<string, Attributes>();
  return (value) => {
    let a = cache.get(value);
    if (a === undefined) {
      a = Object.freeze({ ...base, [key]: value });
      if (cache.size >= 4_096) cache.delete(cache.keys().next().value as string);
      cache.set(value, a);
    }
    return a;
  };
}

/**
 * Create the router's instruments from the global tracer and meter providers, and observe agent
 * load through `loads` (called at each metrics collection).
 */
export function createRouterTelemetry(routerId: string, loads: () => Iterable<AgentLoad>): RouterTelemetry {
  const tracer = trace.getTracer(ROUTER_INSTRUMENTATION_SCOPE);
  const meter: Meter = metrics.getMeter(ROUTER_INSTRUMENTATION_SCOPE);
  const base = Object.freeze({ 'meshroute.router.id': routerId });
  const byAgent = attributeCache(base, 'meshroute.agent.id');
  const byReason = attributeCache(base, 'meshroute.dead_letter.reason');
  const byOutcome = attributeCache(base, 'meshroute.outcome');
  const byDecisionOutcome = attributeCache(base, 'meshroute.decision.outcome');
  const accepted = meter.createCounter('meshroute.events.accepted', {
    description: 'Events accepted from ingress (valid CloudEvents with a workload)',
  });
  const routed = meter.createCounter('meshroute.events.routed', { description: 'Dispatches to an agent' });
  const deadLettered = meter.createCounter('meshroute.events.dead_lettered', {
    description: 'Events dead-lettered, by reason',
  });
  const decision = meter.createHistogram('meshroute.decision.duration', {
    description: 'Policy decision time',
    unit: 'ms',
  });
  const e2e = meter.createHistogram('meshroute.event.duration', {
    description: 'From the event time (or receipt) to its outcome',
    unit: 'ms',
  });
  const carbon = meter.createHistogram('meshroute.event.carbon', {
    description: 'Estimated emissions of an event (grid intensity x assumed job power x execution time)',
    unit: 'gCO2e',
  });
  const utilisation = meter.createObservableGauge('meshroute.agent.utilization', {
    description: 'Busy slots / slots of each agent as the router sees it',
    unit: '1',
  });
  const queueDepth = meter.createObservableGauge('meshroute.agent.queue_depth', {
    description: 'Queue depth announced by each agent',
  });
  meter.addBatchObservableCallback(
    (r) => {
      for (const l of loads()) {
        const a = { ...base, 'meshroute.agent.id': l.agentId };
        r.observe(utilisation, l.slots > 0 ? Math.min(1, l.inFlight / l.slots) : 0, a);
        r.observe(queueDepth, l.queueDepth, a);
      }
    },
    [utilisation, queueDepth],
  );
  return {
    tracer,
    startEvent(event, attributes) {
      const parent = spanContextOf(event?.traceparent, event?.tracestate);
      const ctx = parent ? trace.setSpanContext(context.active(), parent) : context.active();
      const type = typeof event?.type === 'string' ? event.type : 'invalid';
      const span = tracer.startSpan(`route ${type}`, { kind: SpanKind.CONSUMER, attributes: base }, ctx);
      if (span.isRecording()) span.setAttributes(attributes());
      return span;
    },
    startChild(parent, name, kind, attributes) {
      const span = tracer.startSpan(name, { kind }, trace.setSpan(context.active(), parent));
      if (span.isRecording()) span.setAttributes(attributes());
      return span;
    },
    end(span, error) {
      if (error) {
        span.setAttribute('error.type', error.code);
        span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
      }
      span.end();
    },
    accepted: () => accepted.add(1, base),
    routed: (agentId) => routed.add(1, byAgent(agentId)),
    deadLettered: (reason) => deadLettered.add(1, byReason(reason)),
    decisionMs: (ms, outcome) => decision.record(ms, byDecisionOutcome(outcome)),
    endToEndMs: (ms, outcome) => e2e.record(Math.max(0, ms), byOutcome(outcome)),
    carbonGrams: (g, agentId) => carbon.record(g, byAgent(agentId)),
  };
}

/** Estimated gCO2e of one job: intensity (g/kWh) x power (W) x time (ms). */
export function estimateGrams(intensityGPerKwh: number, powerW: number, executionMs: number): number {
  return intensityGPerKwh * (powerW / 1000) * (executionMs / 3_600_000);
}
