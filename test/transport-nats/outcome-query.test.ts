import { ErrorCode, InvalidEventError, MeshError, meshNames } from '@meshroute/mesh';
import { startNatsServer, type TestNatsServer } from '@meshroute/testing';
import {
  connectMesh,
  MAX_OUTCOME_WAIT_MS,
  type MeshConnection,
  OUTCOME_STATUS_HEADER,
  type OutcomeQuery,
  queryOutcome,
  serveOutcomeQueries,
} from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { latch, uniquePrefix } from './fixtures.js';

let server: TestNatsServer;
let routerConn: MeshConnection;
let producerConn: MeshConnection;
const enc = new TextEncoder();
const dec = new TextDecoder();

beforeAll(async () => {
  server = await startNatsServer();
  routerConn = await connectMesh({ servers: server.url, name: 'outcome-router' });
  producerConn = await connectMesh({ servers: server.url, name: 'outcome-producer' });
});

afterAll(async () => {
  await producerConn?.close();
  await routerConn?.close();
  await server?.stop();
});

/** Serve questions on a fresh prefix, recording what the handler was asked. */
function serve(handler: (q: OutcomeQuery) => Promise<Uint8Array | undefined>, conn = routerConn) {
  const names = meshNames(uniquePrefix());
  const asked: OutcomeQuery[] = [];
  const stop = serveOutcomeQueries(
    conn,
    (q) => {
      asked.push(q);
      return handler(q);
    },
    { names },
  );
  return { names, asked, stop };
}

/** A raw request on the outcome subject, as a client that does not use queryOutcome sends it. */
async function rawAsk(subject: string, body: string) {
  await routerConn.nc.flush();
  const msg = await producerConn.nc.request(subject, enc.encode(body), { timeout: 2_000 });
  return { status: msg.headers?.get(OUTCOME_STATUS_HEADER), body: dec.decode(msg.data) };
}

