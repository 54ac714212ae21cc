import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../main.js';
import { testContext } from '../test-support/context.js';
import { checkUpDirectories, lockDataDir, UP_LOCK_FILE } from './up.js';

describe('meshroute up: directories are checked before anything starts', () => {
  let dir: string;
  let file: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshroute-up-'));
    file = join(dir, 'a-file');
    writeFileSync(file, 'x');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const ok = () => ({ dataDir: join(dir, 'state'), policiesDir: dir, workloadsDir: dir });

  it('creates the state directory and accepts existing directories', () => {
    checkUpDirectories(ok());
    expect(existsSync(join(dir, 'state', 'nats'))).toBe(true);
  });

  it('names the flag of a bad directory', () => {
    expect(() => checkUpDirectories({ ...ok(), policiesDir: join(dir, 'missing') })).toThrow(
      expect.objectContaining({ code: 'CONFIG_ERROR', option: '--policies' }),
    );
    expect(() => checkUpDirectories({ ...ok(), dataDir: file })).toThrow(
      expect.objectContaining({ code: 'CONFIG_ERROR', option: '--data-dir' }),
    );
    // Where mkdir keeps failing (Node's recursive mkdir never returned here).
    expect(() => checkUpDirectories({ ...ok(), dataDir: '/proc/meshroute-no-such-dir/x' })).toThrow(
      expect.objectContaining({ option: '--data-dir' }),
    );
    // A missing workloads directory is an error only when it was named explicitly.
    expect(() => checkUpDirectories({ ...ok(), workloadsDir: join(dir, 'missing') })).not.toThrow();
    expect(() =>
      checkUpDirectories({ ...ok(), workloadsDir: join(dir, 'missing'), requireWorkloadsDir: true }),
    ).toThrow(expect.objectContaining({ option: '--workloads' }));
  });

  it.each([
    [['--policies', '/nonexistent-policies'], /CONFIG_ERROR: --policies: \/nonexistent-policies is not a directory/],
    [
      ['--policies', tmpdir(), '--workloads', '/nonexistent-workloads'],
      /CONFIG_ERROR: --workloads: \/nonexistent-workloads is not a directory/,
    ],
  ])('`meshroute up %j` fails with the flag named and exit code 1, starting nothing', async (args, message) => {
    const ctx = testContext();
    const code = await main(
      ['node', 'meshroute', 'up', '--data-dir', join(dir, 'cli-state'), '--no-agents', ...args],
      ctx,
    );
    expect(code).toBe(1);
    expect(ctx.err()).toMatch(message);
    expect(ctx.out()).toBe('');
  });
});

describe('meshroute up: one state directory, one meshroute up', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshroute-up-lock-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a second lock on a directory a live process holds, naming the pid, and frees it on release', () => {
    const release = lockDataDir(dir);
    expect(readFileSync(join(dir, UP_LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
    // The parent of this test process is alive and is not us: it stands for another `meshroute up`.
    expect(() => lockDataDir(dir, process.ppid)).toThrow(
      expect.objectContaining({
        option: '--data-dir',
        message: expect.stringMatching(new RegExp(`in use by another meshroute up \\(pid ${process.pid}\\)`)),
      }),
    );
    release();
    expect(existsSync(join(dir, UP_LOCK_FILE))).toBe(false);
    lockDataDir(dir, process.ppid)();
  });

  it('takes over the lock of a process that is gone', () => {
    writeFileSync(join(dir, UP_LOCK_FILE), '2147483646\n');
    const release = lockDataDir(dir);
    expect(readFileSync(join(dir, UP_LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
    release();
  });

  it('`meshroute up` on a directory in use fails with exit code 1 before starting nats-server', async () => {
    const release = lockDataDir(dir, process.ppid);
    try {
      const ctx = testContext();
      const code = await main(
        ['node', 'meshroute', 'up', '--data-dir', dir, '--policies', tmpdir(), '--no-agents'],
        ctx,
      );
      expect(code).toBe(1);
      expect(ctx.err()).toMatch(/CONFIG_ERROR: --data-dir: .* is in use by another meshroute up/);
      expect(ctx.out()).toBe('');
    } finally {
      release();
    }
  });
});
