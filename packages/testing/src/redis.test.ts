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

  it('reports a bad argument with the server log', async () => {
    const err = await startRedisServer({ args: ['--no-such-option', 'x'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisServerStartError);
    expect((err as Error).message).toMatch(/exited before it answered PING[\s\S]*no-such-option/i);
  });
});
