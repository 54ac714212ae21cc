import { describe, expect, it } from 'vitest';
import { refuseImport } from './capabilities.js';
import { example, wat } from './test-support/modules.js';
import { parseModuleInfo, rewriteMemoryMaximum, WasmFormatError } from './wasm-binary.js';

describe('parseModuleInfo', () => {
  it('reads imports, exports and memory limits like the engine does', async () => {
    const bytes = await wat(`(module
      (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (import "env" "memory" (memory 2 300))
      (import "env" "g" (global i32))
      (func (export "_start"))
      (global (export "count") (mut i32) (i32.const 0)))`);
    const info = parseModuleInfo(bytes);
    const engine = WebAssembly.Module.imports(new WebAssembly.Module(bytes));
    expect(info.imports.map(({ module, name, kind }) => ({ module, name, kind }))).toEqual(engine);
    expect(info.imports[1]?.memory).toEqual({ initialPages: 2, maximumPages: 300, shared: false, memory64: false });
    expect(info.exports).toEqual([
      { name: '_start', kind: 'function' },
      { name: 'count', kind: 'global' },
    ]);
    expect(info.memories).toEqual([]);
  });

  it('reads a defined memory with and without a maximum', async () => {
    expect(parseModuleInfo(await wat('(module (memory 3))')).memories).toEqual([
      { initialPages: 3, maximumPages: undefined, shared: false, memory64: false },
    ]);
    expect(parseModuleInfo(await wat('(module (memory 1 70000))')).memories[0]?.maximumPages).toBe(70000);
  });

  it('reads the AssemblyScript examples', () => {
    const info = parseModuleInfo(example('checksum'));
    expect(info.exports.map((e) => e.name).sort()).toEqual(['_start', 'memory']);
    expect(info.imports.every((i) => i.module === 'wasi_snapshot_preview1')).toBe(true);
  });

  it('rejects malformed bytes with the offset', async () => {
    expect(() => parseModuleInfo(new Uint8Array([1, 2, 3]))).toThrow(WasmFormatError);
    expect(() => parseModuleInfo(new TextEncoder().encode('\0asm\x0d\0\x01\0'))).toThrow(/components/);
    const bytes = await wat('(module (import "a" "b" (func)))');
    const truncated = bytes.slice(0, bytes.length - 2);
    let err: unknown;
    try {
      parseModuleInfo(truncated);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WasmFormatError);
    expect((err as WasmFormatError).offset).toBeGreaterThan(8);
  });

  it('never throws anything but WasmFormatError on random bytes', () => {
    const header = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0];
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 2_000; i++) {
      const body = Array.from({ length: rand() % 40 }, () => rand() & 0xff);
      try {
        parseModuleInfo(new Uint8Array([...header, ...body]));
      } catch (e) {
        expect(e).toBeInstanceOf(WasmFormatError);
      }
    }
  });
});

describe('rewriteMemoryMaximum', () => {
  it('writes the cap as the maximum; the engine agrees and the module still works', async () => {
    const bytes = await wat(`(module (memory (export "memory") 2)
      (data (i32.const 0) "keep")
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`);
    const info = parseModuleInfo(bytes);
    const capped = rewriteMemoryMaximum(bytes, info, 10);
    expect(parseModuleInfo(capped).memories).toEqual([
      { initialPages: 2, maximumPages: 10, shared: false, memory64: false },
    ]);
    const instance = new WebAssembly.Instance(new WebAssembly.Module(capped));
    const grow = instance.exports['grow'] as (n: number) => number;
    expect(grow(8)).toBe(2);
    expect(grow(1)).toBe(-1);
    const memory = instance.exports['memory'] as WebAssembly.Memory;
    expect(new TextDecoder().decode(new Uint8Array(memory.buffer, 0, 4))).toBe('keep');
  });

  it('handles a maximum whose LEB128 size differs from the original', async () => {
    const bytes = await wat('(module (memory 1 1) (func (export "f")))');
    const capped = rewriteMemoryMaximum(bytes, parseModuleInfo(bytes), 65536);
    expect(capped.length).toBeGreaterThan(bytes.length);
    expect(parseModuleInfo(capped).memories[0]?.maximumPages).toBe(65536);
    expect(WebAssembly.validate(capped)).toBe(true);
  });
});

