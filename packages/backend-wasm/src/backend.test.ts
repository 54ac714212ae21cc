import { ErrorCode, type MeshError } from '@meshroute/mesh';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWasmBackend, WasmError } from './index.js';
import { example, job, text, wat, workload } from './test-support/modules.js';

const backend = createWasmBackend({ workers: 2 });
afterAll(() => backend.close());

async function failure(p: Promise<unknown>): Promise<WasmError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WasmError);
  return err as WasmError;
}

/** A WASI command printing a constant. */
const HELLO = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 5))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`;

describe('examples', () => {
  it('checksum prints the CRC-32 of stdin as hex', async () => {
    const out = await backend.run(job(workload(), example('checksum'), '123456789'));
    expect(text(out.bytes)).toBe('cbf43926');
    const empty = await backend.run(job(workload(), example('checksum'), ''));
    expect(text(empty.bytes)).toBe('00000000');
  });

  it('checksum handles inputs larger than one read', async () => {
    const big = new Uint8Array(300_000).map((_, i) => i % 251);
    const out = await backend.run(job(workload(), example('checksum'), big));
    const { crc32 } = await import('node:zlib');
    expect(text(out.bytes)).toBe(crc32(big).toString(16).padStart(8, '0'));
  });

  it('json-minify minifies valid JSON and parses it as json when declared', async () => {
    const spec = workload({ contentType: 'application/json' });
    const out = await backend.run(
      job(spec, example('json-minify'), '{ "a" : [1, 2.5e3, true, null],\n "b": "x\\"y" }'),
    );
    expect(text(out.bytes)).toBe('{"a":[1,2.5e3,true,null],"b":"x\\"y"}');
    expect(out.json).toEqual({ a: [1, 2500, true, null], b: 'x"y' });
    expect(out.contentType).toBe('application/json');
  });

  it('json-minify rejects invalid JSON with its exit code and stderr', async () => {
    const err = await failure(backend.run(job(workload(), example('json-minify'), '{"a": }')));
    expect(err.code).toBe(ErrorCode.WORKLOAD_FAILED);
    expect(err.reason).toBe('exit-code');
    expect(err.details['exitCode']).toBe(1);
    expect(err.details['stderr']).toContain('invalid JSON at byte 6');
  });

  it('tokenize is a reactor returning a JSON array of tokens', async () => {
    const spec = workload({ form: 'reactor', entry: 'tokenize', contentType: 'application/json' });
    const out = await backend.run(job(spec, example('tokenize'), "Hello, World! It's 2024: café."));
    expect(out.json).toEqual(['hello', 'world', "it's", '2024', 'café']);
  });

  it('echo-upper (hand-written WAT) upper-cases stdin', async () => {
    const out = await backend.run(job(workload(), example('echo-upper'), 'edge wasm 42'));
    expect(text(out.bytes)).toBe('EDGE WASM 42');
  });

  it('reports the engine and WASI implementation in facts', () => {
    const facts = backend.facts();
    expect(facts['engine']).toBe('v8');
    expect(facts['v8']).toBe(process.versions.v8);
    expect(facts['wasi']).toMatchObject({ implementation: '@bjorn3/browser_wasi_shim', version: '0.4.2' });
  });
});

describe('bad modules get typed errors and the backend keeps serving', () => {
  it('invalid bytes', async () => {
    const err = await failure(backend.run(job(workload(), new TextEncoder().encode('not wasm at all'))));
    expect(err.code).toBe(ErrorCode.WORKLOAD_FAILED);
    expect(err.reason).toBe('invalid-module');
  });

  it('bytes with a valid header that do not compile', async () => {
    const bytes = await wat(HELLO);
    const broken = bytes.slice(0, bytes.length - 3);
    const err = await failure(backend.run(job(workload(), broken)));
    expect(err.reason).toBe('invalid-module');
  });

  it('missing export', async () => {
    const noStart = await wat('(module (memory (export "memory") 1) (func (export "main")))');
    const err = await failure(backend.run(job(workload(), noStart)));
    expect(err.code).toBe(ErrorCode.WORKLOAD_FAILED);
    expect(err.reason).toBe('missing-export');
    expect(err.details['export']).toBe('_start');
    const reactor = await failure(backend.run(job(workload({ form: 'reactor', entry: 'nope' }), example('tokenize'))));
    expect(reactor.reason).toBe('missing-export');
    expect(reactor.details['export']).toBe('nope');
  });

  it('trap (unreachable)', async () => {
    const bytes = await wat('(module (memory (export "memory") 1) (func (export "_start") unreachable))');
    const err = await failure(backend.run(job(workload(), bytes)));
    expect(err.code).toBe(ErrorCode.WORKLOAD_FAILED);
    expect(err.reason).toBe('trap');
    expect(err.message).toContain('unreachable');
  });

  it('stack overflow (unbounded recursion) is a trap', async () => {
    const recurse = await wat(`(module (memory (export "memory") 1)
      (func $f (call $f))
      (func (export "_start") (call $f)))`);
    const err = await failure(backend.run(job(workload(), recurse)));
    expect(err.code).toBe(ErrorCode.WORKLOAD_FAILED);
    expect(err.reason).toBe('trap');
    expect(err.message).toMatch(/call stack/i);
  });

  it('memory bomb: memory.grow stops at the cap and the trap is reported as LIMIT_EXCEEDED', async () => {
    const bomb = await wat(`(module (memory (export "memory") 1)
      (func (export "_start")
        (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
        unreachable))`);
    const spec = workload({}, { limits: { memoryBytes: 4 * 1024 * 1024 } });
    const err = await failure(backend.run(job(spec, bomb)));
    expect(err.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(err.reason).toBe('memory-limit');
    expect(err.details['limitBytes']).toBe(4 * 1024 * 1024);
  });

  it('a module without a declared maximum cannot grow past the cap (it gets exactly the cap)', async () => {
    // Grows in steps of 5 pages until memory.grow fails, then prints its page count (u32 LE).
    const greedy = await wat(`(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 5)) (i32.const -1))))
        (loop $one (br_if $one (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
        (i32.store (i32.const 100) (memory.size))
        (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 4))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`);
    const out = await backend.run(job(workload({}, { limits: { memoryBytes: 3 * 1024 * 1024 } }), greedy));
    const pages = new DataView((out.bytes as Uint8Array).buffer).getUint32(0, true);
    expect(pages).toBe(48);
  });

  it('a module whose initial memory is over the cap is refused before it runs', async () => {
    const big = await wat('(module (memory (export "memory") 100) (func (export "_start")))');
    const err = await failure(backend.run(job(workload({}, { limits: { memoryBytes: 64 * 65536 } }), big)));
    expect(err.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(err.reason).toBe('memory-limit');
  });

  it('a module importing env.memory gets a memory capped at the limit', async () => {
    const bytes = await wat(`(module (import "env" "memory" (memory 1))
      (func (export "_start")
        (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
        unreachable))`);
    const err = await failure(backend.run(job(workload({}, { limits: { memoryBytes: 8 * 65536 } }), bytes)));
    expect(err.reason).toBe('memory-limit');
  });

  it('an import the workload did not declare', async () => {
    const host = await wat('(module (import "host" "exec" (func)) (func (export "_start")))');
    const err = await failure(backend.run(job(workload(), host)));
    expect(err.code).toBe(ErrorCode.PERMISSION_DENIED);
    expect(err.reason).toBe('undeclared-import');
    expect(err.details['import']).toBe('host.exec');
    const sock =
      await wat(`(module (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1) (func (export "_start")))`);
    const sockErr = await failure(backend.run(job(workload({}, { capabilities: ['net'] }), sock)));
    expect(sockErr.code).toBe(ErrorCode.PERMISSION_DENIED);
    expect(sockErr.details['import']).toBe('wasi_snapshot_preview1.sock_accept');
    const seed = await wat('(module (import "env" "seed" (func (result f64))) (func (export "_start")))');
    const seedErr = await failure(backend.run(job(workload(), seed)));
    expect(seedErr.details['capability']).toBe('random');
  });

  it('output flood', async () => {
    const flood = await wat(`(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 4096))
        (loop $again (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br $again))))`);
    const err = await failure(backend.run(job(workload({}, { limits: { outputBytes: 100_000 } }), flood)));
    expect(err.code).toBe(ErrorCode.LIMIT_EXCEEDED);
    expect(err.reason).toBe('output-limit');
  });

  it('a reactor returning more than the output cap', async () => {
    const spec = workload({ form: 'reactor', entry: 'tokenize' }, { limits: { outputBytes: 10 } });
    const err = await failure(backend.run(job(spec, example('tokenize'), 'many words here to tokenize')));
    expect(err.reason).toBe('output-limit');
  });

  it('still serves after all of the above', async () => {
    const out = await backend.run(job(workload(), await wat(HELLO)));
    expect(text(out.bytes)).toBe('hello');
  });
});

describe('timeouts', () => {
  it('an infinite loop fails with TIMEOUT while other jobs keep flowing', async () => {
    const loop = await wat('(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))');
    const hello = await wat(HELLO);
    const stuck = backend.run(job(workload({}, { limits: { timeoutMs: 1_500 } }), loop));
    const others = Array.from({ length: 20 }, () => backend.run(job(workload(), hello)));
    const results = await Promise.all(others);
    expect(results.map((r) => text(r.bytes))).toEqual(Array(20).fill('hello'));
    const err = await failure(stuck);
    expect(err.code).toBe(ErrorCode.TIMEOUT);
    expect(err.reason).toBe('timeout');
    // The replacement worker serves too.
    const after = await Promise.all([backend.run(job(workload(), hello)), backend.run(job(workload(), hello))]);
    expect(after.map((r) => text(r.bytes))).toEqual(['hello', 'hello']);
  });

  it('an aborted job stops and passes on a MeshError reason', async () => {
    const loop = await wat('(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))');
    const ac = new AbortController();
    const p = backend.run(job(workload(), loop, '', ac.signal));
    const reason = new WasmError('shutting-down', 'draining');
    setImmediate(() => ac.abort(reason));
    await expect(p).rejects.toBe(reason);
    expect(text((await backend.run(job(workload(), await wat(HELLO)))).bytes)).toBe('hello');
  });
});

describe('reactor ABI', () => {
  it('an entry that does not return an i64, or points outside memory, is a bad-abi failure', async () => {
    const i32Entry = await wat(`(module (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (i32.const 64))
      (func (export "run") (param i32 i32) (result i32) (i32.const 0)))`);
    const err = await failure(backend.run(job(workload({ form: 'reactor' }), i32Entry, 'x')));
    expect(err.reason).toBe('bad-abi');
    const outside = await wat(`(module (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (i32.const 64))
      (func (export "run") (param i32 i32) (result i64) (i64.const 0x0010000000000010)))`);
    const err2 = await failure(backend.run(job(workload({ form: 'reactor' }), outside, 'x')));
    expect(err2.reason).toBe('bad-abi');
    expect(err2.code).toBe(ErrorCode.WORKLOAD_FAILED);
  });

  it('a WAT reactor echoing its input through the ABI, called with _initialize first', async () => {
    const echo = await wat(`(module (memory (export "memory") 1)
      (global $base (mut i32) (i32.const 0))
      (func (export "_initialize") (global.set $base (i32.const 256)))
      (func (export "alloc") (param i32) (result i32) (global.get $base))
      (func (export "run") (param $p i32) (param $n i32) (result i64)
        (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32)) (i64.extend_i32_u (local.get $n)))))`);
    const out = await backend.run(job(workload({ form: 'reactor' }), echo, 'round trip'));
    expect(text(out.bytes)).toBe('round trip');
  });
  it('a reactor importing env.memory instead of exporting it', async () => {
    const echo = await wat(`(module (import "env" "memory" (memory 1))
      (func (export "alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "run") (param $p i32) (param $n i32) (result i64)
        (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32)) (i64.extend_i32_u (local.get $n)))))`);
    const out = await backend.run(job(workload({ form: 'reactor' }), echo, 'imported memory'));
    expect(text(out.bytes)).toBe('imported memory');
  });
});

describe('host imports', () => {
  it('AssemblyScript env.abort traps with its message', async () => {
    // "boom" as an AssemblyScript string: UTF-16LE with the byte length at ptr - 4.
    const abort = await wat(`(module
      (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
      (memory (export "memory") 1)
      (data (i32.const 60) "\\08\\00\\00\\00b\\00o\\00o\\00m\\00")
      (func (export "_start") (call $abort (i32.const 64) (i32.const 0) (i32.const 3) (i32.const 7))))`);
    const err = await failure(backend.run(job(workload(), abort)));
    expect(err.reason).toBe('trap');
    expect(err.message).toContain('abort: boom');
  });

  it('args are the workload name and options.args only with the args capability', async () => {
    const argc = await wat(`(module
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $as (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $as (i32.const 300) (i32.const 304)))
        (i32.store8 (i32.const 200) (i32.add (i32.const 48) (i32.load (i32.const 300))))
        (i32.store (i32.const 0) (i32.const 200)) (i32.store (i32.const 4) (i32.const 1))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`);
    expect(text((await backend.run(job(workload(), argc))).bytes)).toBe('0');
    const spec = workload({ args: ['--fast', 'x'] }, { capabilities: ['args'] });
    expect(text((await backend.run(job(spec, argc))).bytes)).toBe('3');
  });
});

describe('isolation', () => {
  it('a fresh instance per job: a global counter starts over every time', async () => {
    const counter = await wat(`(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (global $n (mut i32) (i32.const 48))
      (func (export "_start")
        (global.set $n (i32.add (global.get $n) (i32.const 1)))
        (i32.store8 (i32.const 100) (global.get $n))
        (i32.store8 (i32.const 101) (i32.add (i32.load8_u (i32.const 101)) (i32.const 65)))
        (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 2))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`);
    const spec = workload();
    const outs: string[] = [];
    for (let i = 0; i < 6; i++) outs.push(text((await backend.run(job(spec, counter))).bytes));
    expect(outs).toEqual(Array(6).fill('1A'));
  });
});

describe('capabilities', () => {
  const ENV_AND_CLOCK = `(module
    (import "wasi_snapshot_preview1" "environ_sizes_get" (func $es (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "clock_time_get" (func $ct (param i32 i64 i32) (result i32)))
    (import "wasi_snapshot_preview1" "random_get" (func $rg (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "_start")
      ;; bytes 200..: env count, clock errno, random errno (as decimal digits 0..9 / letters)
      (drop (call $es (i32.const 300) (i32.const 304)))
      (i32.store8 (i32.const 200) (i32.add (i32.const 48) (i32.load (i32.const 300))))
      (i32.store8 (i32.const 201) (i32.add (i32.const 48) (i32.ne (call $ct (i32.const 0) (i64.const 0) (i32.const 308)) (i32.const 0))))
      (i32.store8 (i32.const 202) (i32.add (i32.const 48) (i32.ne (call $rg (i32.const 320) (i32.const 8)) (i32.const 0))))
      (i32.store (i32.const 0) (i32.const 200)) (i32.store (i32.const 4) (i32.const 3))
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`;
  let bytes: Uint8Array;
  beforeAll(async () => {
    bytes = await wat(ENV_AND_CLOCK);
  });

  it('nothing granted: empty environment, clock and random answer an error', async () => {
    const out = await backend.run(job(workload(), bytes));
    expect(text(out.bytes)).toBe('011');
  });

  it('declared: env, clock and random work', async () => {
    const spec = workload({ env: { A: '1', B: '2' } }, { capabilities: ['env', 'clock', 'random'] });
    const out = await backend.run(job(spec, bytes));
    expect(text(out.bytes)).toBe('200');
  });

  it('the environment of one job does not leak into the next job of the same module', async () => {
    const caps = { capabilities: ['env', 'clock', 'random'] };
    expect(text((await backend.run(job(workload({ env: { A: '1', B: '2', C: '3' } }, caps), bytes))).bytes)).toBe(
      '300',
    );
    expect(text((await backend.run(job(workload({ env: { A: '1' } }, caps), bytes))).bytes)).toBe('100');
    expect(text((await backend.run(job(workload({}, caps), bytes))).bytes)).toBe('000');
  });

  it('options.env without the env capability is refused', async () => {
    const err = await failure(backend.run(job(workload({ env: { A: '1' } }), bytes)));
    expect(err.reason).toBe('invalid-options');
    expect(err.details['option']).toBe('env');
  });
});

it('close fails later jobs with SHUTTING_DOWN', async () => {
  const b = createWasmBackend({ workers: 1 });
  await b.close();
  const err = (await b.run(job(workload(), example('checksum'))).catch((e: unknown) => e)) as MeshError;
  expect(err.code).toBe(ErrorCode.SHUTTING_DOWN);
});

it('a worker that dies (out of heap) fails its job with a typed error and is replaced', async () => {
  const b = createWasmBackend({
    workers: 1,
    workerResourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
  });
  try {
    // One-byte writes forever: each captured chunk is a small heap object, so the worker's heap fills.
    const flood = await wat(`(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 1))
        (loop $again (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br $again))))`);
    const spec = workload({}, { limits: { outputBytes: 1_000_000_000, timeoutMs: 60_000 } });
    const err = await failure(b.run(job(spec, flood)));
    expect(err.code).toBe(ErrorCode.WORKLOAD_FAILED);
    expect(err.reason).toBe('worker-crashed');
    expect(err.retryable).toBe(true);
    const out = await b.run(job(workload(), await wat(HELLO)));
    expect(text(out.bytes)).toBe('hello');
  } finally {
    await b.close();
  }
});
