import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient, EventRejectedError } from '@meshroute/client';
import type { CapacityReport, WorkResult } from '@meshroute/mesh';
import { meshNames } from '@meshroute/mesh';
import { startNatsServer, type TestNatsServer, waitFor } from '@meshroute/testing';
import { connectMesh, type MeshConnection, natsAgentMesh, natsWorkloadRegistry } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../main.js';
import { testContext } from '../test-support/context.js';
import { formatAgentsTable, latestReports } from './agents.js';
import { formatDecisions, readDecisions } from './decisions.js';
import {
  httpAuthFromFiles,
  type RouterProcess,
  routerOptionsFromFlags,
  startRouterProcess,
  tenantBudgetsFromFile,
  tenantRateLimitsFromFile,
} from './router.js';

const policiesDir = join(fileURLToPath(new URL('../../../..', import.meta.url)), 'policies');

function report(agentId: string, jurisdiction: string, seq: number): CapacityReport {
  return {
    schema: 'meshroute.capacity/v1',
    agentId,
    seq,
    instanceId: 'i1',
    sentAtMs: Date.now(),
    heartbeatIntervalMs: 200,
    status: 'ready',
    backends: ['wasm'],
    region: `${jurisdiction.toLowerCase()}-1`,
    jurisdiction,
    carbonIntensity: 120,
    carbonSource: 'fixed',
    latencyP50Ms: 2,
    latencyP99Ms: 4,
    slots: 4,
    freeSlots: 4,
    inFlight: 0,
    queueDepth: 0,
    costPerJob: '0.001',
    labels: {},
    versions: { agent: '0.1.0' },
    workloads: [],
    facts: {},
  };
}