describe('refuseImport', () => {
  const imp = (module: string, name: string, kind: 'function' | 'memory' = 'function') => ({ module, name, kind });

  it('links WASI preview 1 functions, and env.memory / env.abort', () => {
    expect(
      refuseImport(
        [
          imp('wasi_snapshot_preview1', 'fd_write'),
          imp('wasi_snapshot_preview1', 'random_get'),
          imp('env', 'memory', 'memory'),
          imp('env', 'abort'),
        ],
        new Set(),
      ),
    ).toBeUndefined();
  });

  it('refuses sockets, unknown WASI functions, host functions and ungranted env.seed', () => {
    expect(refuseImport([imp('wasi_snapshot_preview1', 'sock_send')], new Set(['net']))?.capability).toBe('net');
    expect(refuseImport([imp('wasi_snapshot_preview1', 'fd_frobnicate')], new Set())?.import).toBe(
      'wasi_snapshot_preview1.fd_frobnicate',
    );
    expect(refuseImport([imp('host', 'spawn')], new Set())?.import).toBe('host.spawn');
    expect(refuseImport([imp('env', 'memory')], new Set())?.message).toMatch(/must be a memory/);
    expect(refuseImport([imp('env', 'seed')], new Set())?.capability).toBe('random');
    expect(refuseImport([imp('env', 'seed')], new Set(['random']))).toBeUndefined();
  });
});

describe('rewriteMemoryMaximum (property)', () => {
  const leb = (n: number): number[] => {
    const out: number[] = [];
    do {
      let b = n & 0x7f;
      n = Math.floor(n / 128);
      if (n > 0) b |= 0x80;
      out.push(b);
    } while (n > 0);
    return out;
  };
  /** A module with one memory (exported as "memory") and a custom section before and after it. */
  const build = (initial: number, maximum: number | undefined): Uint8Array => {
    const limits = maximum === undefined ? [0, ...leb(initial)] : [1, ...leb(initial), ...leb(maximum)];
    const memSection = [1, ...limits];
    const exportSection = [1, 6, ...new TextEncoder().encode('memory'), 2, 0];
    const custom = [4, ...new TextEncoder().encode('note'), 1, 2, 3];
    return new Uint8Array([
      ...[0, 0x61, 0x73, 0x6d, 1, 0, 0, 0],
      ...[0, ...leb(custom.length), ...custom],
      ...[5, ...leb(memSection.length), ...memSection],
      ...[7, ...leb(exportSection.length), ...exportSection],
      ...[0, ...leb(custom.length), ...custom],
    ]);
  };

  it('the engine lets the memory grow to exactly the cap', async () => {
    const fc = (await import('fast-check')).default;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 300 }),
        fc.option(fc.integer({ min: 0, max: 65_536 }), { nil: undefined }),
        fc.integer({ min: 1, max: 600 }),
        (initial, maxOffset, cap) => {
          fc.pre(initial <= cap);
          const maximum = maxOffset === undefined ? undefined : initial + maxOffset;
          const bytes = build(initial, maximum);
          const capped = rewriteMemoryMaximum(bytes, parseModuleInfo(bytes), cap);
          expect(WebAssembly.validate(capped)).toBe(true);
          const memory = new WebAssembly.Instance(new WebAssembly.Module(capped)).exports[
            'memory'
          ] as WebAssembly.Memory;
          expect(memory.grow(cap - initial)).toBe(initial);
          expect(() => memory.grow(1)).toThrow(RangeError);
        },
      ),
      { numRuns: 150 },
    );
  });
});
