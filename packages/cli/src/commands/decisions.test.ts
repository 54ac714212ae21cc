import { sampleDeadLetter, sampleDecisionRecord, startNatsServer, type TestNatsServer } from '@meshroute/testing';
import { connectMesh, natsMesh, provisionMesh } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../main.js';
import { testContext } from '../test-support/context.js';

async function decisions(url: string, ...args: string[]) {
  const ctx = testContext();
  const code = await main(['node', 'meshroute', 'decisions', '--nats-url', url, ...args], ctx);
  return { code, out: ctx.out(), err: ctx.err() };
}

describe('meshroute decisions', () => {
  let nats: TestNatsServer;
  let bare: TestNatsServer;

  beforeAll(async () => {
    [nats, bare] = await Promise.all([startNatsServer(), startNatsServer()]);
    const conn = await connectMesh({ servers: nats.url, name: 'decisions-test' });
    try {
      await provisionMesh(conn);
      const mesh = natsMesh(conn, { routerId: 'decisions-test' });
      await mesh.publishDecision(
        sampleDecisionRecord({
          decisionId: 'dec-routed',
          event: { id: 'evt-routed', type: 't', source: '/s', attributes: {} },
        }),
      );
      // The same id in another tenant (found: the lookup filters by the id's bucket across tenants),
      // and other events' records (not shown).
      await mesh.publishDecision(
        sampleDecisionRecord({
          decisionId: 'dec-acme',
          event: { id: 'evt-routed', type: 't', source: '/acme', tenant: 'acme', attributes: {} },
        }),
      );
      for (let i = 0; i < 30; i++) {
        await mesh.publishDecision(
          sampleDecisionRecord({
            decisionId: `dec-other-${i}`,
            event: { id: `evt-other-${i}`, type: 't', source: '/s', attributes: {} },
          }),
        );
      }
      await mesh.publishDeadLetter(
        sampleDeadLetter({
          eventId: 'evt-refused',
          reason: 'WORKLOAD_NOT_FOUND',
          error: { code: 'WORKLOAD_NOT_FOUND', message: 'workload "nope" is not registered', retryable: false },
          decisionIds: [],
        }),
      );
    } finally {
      await conn.close();
    }
  });
  afterAll(async () => {
    await Promise.all([nats?.stop(), bare?.stop()]);
  });

  it('shows the recent records without --event', async () => {
    const r = await decisions(nats.url, '--limit', '5');
    expect(r.code).toBe(0);
    // The newest 5: the last of the other events' records.
    expect(r.out).toContain('dec-other-29');
    expect(r.out).not.toContain('dec-other-24');
  });

  it('finds the record of an event by id, as text and as valid JSON', async () => {
    const text = await decisions(nats.url, '--event', 'evt-routed');
    expect(text.code).toBe(0);
    expect(text.out).toContain('dec-routed');
    expect(text.out).toContain('event evt-routed');
    const json = await decisions(nats.url, '--event', 'evt-routed', '--json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out)).toMatchObject([{ decisionId: 'dec-routed' }, { decisionId: 'dec-acme' }]);
  });

  it('says the event id is unknown (stderr, exit 1) and keeps --json stdout valid JSON', async () => {
    const text = await decisions(nats.url, '--event', 'evt-unknown');
    expect(text.code).toBe(1);
    expect(text.err).toMatch(/no decision record for event "evt-unknown".*unknown event id/);
    const json = await decisions(nats.url, '--event', 'evt-unknown', '--json');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toEqual([]);
    expect(json.err).toContain('evt-unknown');
  });

  it('says why an event has no decision when it was dead-lettered before routing', async () => {
    const r = await decisions(nats.url, '--event', 'evt-refused');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/"evt-refused": it was dead-lettered WORKLOAD_NOT_FOUND.*workload "nope" is not registered/);
  });

  it('names the missing stream when the mesh is not provisioned', async () => {
    const r = await decisions(bare.url);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/NOT_FOUND: stream MESHROUTE_DECISIONS not found: the mesh is not provisioned/);
  });

  it.each([
    [['--event', ''], /CONFIG_ERROR: --event: must be a non-empty event id/],
    [['--event', '   '], /CONFIG_ERROR: --event: must be a non-empty event id/],
    [['--limit', '-1'], /CONFIG_ERROR: --limit: must be a positive integer/],
    [['--limit', '0'], /CONFIG_ERROR: --limit: must be a positive integer, got "0"/],
    [['--limit', '99999999999999999999'], /CONFIG_ERROR: --limit: must be a positive integer/],
  ])('refuses %j with a clear CONFIG_ERROR and exit code 1', async (args, message) => {
    const r = await decisions('nats://127.0.0.1:1', ...args);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(message);
    expect(r.out).toBe('');
  });
});
