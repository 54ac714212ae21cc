/**
 * A JetStream cluster of real `nats-server` processes for failure tests: routes between every
 * pair of nodes, one `server_name` per node, started together and ready once every node sees the
 * same JetStream meta leader.
 */
import { ConfigError } from '@meshroute/mesh';
import { freePort, type NatsServerProcess, spawnNatsServer } from '@meshroute/transport-nats';
import { trackResource } from './cleanup.js';
import { getJson, waitFor } from './wait.js';

/** Default number of nodes of {@link startNatsCluster}. */
export const DEFAULT_CLUSTER_NODES = 3;
/** Default time to wait for the JetStream meta leader. */
export const DEFAULT_CLUSTER_READY_TIMEOUT_MS = 30_000;

/** Options of {@link startNatsCluster}. */
export interface StartNatsClusterOptions {
  /** Number of nodes. @default {@link DEFAULT_CLUSTER_NODES} */
  nodes?: number;
  /** JetStream on every node. @default true */
  jetstream?: boolean;
  /** Cluster name. @default 'meshroute-test' */
  name?: string;
  /** Wait this long for the cluster (and its meta leader). @default {@link DEFAULT_CLUSTER_READY_TIMEOUT_MS} */
  readyTimeoutMs?: number;
  /** Raw config appended to every node's config. */
  extraConfig?: string;
}

/** A running test cluster. */
export interface TestNatsCluster {
  /** The nodes, in order; each can be stopped, killed and restarted on its own ports and store. */
  readonly nodes: readonly NatsServerProcess[];
  /** Client URLs of every node (pass all of them as `servers`). */
  readonly urls: string[];
  /** Wait until every running node sees one JetStream meta leader (after a kill or a restart). */
  waitForMetaLeader(timeoutMs?: number): Promise<string>;
  /** Stop every node and remove their directories. */
  stop(): Promise<void>;
}

interface Jsz {
  meta_cluster?: { leader?: string; cluster_size?: number };
}

/**
 * Start a JetStream cluster of `nodes` servers (3 by default) on free ports.
 * @example
 * const cluster = await startNatsCluster({ nodes: 3 });
 * const nc = await connect({ servers: cluster.urls });
 * await cluster.nodes[0].kill();
 */
export async function startNatsCluster(options: StartNatsClusterOptions = {}): Promise<TestNatsCluster> {
  const count = options.nodes ?? DEFAULT_CLUSTER_NODES;
  if (!Number.isInteger(count) || count < 2) throw new ConfigError('nodes', `must be an integer >= 2, got ${count}`);
  const name = options.name ?? 'meshroute-test';
  const jetstreamOn = options.jetstream ?? true;
  const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_CLUSTER_READY_TIMEOUT_MS;
  const routePorts: number[] = [];
  while (routePorts.length < count) {
    const p = await freePort();
    if (!routePorts.includes(p)) routePorts.push(p);
  }
  const settled = await Promise.allSettled(
    routePorts.map((port, i) =>
      spawnNatsServer({
        serverName: `${name}-n${i + 1}`,
        jetstream: jetstreamOn,
        httpPort: 0,
        cluster: {
          name,
          port,
          routes: routePorts.filter((p) => p !== port).map((p) => `nats-route://127.0.0.1:${p}`),
        },
        ...(options.extraConfig === undefined ? {} : { extraConfig: options.extraConfig }),
      }),
    ),
  );
  const nodes = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed && failed.status === 'rejected') {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    throw failed.reason;
  }

  const waitForMetaLeader = async (timeoutMs: number = readyTimeoutMs): Promise<string> => {
    if (!jetstreamOn) return '';
    return await waitFor(
      'the JetStream meta leader',
      async () => {
        const live = nodes.filter((n) => n.running());
        const leaders = new Set<string>();
        for (const n of live) {
          const jsz = (await getJson(`${n.monitorUrl}/jsz`)) as Jsz;
          const leader = jsz.meta_cluster?.leader;
          if (!leader || jsz.meta_cluster?.cluster_size !== count) return undefined;
          leaders.add(leader);
        }
        return leaders.size === 1 ? [...leaders][0] : undefined;
      },
      { timeoutMs, intervalMs: 100 },
    );
  };

  const cluster: TestNatsCluster = {
    nodes,
    get urls() {
      return nodes.map((n) => n.url);
    },
    waitForMetaLeader,
    async stop() {
      await Promise.allSettled(nodes.map((n) => n.stop()));
    },
  };
  trackResource(cluster);
  try {
    await waitForMetaLeader();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
