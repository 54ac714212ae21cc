/**
 * @module @meshroute/transport-kafka
 * The Kafka bridge on `@confluentinc/kafka-javascript`: CloudEvents from Kafka topics into the
 * mesh ingress (strict validation, offsets committed only after the mesh accepted the record,
 * invalid records to a dead-letter topic with the reason in headers), and results and dead letters
 * back out to Kafka topics as CloudEvents with `ce_` headers.
 *
 * @example
 * import { createKafkaIngress, kafkaClients, resolveKafkaBridgeOptions } from '@meshroute/transport-kafka';
 * const options = resolveKafkaBridgeOptions({ brokers: 'localhost:9092', topics: 'orders' });
 * const { consumer, producer } = kafkaClients(options);
 * const ingress = createKafkaIngress({ consumer, producer, options, accept: async (e) => { await publishEvent(conn, e); } });
 * await ingress.start();
 */
export { type KafkaClients, kafkaClients } from './client.js';
export {
  createKafkaEgress,
  DEAD_LETTER_EVENT_TYPE,
  deadLetterEvent,
  EGRESS_EVENT_SOURCE,
  type KafkaEgress,
  RESULT_EVENT_TYPE,
  resultEvent,
} from './egress.js';
export {
  type AcceptEvent,
  createKafkaIngress,
  KAFKA_DLQ_HEADERS,
  type KafkaIngress,
  type KafkaIngressDeps,
  type KafkaIngressStats,
  nextOffset,
} from './ingress.js';
export {
  DEFAULT_KAFKA_ACCEPT_ATTEMPTS,
  DEFAULT_KAFKA_ACCEPT_BACKOFF_MS,
  DEFAULT_KAFKA_CLIENT_ID,
  DEFAULT_KAFKA_DEAD_LETTER_TOPIC,
  DEFAULT_KAFKA_DEAD_LETTERS_TOPIC,
  DEFAULT_KAFKA_GROUP_ID,
  DEFAULT_KAFKA_RESULTS_TOPIC,
  type KafkaBridgeOptions,
  type ResolvedKafkaBridgeOptions,
  resolveKafkaBridgeOptions,
} from './options.js';
export type {
  ConsumedRecord,
  EachMessageInput,
  KafkaConsumerPort,
  KafkaHeaderInput,
  KafkaProducerPort,
  ProducedRecord,
  TopicPartitionOffset,
} from './ports.js';
