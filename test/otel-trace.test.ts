/**
 * One connected trace across processes: the producer (this process, the client with an in-memory
 * span exporter) publishes an event; a `meshroute router` process places it on a flaky agent (this
 * process, which refuses with a retryable error), retries and fails over to a `meshroute agent`
 * process that runs the checksum workload. The router and the agent export over OTLP/HTTP (JSON) to
 * a receiver in this test. Then the router's Prometheus endpoint is read after the known workload.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createClient, NoEligibleAgentError } from '@meshroute/client';
import { type CapacityReport, decodeMessage, meshNames, type WorkResult } from '@meshroute/mesh';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, freePort, type MeshConnection, natsAgentMesh, provisionMesh } from '@meshroute/transport-nats';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(root, 'packages/cli/dist/bin.js');
const run = promisify(execFile);

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: Record<string, unknown>;
  service: string;
  status?: { code?: number };
}

function value(v: Record<string, unknown> | undefined): unknown {
  if (!v) return undefined;
  if ('stringValue' in v) return v.stringValue;
  if ('intValue' in v) return Number(v.intValue);
  if ('doubleValue' in v) return v.doubleValue;
  if ('boolValue' in v) return v.boolValue;
  return undefined;
}

const idHex = (id: unknown): string =>
  typeof id === 'string' && /^[0-9a-f]+$/.test(id) ? id : Buffer.from(String(id ?? ''), 'base64').toString('hex');

let nats: TestNatsServer;
let conn: MeshConnection;
let receiver: Server;
let otlpUrl: string;
let metricsPort: number;
let routerUrl: string;
const spans: OtlpSpan[] = [];
/** Latest cumulative sum of each OTLP counter the router exported. */
const otlpSums = new Map<string, number>();
const children: ChildProcess[] = [];
const heartbeats: CapacityReport[] = [];
const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });

function spawnCli(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MESHROUTE_LOG_LEVEL: 'warn', ...env },
  });
  child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
  children.push(child);
  return child;
}

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/metrics') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          resourceMetrics: {
            scopeMetrics: {
              metrics: { name: string; sum?: { dataPoints: { asInt?: string | number; asDouble?: number }[] } }[];
            }[];
          }[];
        };
        for (const rm of body.resourceMetrics ?? []) {
          for (const sm of rm.scopeMetrics ?? []) {
            for (const m of sm.metrics ?? []) {
              if (!m.sum) continue;
              otlpSums.set(
                m.name,
                m.sum.dataPoints.reduce((a, d) => a + Number(d.asInt ?? d.asDouble ?? 0), 0),
              );
            }
          }
        }
      }
      if (req.url === '/v1/traces') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          resourceSpans: {
            resource: { attributes: { key: string; value: Record<string, unknown> }[] };
            scopeSpans: { spans: Record<string, unknown>[] }[];
          }[];
        };
        for (const rs of body.resourceSpans ?? []) {
          const service = String(value(rs.resource.attributes.find((a) => a.key === 'service.name')?.value));
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              const attributes: Record<string, unknown> = {};
              for (const a of (s.attributes as { key: string; value: Record<string, unknown> }[]) ?? []) {
                attributes[a.key] = value(a.value);
              }
              spans.push({
                traceId: idHex(s.traceId),
                spanId: idHex(s.spanId),
                ...(s.parentSpanId ? { parentSpanId: idHex(s.parentSpanId) } : {}),
                name: String(s.name),
                attributes,
                service,
                status: s.status as { code?: number },
              });
            }
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  otlpUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  trace.setGlobalTracerProvider(provider);

  nats = await startNatsServer();
  conn = await connectMesh({ servers: nats.url, name: 'otel-it' });
  await provisionMesh(conn);
  conn.nc.subscribe(meshNames().capacityWildcard, {
    callback: (_e, msg) => heartbeats.push(decodeMessage('meshroute.capacity/v1', msg.data)),
  });
  const reg = await run(process.execPath, [
    BIN,
    'workload',
    'register',
    join(root, 'deploy/workloads/checksum.yaml'),
    '--nats-url',
    nats.url,
  ]);
  expect(reg.stdout).toContain('registered checksum');
  metricsPort = await freePort();
  const otelEnv = {
    OTEL_EXPORTER_OTLP_ENDPOINT: otlpUrl,
    OTEL_BSP_SCHEDULE_DELAY: '50',
    OTEL_METRICS_EXPORTER: 'none',
  };
  spawnCli(
    [
      'agent',
      '--backend',
      'wasm',
      '--id',
      'steady-de',
      '--region',
      'eu-central',
      '--jurisdiction',
      'DE',
      '--carbon',
      '400',
      '--heartbeat-interval-ms',
      '250',
      '--nats-url',
      nats.url,
    ],
    { ...otelEnv, OTEL_SERVICE_NAME: 'agent-steady-de' },
  );
  await waitFor('the steady agent heartbeat', () => heartbeats.find((h) => h.agentId === 'steady-de'), {
    timeoutMs: 30_000,
  });
  const router = spawnCli(
    [
      'router',
      '--nats-url',
      nats.url,
      '--http-port',
      '0',
      '--policies',
      join(root, 'policies'),
      '--router-id',
      'otel-router',
    ],
    {
      ...otelEnv,
      OTEL_SERVICE_NAME: 'router',
      OTEL_METRICS_EXPORTER: 'otlp',
      OTEL_METRIC_EXPORT_INTERVAL: '200',
      MESHROUTE_METRICS_PORT: String(metricsPort),
    },
  );
  let out = '';
  router.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const port = await waitFor('the router HTTP port', () => /listening on http:\/\/[^:]+:(\d+)/.exec(out)?.[1], {
    timeoutMs: 30_000,
  });
  routerUrl = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  for (const c of children) {
    if (c.exitCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (c.exitCode === null) c.kill('SIGKILL');
    }
  }
  await conn?.close();
  await nats?.stop();
  await new Promise<void>((r) => receiver?.close(() => r()));
  trace.disable();
});

