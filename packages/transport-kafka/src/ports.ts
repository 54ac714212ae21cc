/**
 * The parts of the `@confluentinc/kafka-javascript` KafkaJS-style API the bridge uses. A real
 * `KafkaJS.Kafka` consumer and producer satisfy them as they are; tests inject their own to check
 * the ordering of hand-over and offset commit without a broker.
 */

/** A header value as the client gives it. */
export type KafkaHeaderInput = Buffer | string | (Buffer | string)[] | undefined;

/** One consumed record. */
export interface ConsumedRecord {
  key: Buffer | null;
  value: Buffer | null;
  offset: string;
  headers?: Record<string, KafkaHeaderInput>;
}

/** What `eachMessage` receives. */
export interface EachMessageInput {
  topic: string;
  partition: number;
  message: ConsumedRecord;
}

/** A topic, partition and the next offset to read (committed offsets point past the record). */
export interface TopicPartitionOffset {
  topic: string;
  partition: number;
  offset: string;
}

/** The consumer side (KafkaJS-style). */
export interface KafkaConsumerPort {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  subscribe(subscription: { topics: string[] }): Promise<void>;
  run(config: { eachMessage: (payload: EachMessageInput) => Promise<void> }): Promise<void>;
  commitOffsets(offsets: TopicPartitionOffset[]): Promise<void>;
}

/** One record to produce. */
export interface ProducedRecord {
  key: string | null;
  value: Buffer;
  headers: Record<string, string>;
}

/** The producer side (KafkaJS-style). */
export interface KafkaProducerPort {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  send(record: { topic: string; messages: ProducedRecord[] }): Promise<unknown>;
}
