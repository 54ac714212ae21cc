/**
 * `meshroute bridge kafka`: the Kafka bridge process. Ingress: CloudEvents from Kafka topics into
 * the mesh (offsets committed after the JetStream ack; invalid records to a dead-letter topic).
 * Egress: results and dead letters from their JetStream streams to Kafka topics (each JetStream
 * message acknowledged after Kafka acknowledged the record).
 */
import { decodeMessage, type Logger, type MeshNames, meshNames, noopLogger, toMeshError } from '@meshroute/mesh';
import {
  createKafkaEgress,
  createKafkaIngress,
  type KafkaBridgeOptions,
  type KafkaClients,
  kafkaClients,
  resolveKafkaBridgeOptions,
} from '@meshroute/transport-kafka';
import {
  connectMesh,
  DEFAULT_NATS_URL,
  type MeshConnection,
  type NatsConnectOptions,
  publishEvent,
} from '@meshroute/transport-nats';
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { addNatsOptions, type NatsFlags, natsConnectOptions } from '../nats-options.js';

/** Durable JetStream consumers of the egress (one per stream). */
export const KAFKA_EGRESS_DURABLE = 'meshroute-kafka-egress';

/** Options of {@link startKafkaBridgeProcess}. */
export interface KafkaBridgeProcessOptions extends KafkaBridgeOptions {
  /** NATS servers. @default DEFAULT_NATS_URL */
  natsUrl?: string | string[];
  /**
   * Connection options (credentials, TLS, inbox prefix; see `natsConnectOptions`). `natsUrl`,
   * when given, wins over `nats.servers`. @default no credentials
   */
  nats?: NatsConnectOptions;
  /** Forward results and dead letters to Kafka. @default true */
  egress?: boolean;
  /** @default meshNames() */
  names?: MeshNames;
  /** Kafka clients (tests); default: real ones from the options. */
  clients?: KafkaClients;
  logger?: Logger;
}

/** A running bridge. */
export interface KafkaBridgeProcess {
  stop(): Promise<void>;
}

async function startEgressLoop(
  conn: MeshConnection,
  stream: string,
  forward: (data: Uint8Array) => Promise<void>,
  log: Logger,
): Promise<() => Promise<void>> {
  const jsm = await conn.jetstreamManager();
  await jsm.consumers.add(stream, {
    durable_name: KAFKA_EGRESS_DURABLE,
    ack_policy: 'explicit' as never,
    ack_wait: 30_000_000_000,
  });
  const consumer = await conn.js.consumers.get(stream, KAFKA_EGRESS_DURABLE);
  const messages = await consumer.consume();
  const loop = (async () => {
    for await (const m of messages) {
      try {
        await forward(m.data);
        m.ack();
      } catch (err) {
        log.warn('egress to kafka failed; will retry', { stream, seq: m.seq, error: toMeshError(err).message });
        m.nak(1_000);
      }
    }
  })();
  return async () => {
    await messages.close();
    await loop.catch(() => {});
  };
}

/**
 * Start the bridge: connect NATS and Kafka, run the ingress and (unless `egress: false`) the egress.
 * @throws ConfigError for invalid options
 */