describe('meshroute router process (startRouterProcess)', () => {
  let nats: TestNatsServer;
  let proc: RouterProcess;
  let agentConn: MeshConnection;
  let beats: NodeJS.Timeout;
  /** How often the agent ran each event (by id); work for an id in `held` waits for its latch. */
  const runs = new Map<string, number>();
  const held = new Map<string, Promise<void>>();

  beforeAll(async () => {
    nats = await startNatsServer();
    proc = await startRouterProcess({ natsUrl: nats.url, httpPort: 0, httpHost: '127.0.0.1', policiesDir });
    agentConn = await connectMesh({ servers: nats.url, name: 'agent-de' });
    // The router refuses unregistered workloads: register the one the tests send.
    await natsWorkloadRegistry(agentConn).put({
      schema: 'meshroute.workload/v1',
      name: 'echo',
      version: '1',
      artifacts: { wasm: { digest: `sha256:${'e'.repeat(64)}`, name: 'echo.wasm', options: {} } },
      limits: { timeoutMs: 1000, memoryBytes: 65_536, outputBytes: 65_536 },
      capabilities: [],
    });
    await waitFor('echo registered at the router', () => proc.router.knowsWorkload('echo'), { timeoutMs: 5_000 });
    const mesh = natsAgentMesh(agentConn);
    mesh.serveWork('de-1', async (w): Promise<WorkResult> => {
      runs.set(w.event.id, (runs.get(w.event.id) ?? 0) + 1);
      await held.get(w.event.id);
      return {
        schema: 'meshroute.result/v1',
        workId: w.workId,
        eventId: w.event.id,
        eventSource: w.event.source,
        agentId: 'de-1',
        attempt: w.attempt,
        ok: true,
        output: { hello: 'from de-1' },
        queueMs: 0,
        executionMs: 1,
        finishedAtMs: Date.now(),
      };
    });
    let seq = 0;
    const beat = () => void mesh.publishCapacity(report('de-1', 'DE', ++seq));
    beat();
    beats = setInterval(beat, 200);
    await waitFor('agent known', () => proc.router.agents().length > 0, { timeoutMs: 5_000 });
  });
  afterAll(async () => {
    clearInterval(beats);
    await proc?.stop();
    await agentConn?.close();
    await nats?.stop();
  });

  it('serves HTTP ingress through the JetStream ingress and answers ?wait=1 with the outcome', async () => {
    const id = randomUUID();
    const res = await fetch(`http://127.0.0.1:${proc.httpPort}/events?wait=1`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'ce-specversion': '1.0',
        'ce-id': id,
        'ce-source': '/cli-test',
        'ce-type': 'com.example.job',
        'ce-workload': 'echo',
        'ce-residency': 'eu',
        'ce-latencybudgetms': '5000',
      },
      body: '{"n":1}',
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      id,
      outcome: 'succeeded',
      agent: { id: 'de-1', jurisdiction: 'DE' },
      result: { output: { hello: 'from de-1' } },
    });
    const health = (await (await fetch(`http://127.0.0.1:${proc.httpPort}/healthz`)).json()) as Record<string, unknown>;
    expect(health.policyDigest).toBe(proc.policies.current()?.digest);
  });

  it('routes events at the 1 MiB body limit through NATS (structured and binary), and answers 413 one byte over', async () => {
    const MiB = 1024 * 1024;
    const post = (headers: Record<string, string>, body: string) =>
      fetch(`http://127.0.0.1:${proc.httpPort}/events?wait=1`, { method: 'POST', headers, body });
    const structuredOf = (size: number) => {
      const ev = { specversion: '1.0', id: randomUUID(), source: '/cli-test', type: 't', workload: 'echo', data: '' };
      return JSON.stringify({ ...ev, data: 'x'.repeat(size - JSON.stringify(ev).length) });
    };
    const binary = (contentType: string) => ({
      'content-type': contentType,
      'ce-specversion': '1.0',
      'ce-id': randomUUID(),
      'ce-source': '/cli-test',
      'ce-type': 't',
      'ce-workload': 'echo',
      'ce-residency': 'eu',
    });
    const at = structuredOf(MiB);
    expect(Buffer.byteLength(at)).toBe(MiB);
    const cases = [
      await post({ 'content-type': 'application/cloudevents+json' }, at),
      await post(binary('text/plain'), 'y'.repeat(MiB)),
      await post(binary('application/json'), `"${'y'.repeat(MiB - 2)}"`),
    ];
    for (const res of cases) {
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ outcome: 'succeeded', agent: { id: 'de-1' } });
    }
    const over = await post(binary('text/plain'), 'y'.repeat(MiB + 1));
    expect(over.status).toBe(413);
    expect(await over.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    const overStructured = await post({ 'content-type': 'application/cloudevents+json' }, structuredOf(MiB + 1));
    expect(overStructured.status).toBe(413);
  });

  it('takes the engine limits from its flags: --max-event-bytes bounds the HTTP body (413 one byte over)', async () => {
    const small = await startRouterProcess({
      natsUrl: nats.url,
      httpPort: 0,
      httpHost: '127.0.0.1',
      policiesDir,
      skipProvision: true,
      routerOptions: routerOptionsFromFlags({ maxEventBytes: 2048, missedHeartbeats: 1, maxAttempts: 2 }),
    });
    try {
      expect(small.router.options).toMatchObject({
        maxEventBytes: 2048,
        missedHeartbeatsBeforeLost: 1,
        missedHeartbeatsBeforeDegraded: 1,
        maxAttempts: 2,
      });
      const post = (body: string) =>
        fetch(`http://127.0.0.1:${small.httpPort}/events`, {
          method: 'POST',
          headers: {
            'content-type': 'text/plain',
            'ce-specversion': '1.0',
            'ce-id': randomUUID(),
            'ce-source': '/cli-test',
            'ce-type': 't',
            'ce-workload': 'echo',
          },
          body,
        });
      expect((await post('z'.repeat(2048))).status).toBe(202);
      const over = await post('z'.repeat(2049));
      expect(over.status).toBe(413);
      expect(await over.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    } finally {
      await small.stop();
    }
  });

  it("answers an event posted again with ?wait=1 from the first one's outcome (the ingress de-duplicates it)", async () => {
    const body = JSON.stringify({
      specversion: '1.0',
      id: randomUUID(),
      source: '/cli-test/resend',
      type: 't',
      workload: 'echo',
      latencybudgetms: 5000,
    });
    const post = () =>
      fetch(`http://127.0.0.1:${proc.httpPort}/events?wait=1`, {
        method: 'POST',
        headers: { 'content-type': 'application/cloudevents+json' },
        body,
      });
    const first = await post();
    expect(first.status).toBe(200);
    const a1 = (await first.json()) as { decisionId: string };
    const again = await post();
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({
      outcome: 'succeeded',
      replayed: true,
      decisionId: a1.decisionId,
      agent: { id: 'de-1', jurisdiction: 'DE' },
    });
    const plain = await fetch(`http://127.0.0.1:${proc.httpPort}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json' },
      body,
    });
    expect(plain.status).toBe(202);
  });

  it("answers `meshroute publish --wait` sent again over NATS from the first one's outcome; another tenant's re-send is refused", async () => {
    const id = randomUUID();
    const publish = async (...extra: string[]) => {
      const ctx = testContext();
      const args = ['--nats-url', nats.url, '--id', id, '--source', '/cli-test/nats-resend', '--workload', 'echo'];
      const code = await main(
        ['node', 'meshroute', 'publish', ...args, '--wait', '--json', '--timeout-ms', '10000', ...extra],
        ctx,
      );
      return { code: ctx.exitCode || code, out: JSON.parse(ctx.out()) as Record<string, unknown> };
    };
    const first = await publish();
    expect(first).toMatchObject({ code: 0, out: { ok: true, id, agent: { id: 'de-1' } } });
    // The ingress de-duplicates the re-send: before, nobody answered it and it timed out (exit 3).
    const again = await publish();
    expect(again).toMatchObject({
      code: 0,
      out: {
        ok: true,
        id,
        agent: { id: 'de-1' },
        decisionId: first.out.decisionId,
        output: { hello: 'from de-1' },
        replayed: true,
      },
    });
    expect(first.out.replayed).toBeUndefined();
    expect(runs.get(id)).toBe(1);
    const other = await publish('--tenant', 'other');
    expect(other.code).toBe(2);
    expect(other.out).toMatchObject({
      ok: false,
      error: { code: 'INVALID_EVENT', details: { attribute: 'id', rule: 'duplicate-id' } },
    });
    expect(runs.get(id)).toBe(1);
  });

  it('answers a re-send over NATS while the first is still running, once the router finishes it (replayed)', async () => {
    const producer = await connectMesh({ servers: nats.url, name: 'producer-resend' });
    const id = randomUUID();
    let release!: () => void;
    held.set(id, new Promise<void>((r) => (release = r)));
    try {
      const client = createClient({ nats: producer, source: '/cli-test/nats-resend-running' });
      const invoke = () => client.invoke('echo', undefined, {}, { id, timeoutMs: 10_000 });
      const first = invoke();
      await waitFor('the agent runs the first', () => runs.get(id) === 1, { timeoutMs: 5_000 });
      // Hold the first until the re-send's outcome question is out (the router waits for its own work).
      const asked = new Promise<void>((r) => {
        producer.nc.subscribe(meshNames().outcomeWildcard, { max: 1, callback: () => r() });
      });
      await producer.nc.flush();
      const again = invoke();
      await asked;
      release();
      const [a1, a2] = await Promise.all([first, again]);
      expect(a1.replayed).toBe(false);
      expect(a2).toMatchObject({ replayed: true, decisionId: a1.decisionId, agent: { id: 'de-1' } });
      expect(runs.get(id)).toBe(1);
      // Another tenant is not told this outcome (EventRejectedError, as over HTTP).
      const err = await client
        .invoke('echo', undefined, { tenant: 'other' }, { id, timeoutMs: 10_000 })
        .catch((e) => e);
      expect(err).toBeInstanceOf(EventRejectedError);
      expect(err).toMatchObject({ rule: 'duplicate-id' });
    } finally {
      release();
      await producer.close();
    }
  });

  it('records decisions that `meshroute decisions --event` finds', async () => {
    const id = randomUUID();
    const res = await fetch(`http://127.0.0.1:${proc.httpPort}/events?wait=1`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify({ specversion: '1.0', id, source: '/cli-test', type: 't', workload: 'echo' }),
    });
    expect(res.status).toBe(200);
    const conn = await connectMesh({ servers: nats.url, name: 'decisions-reader' });
    try {
      const records = await waitFor('decision recorded', async () => {
        const r = await readDecisions(conn, { eventId: id });
        return r.length > 0 ? r : undefined;
      });
      expect(records[0]).toMatchObject({ outcome: 'routed', chosen: { agentId: 'de-1' }, routerId: proc.routerId });
      expect(formatDecisions(records)).toContain(`event ${id}`);
    } finally {
      await conn.close();
    }
  });

  it('formats the agent table from the newest report of each agent', () => {
    const now = Date.now();
    const rows = latestReports([report('b', 'FR', 1), report('a', 'DE', 1), { ...report('a', 'DE', 2), freeSlots: 1 }]);
    expect(rows.map((r) => [r.agentId, r.seq])).toEqual([
      ['a', 2],
      ['b', 1],
    ]);
    const table = formatAgentsTable(rows, now);
    expect(table.split('\n')[0]).toMatch(/^AGENT\s+BACKENDS\s+REGION\s+JUR\s+STATUS/);
    expect(table).toContain('1/4');
    expect(formatAgentsTable([{ ...report('c', 'SE', 1), sentAtMs: now - 10_000 }], now)).toContain('lost');
  });
});

