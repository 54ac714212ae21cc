/** A started router for the HTTP ingress tests: one EU agent on a fake mesh. */
import { systemClock } from '@meshroute/mesh';
import { memoryStateStore } from '../memory-state-store.js';
import { createRouter, type Router } from '../router.js';
import { capacity, FakeMesh, okResult, testPolicy } from './fakes.js';

/**
 * Start router `routerId` (memory store, test policy, `deps` on top) on a fake mesh whose one agent,
 * `de-1` in `eu-central`, answers `{ doubled: 42 }` and has sent its first heartbeat.
 */
export async function startRouterWithOneAgent(
  routerId: string,
  deps: Partial<Parameters<typeof createRouter>[0]> = {},
): Promise<{ mesh: FakeMesh; router: Router }> {
  const mesh = new FakeMesh(systemClock);
  mesh.agents.set('de-1', async (w) => okResult(w, { doubled: 42 }));
  const router = createRouter({ mesh, store: memoryStateStore(), policies: testPolicy(), routerId, ...deps });
  await router.start();
  mesh.heartbeat(capacity('de-1', { sentAtMs: Date.now(), region: 'eu-central' }));
  return { mesh, router };
}
