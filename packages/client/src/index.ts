/**
 * @module @meshroute/client
 * Producer SDK: publish and invoke CloudEvents with intent over NATS or HTTP.
 */
export {};
