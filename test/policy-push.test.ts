/**
 * `meshroute policy push` feeding a running `meshroute router` through the policy KV bucket:
 * the real CLI processes on a real nats-server. The router activates a pushed bundle (digest on
 * /healthz), refuses a bundle that lowers a policy's version and keeps the last good one, and
 * `policy push` itself refuses a bundle that does not validate or whose tests fail.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startNatsServer, stopAllServers, type TestNatsServer, waitFor } from '@meshroute/testing';
import { freePort } from '@meshroute/transport-nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const BIN = new URL('../packages/cli/dist/bin.js', import.meta.url).pathname;
const POLICIES = new URL('../policies', import.meta.url).pathname;

interface Health {
  status: string;
  policyDigest?: string;
}

async function health(port: number): Promise<Health | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/healthz`);
    return (await r.json()) as Health;
  } catch {
    return undefined;
  }
}

async function push(dir: string, natsUrl: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [BIN, 'policy', 'push', dir, '--nats-url', natsUrl, '--pushed-by', 'test']);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function copyPolicies(): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshroute-policies-'));
  cpSync(POLICIES, dir, { recursive: true });
  return dir;
}

describe('policy push → router hot reload over NATS KV', () => {
  let nats: TestNatsServer;
  let router: ChildProcess;
  let httpPort: number;
  let routerLog = '';
  const dirs: string[] = [];

  beforeAll(async () => {
    nats = await startNatsServer();
    httpPort = await freePort();
    // No --policies: the router's only bundle source is the KV bucket.
    router = spawn(
      process.execPath,
      [BIN, 'router', '--nats-url', nats.url, '--http-port', String(httpPort), '--router-id', 'push-test'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MESHROUTE_LOG_LEVEL: 'warn' } },
    );
    router.stderr?.on('data', (chunk: Buffer) => {
      routerLog += chunk.toString('utf8');
    });
    await waitFor('router health endpoint', async () => (await health(httpPort)) !== undefined, {
      timeoutMs: 30_000,
    });
  });

  afterAll(async () => {
    router?.kill('SIGTERM');
    await new Promise((r) => router?.once('exit', r));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    await stopAllServers();
  });

  it('activates a pushed bundle, refuses a lower version and keeps the last good bundle', async () => {
    // The bundle the router will run: eu-residency at version 2.
    const good = copyPolicies();
    dirs.push(good);
    const goodFile = join(good, 'eu-residency.yaml');
    writeFileSync(goodFile, readFileSync(goodFile, 'utf8').replace(/version: \d+/, 'version: 2'));
    const first = await push(good, nats.url);
    expect(first.code).toBe(0);
    const digest = /digest (sha256:[0-9a-f]{64})/.exec(first.stdout)?.[1];
    expect(digest).toMatch(/^sha256:/);
    await waitFor('router runs the pushed bundle', async () => (await health(httpPort))?.policyDigest === digest, {
      timeoutMs: 20_000,
    });

    // The shipped bundle has eu-residency at version 1: valid on its own, so push publishes it,
    // but it lowers a version, so the router must refuse it and keep the bundle it has.
    const lower = copyPolicies();
    dirs.push(lower);
    const second = await push(lower, nats.url);
    expect(second.code).toBe(0);
    const lowerDigest = /digest (sha256:[0-9a-f]{64})/.exec(second.stdout)?.[1];
    expect(lowerDigest).not.toBe(digest);
    await waitFor('router refuses the lower version', () => routerLog.includes('policy bundle from KV refused'), {
      timeoutMs: 20_000,
    });
    expect((await health(httpPort))?.policyDigest).toBe(digest);

    // A higher version after the refusal is taken: the watch goes on.
    const higher = copyPolicies();
    dirs.push(higher);
    const higherFile = join(higher, 'eu-residency.yaml');
    writeFileSync(higherFile, readFileSync(higherFile, 'utf8').replace(/version: \d+/, 'version: 3'));
    const third = await push(higher, nats.url);
    expect(third.code).toBe(0);
    const higherDigest = /digest (sha256:[0-9a-f]{64})/.exec(third.stdout)?.[1];
    await waitFor(
      'router runs the higher version',
      async () => (await health(httpPort))?.policyDigest === higherDigest,
      {
        timeoutMs: 20_000,
      },
    );
  });

  it('does not push a bundle that does not validate', async () => {
    const bad = copyPolicies();
    dirs.push(bad);
    const file = join(bad, 'carbon.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace(/^mode: .*$/m, 'mode: enforce\nsurprise: true'));
    const r = await push(bad, nats.url);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/carbon\.yaml:\d+:\d+/);
    expect(r.stdout).not.toMatch(/pushed/);
  });
});