describe('OpenTelemetry across processes', () => {
  it('one connected trace from publish through a retry and a failover to the result; metrics after a known workload', async () => {
    // The flaky agent: greener (so the policy prefers it) and refusing with a retryable error.
    const flakyConn = await connectMesh({ servers: nats.url, name: 'flaky' });
    const flaky = natsAgentMesh(flakyConn);
    let refused = 0;
    const stopServe = flaky.serveWork('flaky-de', async (work): Promise<WorkResult> => {
      refused++;
      return {
        schema: 'meshroute.result/v1',
        workId: work.workId,
        eventId: work.event.id,
        eventSource: work.event.source,
        agentId: 'flaky-de',
        attempt: work.attempt,
        ok: false,
        error: { code: 'AGENT_REJECTED', message: 'flaky: try elsewhere', retryable: true },
        queueMs: 0,
        executionMs: 0,
        finishedAtMs: Date.now(),
      };
    });
    const beat = async () =>
      flaky.publishCapacity({
        schema: 'meshroute.capacity/v1',
        agentId: 'flaky-de',
        seq: Date.now(),
        instanceId: 'flaky-1',
        sentAtMs: Date.now(),
        heartbeatIntervalMs: 1_000,
        status: 'ready',
        backends: ['wasm'],
        region: 'eu-west',
        jurisdiction: 'DE',
        carbonIntensity: 5,
        carbonSource: 'fixed',
        latencyP50Ms: 1,
        latencyP99Ms: 2,
        slots: 4,
        freeSlots: 4,
        inFlight: 0,
        queueDepth: 0,
        costPerJob: '0',
        labels: {},
        versions: {},
        workloads: [],
        facts: {},
      });
    const heartbeatTimer = setInterval(() => void beat(), 500);
    try {
      await beat();
      const client = createClient({ nats: conn, source: '/otel-it' });
      const id = randomUUID();
      await waitFor(
        'the router to see both agents',
        async () => {
          const r = (await (await fetch(`${routerUrl}/readyz`)).json()) as { ready: boolean; agents: number };
          return r.ready && r.agents >= 2 ? true : undefined;
        },
        { timeoutMs: 30_000 },
      );
      const result = await client.invoke(
        'checksum',
        '123456789',
        { residency: 'eu' },
        { id, timeoutMs: 30_000, datacontenttype: 'text/plain' },
      );
      expect(result.agent?.id).toBe('steady-de');
      expect(result.output).toBe('cbf43926');
      expect(refused).toBeGreaterThanOrEqual(1);

      const producer = exporter
        .getFinishedSpans()
        .find((s) => s.name === 'invoke checksum' && s.attributes['cloudevents.event_id'] === id);
      expect(producer).toBeDefined();
      const traceId = producer?.spanContext().traceId as string;
      const inTrace = () => spans.filter((s) => s.traceId === traceId);
      await waitFor('the router and agent spans of the trace', () =>
        inTrace().some((s) => s.name.startsWith('execute')) && inTrace().some((s) => s.name.startsWith('route'))
          ? true
          : undefined,
      );
      const route = inTrace().find((s) => s.name.startsWith('route') && s.attributes['cloudevents.event_id'] === id);
      expect(route?.service).toBe('router');
      expect(route?.parentSpanId).toBe(producer?.spanContext().spanId);
      expect(route?.attributes).toMatchObject({
        'meshroute.agent.id': 'steady-de',
        'meshroute.agent.jurisdiction': 'DE',
        'meshroute.agent.carbon_intensity': 400,
        'meshroute.outcome': 'succeeded',
      });
      expect(route?.attributes['meshroute.retries']).toBeGreaterThanOrEqual(1);
      expect(route?.attributes['meshroute.failovers']).toBeGreaterThanOrEqual(1);
      expect(typeof route?.attributes['meshroute.policy.digest']).toBe('string');
      expect(typeof route?.attributes['meshroute.decision.duration_ms']).toBe('number');
      const dispatches = inTrace().filter((s) => s.name.startsWith('dispatch') && s.parentSpanId === route?.spanId);
      expect(dispatches.map((d) => d.attributes['meshroute.agent.id'])).toEqual(
        expect.arrayContaining(['flaky-de', 'steady-de']),
      );
      const toSteady = dispatches.find((d) => d.attributes['meshroute.agent.id'] === 'steady-de');
      const execute = inTrace().find((s) => s.name === 'execute checksum');
      expect(execute?.service).toBe('agent-steady-de');
      expect(execute?.parentSpanId).toBe(toSteady?.spanId);
      // Every span of the trace hangs off the producer's span: one connected tree.
      const ids = new Set([producer?.spanContext().spanId, ...inTrace().map((s) => s.spanId)]);
      for (const s of inTrace()) expect(ids.has(s.parentSpanId)).toBe(true);

      // A second, known outcome: no eligible agent outside the EU.
      await expect(client.invoke('checksum', 'x', { residency: 'US' }, { timeoutMs: 10_000 })).rejects.toBeInstanceOf(
        NoEligibleAgentError,
      );
      const text = await waitFor('router metrics', async () => {
        const t = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        return /meshroute_events_dead_lettered_total\{[^}]*NO_ELIGIBLE_AGENT[^}]*\} 1/.test(t) ? t : undefined;
      });
      /** The sum of every series of a metric. */
      const metric = (name: string) =>
        [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)`, 'gm'))].reduce(
          (sum, m) => sum + Number(m[1]),
          0,
        );
      expect(metric('meshroute_events_accepted_total')).toBe(2);
      expect(metric('meshroute_events_routed_total')).toBe(2); // flaky-de, then steady-de
      expect(text).toMatch(/meshroute_decision_duration_(milliseconds_)?count\{[^}]*\} [1-9]/);
      expect(text).toMatch(/meshroute_agent_utilization\{[^}]*steady-de[^}]*\}/);
      expect(text).toMatch(/meshroute_event_carbon_(gCO2e_)?count\{[^}]*\} 1/);
      // The same counters over OTLP/HTTP.
      await waitFor('OTLP metrics from the router', () =>
        otlpSums.get('meshroute.events.accepted') === 2 && otlpSums.get('meshroute.events.dead_lettered') === 1
          ? true
          : undefined,
      );
      expect(otlpSums.get('meshroute.events.routed')).toBe(2);
    } finally {
      clearInterval(heartbeatTimer);
      await stopServe();
      await flakyConn.close();
    }
  });
});
