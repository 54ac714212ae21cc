import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processAlive } from '@meshroute/transport-nats/internal';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { stopAllServers } from './cleanup.js';
import { RedisServerStartError, startRedisServer } from './redis.js';

afterAll(stopAllServers);

describe('startRedisServer', () => {
  it('starts on a free port without persistence; restart() comes back empty on the same port', async () => {
    const redis = await startRedisServer();
    const client = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    await client.set('k', 'v');
    expect(await client.get('k')).toBe('v');
    expect(await client.config('GET', 'save')).toEqual(['save', '']);
    expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
    const port = redis.port;
    await redis.restart();
    expect(redis.port).toBe(port);
    // ioredis reconnects on its own; the data is gone (no persistence).
    const deadline = Date.now() + 10_000;
    let value: string | null | undefined;
    while (value === undefined) {
      try {
        value = await client.get('k');
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
    }
    expect(value).toBeNull();
    client.disconnect();
  });

  it('kill() stops the process and a restart works', async () => {
    const redis = await startRedisServer();
    const pid = redis.pid;
    await redis.kill();
    expect(redis.running()).toBe(false);
    await redis.restart();
    expect(redis.running()).toBe(true);
    expect(redis.pid).not.toBe(pid);
    await redis.stop();
    expect(redis.running()).toBe(false);
  });

  it('says which binary is missing and how to install it', async () => {
    const err = await startRedisServer({ binary: 'no-such-redis-server' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisServerStartError);
    expect((err as Error).message).toBe(
      'no-such-redis-server was not found on PATH: run `bash scripts/setup.sh` (or `apt-get install redis-server`)',
    );
  });

  it('leaves no redis-server behind when the test process is killed with SIGKILL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshroute-redis-parent-'));
    const script = join(dir, 'parent.mts');
    writeFileSync(
      script,
      `import { startRedisServer } from ${JSON.stringify(fileURLToPath(new URL('./redis.ts', import.meta.url)))};
const r = await startRedisServer();
process.stdout.write(\`ready \${r.pid}\\n\`);
setInterval(() => {}, 1000);
`,
    );
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    const parent = spawn(process.execPath, ['--conditions=@meshroute/source', '--import', 'tsx', script], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      const pid = await new Promise<number>((resolve, reject) => {
        parent.stdout?.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /ready (\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        parent.once('exit', () => reject(new Error(`the parent exited before its server was ready: ${out}`)));
      });
      const alive = (): boolean => processAlive(pid);
      expect(alive()).toBe(true);
      parent.kill('SIGKILL');
      const deadline = Date.now() + 5_000;
      while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(alive()).toBe(false);
    } finally {
      if (parent.exitCode === null && parent.signalCode === null) parent.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a bad argument with the server log', async () => {
    const err = await startRedisServer({ args: ['--no-such-option', 'x'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisServerStartError);
    expect((err as Error).message).toMatch(/exited before it answered PING[\s\S]*no-such-option/i);
  });
});
