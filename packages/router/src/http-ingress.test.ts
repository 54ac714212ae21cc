import { systemClock } from '@meshroute/mesh';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type HttpIngress, type HttpIngressOptions, startHttpIngress } from './http-ingress.js';
import { memoryStateStore } from './memory-state-store.js';
import { createRouter, type Router } from './router.js';
import { capacity, FakeMesh, okResult, testPolicy } from './test-support/fakes.js';
import { memoryWorkloadCatalog, type WorkloadCatalog } from './workloads.js';

describe('HTTP ingress', () => {
  let mesh: FakeMesh;
  let router: Router;
  let http: HttpIngress;

  const start = async (
    options: Parameters<typeof createRouter>[0]['options'] = {},
    extra: { workloads?: WorkloadCatalog; http?: Partial<HttpIngressOptions> } = {},
  ) => {
    mesh = new FakeMesh(systemClock);
    mesh.agents.set('de-1', async (w) => okResult(w, { doubled: 42 }));
    router = createRouter({
      mesh,
      store: memoryStateStore(),
      policies: testPolicy(),
      routerId: 'http-test',
      ...(extra.workloads ? { workloads: extra.workloads } : {}),
      options: { maxEventBytes: 4096, ...options },
    });
    await router.start();
    mesh.heartbeat(capacity('de-1', { sentAtMs: Date.now(), region: 'eu-central' }));
    http = await startHttpIngress(router, { port: 0, host: '127.0.0.1', ...extra.http });
  };
  const restart = async (...args: Parameters<typeof start>) => {
    await http?.close();
    await router?.stop({ drainTimeoutMs: 0 });
    await start(...args);
  };

  beforeEach(async () => {
    await start();
  });
  afterEach(async () => {
    await http?.close();
    await router?.stop({ drainTimeoutMs: 0 });
  });

  const binaryHeaders = (id: string, extra: Record<string, string> = {}) => ({
    'content-type': 'application/json',
    'ce-specversion': '1.0',
    'ce-id': id,
    'ce-source': '/http-test',
    'ce-type': 'com.example.job',
    'ce-workload': 'echo',
    ...extra,
  });

  it('refuses an unregistered workload with 422 naming the workload attribute, and runs a registered one', async () => {
    const echo = {
      schema: 'meshroute.workload/v1' as const,
      name: 'echo',
      version: '1',
      artifacts: { wasm: { digest: `sha256:${'b'.repeat(64)}`, name: 'echo.wasm', options: {} } },
      limits: { timeoutMs: 1000, memoryBytes: 1024, outputBytes: 1024 },
      capabilities: [],
    };
    await restart({}, { workloads: memoryWorkloadCatalog([echo]) });
    const res = await fetch(`${http.url}/events?wait=1`, {
      method: 'POST',
      headers: binaryHeaders('w1', { 'ce-workload': 'qasm-bell' }),
      body: '{}',
    });
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(await res.json()).toMatchObject({ code: 'WORKLOAD_NOT_FOUND', attribute: 'workload', rule: 'registered' });
    expect(mesh.dispatched).toHaveLength(0);
    const ok = await fetch(`${http.url}/events?wait=1`, { method: 'POST', headers: binaryHeaders('w2'), body: '{}' });
    expect(ok.status).toBe(200);
  });

  it('accepts a binary-mode event with 202 and the event id', async () => {
    const res = await fetch(`${http.url}/events`, { method: 'POST', headers: binaryHeaders('b1'), body: '{"n":21}' });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ id: 'b1' });
  });

  it('waits for the outcome with ?wait=1 and answers 200 with agent, decision and result', async () => {
    const event = {
      specversion: '1.0',
      id: 's1',
      source: '/http-test',
      type: 'com.example.job',
      workload: 'echo',
      residency: 'eu',
      latencybudgetms: 5000,
      data: { n: 21 },
    };
    const res = await fetch(`${http.url}/events?wait=1`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify(event),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      id: 's1',
      outcome: 'succeeded',
      agent: { id: 'de-1', region: 'eu-central', jurisdiction: 'DE' },
      result: { ok: true, output: { doubled: 42 } },
    });
    expect(typeof body.decisionId).toBe('string');
  });

  it('accepts a batch with 202 and every id', async () => {
    const events = ['x1', 'x2'].map((id) => ({
      specversion: '1.0',
      id,
      source: '/http-test',
      type: 't',
      workload: 'echo',
    }));
    const res = await fetch(`${http.url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents-batch+json' },
      body: JSON.stringify(events),
    });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ ids: ['x1', 'x2'] });
  });

  it('answers 400 with a problem naming the attribute and the rule', async () => {
    const headers: Record<string, string> = binaryHeaders('bad');
    delete headers['ce-source'];
    const res = await fetch(`${http.url}/events`, { method: 'POST', headers, body: '{}' });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(await res.json()).toMatchObject({ status: 400, code: 'INVALID_EVENT', attribute: 'source' });
    const intent = await fetch(`${http.url}/events`, {
      method: 'POST',
      headers: binaryHeaders('bad2', { 'ce-residency': 'atlantis' }),
      body: '{}',
    });
    expect(intent.status).toBe(400);
    expect(await intent.json()).toMatchObject({ code: 'INVALID_INTENT', attribute: 'residency' });
  });

  it('answers 413 over the body limit, 415 for an unknown format and 405 for other methods', async () => {
    const big = await fetch(`${http.url}/events`, {
      method: 'POST',
      headers: binaryHeaders('big'),
      body: JSON.stringify({ pad: 'x'.repeat(10_000) }),
    });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    const xml = await fetch(`${http.url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+xml' },
      body: '<event/>',
    });
    expect(xml.status).toBe(415);
    const plain = await fetch(`${http.url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'hello',
    });
    expect(plain.status).toBe(415);
    const get = await fetch(`${http.url}/events`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
  });

  it('answers the typed error when no eligible agent exists', async () => {
    const res = await fetch(`${http.url}/events?wait=1`, {
      method: 'POST',
      headers: binaryHeaders('us-only', { 'ce-residency': 'US' }),
      body: '{}',
    });
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ code: 'NO_ELIGIBLE_AGENT', id: 'us-only', outcome: 'dead-lettered' });
  });

  it('pushes back with 429 and Retry-After when the router is over capacity', async () => {
    await http.close();
    await router.stop({ drainTimeoutMs: 0 });
    await start({ maxQueued: 0, maxInFlightItems: 1 });
    mesh.agents.set('de-1', async () => 'hang');
    const first = await fetch(`${http.url}/events`, { method: 'POST', headers: binaryHeaders('h1'), body: '{}' });
    expect(first.status).toBe(202);
    const second = await fetch(`${http.url}/events`, { method: 'POST', headers: binaryHeaders('h2'), body: '{}' });
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBe('1');
  });

  it('serves /healthz with the policy digest and /readyz', async () => {
    const health = await fetch(`${http.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', policyDigest: 'sha256:test-carbon', agents: 1 });
    const ready = await fetch(`${http.url}/readyz`);
    expect(ready.status).toBe(200);
  });
});
