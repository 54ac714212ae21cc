/**
 * Resources started by the harness, stopped by {@link stopAllServers} (e.g. in a vitest
 * `afterAll`). Child processes are also killed on process exit by the spawners themselves.
 */

/** Something the harness started. */
export interface StoppableResource {
  stop(): Promise<void>;
}

const resources = new Set<StoppableResource>();

/** Remember `resource` until {@link stopAllServers}; returns it. */
export function trackResource<T extends StoppableResource>(resource: T): T {
  resources.add(resource);
  return resource;
}

/**
 * Stop every server this process started through the harness and not yet stopped by
 * {@link stopAllServers}. Safe to call twice.
 * @example afterAll(stopAllServers)
 */
export async function stopAllServers(): Promise<void> {
  const all = [...resources].reverse();
  resources.clear();
  const results = await Promise.allSettled(all.map((r) => r.stop()));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed && failed.status === 'rejected') throw failed.reason;
}
