import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import { connect } from 'node:net';
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
import { startRouterWithOneAgent } from './test-support/http-router.js';
import { memoryWorkloadCatalog, type WorkloadCatalog } from './workloads.js';

describe('HTTP ingress', () => {
  let mesh: FakeMesh;
  let router: Router;
  let http: HttpIngress;

  const start = async (
    options: Parameters<typeof createRouter>[0]['options'] = {},
    extra: { workloads?: WorkloadCatalog; http?: Partial<HttpIngressOptions> } = {},
  ) => {
    ({ mesh, router } = await startRouterWithOneAgent('http-test', {
      ...(extra.workloads ? { workloads: extra.workloads } : {}),
      options: { maxEventBytes: 4096, ...options },
    }));
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

  it('answers 429 with Retry-After once a tenant is over its rate limit, counting every event of a batch', async () => {
    await restart({ tenantRateLimits: { acme: { limit: 3, windowMs: 60_000 } } });
    const post = (id: string, tenant: string) =>
      fetch(`${http.url}/events`, { method: 'POST', headers: binaryHeaders(id, { 'ce-tenant': tenant }), body: '{}' });
    expect((await post('r1', 'acme')).status).toBe(202);
    // A batch of two fits the remaining two; the next event does not.
    const batch = await fetch(`${http.url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents-batch+json' },
      body: JSON.stringify(
        ['r2', 'r3'].map((id) => ({
          specversion: '1.0',
          id,
          source: '/http-test',
          type: 'com.example.job',
          workload: 'echo',
          tenant: 'acme',
        })),
      ),
    });
    expect(batch.status).toBe(202);
    const over = await post('r4', 'acme');
    expect(over.status).toBe(429);
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThanOrEqual(59);
    expect(over.headers.get('content-type')).toBe('application/problem+json');
    expect(await over.json()).toMatchObject({
      status: 429,
      code: 'BUDGET_EXCEEDED',
      attribute: 'tenant',
      rule: 'rate-limit',
      tenant: 'acme',
      limit: 3,
      windowMs: 60_000,
    });
    // Other tenants have no limit.
    expect((await post('g1', 'globex')).status).toBe(202);
    expect(() =>
      createRouter({
        mesh,
        store: memoryStateStore(),
        policies: testPolicy(),
        options: { tenantRateLimits: { acme: { limit: 1.5, windowMs: 1_000 } } },
      }),
    ).toThrow(/tenantRateLimits\.acme\.limit/);
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

  describe('batch backpressure', () => {
    const batchOf = (ids: string[]) =>
      fetch(`${http.url}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/cloudevents-batch+json' },
        body: JSON.stringify(
          ids.map((id) => ({ specversion: '1.0', id, source: '/http-test', type: 't', workload: 'echo' })),
        ),
      });
    /** Count what the ingress hands to the router. */
    const countSubmits = () => {
      const ids: string[] = [];
      const submit = router.submit.bind(router);
      router.submit = (ev, o) => {
        ids.push(ev.id);
        return submit(ev, o);
      };
      return ids;
    };
    /** Resolves once the router holds `n` work items. */
    const holding = async (n: number) => {
      const deadline = Date.now() + 5_000;
      while (router.health().inFlightItems < n) {
        if (Date.now() > deadline) throw new Error(`the router never held ${n} items`);
        await new Promise<void>((r) => setImmediate(r));
      }
    };

    it('refuses a whole batch that would push the router over maxInFlightItems with 429 and Retry-After', async () => {
      await restart({ maxInFlightItems: 3 });
      mesh.agents.set('de-1', async () => 'hang');
      const submitted = countSubmits();
      expect(
        (await fetch(`${http.url}/events`, { method: 'POST', headers: binaryHeaders('h1'), body: '{}' })).status,
      ).toBe(202);
      await holding(1);
      const over = await batchOf(['b1', 'b2', 'b3']);
      expect(over.status).toBe(429);
      expect(over.headers.get('retry-after')).toBe('1');
      expect(over.headers.get('content-type')).toBe('application/problem+json');
      expect(await over.json()).toMatchObject({ status: 429, code: 'BACKPRESSURE', events: 3, inFlightItems: 1 });
      // Nothing of the refused batch was accepted.
      expect(submitted).toEqual(['h1']);
      expect(router.health().inFlightItems).toBe(1);
      // A batch that fits is accepted whole; then the router is full.
      expect((await batchOf(['b4', 'b5'])).status).toBe(202);
      expect(submitted).toEqual(['h1', 'b4', 'b5']);
      await holding(3);
      expect((await batchOf(['b6'])).status).toBe(429);
    });

    it('refuses a batch that would overflow the wait queue (maxQueued) while work is queued', async () => {
      await restart({ maxQueued: 2 });
      mesh.agents.set('de-1', async () => 'hang');
      const submitted = countSubmits();
      // Two slots on de-1: q1 and q2 run (and hang), q3 waits in the queue.
      for (const id of ['q1', 'q2', 'q3']) {
        expect(
          (await fetch(`${http.url}/events`, { method: 'POST', headers: binaryHeaders(id), body: '{}' })).status,
        ).toBe(202);
      }
      await holding(3);
      expect(router.health().queued).toBe(1);
      const over = await batchOf(['qb1', 'qb2']);
      expect(over.status).toBe(429);
      expect(await over.json()).toMatchObject({ code: 'BACKPRESSURE', events: 2, queued: 1 });
      expect(submitted).toEqual(['q1', 'q2', 'q3']);
      expect((await batchOf(['qb3'])).status).toBe(202);
    });

    it('checks room again after a tenant rate-limit check that waited, so two batches cannot both take the last room', async () => {
      await restart({ maxInFlightItems: 3, tenantRateLimits: { acme: { limit: 100, windowMs: 60_000 } } });
      mesh.agents.set('de-1', async () => 'hang');
      const submitted = countSubmits();
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      let entered!: () => void;
      const inAdmit = new Promise<void>((r) => {
        entered = r;
      });
      const admit = router.admit.bind(router);
      router.admit = async (tenant, n) => {
        entered();
        await gate;
        return admit(tenant, n);
      };
      const acme = fetch(`${http.url}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/cloudevents-batch+json' },
        body: JSON.stringify(
          ['a1', 'a2'].map((id) => ({
            specversion: '1.0',
            id,
            source: '/http-test',
            type: 't',
            workload: 'echo',
            tenant: 'acme',
          })),
        ),
      });
      await inAdmit;
      // While acme's batch waits on its rate limit, another batch takes two of the three places.
      expect((await batchOf(['o1', 'o2'])).status).toBe(202);
      release();
      const late = await acme;
      expect(late.status).toBe(429);
      expect(late.headers.get('retry-after')).toBe('1');
      expect(submitted).toEqual(['o1', 'o2']);
    });

    it('answers 413 to a batch larger than the router can ever hold (retrying would not help)', async () => {
      await restart({ maxInFlightItems: 2 });
      const submitted = countSubmits();
      const res = await batchOf(['l1', 'l2', 'l3']);
      expect(res.status).toBe(413);
      expect(res.headers.get('retry-after')).toBeNull();
      expect(await res.json()).toMatchObject({
        code: 'PAYLOAD_TOO_LARGE',
        attribute: 'batch',
        rule: 'batch-size',
        events: 3,
        limit: 2,
      });
      expect(submitted).toEqual([]);
      expect((await batchOf(['l4', 'l5'])).status).toBe(202);
    });
  });

  it('serves /healthz with the policy digest and /readyz', async () => {
    const health = await fetch(`${http.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', policyDigest: 'sha256:test-carbon', agents: 1 });
    const ready = await fetch(`${http.url}/readyz`);
    expect(ready.status).toBe(200);
  });

  describe('hostile and edge-case input', () => {
    interface RawResponse {
      status: number;
      headers: IncomingHttpHeaders;
      text: string;
      // biome-ignore lint/suspicious/noExplicitAny: test bodies are inspected loosely
      json: any;
    }
    /** One request through node:http (no fetch normalisation of methods, headers or bodies). */
    const raw = (
      opts: { method?: string; path?: string; headers?: OutgoingHttpHeaders; body?: string | Uint8Array } = {},
    ) =>
      new Promise<RawResponse>((resolve, reject) => {
        const req = httpRequest(
          `${http.url}${opts.path ?? '/events'}`,
          { method: opts.method ?? 'POST', headers: opts.headers ?? {}, agent: false },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let json: unknown;
              try {
                json = text === '' ? undefined : JSON.parse(text);
              } catch {
                json = undefined;
              }
              resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
            });
          },
        );
        req.on('error', reject);
        req.end(opts.body);
      });
    /** Send raw bytes on a TCP connection; resolve with everything the server sends until it closes. */
    const rawSocket = (bytes: string | Buffer, options: { end?: boolean } = {}) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(http.port, '127.0.0.1');
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('error', (err) =>
          chunks.length > 0 ? resolve(Buffer.concat(chunks).toString('latin1')) : reject(err),
        );
        socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
        socket.write(bytes);
        if (options.end) socket.end();
      });
    const parseRaw = (text: string) => {
      const [head = '', body = ''] = text.split('\r\n\r\n');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      return { status: Number(statusLine.split(' ')[1]), headers, body: body === '' ? undefined : JSON.parse(body) };
    };
    const expectProblem = (res: RawResponse, status: number, fields: Record<string, unknown> = {}) => {
      expect({ status: res.status, body: res.json }).toMatchObject({ status, body: { status, ...fields } });
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(typeof res.json.type).toBe('string');
      expect(typeof res.json.title).toBe('string');
      expect(typeof res.json.detail).toBe('string');
    };
    const ev = (id: string, extra: Record<string, unknown> = {}) => ({
      specversion: '1.0',
      id,
      source: '/hostile',
      type: 'com.example.job',
      workload: 'echo',
      ...extra,
    });
    const structured = (body: string | Uint8Array, contentType = 'application/cloudevents+json', path = '/events') =>
      raw({ path, headers: { 'content-type': contentType }, body });
    const batch = (body: string | Uint8Array, path = '/events') =>
      structured(body, 'application/cloudevents-batch+json', path);

    it('answers malformed JSON with 400 json-syntax, in structured and batch mode', async () => {
      expectProblem(await structured('{"specversion":"1.0",'), 400, {
        code: 'INVALID_EVENT',
        attribute: 'event',
        rule: 'json-syntax',
      });
      expectProblem(await batch('[{"specversion":"1.0"},'), 400, { code: 'INVALID_EVENT', rule: 'json-syntax' });
      expectProblem(await structured(''), 400, { rule: 'json-syntax' });
      // The problem says where: line and column, in the detail and as members.
      const r = await structured('{\n  "specversion": "1.0",\n  "id": x\n}');
      expectProblem(r, 400, { rule: 'json-syntax', line: 3, column: 9 });
      expect(r.json.detail).toBe(
        'the structured-mode body is not valid JSON: line 3, column 9: unexpected "x", expected a value',
      );
      expect(mesh.dispatched).toHaveLength(0);
    });

    it('refuses a structured body that is JSON but not an object (null, number, string, array)', async () => {
      for (const body of ['null', '42', '"event"', JSON.stringify([ev('a1')]), 'true']) {
        expectProblem(await structured(body), 400, { code: 'INVALID_EVENT', attribute: 'event', rule: 'object' });
      }
      expect(mesh.dispatched).toHaveLength(0);
    });

    it('refuses a batch that is not an array, and accepts an empty batch', async () => {
      for (const body of [JSON.stringify(ev('o1')), 'null', '"x"', '7']) {
        expectProblem(await batch(body), 400, { code: 'INVALID_EVENT', attribute: 'batch', rule: 'batch-array' });
      }
      // HTTP binding §3.3.2: "The batch MAY be empty."
      const empty = await batch('[]');
      expect({ status: empty.status, body: empty.json }).toEqual({ status: 202, body: { ids: [] } });
      const emptyWait = await batch('[]', '/events?wait=1');
      expect({ status: emptyWait.status, body: emptyWait.json }).toEqual({ status: 200, body: { results: [] } });
    });

    it('refuses a whole batch with one bad member, naming every bad index, attribute and rule; nothing runs', async () => {
      const body = JSON.stringify([
        ev('v1'),
        7,
        ev('v3', { time: 'yesterday' }),
        ev('v4'),
        ev('v5', { specversion: '0.3' }),
      ]);
      const res = await batch(body);
      expectProblem(res, 400, { code: 'INVALID_EVENT', index: 1, attribute: 'event', rule: 'object' });
      expect(res.json.errors).toEqual([
        expect.objectContaining({ index: 1, attribute: 'event', rule: 'object' }),
        expect.objectContaining({ index: 2, attribute: 'time', rule: 'rfc3339', id: 'v3' }),
        expect.objectContaining({ index: 4, attribute: 'specversion', rule: 'specversion', id: 'v5' }),
      ]);
      for (const e of res.json.errors) expect(typeof e.detail).toBe('string');
      const intent = await batch(JSON.stringify([ev('i1'), ev('i2', { residency: 'atlantis' })]));
      expectProblem(intent, 400, { code: 'INVALID_INTENT', index: 1, attribute: 'residency' });
      expect(intent.json.errors).toEqual([expect.objectContaining({ index: 1, attribute: 'residency', id: 'i2' })]);
      await new Promise<void>((r) => setImmediate(r));
      expect(mesh.dispatched).toHaveLength(0);
    });

    it('refuses duplicate ids (same source) within one batch, naming the second index', async () => {
      const dup = await batch(JSON.stringify([ev('d1'), ev('d2'), ev('d1')]));
      expectProblem(dup, 400, { code: 'INVALID_EVENT', attribute: 'id', rule: 'unique-in-batch', index: 2, id: 'd1' });
      // CloudEvents identity is source + id: the same id from another source is another event.
      const otherSource = await batch(JSON.stringify([ev('d1'), ev('d1', { source: '/elsewhere' })]));
      expect(otherSource.status).toBe(202);
    });

    it('refuses invalid ce- header values with the attribute and rule', async () => {
      const cases: [Record<string, string>, string, string][] = [
        [{ 'ce-specversion': '0.3' }, 'specversion', 'specversion'],
        [{ 'ce-specversion': '2.0' }, 'specversion', 'specversion'],
        [{ 'ce-id': '' }, 'id', 'non-empty'],
        [{ 'ce-time': '2026-13-45T99:00:00Z' }, 'time', 'rfc3339'],
        [{ 'ce-time': 'yesterday' }, 'time', 'rfc3339'],
        [{ 'ce-source': 'not a uri' }, 'source', 'uri-reference'],
        [{ 'ce-source': 'http://exa mple.com/%zz' }, 'source', 'percent-encoding'],
        [{ 'ce-my-ext': 'x' }, 'my-ext', 'extension-name'],
        [{ 'ce-under_score': 'x' }, 'under_score', 'extension-name'],
        [{ 'ce-waytoolongextensionname1': 'x' }, 'waytoolongextensionname1', 'extension-name'],
        [{ 'ce-data': 'x' }, 'data', 'reserved'],
        [{ 'ce-': 'x' }, '', 'extension-name'],
        [{ 'ce-subject': '%C0%A0' }, 'subject', 'utf-8'],
        [{ 'ce-subject': '%0A' }, 'subject', 'string-chars'],
        [{ 'ce-subject': '"unterminated\\"' }, 'subject', 'quoted-string'],
      ];
      for (const [extra, attribute, rule] of cases) {
        const res = await raw({ headers: binaryHeaders('hv', extra), body: '{}' });
        expect({ extra, status: res.status, attribute: res.json?.attribute, rule: res.json?.rule }).toEqual({
          extra,
          status: 400,
          attribute,
          rule,
        });
        expect(res.headers['content-type']).toBe('application/problem+json');
      }
      expect(mesh.dispatched).toHaveLength(0);
    });

    it('reads header names case-insensitively (ce-MyExt is the extension myext)', async () => {
      const res = await raw({ headers: binaryHeaders('case', { 'CE-MyExt': 'v', 'Ce-Subject': 's' }), body: '{}' });
      expect(res.status).toBe(202);
      await new Promise<void>((r) => setImmediate(r));
      expect(mesh.dispatched[0]?.event).toMatchObject({ id: 'case', myext: 'v', subject: 's' });
    });

    it('percent-decodes ce- header values exactly once and unescapes quoted strings', async () => {
      const res = await raw({
        headers: binaryHeaders('pct', {
          'ce-subject': 'Euro%20%E2%82%AC%20%F0%9F%98%80',
          'ce-source': '/a%2520b',
          'ce-note': '"say \\"hi\\" 100%25"',
        }),
        body: '{}',
      });
      expect(res.status).toBe(202);
      await new Promise<void>((r) => setImmediate(r));
      expect(mesh.dispatched[0]?.event).toMatchObject({
        subject: 'Euro € 😀',
        source: '/a%20b',
        note: 'say "hi" 100%',
      });
    });

    it('accepts content types with parameters and any casing', async () => {
      expect((await structured(JSON.stringify(ev('ct1')), 'Application/CloudEvents+JSON; charset=UTF-8')).status).toBe(
        202,
      );
      expect(
        (await structured(JSON.stringify([ev('ct2')]), 'APPLICATION/CLOUDEVENTS-BATCH+JSON ;charset="utf-8"')).status,
      ).toBe(202);
      const bin = await raw({
        headers: binaryHeaders('ct3', { 'content-type': 'Application/JSON; Charset=UTF-8' }),
        body: '{"n":1}',
      });
      expect(bin.status).toBe(202);
      await new Promise<void>((r) => setImmediate(r));
      expect(mesh.dispatched.find((w) => w.event.id === 'ct3')?.event.data).toEqual({ n: 1 });
    });

    it('answers 415 naming the charset rule for JSON in a charset other than UTF-8', async () => {
      expectProblem(
        await structured(JSON.stringify(ev('cs1')), 'application/cloudevents+json; charset=ISO-8859-1'),
        415,
        { code: 'UNSUPPORTED_FORMAT', rule: 'charset' },
      );
      expectProblem(
        await structured(JSON.stringify([ev('cs2')]), 'application/cloudevents-batch+json; charset=utf-16'),
        415,
        { rule: 'charset' },
      );
      expectProblem(
        await raw({
          headers: binaryHeaders('cs3', { 'content-type': 'application/json; charset=latin1' }),
          body: '{}',
        }),
        415,
        { rule: 'charset' },
      );
      // Opaque (non-JSON) binary data keeps its charset: it is carried as bytes.
      const text = await raw({
        headers: binaryHeaders('cs4', { 'content-type': 'text/plain; charset=iso-8859-1' }),
        body: Buffer.from([0x63, 0x61, 0x66, 0xe9]),
      });
      expect(text.status).toBe(202);
      expect(mesh.dispatched).toHaveLength(1);
    });

    it('accepts binary mode without Content-Type: no datacontenttype, the body kept as bytes', async () => {
      const headers: Record<string, string> = binaryHeaders('noct');
      delete headers['content-type'];
      const res = await raw({ headers, body: 'hello' });
      expect(res.status).toBe(202);
      await new Promise<void>((r) => setImmediate(r));
      const event = mesh.dispatched[0]?.event;
      expect(event?.datacontenttype).toBeUndefined();
      expect(event?.data_base64).toBe(Buffer.from('hello').toString('base64'));
    });

    it('answers 415 for a body with neither ce- headers nor a CloudEvents content type, or none at all', async () => {
      expectProblem(await raw({ headers: { 'content-type': 'application/json' }, body: '{}' }), 415, {
        code: 'UNSUPPORTED_FORMAT',
      });
      expectProblem(await raw({ body: '{}' }), 415, { code: 'UNSUPPORTED_FORMAT' });
    });

    it('accepts a body exactly at the limit and answers 413 one byte over', async () => {
      const sized = (n: number) => {
        const base = JSON.stringify(ev('lim', { data: '' }));
        return JSON.stringify(ev('lim', { data: 'x'.repeat(n - base.length) }));
      };
      const at = sized(4096);
      expect(Buffer.byteLength(at)).toBe(4096);
      expect((await structured(at)).status).toBe(202);
      const over = sized(4097);
      expect(Buffer.byteLength(over)).toBe(4097);
      expectProblem(await structured(over), 413, { code: 'PAYLOAD_TOO_LARGE' });
    });

    it('answers 413 on a Content-Length over the limit without waiting for the body', async () => {
      const text = await rawSocket(
        'POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 1073741824\r\n\r\n{"specversion":',
      );
      const res = parseRaw(text);
      expect(res.status).toBe(413);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(res.headers.connection).toBe('close');
      expect(res.body).toMatchObject({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
    });

    it('answers 413 to a chunked body that grows over the limit, before it ends', async () => {
      const chunk = 'x'.repeat(1000);
      const chunks = Array.from({ length: 6 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('');
      // No terminating 0-chunk: the server must answer without the end of the body.
      const text = await rawSocket(
        `POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}`,
      );
      const res = parseRaw(text);
      expect(res.status).toBe(413);
      expect(res.body).toMatchObject({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
    });

    it('times out a request whose body stalls with 408 and closes the connection', async () => {
      await restart({}, { http: { requestTimeoutMs: 300 } });
      const text = await rawSocket(
        'POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 100\r\n\r\n{"spec',
      );
      const res = parseRaw(text);
      expect(res.status).toBe(408);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(res.body).toMatchObject({ status: 408, code: 'TIMEOUT' });
      expect(mesh.dispatched).toHaveLength(0);
    });

    it('times out a request whose headers never end', async () => {
      await restart({}, { http: { requestTimeoutMs: 300 } });
      const text = await rawSocket('POST /events HTTP/1.1\r\nHost: x\r\nce-id: 1\r\n');
      const res = parseRaw(text);
      expect(res.status).toBe(408);
      expect(res.body).toMatchObject({ status: 408, code: 'TIMEOUT' });
    });

    it('answers 405 with Allow: POST to every other method on /events', async () => {
      for (const method of ['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
        const res = await raw({ method, body: method === 'GET' ? undefined : '{}' });
        expectProblem(res, 405, { code: 'METHOD_NOT_ALLOWED' });
        expect(res.headers.allow).toBe('POST');
      }
      const head = await raw({ method: 'HEAD' });
      expect(head.status).toBe(405);
      expect(head.headers.allow).toBe('POST');
      expect(head.headers['content-type']).toBe('application/problem+json');
      expect(head.text).toBe('');
    });

    it('answers 404 with a problem for unknown paths', async () => {
      for (const path of ['/', '/event', '/events/1', '/EVENTS', '/healthz/x', '/%ff', '/..%2f..%2fetc/passwd']) {
        const res = await raw({ method: 'GET', path });
        expect({ path, status: res.status }).toEqual({ path, status: 404 });
        expectProblem(res, 404, { code: 'NOT_FOUND' });
      }
    });

    it('checks the wait query parameter: 0 or false does not wait, anything unknown is a 400', async () => {
      for (const q of ['?wait=0', '?wait=false', '?wait=no']) {
        const res = await raw({ path: `/events${q}`, headers: binaryHeaders(`q${q.length}${q.at(-1)}`), body: '{}' });
        expect({ q, status: res.status }).toEqual({ q, status: 202 });
      }
      for (const q of ['?wait=abc', '?wait=2', '?wait=1&wait=0']) {
        const res = await raw({ path: `/events${q}`, headers: binaryHeaders('qbad'), body: '{}' });
        expectProblem(res, 400, { attribute: 'wait', rule: 'boolean' });
      }
      const yes = await raw({ path: '/events?wait=TRUE', headers: binaryHeaders('qyes'), body: '{}' });
      expect(yes.status).toBe(200);
      expect(yes.json).toMatchObject({ id: 'qyes', outcome: 'succeeded' });
    });

    it('answers 431 with a problem to headers over the server limit; in binary mode the limit is on the body, not the attributes', async () => {
      const huge = await raw({ headers: binaryHeaders('long', { 'ce-subject': 'x'.repeat(20_000) }), body: '{}' });
      expectProblem(huge, 431, {});
      // 5000 bytes of attributes on a small body: the 4096-byte limit is the body's.
      const long = await raw({ headers: binaryHeaders('long2', { 'ce-subject': 'x'.repeat(5000) }), body: '{}' });
      expect(long.status).toBe(202);
    });

    it('accepts a binary-mode body exactly at the limit (its attributes on top) and answers 413 one byte over', async () => {
      const text = { ...binaryHeaders('bin-at'), 'content-type': 'text/plain' };
      expect((await raw({ headers: text, body: 'y'.repeat(4096) })).status).toBe(202);
      const json = binaryHeaders('bin-json-at');
      expect((await raw({ headers: json, body: `"${'y'.repeat(4094)}"` })).status).toBe(202);
      const over = await raw({
        headers: { ...binaryHeaders('bin-over'), 'content-type': 'text/plain' },
        body: 'y'.repeat(4097),
      });
      expectProblem(over, 413, { code: 'PAYLOAD_TOO_LARGE' });
    });

    it('answers malformed HTTP framing with a 400 problem', async () => {
      const text = await rawSocket(
        'POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nContent-Type: application/cloudevents+json\r\n\r\n{}',
      );
      const res = parseRaw(text);
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(res.body).toMatchObject({ status: 400, code: 'INVALID_MESSAGE', rule: 'http-syntax' });
      for (const request of [
        // request smuggling shape: both framings
        'POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
        'post /events HTTP/1.1\r\nHost: x\r\n\r\n',
        'POST /events HTTP/1.1\r\nHost: x\r\nce-id: a\x00b\r\n\r\n',
      ]) {
        const r = parseRaw(await rawSocket(request));
        expect({ request, status: r.status, ct: r.headers['content-type'] }).toEqual({
          request,
          status: 400,
          ct: 'application/problem+json',
        });
      }
      const target = parseRaw(await rawSocket('GET http://[oops/events HTTP/1.1\r\nHost: x\r\n\r\n'));
      expect(target.status).toBe(400);
      expect(target.body).toMatchObject({ code: 'INVALID_MESSAGE', rule: 'request-target' });
    });

    it('answers Expect: 100-continue with 413 before the body when Content-Length is over the limit', async () => {
      const exchange = (length: number, body: string | undefined) =>
        new Promise<{ status: number; continued: boolean }>((resolve, reject) => {
          let continued = false;
          const req = httpRequest(`${http.url}/events`, {
            method: 'POST',
            agent: false,
            headers: {
              ...binaryHeaders(`exp${length}`),
              expect: '100-continue',
              'content-length': String(length),
            },
          });
          req.on('continue', () => {
            continued = true;
            if (body !== undefined) req.end(body);
          });
          req.on('response', (res) => {
            res.resume();
            res.on('end', () => {
              resolve({ status: res.statusCode ?? 0, continued });
              req.destroy();
            });
          });
          req.on('error', reject);
          req.flushHeaders();
        });
      expect(await exchange(10_000_000, undefined)).toEqual({ status: 413, continued: false });
      expect(await exchange(2, '{}')).toEqual({ status: 202, continued: true });
    });

    it('answers 415 to a compressed body (Content-Encoding other than identity)', async () => {
      const res = await raw({ headers: binaryHeaders('gz', { 'content-encoding': 'gzip' }), body: 'not really gzip' });
      expectProblem(res, 415, { code: 'UNSUPPORTED_FORMAT', rule: 'content-encoding' });
      const identity = await raw({ headers: binaryHeaders('id', { 'content-encoding': 'identity' }), body: '{}' });
      expect(identity.status).toBe(202);
    });

    it('survives a client that disconnects in the middle of the body', async () => {
      await new Promise<void>((resolve) => {
        const socket = connect(http.port, '127.0.0.1', () => {
          socket.write(
            'POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 500\r\n\r\n{"specversion":"1.0",',
            () => socket.destroy(),
          );
        });
        socket.on('close', () => resolve());
      });
      const after = await raw({ headers: binaryHeaders('after-abort'), body: '{}' });
      expect(after.status).toBe(202);
      await new Promise<void>((r) => setImmediate(r));
      expect(mesh.dispatched.map((w) => w.event.id)).toEqual(['after-abort']);
    });

    it('refuses invalid UTF-8 in the body with rule utf-8', async () => {
      const bad = Buffer.concat([
        Buffer.from('{"specversion":"1.0","id":"'),
        Buffer.from([0xc3, 0x28]),
        Buffer.from('"}'),
      ]);
      expectProblem(await structured(bad), 400, { code: 'INVALID_EVENT', rule: 'utf-8' });
      expectProblem(await batch(Buffer.concat([Buffer.from('['), bad, Buffer.from(']')])), 400, { rule: 'utf-8' });
      expectProblem(await raw({ headers: binaryHeaders('u8'), body: Buffer.from([0x22, 0xff, 0xfe, 0x22]) }), 400, {
        attribute: 'data',
        rule: 'utf-8',
      });
    });

    it('is not polluted by __proto__ or constructor keys', async () => {
      const proto = await structured(
        `{"specversion":"1.0","id":"p1","source":"/p","type":"t","workload":"echo","__proto__":{"polluted":true}}`,
      );
      expectProblem(proto, 400, { attribute: '__proto__', rule: 'extension-name' });
      const ctor = await structured(JSON.stringify(ev('p2', { constructor: { prototype: { polluted: true } } })));
      expectProblem(ctor, 400, { attribute: 'constructor', rule: 'extension-type' });
      const inData = await structured(
        `{"specversion":"1.0","id":"p3","source":"/p","type":"t","workload":"echo","data":{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}}`,
        'application/cloudevents+json',
        '/events?wait=1',
      );
      expect(inData.status).toBe(200);
      const batchProto = await batch(
        `[{"specversion":"1.0","id":"p4","source":"/p","type":"t","workload":"echo","data":{"__proto__":{"x":1}}}]`,
      );
      expect(batchProto.status).toBe(202);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(Object.prototype).not.toHaveProperty('polluted');
      expect(Object.prototype).not.toHaveProperty('x');
    });

    it('never answers 5xx to deeply nested data', async () => {
      await restart({ maxEventBytes: 4 * 1024 * 1024 });
      for (const depth of [10_000, 1_000_000]) {
        const data = `${'['.repeat(depth)}${']'.repeat(depth)}`;
        const body = `{"specversion":"1.0","id":"deep${depth}","source":"/p","type":"t","workload":"echo","data":${data}}`;
        const res = await structured(body, 'application/cloudevents+json', '/events?wait=1');
        expect({ depth, status: res.status }).toEqual({ depth, status: 400 });
        expectProblem(res, 400, { attribute: 'data', rule: 'max-depth' });
        const bin = await raw({ path: '/events?wait=1', headers: binaryHeaders(`bdeep${depth}`), body: data });
        expectProblem(bin, 400, { attribute: 'data', rule: 'max-depth' });
      }
      // Binary mode with the data's type in ce-datacontenttype only, and no ce- headers at all (415 first).
      const deep = `${'{"a":'.repeat(200)}1${'}'.repeat(200)}`;
      const headers: Record<string, string> = binaryHeaders('ce-dct', { 'ce-datacontenttype': 'application/json' });
      delete headers['content-type'];
      expectProblem(await raw({ headers, body: deep }), 400, { attribute: 'data', rule: 'max-depth' });
      expectProblem(await raw({ headers: { 'content-type': 'application/json' }, body: deep }), 415, {
        code: 'UNSUPPORTED_FORMAT',
      });
      // Moderate nesting is fine.
      const ok = await structured(
        JSON.stringify(ev('deep-ok', { data: JSON.parse(`${'{"a":'.repeat(50)}1${'}'.repeat(50)}`) })),
        'application/cloudevents+json',
        '/events?wait=1',
      );
      expect(ok.status).toBe(200);
    });

    it('refuses repeated ce- and Content-Type headers with 400 duplicate-header (Node joins or drops them)', async () => {
      const head =
        'POST /events HTTP/1.1\r\nHost: x\r\nce-specversion: 1.0\r\nce-source: /dup\r\nce-type: t\r\nce-workload: echo\r\n';
      const cases: [string, string, string][] = [
        ['ce-id: a\r\nce-id: b\r\nContent-Type: application/json\r\n', '{}', 'id'],
        ['ce-id: r\r\nce-residency: US\r\nCE-Residency: eu\r\nContent-Type: application/json\r\n', '{}', 'residency'],
        ['ce-id: c\r\nContent-Type: application/json\r\nContent-Type: text/plain\r\n', 'hi', 'datacontenttype'],
      ];
      for (const [headers, body, attribute] of cases) {
        const res = parseRaw(
          await rawSocket(`${head}${headers}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`),
        );
        expect({ attribute, status: res.status, body: res.body }).toMatchObject({
          attribute,
          status: 400,
          body: { code: 'INVALID_EVENT', attribute, rule: 'duplicate-header' },
        });
      }
      // Structured mode: a second Content-Type is refused too, not silently ignored.
      const structuredTwice = parseRaw(
        await rawSocket(
          `POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
        ),
      );
      expect(structuredTwice.body).toMatchObject({
        status: 400,
        attribute: 'datacontenttype',
        rule: 'duplicate-header',
      });
      await new Promise<void>((r) => setImmediate(r));
      expect(mesh.dispatched).toHaveLength(0);
    });

    it('keeps every header of a request with more than 2000 of them (residency is not dropped)', async () => {
      const junk = Array.from({ length: 2000 }, () => 'x:\r\n').join('');
      const res = parseRaw(
        await rawSocket(
          `POST /events?wait=1 HTTP/1.1\r\nHost: x\r\nce-specversion: 1.0\r\nce-id: many\r\nce-source: /many\r\nce-type: t\r\nce-workload: echo\r\n${junk}ce-residency: US\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
        ),
      );
      // With the residency read, no agent may run it; had it been dropped, de-1 would have.
      expect(res.status).toBe(422);
      expect(res.body).toMatchObject({ code: 'NO_ELIGIBLE_AGENT', id: 'many' });
      expect(mesh.dispatched).toHaveLength(0);
    });

    it('reads quoted Content-Type parameters as RFC 9110 does (a ";" or "charset=" inside quotes is no charset)', async () => {
      const s = await structured(
        JSON.stringify(ev('q1')),
        'application/cloudevents+json; profile="a;charset=latin1"; charset="utf\\-8"',
      );
      expect(s.status).toBe(202);
      const b = await raw({
        headers: binaryHeaders('q2', { 'content-type': 'application/json; note="x;charset=utf-16"' }),
        body: '{"n":2}',
      });
      expect(b.status).toBe(202);
      expectProblem(
        await structured(JSON.stringify(ev('q3')), 'application/cloudevents+json; profile="x"; charset=latin1'),
        415,
        { rule: 'charset' },
      );
    });

    it('answers ?wait=1 on a batch with 200 and one result per event, each with its own status', async () => {
      mesh.agents.set('de-1', async (w) => (w.event.id === 'slow' ? 'hang' : okResult(w, { doubled: 42 })));
      const res = await batch(
        JSON.stringify([ev('fast'), ev('nowhere', { residency: 'US' }), ev('slow', { latencybudgetms: 50 })]),
        '/events?wait=1',
      );
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('application/json');
      expect(res.json.results).toEqual([
        expect.objectContaining({ status: 200, id: 'fast', outcome: 'succeeded' }),
        expect.objectContaining({ status: 422, id: 'nowhere', code: 'NO_ELIGIBLE_AGENT', outcome: 'dead-lettered' }),
        expect.objectContaining({ status: 504, id: 'slow', code: 'TIMEOUT' }),
      ]);
    });

    it('waits waitMs for an event without a latency budget and answers 504 naming it; a budget of 0 is a 400', async () => {
      await restart({}, { http: { waitMs: 100 } });
      mesh.agents.set('de-1', async () => 'hang');
      const res = await raw({ path: '/events?wait=1', headers: binaryHeaders('no-budget'), body: '{}' });
      expectProblem(res, 504, { code: 'TIMEOUT', id: 'no-budget' });
      expect(res.json.detail).toContain('100 ms');
      const zero = await raw({
        path: '/events?wait=1',
        headers: binaryHeaders('zero-budget', { 'ce-latencybudgetms': '0' }),
        body: '{}',
      });
      expectProblem(zero, 400, { code: 'INVALID_INTENT', attribute: 'latencybudgetms', rule: 'range' });
    });

    it('never waits past maxWaitMs, whatever the latency budget: 504, the event still running', async () => {
      await restart({}, { http: { maxWaitMs: 100 } });
      mesh.agents.set('de-1', async () => 'hang');
      const res = await raw({
        path: '/events?wait=1',
        headers: binaryHeaders('long-budget', { 'ce-latencybudgetms': '2147483647' }),
        body: '{}',
      });
      expectProblem(res, 504, { code: 'TIMEOUT', id: 'long-budget' });
      expect(res.json.detail).toBe('no outcome within 100 ms (the event is accepted and still running)');
    });

    it('refuses a batch body over the limit with 413', async () => {
      const members = Array.from({ length: 40 }, (_, i) => ev(`big${i}`, { data: 'x'.repeat(100) }));
      const body = JSON.stringify(members);
      expect(Buffer.byteLength(body)).toBeGreaterThan(4096);
      expectProblem(await batch(body), 413, { code: 'PAYLOAD_TOO_LARGE' });
      expect(mesh.dispatched).toHaveLength(0);
    });

    it('refuses an event whose JSON repeats a member name (JSON.parse would keep the last silently)', async () => {
      const head = '{"specversion":"1.0","id":"dm","source":"/p","type":"t","workload":"echo"';
      expectProblem(await structured(`${head},"residency":"US","residency":"EU"}`), 400, {
        code: 'INVALID_EVENT',
        attribute: 'residency',
        rule: 'duplicate-member',
      });
      // An escaped spelling is the same name.
      expectProblem(await structured(`${head},"residency":"US","resid\\u0065ncy":"EU"}`), 400, {
        attribute: 'residency',
        rule: 'duplicate-member',
      });
      expectProblem(await structured(`{"id":"x",${head.slice(1)}}`), 400, {
        attribute: 'id',
        rule: 'duplicate-member',
      });
      const inBatch = await batch(`[${JSON.stringify(ev('ok1'))},[1,2],${head},"tenant":"a","tenant":"b"}]`);
      // The non-object member is named first by the decoder; without it the repeated tenant is found.
      expectProblem(inBatch, 400, { index: 1 });
      const dupBatch = await batch(`[${JSON.stringify(ev('ok1'))},${head},"tenant":"a","tenant":"b"}]`);
      expectProblem(dupBatch, 400, { attribute: 'tenant', rule: 'duplicate-member', index: 1, id: 'dm' });
      // Every event at fault is listed, repeated names among the other problems.
      const many = await batch(
        `[${head},"pii":true,"pii":false},${JSON.stringify(ev('bad', { time: 'noon' }))},${head.replace('"dm"', '"dm3"')},"resid\\u0065ncy":"EU","residency":"US"}]`,
      );
      expectProblem(many, 400, { attribute: 'pii', rule: 'duplicate-member', index: 0, id: 'dm' });
      expect(many.json.errors).toEqual([
        expect.objectContaining({ index: 0, attribute: 'pii', rule: 'duplicate-member', id: 'dm' }),
        expect.objectContaining({ index: 1, attribute: 'time', rule: 'rfc3339', id: 'bad' }),
        expect.objectContaining({ index: 2, attribute: 'residency', rule: 'duplicate-member', id: 'dm3' }),
      ]);
      await new Promise<void>((r) => setImmediate(r));
      expect(mesh.dispatched).toHaveLength(0);
      // Repeated names inside data, or the same name in two events of a batch, are fine.
      const inData = await structured(`${head},"data":{"a":1,"a":2,"n":{"b":[{"c":1,"c":2}]}}}`);
      expect(inData.status).toBe(202);
      const twoEvents = await batch(
        `[${head},"tenant":"a"},{"specversion":"1.0","id":"dm2","source":"/p","type":"t","workload":"echo","tenant":"a"}]`,
      );
      expect(twoEvents.status).toBe(202);
    });

    it('serves /healthz and /readyz with any query string, and HEAD without a body', async () => {
      for (const path of ['/healthz?verbose=1', '/healthz/?x=%ff&y', '/readyz?probe=k8s']) {
        const res = await raw({ method: 'GET', path });
        expect({ path, status: res.status }).toEqual({ path, status: 200 });
        expect(res.json.policyDigest).toBe('sha256:test-carbon');
      }
      const head = await raw({ method: 'HEAD', path: '/healthz?x=1' });
      expect(head.status).toBe(200);
      expect(head.text).toBe('');
    });
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