export async function startKafkaBridgeProcess(options: KafkaBridgeProcessOptions): Promise<KafkaBridgeProcess> {
  const logger = options.logger ?? noopLogger;
  const resolved = resolveKafkaBridgeOptions({ ...options, logger });
  const names = options.names ?? meshNames();
  const conn = await connectMesh({
    ...options.nats,
    servers: options.natsUrl ?? options.nats?.servers ?? DEFAULT_NATS_URL,
    name: 'meshroute-kafka-bridge',
  });
  const clients = options.clients ?? kafkaClients(resolved);
  const ingress = createKafkaIngress({
    consumer: clients.consumer,
    producer: clients.producer,
    options: resolved,
    accept: async (event) => {
      const tenant = typeof event.tenant === 'string' ? event.tenant : undefined;
      await publishEvent(conn, event, { names, ...(tenant ? { tenant } : {}) });
    },
  });
  const stops: (() => Promise<void>)[] = [];
  try {
    await ingress.start();
    if (options.egress !== false) {
      const egress = createKafkaEgress(clients.producer, resolved);
      stops.push(
        await startEgressLoop(
          conn,
          names.streams.results,
          (d) => egress.sendResult(decodeMessage('meshroute.result/v1', d)),
          logger,
        ),
      );
      stops.push(
        await startEgressLoop(
          conn,
          names.streams.deadLetters,
          (d) => egress.sendDeadLetter(decodeMessage('meshroute.deadletter/v1', d)),
          logger,
        ),
      );
    }
  } catch (err) {
    await ingress.stop().catch(() => {});
    await conn.close();
    throw err;
  }
  logger.info('kafka bridge started', { brokers: resolved.brokers, topics: resolved.topics });
  return {
    async stop() {
      for (const s of stops) await s().catch(() => {});
      await ingress.stop();
      await conn.drain().catch(() => conn.close());
    },
  };
}

interface BridgeKafkaFlags extends NatsFlags {
  brokers: string;
  topics: string;
  groupId?: string;
  deadLetterTopic?: string;
  resultsTopic?: string;
  deadLettersTopic?: string;
  partitionKeyToKey?: boolean;
  keyToPartitionKey?: boolean;
  egress?: boolean;
  natsUrl?: string;
}

/** Register `meshroute bridge kafka`. */
export function register(program: Command, ctx: CliContext): void {
  const bridge = program.command('bridge').description('bridges between the mesh and other event systems');
  addNatsOptions(bridge.command('kafka'), { url: 'none' })
    .description('bridge Kafka topics (CloudEvents Kafka binding) into the mesh, and results/dead letters out')
    .requiredOption('--brokers <host:port,...>', 'Kafka bootstrap brokers (env KAFKA_BROKERS)', ctx.env.KAFKA_BROKERS)
    .requiredOption('--topics <topic,...>', 'topics to consume CloudEvents from')
    .option('--group-id <id>', 'consumer group', 'meshroute-bridge')
    .option('--dead-letter-topic <topic>', 'where invalid records go (reason in headers)')
    .option('--results-topic <topic>', 'egress topic of results')
    .option('--dead-letters-topic <topic>', 'egress topic of dead letters')
    .option('--partition-key-to-key', 'egress: the partitionkey attribute becomes the record key')
    .option('--key-to-partition-key', 'ingress: a record key becomes partitionkey when absent')
    .option('--no-egress', 'do not forward results and dead letters')
    .option('--nats-url <url>', `NATS servers (env MESHROUTE_NATS_URL, default ${DEFAULT_NATS_URL})`)
    .action(async (flags: BridgeKafkaFlags) => {
      const logger = ctx.logger('kafka-bridge');
      const running = await startKafkaBridgeProcess({
        brokers: flags.brokers,
        topics: flags.topics,
        ...(flags.groupId ? { groupId: flags.groupId } : {}),
        ...(flags.deadLetterTopic ? { deadLetterTopic: flags.deadLetterTopic } : {}),
        ...(flags.resultsTopic ? { resultsTopic: flags.resultsTopic } : {}),
        ...(flags.deadLettersTopic ? { deadLettersTopic: flags.deadLettersTopic } : {}),
        partitionKeyToKey: flags.partitionKeyToKey === true,
        keyToPartitionKey: flags.keyToPartitionKey === true,
        egress: flags.egress !== false,
        natsUrl: flags.natsUrl ?? ctx.env.MESHROUTE_NATS_URL ?? DEFAULT_NATS_URL,
        nats: natsConnectOptions({ ...flags, natsUrl: undefined }),
        logger,
      });
      await new Promise<void>((resolve) => {
        const onSignal = () => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          resolve();
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
      await running.stop();
    });
}
