/**
 * @module @meshroute/transport-kafka
 * The Kafka bridge on @confluentinc/kafka-javascript: CloudEvents Kafka binding, ingress and egress.
 */
export {};