describe('meshroute router HTTP authentication flags', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshroute-http-auth-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads --http-tokens (token=tenant lines) and refuses bad or conflicting flag sets, naming the flag', async () => {
    const tokens = join(dir, 'tokens');
    writeFileSync(tokens, '# producers\ntoken-acme-0001=acme\n');
    expect(httpAuthFromFiles({ tokens })).toEqual({ tokens: { 'token-acme-0001': 'acme' } });
    expect(httpAuthFromFiles({})).toBeUndefined();
    expect(() => httpAuthFromFiles({ tokens: join(dir, 'missing') })).toThrow(/--http-tokens/);
    expect(() => httpAuthFromFiles({ tokens, tlsCert: tokens })).toThrow(/not both/);
    expect(() => httpAuthFromFiles({ tlsCert: tokens, tlsKey: tokens })).toThrow(
      expect.objectContaining({ option: '--http-tls-ca' }),
    );
    writeFileSync(join(dir, 'bad'), 'token-acme-0001=not a tenant!\n');
    await expect(
      startRouterProcess({
        httpAuth: httpAuthFromFiles({ tokens: join(dir, 'bad') }) as never,
        natsUrl: 'nats://127.0.0.1:1',
      }),
    ).rejects.toThrow(/tenant/);
  });
});

