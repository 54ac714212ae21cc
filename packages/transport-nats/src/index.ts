/**
 * @module @meshroute/transport-nats
 * The NATS adapter: connection, JetStream streams and consumers, KV and Object Store, the CloudEvents NATS binding.
 */
export {};
