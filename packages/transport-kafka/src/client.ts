/**
 * Real clients on `@confluentinc/kafka-javascript` (its KafkaJS-style promise API), configured for
 * the bridge: manual offset commits, the bridge's group and client id.
 */
import { KafkaJS } from '@confluentinc/kafka-javascript';
import type { ResolvedKafkaBridgeOptions } from './options.js';
import type { KafkaConsumerPort, KafkaProducerPort } from './ports.js';

/** A consumer and a producer of one Kafka client. */
export interface KafkaClients {
  consumer: KafkaConsumerPort;
  producer: KafkaProducerPort;
}

/**
 * Construct (not connect) the bridge's consumer and producer. Auto-commit is off: the ingress
 * commits each offset after the mesh accepted the record.
 */
export function kafkaClients(options: ResolvedKafkaBridgeOptions): KafkaClients {
  const kafka = new KafkaJS.Kafka({
    kafkaJS: { brokers: [...options.brokers], clientId: options.clientId, logLevel: KafkaJS.logLevel.ERROR },
  });
  const consumer = kafka.consumer({
    kafkaJS: { groupId: options.groupId, autoCommit: false, fromBeginning: options.fromBeginning },
  });
  const producer = kafka.producer({ kafkaJS: { idempotent: true } });
  return {
    consumer: consumer as unknown as KafkaConsumerPort,
    producer: producer as unknown as KafkaProducerPort,
  };
}
