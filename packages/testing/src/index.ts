/**
 * @module @meshroute/testing
 * Test support for meshroute, a dev dependency only: real `nats-server` (single node with
 * JetStream, 3-node cluster, leaf node) and `redis-server` on free ports, in-memory fakes of the
 * ports, a simulated clock, port conformance suites, and benchmark helpers.
 */
export {
  type BenchLine,
  benchLine,
  type Percentiles,
  percentiles,
  quantile,
  reportBench,
  type SampleOptions,
  sampleAsync,
  sampleSync,
} from './bench.js';
export { type StoppableResource, stopAllServers, trackResource } from './cleanup.js';
export {
  type MemoryArtifactStore,
  memoryArtifactStore,
  sha256Digest,
} from './fakes/memory-artifact-store.js';
export {
  DEFAULT_MEMORY_SOURCE_ACK_WAIT_MS,
  DEFAULT_MEMORY_SOURCE_MAX_IN_FLIGHT,
  type MemoryEventSource,
  type MemoryEventSourceOptions,
  type MemoryMessage,
  memoryEventSource,
  type PushOptions,
} from './fakes/memory-event-source.js';
export { type MemoryMesh, type MemoryMeshOptions, memoryMesh, type RecordedReply } from './fakes/memory-mesh.js';
export { type StartNatsServerOptions, startNatsServer, type TestNatsServer } from './nats.js';
export {
  DEFAULT_CLUSTER_NODES,
  DEFAULT_CLUSTER_READY_TIMEOUT_MS,
  type StartNatsClusterOptions,
  startNatsCluster,
  type TestNatsCluster,
} from './nats-cluster.js';
export {
  DEFAULT_LEAF_LINK_TIMEOUT_MS,
  type StartLeafNodeOptions,
  startLeafNode,
  type TestLeafNode,
} from './nats-leaf.js';
export {
  DEFAULT_REDIS_START_TIMEOUT_MS,
  RedisServerStartError,
  type StartRedisServerOptions,
  startRedisServer,
  type TestRedisServer,
} from './redis.js';
export {
  sampleCapacityReport,
  sampleDeadLetter,
  sampleDecisionRecord,
  sampleResult,
  sampleWorkItem,
} from './samples.js';
export { type SimulatedClock, simulatedClock } from './simulated-clock.js';
export {
  type ArtifactStoreFactory,
  type ArtifactStoreFixture,
  runArtifactStoreSuite,
} from './suites/artifact-store-suite.js';
export {
  type EventSourceFactory,
  type EventSourceFixture,
  type EventSourceSuiteOptions,
  runEventSourceSuite,
} from './suites/event-source-suite.js';
export { type MeshFactory, type MeshFixture, runMeshSuite } from './suites/mesh-suite.js';
export {
  runStateStoreSuite,
  type StateStoreFactory,
  type StateStoreFixture,
} from './suites/state-store-suite.js';
export { getJson, type WaitForOptions, waitFor } from './wait.js';
