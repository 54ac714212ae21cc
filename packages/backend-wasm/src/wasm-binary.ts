/**
 * A small WebAssembly binary reader: just enough of the module format (core spec, section 5) to
 * read the import, memory and export sections before anything is compiled, and to rewrite the
 * maximum of a module's own memory. Everything else is skipped by section size.
 *
 * This file does not depend on `@meshroute/mesh`: it also runs inside the pool's workers.
 */

/** Size of one WebAssembly page. */
export const WASM_PAGE_BYTES = 65_536;

/** The largest number of pages a 32-bit memory may have (4 GiB). */
export const MAX_WASM32_PAGES = 65_536;

/** Limits of a memory: pages. */
export interface MemoryLimits {
  /** Initial size in pages. */
  initialPages: number;
  /** Maximum size in pages, when the module declares one. */
  maximumPages: number | undefined;
  /** Shared memory (threads proposal). */
  shared: boolean;
  /** 64-bit memory (memory64 proposal). */
  memory64: boolean;
}

/** Kind of an import or export. */
export type ExternKind = 'function' | 'table' | 'memory' | 'global' | 'tag';

/** One import of a module. */
export interface ImportEntry {
  module: string;
  name: string;
  kind: ExternKind;
  /** For memory imports: the declared limits. */
  memory?: MemoryLimits;
}

/** One export of a module. */
export interface ExportEntry {
  name: string;
  kind: ExternKind;
}

/** What {@link parseModuleInfo} learns about a module. */
export interface ModuleInfo {
  imports: ImportEntry[];
  exports: ExportEntry[];
  /** Memories the module defines itself (the memory section), in order. */
  memories: MemoryLimits[];
  /** Byte range of the memory section (`headerStart` at its id byte, content `start..end`), for {@link rewriteMemoryMaximum}. */
  memorySection: { headerStart: number; start: number; end: number } | undefined;
}

