import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, systemClock } from '@meshroute/mesh';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type HttpIngress,
  type HttpIngressOptions,
  parseTenantMap,
  resolveHttpIngressAuth,
  startHttpIngress,
} from './http-ingress.js';
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

describe('HTTP ingress authentication', () => {
  let mesh: FakeMesh;
  let router: Router;
  let http: HttpIngress;

  const start = async (auth: HttpIngressOptions['auth']) => {
    mesh = new FakeMesh(systemClock);
    mesh.agents.set('de-1', async (w) => okResult(w));
    router = createRouter({ mesh, store: memoryStateStore(), policies: testPolicy(), routerId: 'auth-test' });
    await router.start();
    mesh.heartbeat(capacity('de-1', { sentAtMs: Date.now() }));
    http = await startHttpIngress(router, { port: 0, host: '127.0.0.1', ...(auth ? { auth } : {}) });
  };
  afterEach(async () => {
    await http?.close();
    await router?.stop({ drainTimeoutMs: 0 });
  });

  const event = (id: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ specversion: '1.0', id, source: '/auth', type: 't', workload: 'echo', ...extra });
  const post = (body: string, token?: string, query = '') =>
    fetch(`${http.url}/events${query}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/cloudevents+json',
        ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
      },
      body,
    });

  describe('bearer tokens', () => {
    beforeEach(async () => {
      await start({ tokens: { 'token-acme-0001': 'acme', 'token-globex-01': 'globex' } });
    });

    it('answers 401 with WWW-Authenticate: Bearer without a token or with an unknown one', async () => {
      const none = await post(event('n1'));
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toBe('Bearer realm="meshroute"');
      expect(await none.json()).toMatchObject({ code: 'PERMISSION_DENIED', rule: 'bearer-token' });
      const unknown = await post(event('n2'), 'token-nobody-00');
      expect(unknown.status).toBe(401);
      expect(unknown.headers.get('www-authenticate')).toContain('error="invalid_token"');
      expect(mesh.dispatched).toHaveLength(0);
    });

    it("refuses 403 naming tenant when an event claims another tenant, and sets the token's tenant when absent", async () => {
      const foreign = await post(event('f1', { tenant: 'globex' }), 'token-acme-0001');
      expect(foreign.status).toBe(403);
      expect(await foreign.json()).toMatchObject({
        code: 'PERMISSION_DENIED',
        attribute: 'tenant',
        rule: 'authenticated-tenant',
      });
      const own = await post(event('o1'), 'token-acme-0001', '?wait=1');
      expect(own.status).toBe(200);
      const accepted = await post(event('o2', { tenant: 'globex' }), 'token-globex-01');
      expect(accepted.status).toBe(202);
      expect(mesh.dispatched.find((w) => w.event.id === 'o1')?.event.tenant).toBe('acme');
      expect(mesh.dispatched.some((w) => w.event.id === 'f1')).toBe(false);
    });

    it('keeps health endpoints open to probes', async () => {
      expect((await fetch(`${http.url}/healthz`)).status).toBe(200);
    });
  });

  it('validates auth options once and reads token files (JSON or token=tenant lines)', () => {
    expect(() => resolveHttpIngressAuth({ tokens: {} })).toThrow(ConfigError);
    expect(() => resolveHttpIngressAuth({ tokens: { 'long-enough-token': 'bad tenant!' } })).toThrow(/tenant/);
    expect(() => resolveHttpIngressAuth({ tokens: { short: 'acme' } })).toThrow(/8 characters/);
    expect(parseTenantMap('# producers\ntoken-acme-0001=acme\n\ntoken-globex-01 = globex\n', 'f')).toEqual({
      'token-acme-0001': 'acme',
      'token-globex-01': 'globex',
    });
    expect(parseTenantMap('{"token-acme-0001":"acme"}', 'f')).toEqual({ 'token-acme-0001': 'acme' });
    expect(() => parseTenantMap('token-without-tenant\n', '--http-tokens')).toThrow(/line 1/);
  });

  describe('mutual TLS', () => {
    let dir: string;
    const pem = (name: string) => readFileSync(join(dir, name), 'utf8');
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    const issue = (name: string, subject: string, ca: string, ext: string) => {
      writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
      openssl(
        'req',
        '-new',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.csr`,
        '-subj',
        subject,
      );
      openssl(
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        `${ca}.pem`,
        '-CAkey',
        `${ca}.key`,
        '-CAcreateserial',
        '-out',
        `${name}.pem`,
        '-days',
        '1',
        '-extfile',
        `${name}.ext`,
      );
    };
    const newCa = (name: string) =>
      openssl(
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.pem`,
        '-days',
        '1',
        '-subj',
        `/CN=${name}`,
      );

    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'meshroute-mtls-'));
      newCa('ca');
      newCa('rogue-ca');
      issue('server', '/CN=localhost', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost');
      issue('acme', '/CN=acme', 'ca', 'extendedKeyUsage=clientAuth');
      issue('spiffe', '/CN=workload 7', 'ca', 'subjectAltName=URI:spiffe://mesh/globex\nextendedKeyUsage=clientAuth');
      issue('rogue', '/CN=acme', 'rogue-ca', 'extendedKeyUsage=clientAuth');
    });
    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const tlsPost = (client: string | undefined, body: string) =>
      new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
        const req = request(
          `${http.url}/events`,
          {
            method: 'POST',
            ca: pem('ca.pem'),
            ...(client ? { cert: pem(`${client}.pem`), key: pem(`${client}.key`) } : {}),
            headers: { 'content-type': 'application/cloudevents+json' },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }),
            );
          },
        );
        req.on('error', reject);
        req.end(body);
      });

    it('takes the tenant from the client certificate CN; refuses other tenants and foreign or missing certificates', async () => {
      await start({ mtls: { cert: pem('server.pem'), key: pem('server.key'), ca: pem('ca.pem') } });
      expect(http.url.startsWith('https://')).toBe(true);
      expect((await tlsPost('acme', event('m1'))).status).toBe(202);
      const foreign = await tlsPost('acme', event('m2', { tenant: 'globex' }));
      expect(foreign).toMatchObject({ status: 403, body: { attribute: 'tenant', rule: 'authenticated-tenant' } });
      await expect(tlsPost('rogue', event('m3'))).rejects.toThrow();
      await expect(tlsPost(undefined, event('m4'))).rejects.toThrow();
      // CN "workload 7" is no tenant name and no map is configured.
      expect((await tlsPost('spiffe', event('m5'))).status).toBe(403);
      await new Promise<void>((r) => setImmediate(r));
      expect(mesh.dispatched.map((w) => [w.event.id, w.event.tenant])).toEqual([['m1', 'acme']]);
    });

    it('maps a certificate SAN to a tenant', async () => {
      await start({
        mtls: {
          cert: pem('server.pem'),
          key: pem('server.key'),
          ca: pem('ca.pem'),
          tenants: { 'spiffe://mesh/globex': 'globex' },
        },
      });
      expect((await tlsPost('spiffe', event('s1'))).status).toBe(202);
      expect((await tlsPost('acme', event('s2'))).status).toBe(403);
      await new Promise<void>((r) => setImmediate(r));
      expect(mesh.dispatched.map((w) => [w.event.id, w.event.tenant])).toEqual([['s1', 'globex']]);
    });
  });
});