describe('meshroute router --tenant-budgets', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshroute-budgets-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads tenant budgets from YAML or JSON and names the file and the field at fault', () => {
    const yaml = join(dir, 'budgets.yaml');
    writeFileSync(
      yaml,
      '# per day\nacme: { limit: 50, windowMs: 86400000 }\nglobex:\n  limit: 2.5\n  windowMs: 3600000\n',
    );
    expect(tenantBudgetsFromFile(yaml)).toEqual({
      acme: { limit: 50, windowMs: 86_400_000 },
      globex: { limit: 2.5, windowMs: 3_600_000 },
    });
    const json = join(dir, 'budgets.json');
    writeFileSync(json, '{"acme":{"limit":1,"windowMs":1000}}');
    expect(tenantBudgetsFromFile(json)).toEqual({ acme: { limit: 1, windowMs: 1_000 } });
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'acme: { limit: -1, windowMs: 1000 }\n');
    expect(() => tenantBudgetsFromFile(bad)).toThrow(/--tenant-budgets.*bad\.yaml.*tenantBudgets\.acme\.limit/);
    writeFileSync(bad, '- acme\n');
    expect(() => tenantBudgetsFromFile(bad)).toThrow(/expected a mapping/);
    expect(() => tenantBudgetsFromFile(join(dir, 'missing.yaml'))).toThrow(/--tenant-budgets.*cannot read/);
    const limits = join(dir, 'limits.yaml');
    writeFileSync(limits, 'acme: { limit: 100, windowMs: 1000 }\n');
    expect(tenantRateLimitsFromFile(limits)).toEqual({ acme: { limit: 100, windowMs: 1_000 } });
    writeFileSync(limits, 'acme: { limit: 0.5, windowMs: 1000 }\n');
    expect(() => tenantRateLimitsFromFile(limits)).toThrow(/--tenant-rate-limits.*tenantRateLimits\.acme\.limit/);
  });
});

describe('meshroute router flags', () => {
  const run = async (args: string[]) => {
    const ctx = testContext();
    const code = await main(['node', 'meshroute', 'router', ...args], ctx);
    return { code, err: ctx.err() };
  };

  it('refuses a limit that is not a positive integer, naming the flag, before connecting anywhere', async () => {
    for (const [flag, value] of [
      ['--max-event-bytes', 'abc'],
      ['--max-event-bytes', '0'],
      ['--missed-heartbeats', '-1'],
      ['--heartbeat-interval-ms', '1.5'],
      ['--max-queued', ''],
      ['--max-attempts', '1e3'],
      ['--dispatch-timeout-ms', '99999999999999999999'],
    ] as const) {
      const { code, err } = await run(['--nats-url', 'nats://127.0.0.1:1', flag, value]);
      expect(code, `${flag} ${value}`).toBe(1);
      expect(err).toContain(flag);
      expect(err).toMatch(/must be a positive integer/);
    }
  });

  it('maps the flags onto the engine options, leaving the others at their defaults', () => {
    expect(routerOptionsFromFlags({})).toEqual({});
    expect(
      routerOptionsFromFlags({
        maxEventBytes: 4096,
        heartbeatIntervalMs: 500,
        missedHeartbeats: 5,
        maxQueued: 10,
        maxAttempts: 3,
        dispatchTimeoutMs: 2000,
        httpWaitMs: 1000,
        httpMaxWaitMs: 60_000,
      }),
    ).toEqual({
      maxEventBytes: 4096,
      heartbeatIntervalMs: 500,
      missedHeartbeatsBeforeLost: 5,
      missedHeartbeatsBeforeDegraded: 2,
      maxQueued: 10,
      maxAttempts: 3,
      dispatchTimeoutMs: 2000,
      httpWaitMs: 1000,
      httpMaxWaitMs: 60_000,
    });
  });
});