/** The bytes are not a WebAssembly module this reader understands. */
export class WasmFormatError extends Error {
  override readonly name = 'WasmFormatError';
  /** Byte offset of the problem. */
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} at byte ${offset}`);
    this.offset = offset;
  }
}

const KINDS: readonly ExternKind[] = ['function', 'table', 'memory', 'global', 'tag'];
const SECTION_IMPORT = 2;
const SECTION_MEMORY = 5;
const SECTION_EXPORT = 7;
const utf8 = new TextDecoder('utf-8', { fatal: true });

class Reader {
  pos: number;
  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  byte(): number {
    if (this.pos >= this.end) throw new WasmFormatError('unexpected end of section', this.pos);
    return this.bytes[this.pos++] as number;
  }

  /** Unsigned LEB128, at most `bits` bits (32 or 64; 64-bit values above 2^53 are rejected). */
  uleb(bits = 32): number {
    const start = this.pos;
    let result = 0;
    let scale = 1;
    for (let i = 0; i < Math.ceil(bits / 7); i++) {
      const b = this.byte();
      result += (b & 0x7f) * scale;
      scale *= 128;
      if ((b & 0x80) === 0) {
        if (result > Number.MAX_SAFE_INTEGER || (bits === 32 && result > 0xffff_ffff)) {
          throw new WasmFormatError('integer too large', start);
        }
        return result;
      }
    }
    throw new WasmFormatError('LEB128 integer too long', start);
  }

  name(): string {
    const len = this.uleb();
    const start = this.pos;
    if (start + len > this.end) throw new WasmFormatError('name runs past its section', start);
    this.pos += len;
    try {
      return utf8.decode(this.bytes.subarray(start, start + len));
    } catch {
      throw new WasmFormatError('name is not valid UTF-8', start);
    }
  }

  limits(): MemoryLimits {
    const at = this.pos;
    const flags = this.byte();
    if (flags > 7) throw new WasmFormatError(`unknown limits flags 0x${flags.toString(16)}`, at);
    const memory64 = (flags & 4) !== 0;
    const bits = memory64 ? 64 : 32;
    const initialPages = this.uleb(bits);
    const maximumPages = (flags & 1) !== 0 ? this.uleb(bits) : undefined;
    return { initialPages, maximumPages, shared: (flags & 2) !== 0, memory64 };
  }
}

/**
 * Read the imports, exports and memories of a module from its bytes, without compiling it.
 * @throws WasmFormatError when the header or one of those sections is malformed
 */
export function parseModuleInfo(bytes: Uint8Array): ModuleInfo {
  if (bytes.length < 8) throw new WasmFormatError('too short for a WebAssembly module', 0);
  if (bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmFormatError('missing the \\0asm magic number', 0);
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new WasmFormatError('unsupported binary version (components are not core modules)', 4);
  }
  const info: ModuleInfo = { imports: [], exports: [], memories: [], memorySection: undefined };
  const top = new Reader(bytes, 8, bytes.length);
  while (top.pos < bytes.length) {
    const headerStart = top.pos;
    const id = top.byte();
    const size = top.uleb();
    const start = top.pos;
    const end = start + size;
    if (end > bytes.length) throw new WasmFormatError(`section ${id} runs past the end of the module`, start);
    const r = new Reader(bytes, start, end);
    if (id === SECTION_IMPORT) {
      const count = r.uleb();
      for (let i = 0; i < count; i++) {
        const module = r.name();
        const name = r.name();
        const kindAt = r.pos;
        const kind = KINDS[r.byte()];
        if (kind === undefined) throw new WasmFormatError('unknown import kind', kindAt);
        const entry: ImportEntry = { module, name, kind };
        if (kind === 'function') r.uleb();
        else if (kind === 'table') {
          r.byte(); // reference type
          r.limits();
        } else if (kind === 'memory') entry.memory = r.limits();
        else if (kind === 'global') {
          r.byte(); // value type
          r.byte(); // mutability
        } else {
          r.byte(); // tag attribute
          r.uleb(); // type index
        }
        info.imports.push(entry);
      }
    } else if (id === SECTION_MEMORY) {
      const count = r.uleb();
      for (let i = 0; i < count; i++) info.memories.push(r.limits());
      info.memorySection = { headerStart, start, end };
    } else if (id === SECTION_EXPORT) {
      const count = r.uleb();
      for (let i = 0; i < count; i++) {
        const name = r.name();
        const kindAt = r.pos;
        const kind = KINDS[r.byte()];
        if (kind === undefined) throw new WasmFormatError('unknown export kind', kindAt);
        r.uleb(); // index
        info.exports.push({ name, kind });
      }
    }
    if (id === SECTION_IMPORT || id === SECTION_MEMORY || id === SECTION_EXPORT) {
      if (r.pos !== end) throw new WasmFormatError(`section ${id} has trailing bytes`, r.pos);
    }
    top.pos = end;
  }
  return info;
}

function uleb(value: number): number[] {
  const out: number[] = [];
  do {
    let b = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) b |= 0x80;
    out.push(b);
  } while (value > 0);
  return out;
}

/**
 * A copy of `bytes` whose memory section declares `maximumPages` as the maximum of every memory the
 * module defines (32-bit memories only). The rest of the module is unchanged.
 */
export function rewriteMemoryMaximum(bytes: Uint8Array, info: ModuleInfo, maximumPages: number): Uint8Array {
  const section = info.memorySection;
  if (section === undefined) return bytes;
  const content: number[] = [...uleb(info.memories.length)];
  for (const m of info.memories) {
    content.push(m.shared ? 3 : 1, ...uleb(m.initialPages), ...uleb(maximumPages));
  }
  const headerStart = section.headerStart;
  const header = [SECTION_MEMORY, ...uleb(content.length)];
  const out = new Uint8Array(headerStart + header.length + content.length + (bytes.length - section.end));
  out.set(bytes.subarray(0, headerStart), 0);
  out.set(header, headerStart);
  out.set(content, headerStart + header.length);
  out.set(bytes.subarray(section.end), headerStart + header.length + content.length);
  return out;
}
