/**
 * @module @meshroute/transport-nats
 * The NATS adapter: connection, JetStream streams and consumers, KV and Object Store, the CloudEvents NATS binding.
 */
export {};
export {
  DEFAULT_NATS_HOST,
  DEFAULT_NATS_LOG_TAIL_LINES,
  DEFAULT_NATS_MAX_FILE_BYTES,
  DEFAULT_NATS_MAX_MEM_BYTES,
  DEFAULT_NATS_START_TIMEOUT_MS,
  DEFAULT_NATS_STOP_TIMEOUT_MS,
  freePort,
  type NatsClusterOptions,
  type NatsJetStreamOptions,
  type NatsLeafNodeOptions,
  type NatsLeafRemote,
  type NatsServerOptions,
  type NatsServerProcess,
  NatsServerStartError,
  spawnNatsServer,
} from './server-process.js';
