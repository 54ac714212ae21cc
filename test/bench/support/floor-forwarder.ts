/**
 * The floor under the router benchmarks (bench-only): a forwarder that does only the I/O the
 * router must do for each event, and nothing else. It decodes the CloudEvent (strict), dispatches
 * the work to the agent through the same `natsMesh` (work item encoded, result decoded and
 * validated), answers the producer, then publishes the result to the results stream and a decision
 * record to the decisions stream, awaiting both acknowledgements, as the router does. No placement,
 * no policy, no idempotency claim, no lifecycle machine, no retries, no queue.
 *
 * Measured against direct request/reply in the same run, it says how close any router can come
 * to the targets on this machine with the records the issue asks for; the gap between it
 * and `router.*` is the router's own work.
 */
import { randomUUID } from 'node:crypto';
import {
  type CloudEventJson,
  type DecisionRecord,
  decodeNats,
  type IngressDelivery,
  type MeshNames,
} from '@meshroute/mesh';
import { AGENT_FIXTURE_DEFAULTS, type PolicyBundle } from '@meshroute/policy';
import { type MeshConnection, mapFromHeaders, natsEventSource, natsMesh } from '@meshroute/transport-nats';

/** A running floor forwarder. */
export interface FloorForwarder {
  /** Stop taking requests. */
  stop(): Promise<void>;
}

const encoder = new TextEncoder();

/** Options of the floor forwarders. */
export interface FloorOptions {
  agentId: string;
  bundle: PolicyBundle;
  routerId: string;
}

/** Forward one event: dispatch, answer (when `reply` is given), result and decision record. */
type Forward = (headers: Map<string, string>, body: Uint8Array, reply: string | undefined) => Promise<void>;

/**
 * Start the forwarder on `subject` (a queue subscription; requests answered on their inbox),
 * dispatching every event to `agentId`. Its decision records carry the `bundle`, `engine`, top-k
 * and shadow sections of a real decision of `bundle`, so they are as large as the router's.
 */
export async function startFloorForwarder(
  conn: MeshConnection,
  options: FloorOptions & { subject: string },
): Promise<FloorForwarder> {
  const { forward, mesh } = forwarder(conn, options);
  const sub = conn.nc.subscribe(options.subject, {
    queue: 'floor',
    callback: (_err, m) => {
      if (!m.reply) return;
      forward(m.headers ? mapFromHeaders(m.headers) : new Map(), m.data, m.reply).catch((err: unknown) => {
        process.stderr.write(`floor forwarder: ${(err as Error).message}\n`);
      });
    },
  });
  await conn.nc.flush();
  return {
    async stop() {
      sub.unsubscribe();
      await mesh.close();
    },
  };
}

/**
 * The same forwarder on a JetStream ingress (an ingress stream and durable consumer of its own,
 * `ingressNames`, taken as the router takes its own): each delivery forwarded, then acked once its
 * result and decision record are stored. Dispatch, results and decisions use the default names.
 * `onForwarded` is called after each ack.
 */
export async function startJetStreamFloor(
  conn: MeshConnection,
  options: FloorOptions & { maxInFlight: number; onForwarded: () => void; ingressNames: MeshNames },
): Promise<FloorForwarder> {
  const { forward, mesh } = forwarder(conn, options);
  const source = natsEventSource(conn, { maxInFlight: options.maxInFlight, names: options.ingressNames });
  await source.start(async (d: IngressDelivery) => {
    try {
      await forward(d.headers, d.body, undefined);
      await d.ack();
      options.onForwarded();
    } catch (err) {
      process.stderr.write(`floor forwarder: ${(err as Error).message}\n`);
      d.nak();
    }
  });
  return {
    async stop() {
      await source.close();
      await mesh.close();
    },
  };
}

function forwarder(
  conn: MeshConnection,
  options: FloorOptions,
): { forward: Forward; mesh: ReturnType<typeof natsMesh> } {
  const mesh = natsMesh(conn, { routerId: options.routerId });
  const sample = options.bundle.decide(
    { specversion: '1.0', id: 'floor', source: '/floor', type: 'floor', workload: 'noop', residency: 'eu' },
    [
      {
        ...AGENT_FIXTURE_DEFAULTS,
        id: options.agentId,
        region: 'eu-central',
        jurisdiction: 'DE',
        carbonIntensity: 300,
      },
    ],
    { decisionId: 'floor', nowMs: Date.now(), registryRevision: 1 },
  ).record;
  let seq = 0;
  const forward: Forward = async (headers, body, reply) => {
    const event = decodeNats(headers, body, { maxEventBytes: 1 << 20 }) as CloudEventJson;
    const decisionId = randomUUID();
    const result = await mesh.dispatch(
      {
        schema: 'meshroute.work/v1',
        workId: `floor-${++seq}`,
        attempt: 1,
        decisionId,
        routerId: options.routerId,
        agentId: options.agentId,
        workload: 'noop',
        event,
        dispatchedAtMs: Date.now(),
        timeoutMs: 30_000,
      },
      { timeoutMs: 30_000 },
    );
    if (reply !== undefined) {
      await mesh.reply(
        reply,
        encoder.encode(JSON.stringify({ schema: 'meshroute.answer/v1', id: event.id, outcome: 'succeeded', result })),
      );
    }
    const record: DecisionRecord = {
      schema: 'meshroute.decision/v1',
      decisionId,
      time: new Date().toISOString(),
      routerId: options.routerId,
      bundle: sample.bundle,
      engine: sample.engine,
      event: { id: event.id, type: event.type, source: event.source, attributes: {} },
      attempt: 1,
      candidates: 1,
      registryRevision: 1,
      excluded: [],
      topK: sample.topK,
      chosen: sample.chosen,
      outcome: 'routed',
      shadow: sample.shadow,
      evaluationUs: 0,
    };
    await Promise.all([mesh.publishResult(result, undefined), mesh.publishDecision(record)]);
  };
  return { forward, mesh };
}
