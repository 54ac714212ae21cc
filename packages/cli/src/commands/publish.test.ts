import { decodeNats, meshNames } from '@meshroute/mesh';
import { startNatsServer, type TestNatsServer } from '@meshroute/testing';
import { connectMesh, type MeshConnection, provisionMesh } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../main.js';
import { testContext } from '../test-support/context.js';
import { readData, resolvePublishFlags } from './publish.js';

describe('meshroute publish flags', () => {
  it('builds the intent and the event from the flags', () => {
    const r = resolvePublishFlags(
      {
        residency: 'eu,CH',
        latencyBudgetMs: '250',
        carbonMax: '300',
        costMax: '0.01',
        workload: 'checksum',
        tenant: 'acme',
        deadline: '2030-01-01T00:00:00Z',
        pii: true,
        type: 'demo.job',
        source: '/demo',
        subject: 's',
        id: 'e-1',
        data: '{"n":1}',
      },
      { MESHROUTE_NATS_URL: 'nats://10.0.0.1:4222' },
    );
    expect(r.intent).toEqual({
      residency: 'eu,CH',
      latencyBudgetMs: 250,
      carbonMax: 300,
      costMax: '0.01',
      workload: 'checksum',
      tenant: 'acme',
      deadline: '2030-01-01T00:00:00Z',
      pii: true,
    });
    expect(r.event).toEqual({
      type: 'demo.job',
      source: '/demo',
      subject: 's',
      id: 'e-1',
      data: { n: 1 },
      datacontenttype: 'application/json',
    });
    expect(r.transport).toEqual({ kind: 'nats', servers: 'nats://10.0.0.1:4222' });
  });

  it('reads --data @file as JSON and --data-text as text, and says which flag is wrong', () => {
    expect(readData({ data: '@in.json' }, () => '[1,2]')).toEqual({
      data: [1, 2],
      datacontenttype: 'application/json',
    });
    expect(readData({ dataText: 'hi' })).toEqual({ data: 'hi', datacontenttype: 'text/plain; charset=utf-8' });
    expect(() => readData({ data: '{nope' })).toThrow(/--data .*not JSON.*--data-text/);
    expect(() => readData({ data: '@missing.json' })).toThrow(/--data: cannot read missing\.json/);
    expect(() => readData({ data: '1', dataText: 'x' })).toThrow(/not both/);
    expect(() => resolvePublishFlags({ latencyBudgetMs: '1.5' })).toThrow(/--latency-budget-ms: must be an integer/);
    expect(() => resolvePublishFlags({ wait: true })).toThrow(/--wait needs --workload/);
    expect(() => resolvePublishFlags({ natsUrl: 'nats://x', httpUrl: 'http://y' })).toThrow(/not both/);
    expect(resolvePublishFlags({ httpUrl: 'http://127.0.0.1:8080' }).transport).toEqual({
      kind: 'http',
      url: 'http://127.0.0.1:8080',
    });
  });

  it('refuses a --timeout-ms Node.js timers cannot hold (it timed out at once) and a bad --http-url, naming the flag', () => {
    expect(() => resolvePublishFlags({ workload: 'w', wait: true, timeoutMs: '99999999999' })).toThrow(
      expect.objectContaining({ option: '--timeout-ms', message: expect.stringMatching(/at most 2147483647/) }),
    );
    expect(resolvePublishFlags({ workload: 'w', wait: true, timeoutMs: '2147483647' }).timeoutMs).toBe(2_147_483_647);
    expect(() => resolvePublishFlags({ httpUrl: 'not-a-url' })).toThrow(
      expect.objectContaining({ option: '--http-url', message: expect.stringMatching(/"not-a-url" is not a URL/) }),
    );
    expect(() => resolvePublishFlags({ httpUrl: 'nats://127.0.0.1:4222' })).toThrow(
      expect.objectContaining({ option: '--http-url', message: expect.stringMatching(/scheme nats:/) }),
    );
    expect(() => resolvePublishFlags({}, { MESHROUTE_HTTP_URL: 'ftp://x' })).toThrow(
      expect.objectContaining({ option: 'MESHROUTE_HTTP_URL' }),
    );
  });
});

describe('meshroute publish over NATS', () => {
  let nats: TestNatsServer;
  let conn: MeshConnection;
  beforeAll(async () => {
    nats = await startNatsServer();
    conn = await connectMesh({ servers: nats.url });
    await provisionMesh(conn);
  });
  afterAll(async () => {
    await conn?.close();
    await nats?.stop();
  });

  it('puts the event on the ingress stream and prints its id', async () => {
    const ctx = testContext();
    const code = await main(
      [
        'node',
        'meshroute',
        'publish',
        '--nats-url',
        nats.url,
        '--type',
        'demo.job',
        '--id',
        'cli-1',
        '--workload',
        'checksum',
        '--residency',
        'eu',
        '--tenant',
        'acme',
        '--data',
        '{"n":7}',
        '--json',
      ],
      ctx,
    );
    expect(ctx.err()).toBe('');
    expect(code).toBe(0);
    expect(JSON.parse(ctx.out())).toEqual({ ok: true, id: 'cli-1' });
    const jsm = await conn.jetstreamManager();
    const msg = await jsm.streams.getMessage(meshNames().streams.ingress, {
      last_by_subj: meshNames().ingressSubject('acme'),
    });
    const headers = new Map<string, string>();
    for (const [k, v] of msg?.header ?? []) headers.set(k, v[0] as string);
    const ev = decodeNats(headers, msg?.data as Uint8Array);
    expect(ev).toMatchObject({
      id: 'cli-1',
      type: 'demo.job',
      source: '/meshroute/cli',
      workload: 'checksum',
      residency: 'eu',
      tenant: 'acme',
      data: { n: 7 },
    });
  });

  it('refuses an invalid intent with exit code 2 naming the attribute, sending nothing', async () => {
    const ctx = testContext();
    const code = await main(
      ['node', 'meshroute', 'publish', '--nats-url', nats.url, '--residency', 'UK', '--workload', 'w'],
      ctx,
    );
    expect(code).toBe(2);
    expect(ctx.err()).toMatch(/INVALID_INTENT: .*residency/i);
  });

  it('--wait with nobody answering times out with exit code 3', async () => {
    const ctx = testContext();
    const code = await main(
      [
        'node',
        'meshroute',
        'publish',
        '--nats-url',
        nats.url,
        '--workload',
        'w',
        '--wait',
        '--timeout-ms',
        '200',
        '--json',
      ],
      ctx,
    );
    expect(code).toBe(3);
    expect(JSON.parse(ctx.out())).toMatchObject({ ok: false, error: { code: 'TIMEOUT' } });
  });
});
