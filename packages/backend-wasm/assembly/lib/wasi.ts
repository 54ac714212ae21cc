// Minimal WASI preview 1 bindings for the example workloads (AssemblyScript 0.2x has no built-in WASI).
// Only fd_read, fd_write and proc_exit: the examples need stdin, stdout and stderr, nothing else.

@external("wasi_snapshot_preview1", "fd_read")
declare function fd_read(fd: u32, iovs: usize, iovsLen: u32, nread: usize): u16;

@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovsLen: u32, nwritten: usize): u16;

@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(code: u32): void;

const CHUNK: i32 = 4096;

/** Read all of stdin. */
export function readStdin(): Uint8Array {
  let cap = CHUNK;
  let buf = heap.alloc(cap);
  let len = 0;
  const iov = heap.alloc(8);
  const nread = heap.alloc(4);
  while (true) {
    if (cap - len < CHUNK) {
      cap = cap * 2;
      buf = heap.realloc(buf, cap);
    }
    store<u32>(iov, u32(buf + len));
    store<u32>(iov, u32(cap - len), 4);
    const err = fd_read(0, iov, 1, nread);
    if (err != 0) exit(err, "fd_read failed");
    const n = load<u32>(nread);
    if (n == 0) break;
    len += n;
  }
  const out = new Uint8Array(len);
  memory.copy(out.dataStart, buf, len);
  heap.free(buf);
  heap.free(iov);
  heap.free(nread);
  return out;
}

/** Write raw bytes to a file descriptor, looping over short writes. */
export function writeRaw(fd: u32, ptr: usize, len: usize): void {
  const iov = heap.alloc(8);
  const nwritten = heap.alloc(4);
  while (len > 0) {
    store<u32>(iov, u32(ptr));
    store<u32>(iov, u32(len), 4);
    const err = fd_write(fd, iov, 1, nwritten);
    if (err != 0) proc_exit(71);
    const n = <usize>load<u32>(nwritten);
    ptr += n;
    len -= n;
  }
  heap.free(iov);
  heap.free(nwritten);
}

/** Write bytes to stdout. */
export function writeBytes(data: Uint8Array): void {
  writeRaw(1, data.dataStart, <usize>data.length);
}

/** Write a string to stdout as UTF-8. */
export function writeString(s: string): void {
  const bytes = String.UTF8.encode(s);
  writeRaw(1, changetype<usize>(bytes), <usize>bytes.byteLength);
}

/** Write a message to stderr and exit with `code`. */
export function exit(code: u32, message: string): void {
  const bytes = String.UTF8.encode(message + "\n");
  writeRaw(2, changetype<usize>(bytes), <usize>bytes.byteLength);
  proc_exit(code);
}

/** AssemblyScript `abort` replacement (selected with `--use abort=...`): report on stderr, exit 134. */
export function abortToStderr(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let text = "abort";
  if (message !== null) text += ": " + message;
  if (fileName !== null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  exit(134, text);
}
