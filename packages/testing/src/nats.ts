/**
 * Real `nats-server` processes for tests: a single JetStream node, a 3-node JetStream cluster and
 * a leaf node, each on free ports in a temporary directory that is removed on `stop()`.
 * Every server is also killed when the test process exits (no orphans).
 */
import {
  type NatsJetStreamOptions,
  type NatsServerOptions,
  type NatsServerProcess,
  spawnNatsServer,
} from '@meshroute/transport-nats';
import { trackResource } from './cleanup.js';

/** Options of {@link startNatsServer}: those of `spawnNatsServer`, with JetStream on by default. */
export interface StartNatsServerOptions extends Omit<NatsServerOptions, 'jetstream'> {
  /** JetStream (`false` to turn it off). @default true */
  jetstream?: boolean | NatsJetStreamOptions;
}

/** A test `nats-server`: see `NatsServerProcess` in `@meshroute/transport-nats`. */
export type TestNatsServer = NatsServerProcess;

/**
 * Start a single `nats-server` with JetStream (file store in a temporary directory), on a free
 * client port, with a monitoring port. `restart()` keeps the port and the store.
 * @example
 * const nats = await startNatsServer();
 * afterAll(() => nats.stop());
 */
export async function startNatsServer(options: StartNatsServerOptions = {}): Promise<TestNatsServer> {
  const server = await spawnNatsServer({
    httpPort: 0,
    ...options,
    jetstream: options.jetstream ?? true,
  });
  trackResource(server);
  return server;
}