describe('outcome questions over NATS', () => {
  it("answers with the handler's bytes, telling it the source, id, tenant (subject's last token) and wait", async () => {
    const answer = enc.encode(JSON.stringify({ schema: 'meshroute.answer/v1', id: 'e1', replayed: true }));
    const { names, asked, stop } = serve(async () => answer);
    await routerConn.nc.flush();
    const got = await queryOutcome(
      producerConn,
      { source: '/shop', id: 'e1', tenant: 'acme', waitMs: 1_500 },
      { names },
    );
    expect(got && JSON.parse(dec.decode(got))).toEqual({ schema: 'meshroute.answer/v1', id: 'e1', replayed: true });
    // No tenant: the default token `_`, handed to the handler as undefined.
    await queryOutcome(producerConn, { source: '/shop', id: 'e2', waitMs: 10 }, { names });
    expect(asked).toEqual([
      { source: '/shop', id: 'e1', tenant: 'acme', waitMs: 1_500 },
      { source: '/shop', id: 'e2', tenant: undefined, waitMs: 10 },
    ]);
    stop();
  });

  it('resolves undefined when the router has no outcome, and when no router serves questions', async () => {
    const { names, stop } = serve(async () => undefined);
    await routerConn.nc.flush();
    const raw = await rawAsk(names.outcomeSubject('t'), JSON.stringify({ source: '/s', id: 'x', waitMs: 5 }));
    expect(raw).toEqual({ status: 'none', body: '' });
    await expect(queryOutcome(producerConn, { source: '/s', id: 'x', waitMs: 5 }, { names })).resolves.toBeUndefined();
    stop();
    await routerConn.nc.flush();
    // Nobody listens any more: no responders, not a wait for the whole timeout.
    await expect(
      queryOutcome(producerConn, { source: '/s', id: 'x', waitMs: 60_000 }, { names }),
    ).resolves.toBeUndefined();
  });

  it("turns the router's duplicate-id refusal back into an InvalidEventError, other errors into their MeshError", async () => {
    const { names, stop } = serve(async (q) => {
      if (q.id === 'theirs') {
        throw new InvalidEventError('id', 'duplicate-id', 'an event with this source and id belongs to another tenant');
      }
      throw new Error('store exploded');
    });
    await routerConn.nc.flush();
    const refused = await queryOutcome(
      producerConn,
      { source: '/s', id: 'theirs', tenant: 'other', waitMs: 100 },
      { names },
    ).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(InvalidEventError);
    expect(refused).toMatchObject({
      code: ErrorCode.INVALID_EVENT,
      attribute: 'id',
      rule: 'duplicate-id',
      message: 'an event with this source and id belongs to another tenant',
    });
    const internal = await queryOutcome(producerConn, { source: '/s', id: 'boom', waitMs: 100 }, { names }).catch(
      (e: unknown) => e,
    );
    expect(internal).toBeInstanceOf(MeshError);
    expect(internal).toMatchObject({ code: ErrorCode.INTERNAL, message: 'store exploded' });
    stop();
  });

  it('answers a malformed question with an error naming the field, and keeps serving', async () => {
    const { names, asked, stop } = serve(async () => undefined);
    const subject = names.outcomeSubject('acme');
    const cases: [string, string][] = [
      ['{not json', '(root): not JSON'],
      ['[1]', '(root): expected an object'],
      [JSON.stringify({ source: '', id: 'x', waitMs: 5 }), 'source: expected a non-empty string'],
      [JSON.stringify({ source: '/s', id: 7, waitMs: 5 }), 'id: expected a non-empty string'],
      [JSON.stringify({ source: '/s', id: 'x', waitMs: 0 }), 'waitMs: expected a positive integer'],
      [JSON.stringify({ source: '/s', id: 'x', waitMs: 1.5 }), 'waitMs: expected a positive integer'],
      [JSON.stringify({ source: '/s', id: 'x' }), 'waitMs: expected a positive integer'],
    ];
    for (const [body, issue] of cases) {
      const r = await rawAsk(subject, body);
      expect(r.status).toBe('error');
      const info = JSON.parse(r.body) as { code: string; message: string };
      expect(info.code).toBe(ErrorCode.INVALID_MESSAGE);
      expect(info.message).toContain(issue);
    }
    expect(asked).toEqual([]);
    // A wait over the maximum is cut to it.
    const r = await rawAsk(subject, JSON.stringify({ source: '/s', id: 'x', waitMs: MAX_OUTCOME_WAIT_MS * 10 }));
    expect(r.status).toBe('none');
    expect(asked).toEqual([{ source: '/s', id: 'x', tenant: 'acme', waitMs: MAX_OUTCOME_WAIT_MS }]);
    stop();
  });

  it('refuses a bad question before sending it, naming the option', async () => {
    const names = meshNames(uniquePrefix());
    await expect(queryOutcome(producerConn, { source: '/s', id: 'x', waitMs: 0 }, { names })).rejects.toMatchObject({
      code: ErrorCode.CONFIG_ERROR,
      message: expect.stringContaining('waitMs'),
    });
    await expect(
      queryOutcome(producerConn, { source: '/s', id: 'x', tenant: 'a.b', waitMs: 5 }, { names }),
    ).rejects.toMatchObject({ code: ErrorCode.CONFIG_ERROR, message: expect.stringContaining('tenant') });
    await expect(queryOutcome(producerConn, { source: '', id: 'x', waitMs: 5 }, { names })).rejects.toMatchObject({
      code: ErrorCode.CONFIG_ERROR,
      message: expect.stringContaining('source'),
    });
  });

  it('has one router of the queue group answer each question', async () => {
    const other = await connectMesh({ servers: server.url, name: 'outcome-router-2' });
    try {
      const names = meshNames(uniquePrefix());
      let calls = 0;
      const handler = async () => {
        calls++;
        return enc.encode('{}');
      };
      const stops = [
        serveOutcomeQueries(routerConn, handler, { names }),
        serveOutcomeQueries(other, handler, { names }),
      ];
      await routerConn.nc.flush();
      await other.nc.flush();
      for (let i = 0; i < 6; i++) {
        expect(await queryOutcome(producerConn, { source: '/s', id: `q${i}`, waitMs: 50 }, { names })).toBeDefined();
      }
      expect(calls).toBe(6);
      for (const s of stops) s();
    } finally {
      await other.close();
    }
  });

  it('answers the questions still waiting with a retryable SHUTTING_DOWN when stopped', async () => {
    const entered = latch();
    const { names, stop } = serve(() => {
      entered.resolve();
      return new Promise<Uint8Array | undefined>(() => {});
    });
    await routerConn.nc.flush();
    const pending = queryOutcome(producerConn, { source: '/s', id: 'slow', waitMs: 60_000 }, { names }).catch(
      (e: unknown) => e,
    );
    await entered.promise;
    stop();
    expect(await pending).toMatchObject({ code: ErrorCode.SHUTTING_DOWN, retryable: true });
  });
});
