/** Options of the Kafka bridge, resolved once into a filled object. */
import { ConfigError, type Logger, noopLogger } from '@meshroute/mesh';

/** Default consumer group of the ingress bridge. */
export const DEFAULT_KAFKA_GROUP_ID = 'meshroute-bridge';
/** Default dead-letter topic for records that are not valid CloudEvents. */
export const DEFAULT_KAFKA_DEAD_LETTER_TOPIC = 'meshroute.invalid';
/** Default topic of results (egress). */
export const DEFAULT_KAFKA_RESULTS_TOPIC = 'meshroute.results';
/** Default topic of dead letters (egress). */
export const DEFAULT_KAFKA_DEAD_LETTERS_TOPIC = 'meshroute.dlq';
/** Default client id. */
export const DEFAULT_KAFKA_CLIENT_ID = 'meshroute-bridge';
/** How often a failed hand-over to the mesh is retried in place before the record is re-fetched. */
export const DEFAULT_KAFKA_ACCEPT_ATTEMPTS = 3;
/** Backoff between hand-over attempts. */
export const DEFAULT_KAFKA_ACCEPT_BACKOFF_MS = 200;

const TOPIC_RE = /^[A-Za-z0-9._-]{1,249}$/;
const BROKER_RE = /^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$/;

/** Options of the Kafka bridge (`meshroute bridge kafka`). */
export interface KafkaBridgeOptions {
  /** Bootstrap brokers, `host:port`. */
  brokers: readonly string[] | string;
  /** Topics to consume CloudEvents from. */
  topics: readonly string[] | string;
  /** @default DEFAULT_KAFKA_GROUP_ID */
  groupId?: string;
  /** @default DEFAULT_KAFKA_CLIENT_ID */
  clientId?: string;
  /** Where invalid records go, with the reason in headers. @default DEFAULT_KAFKA_DEAD_LETTER_TOPIC */
  deadLetterTopic?: string;
  /** Egress topic of results. @default DEFAULT_KAFKA_RESULTS_TOPIC */
  resultsTopic?: string;
  /** Egress topic of dead letters. @default DEFAULT_KAFKA_DEAD_LETTERS_TOPIC */
  deadLettersTopic?: string;
  /** Egress: the `partitionkey` attribute becomes the record key (CloudEvents Kafka binding, opt-in). @default false */
  partitionKeyToKey?: boolean;
  /** Ingress: a record key becomes `partitionkey` when the event has none. @default false */
  keyToPartitionKey?: boolean;
  /** Read a new group from the earliest offset. @default true */
  fromBeginning?: boolean;
  /** @default DEFAULT_KAFKA_ACCEPT_ATTEMPTS */
  acceptAttempts?: number;
  /** @default DEFAULT_KAFKA_ACCEPT_BACKOFF_MS */
  acceptBackoffMs?: number;
  /** Largest accepted event. @default DEFAULT_MAX_EVENT_BYTES of the mesh */
  maxEventBytes?: number;
  /** @default noopLogger */
  logger?: Logger;
}

/** {@link KafkaBridgeOptions} with every field filled and checked. */
export interface ResolvedKafkaBridgeOptions {
  readonly brokers: readonly string[];
  readonly topics: readonly string[];
  readonly groupId: string;
  readonly clientId: string;
  readonly deadLetterTopic: string;
  readonly resultsTopic: string;
  readonly deadLettersTopic: string;
  readonly partitionKeyToKey: boolean;
  readonly keyToPartitionKey: boolean;
  readonly fromBeginning: boolean;
  readonly acceptAttempts: number;
  readonly acceptBackoffMs: number;
  readonly maxEventBytes: number | undefined;
  readonly logger: Logger;
}

function list(option: string, v: readonly string[] | string | undefined): string[] {
  const items = (typeof v === 'string' ? v.split(',') : [...(v ?? [])]).map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new ConfigError(option, 'must name at least one');
  return items;
}

function topic(option: string, v: string): string {
  if (!TOPIC_RE.test(v) || v === '.' || v === '..') {
    throw new ConfigError(option, `${JSON.stringify(v)} is not a Kafka topic name (1-249 of [A-Za-z0-9._-])`);
  }
  return v;
}

/**
 * Validate and fill the bridge options.
 * @throws ConfigError naming the option
 */
export function resolveKafkaBridgeOptions(o: KafkaBridgeOptions): ResolvedKafkaBridgeOptions {
  const brokers = list('brokers', o.brokers);
  for (const b of brokers) {
    if (!BROKER_RE.test(b)) throw new ConfigError('brokers', `${JSON.stringify(b)} is not host:port`);
  }
  const topics = list('topics', o.topics).map((t) => topic('topics', t));
  const deadLetterTopic = topic('deadLetterTopic', o.deadLetterTopic ?? DEFAULT_KAFKA_DEAD_LETTER_TOPIC);
  if (topics.includes(deadLetterTopic)) {
    throw new ConfigError(
      'deadLetterTopic',
      `${deadLetterTopic} is also an ingress topic (invalid records would loop)`,
    );
  }
  const groupId = o.groupId ?? DEFAULT_KAFKA_GROUP_ID;
  if (groupId.trim() === '') throw new ConfigError('groupId', 'must not be empty');
  const attempts = o.acceptAttempts ?? DEFAULT_KAFKA_ACCEPT_ATTEMPTS;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new ConfigError('acceptAttempts', `must be a positive integer, got ${attempts}`);
  }
  const backoff = o.acceptBackoffMs ?? DEFAULT_KAFKA_ACCEPT_BACKOFF_MS;
  if (!Number.isFinite(backoff) || backoff < 0) {
    throw new ConfigError('acceptBackoffMs', `must be a non-negative number, got ${backoff}`);
  }
  return {
    brokers,
    topics,
    groupId,
    clientId: o.clientId ?? DEFAULT_KAFKA_CLIENT_ID,
    deadLetterTopic,
    resultsTopic: topic('resultsTopic', o.resultsTopic ?? DEFAULT_KAFKA_RESULTS_TOPIC),
    deadLettersTopic: topic('deadLettersTopic', o.deadLettersTopic ?? DEFAULT_KAFKA_DEAD_LETTERS_TOPIC),
    partitionKeyToKey: o.partitionKeyToKey ?? false,
    keyToPartitionKey: o.keyToPartitionKey ?? false,
    fromBeginning: o.fromBeginning ?? true,
    acceptAttempts: attempts,
    acceptBackoffMs: backoff,
    maxEventBytes: o.maxEventBytes,
    logger: o.logger ?? noopLogger,
  };
}
