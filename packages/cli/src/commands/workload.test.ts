import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createArtifactCache, memoryWorkloadSource } from '@meshroute/compute-agent';
import type { ArtifactInfo, ArtifactStore } from '@meshroute/mesh';
import { describe, expect, it } from 'vitest';
import { loadWorkloadFile, registerWorkload } from './workload.js';

const workloads = fileURLToPath(new URL('../../../../deploy/workloads/', import.meta.url));

function memoryStore(): ArtifactStore {
  const blobs = new Map<string, Uint8Array>();
  return {
    async put(name, bytes): Promise<ArtifactInfo> {
      const { sha256Digest } = await import('@meshroute/compute-agent');
      const digest = sha256Digest(bytes);
      blobs.set(digest, bytes);
      return { digest, sizeBytes: bytes.byteLength, name };
    },
    get: async (d) => blobs.get(d),
    has: async (d) => blobs.has(d),
  };
}

describe('workload files', () => {
  it('loads the example workloads with their artifact digests filled', async () => {
    const checksum = await loadWorkloadFile(join(workloads, 'checksum.yaml'));
    expect(checksum.spec).toMatchObject({
      schema: 'meshroute.workload/v1',
      name: 'checksum',
      version: '1.0.0',
      capabilities: ['stdin', 'stdout'],
      artifacts: { wasm: { name: 'checksum.wasm', options: { form: 'command' } } },
    });
    expect(checksum.spec.artifacts.wasm?.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const qasm = await loadWorkloadFile(join(workloads, 'qasm.yaml'));
    expect(new TextDecoder().decode(qasm.artifacts[0]?.bytes)).toContain('OPENQASM 2.0');
  });

  it('registers: artifacts land in the store under their digest and the spec in the registry', async () => {
    const loaded = await loadWorkloadFile(join(workloads, 'checksum.yaml'));
    const artifacts = memoryStore();
    const registry = memoryWorkloadSource();
    await registerWorkload(loaded, { artifacts, registry });
    const spec = await registry.get('checksum');
    const digest = spec?.artifacts.wasm?.digest ?? '';
    expect((await createArtifactCache(artifacts).get(digest)).byteLength).toBe(loaded.artifacts[0]?.bytes.byteLength);
  });

  it('names the file, line and rule of a bad workload file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshroute-workload-'));
    const write = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    write('m.wasm', 'bytes');
    await expect(
      loadWorkloadFile(write('a.yaml', 'name: a\nversion: 1\nartifacts:\n  wasm: m.wasm\ncolour: red\n')),
    ).rejects.toThrow(/a\.yaml:5: unknown key "colour"/);
    await expect(
      loadWorkloadFile(write('b.yaml', 'name: b\nversion: 1\nartifacts:\n  tpu: { file: m.wasm }\n')),
    ).rejects.toThrow(/b\.yaml:4: artifacts: unknown backend "tpu"/);
    await expect(
      loadWorkloadFile(write('c.yaml', 'name: c\nversion: 1\nartifacts:\n  wasm: { file: nope.wasm }\n')),
    ).rejects.toThrow(/c\.yaml:4: artifacts\.wasm: cannot read/);
    await expect(
      loadWorkloadFile(
        write('d.yaml', 'name: Bad_Name\nversion: 1\nartifacts:\n  wasm: m.wasm\nlimits: { timeoutMs: -1 }\n'),
      ),
    ).rejects.toThrow(/d\.yaml: name: .*d\.yaml: limits\.timeoutMs/s);
    await expect(loadWorkloadFile(write('e.yaml', 'name: [unclosed\n'))).rejects.toThrow(
      /e\.yaml:\d+: invalid YAML: Flow sequence/,
    );
  });
});
