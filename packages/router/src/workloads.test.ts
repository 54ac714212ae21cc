import type { WorkloadSpec } from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import { agentCanRun, type WatchedWorkloadChange, watchWorkloadCatalog, workloadBackends } from './workloads.js';

const digest = `sha256:${'c'.repeat(64)}`;
const spec = (name: string, backends: ('wasm' | 'gpu' | 'quantum')[]): WorkloadSpec => ({
  schema: 'meshroute.workload/v1',
  name,
  version: '1',
  artifacts: Object.fromEntries(backends.map((b) => [b, { digest, name: `${name}.${b}`, options: {} }])),
  limits: { timeoutMs: 1000, memoryBytes: 1024, outputBytes: 1024 },
  capabilities: [],
});

describe('workload catalog', () => {
  it('decides by artifact backend and by the agent workloads list (empty: any)', () => {
    const qasm = spec('qasm', ['quantum']);
    expect(workloadBackends(spec('both', ['wasm', 'gpu']))).toEqual(['wasm', 'gpu']);
    expect(agentCanRun(qasm, { backends: ['gpu'], workloads: [] })).toBe(false);
    expect(agentCanRun(qasm, { backends: ['wasm', 'quantum'], workloads: [] })).toBe(true);
    expect(agentCanRun(qasm, { backends: ['quantum'], workloads: ['other'] })).toBe(false);
    expect(agentCanRun(qasm, { backends: ['quantum'], workloads: ['qasm'] })).toBe(true);
  });

  it('loads the registry, then follows puts and deletes until closed', async () => {
    let handler: ((c: WatchedWorkloadChange) => void) | undefined;
    let stopped = 0;
    const catalog = await watchWorkloadCatalog({
      list: async () => [spec('echo', ['wasm'])],
      watch: async (h) => {
        handler = h;
        return () => {
          stopped++;
        };
      },
    });
    expect(catalog.get('echo')?.name).toBe('echo');
    handler?.({ type: 'put', spec: spec('qasm', ['quantum']) });
    handler?.({ type: 'delete', name: 'echo' });
    expect(catalog.names()).toEqual(['qasm']);
    catalog.close();
    catalog.close();
    expect(stopped).toBe(1);
  });
});
