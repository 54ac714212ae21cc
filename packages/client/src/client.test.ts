/**
 * The client against a real nats-server (JetStream ingress), a real router with a real policy
 * bundle, its HTTP ingress, and an agent answering work over NATS.
 */
import { readFileSync } from 'node:fs';
import {
  type CloudEventJson,
  InvalidEventError,
  InvalidIntentError,
  meshNames,
  type WorkItem,
  type WorkResult,
} from '@meshroute/mesh';
import { loadBundle } from '@meshroute/policy';
import {
  createRouter,
  encodeAnswer,
  type HttpIngress,
  memoryStateStore,
  type Router,
  startHttpIngress,
} from '@meshroute/router';
import { sampleCapacityReport, startNatsServer, type TestNatsServer } from '@meshroute/testing';
import {
  connectMesh,
  type MeshConnection,
  natsAgentMesh,
  natsEventSource,
  natsMesh,
  provisionMesh,
  serveOutcomeQueries,
} from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createClient,
  DeadLetteredError,
  EventRejectedError,
  InvocationFailedError,
  NoEligibleAgentError,
} from './index.js';

const policyFile = (name: string) => ({
  path: name,
  content: readFileSync(new URL(`../../../policies/${name}`, import.meta.url), 'utf8'),
});

describe('client over NATS and HTTP, with a real router', () => {
  let nats: TestNatsServer;
  let conn: MeshConnection;
  let agentConn: MeshConnection;
  let router: Router;
  let http: HttpIngress;
  const seen: WorkItem[] = [];
  let stopServe: (() => Promise<void>) | undefined;
  let stopOutcomes: (() => void) | undefined;

  beforeAll(async () => {
    nats = await startNatsServer();
    conn = await connectMesh({ servers: nats.url, name: 'client-test' });
    agentConn = await connectMesh({ servers: nats.url, name: 'client-test-agent' });
    await provisionMesh(conn);
    const { bundle, errors } = loadBundle([policyFile('eu-residency.yaml')]);
    expect(errors).toEqual([]);
    router = createRouter({
      mesh: natsMesh(conn, { routerId: 'r1' }),
      source: natsEventSource(conn, {}),
      store: memoryStateStore(),
      policies: bundle as NonNullable<typeof bundle>,
      routerId: 'r1',
      options: { maxAttempts: 1 },
    });
    await router.start();
    // As `meshroute router` does: answer outcome questions of producers whose re-send was de-duplicated.
    stopOutcomes = serveOutcomeQueries(conn, async (q) => {
      const a = await router.outcome({ source: q.source, id: q.id, tenant: q.tenant }, { waitMs: q.waitMs });
      return a ? encodeAnswer(a) : undefined;
    });
    const agentMesh = natsAgentMesh(agentConn);
    stopServe = agentMesh.serveWork('edge-de-1', async (work): Promise<WorkResult> => {
      seen.push(work);
      const data = work.event.data as { n?: number; fail?: boolean } | undefined;
      const base = {
        schema: 'meshroute.result/v1' as const,
        workId: work.workId,
        eventId: work.event.id,
        eventSource: work.event.source,
        agentId: work.agentId,
        attempt: work.attempt,
        queueMs: 1,
        executionMs: 2,
        finishedAtMs: Date.now(),
      };
      if (data?.fail) {
        return { ...base, ok: false, error: { code: 'WORKLOAD_FAILED', message: 'guest trapped', retryable: false } };
      }
      return { ...base, ok: true, output: { doubled: (data?.n ?? 0) * 2 }, contentType: 'application/json' };
    });
    await agentMesh.publishCapacity(
      sampleCapacityReport({ agentId: 'edge-de-1', jurisdiction: 'DE', region: 'eu-central', sentAtMs: Date.now() }),
    );
    // The router learns the agent from the heartbeat.
    const deadline = Date.now() + 10_000;
    while (router.agents().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(router.agents().map((a) => a.id)).toEqual(['edge-de-1']);
    http = await startHttpIngress(router, { port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await http?.close();
    stopOutcomes?.();
    await stopServe?.();
    await router?.stop();
    await agentConn?.close();
    await conn?.close();
    await nats?.stop();
  });

  it('publish builds a complete CloudEvent with the intent, puts it on the ingress stream, and it runs', async () => {
    const client = createClient({ nats: conn, source: '/tests/client', tenant: 'acme' });
    const before = seen.length;
    const id = await client.publish(
      { type: 'com.example.job', data: { n: 4 } },
      { residency: 'eu', workload: 'double' },
    );
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const deadline = Date.now() + 10_000;
    while (seen.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const ev = seen.at(-1)?.event as CloudEventJson;
    expect(ev).toMatchObject({
      specversion: '1.0',
      id,
      source: '/tests/client',
      type: 'com.example.job',
      residency: 'eu',
      workload: 'double',
      tenant: 'acme',
      data: { n: 4 },
      datacontenttype: 'application/json',
    });
    expect(Number.isNaN(Date.parse(ev.time as string))).toBe(false);
  });

  it('invoke over NATS answers with the typed result and where it ran', async () => {
    const client = createClient({ nats: conn });
    const r = await client.invoke<{ doubled: number }>('double', { n: 21 }, { residency: 'eu' }, { timeoutMs: 10_000 });
    expect(r.output).toEqual({ doubled: 42 });
    expect(r.agent).toEqual({ id: 'edge-de-1', region: 'eu-central', jurisdiction: 'DE' });
    expect(r.attempt).toBe(1);
    expect(typeof r.decisionId).toBe('string');
  });

  it('invoke over NATS: no eligible agent is a NoEligibleAgentError (a dead letter with its reason)', async () => {
    const client = createClient({ nats: conn });
    const err = await client.invoke('double', { n: 1 }, { residency: 'US' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoEligibleAgentError);
    expect(err).toBeInstanceOf(DeadLetteredError);
    expect((err as NoEligibleAgentError).reason).toBe('NO_ELIGIBLE_AGENT');
    expect((err as NoEligibleAgentError).code).toBe('NO_ELIGIBLE_AGENT');
  });

  it('invoke over NATS: a workload that fails is an InvocationFailedError carrying the agent result', async () => {
    const client = createClient({ nats: conn });
    const err = await client.invoke('double', { fail: true }, { residency: 'eu' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvocationFailedError);
    expect((err as InvocationFailedError).code).toBe('WORKLOAD_FAILED');
    expect((err as InvocationFailedError).result?.agentId).toBe('edge-de-1');
  });

  it('invoke over NATS: an event with a deadline in the past is dead-lettered with DEADLINE_PASSED', async () => {
    const client = createClient({ nats: conn });
    const err = await client
      .invoke('double', { n: 1 }, { residency: 'eu', deadline: new Date(Date.now() - 60_000) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadLetteredError);
    expect((err as DeadLetteredError).reason).toBe('DEADLINE_PASSED');
  });

  it('invoke over NATS times out with a TimeoutError when no router answers', async () => {
    // A mesh prefix with an ingress stream but no router: the event is accepted, nobody answers.
    const lonely = await connectMesh({ servers: nats.url, name: 'lonely' });
    try {
      await provisionMesh(lonely, { names: meshNames('lonely') });
      const client = createClient({ nats: lonely, names: meshNames('lonely') });
      const err = await client.invoke('double', { n: 1 }, {}, { timeoutMs: 300 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: 'TimeoutError', code: 'TIMEOUT' });
    } finally {
      await lonely.close();
    }
  });

  it("invoke over NATS again with the same source and id: the first one's outcome, replayed, without running again", async () => {
    const client = createClient({ nats: conn, source: '/tests/client/resend' });
    const id = `resend-${Date.now()}`;
    const first = await client.invoke<{ doubled: number }>(
      'double',
      { n: 5 },
      { residency: 'eu' },
      { id, timeoutMs: 10_000 },
    );
    const ran = seen.filter((w) => w.event.id === id).length;
    const again = await client.invoke<{ doubled: number }>(
      'double',
      { n: 5 },
      { residency: 'eu' },
      { id, timeoutMs: 10_000 },
    );
    expect(first.replayed).toBe(false);
    expect(again).toMatchObject({ replayed: true, decisionId: first.decisionId, output: { doubled: 10 } });
    expect(again.agent).toEqual(first.agent);
    expect(seen.filter((w) => w.event.id === id).length).toBe(ran);
    expect(ran).toBe(1);
    // The same source and id under another tenant is not told this outcome.
    const err = await client
      .invoke('double', { n: 5 }, { residency: 'eu', tenant: 'other' }, { id, timeoutMs: 10_000 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EventRejectedError);
    expect(err).toMatchObject({ code: 'INVALID_EVENT', attribute: 'id', rule: 'duplicate-id' });
  });

  it('invoke over NATS of a re-sent event still times out when no router can tell its outcome', async () => {
    // A mesh prefix with an ingress stream but no router: accepted twice (the second de-duplicated), nobody answers.
    const lonely = await connectMesh({ servers: nats.url, name: 'lonely-resend' });
    try {
      await provisionMesh(lonely, { names: meshNames('lonely2') });
      const client = createClient({ nats: lonely, names: meshNames('lonely2'), source: '/tests/lonely' });
      const first = await client.invoke('double', {}, {}, { id: 'l1', timeoutMs: 200 }).catch((e: unknown) => e);
      expect(first).toMatchObject({ name: 'TimeoutError', code: 'TIMEOUT' });
      const again = await client.invoke('double', {}, {}, { id: 'l1', timeoutMs: 300 }).catch((e: unknown) => e);
      expect(again).toMatchObject({ name: 'TimeoutError', code: 'TIMEOUT', details: { timeoutMs: 300 } });
    } finally {
      await lonely.close();
    }
  });

  it('refuses invalid input before sending anything, naming the attribute', async () => {
    const client = createClient({ nats: conn });
    await expect(client.publish({ type: '' }, {})).rejects.toBeInstanceOf(InvalidEventError);
    await expect(client.publish({ type: 'x', source: 'not a uri ref' }, {})).rejects.toMatchObject({
      attribute: 'source',
    });
    await expect(client.invoke('double', {}, { residency: 'UK' })).rejects.toBeInstanceOf(InvalidIntentError);
    await expect(client.invoke('double', {}, { latencyBudgetMs: -1 })).rejects.toMatchObject({
      attribute: 'latencybudgetms',
    });
  });

  it('invoke and publish over the HTTP ingress', async () => {
    const client = createClient({ url: http.url, source: '/tests/http' });
    const r = await client.invoke<{ doubled: number }>('double', { n: 5 }, { residency: 'eu' }, { timeoutMs: 10_000 });
    expect(r.output).toEqual({ doubled: 10 });
    expect(r.agent?.id).toBe('edge-de-1');
    const id = await client.publish({ type: 'com.example.job', id: 'http-1', data: { n: 1 } }, { workload: 'double' });
    expect(id).toBe('http-1');
    const err = await client.invoke('double', { n: 1 }, { residency: 'US' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoEligibleAgentError);
  });

  it('HTTP: an event the ingress refuses is an EventRejectedError naming the attribute', async () => {
    // The client validates first; a hand-made fetch shows the server-side refusal is mapped too.
    const client = createClient({
      url: http.url,
      fetch: (url, init) =>
        fetch(url, { ...init, headers: { ...(init?.headers as Record<string, string>), 'ce-specversion': '0.3' } }),
    });
    const err = await client.publish({ type: 'x' }, { workload: 'double' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EventRejectedError);
    expect((err as EventRejectedError).attribute).toBe('specversion');
  });

  it('rejects bad options with a ConfigError naming the option', () => {
    expect(() => createClient({ url: 'ftp://x' })).toThrow(/url/);
    expect(() => createClient({ url: 'http://x', invokeTimeoutMs: 0 })).toThrow(/invokeTimeoutMs/);
    expect(() => createClient({} as never)).toThrow(/nats\|url/);
  });
});
