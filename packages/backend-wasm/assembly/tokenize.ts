// Reactor module: a text tokenizer, called through the meshroute reactor ABI (see README):
//   alloc(len: i32) -> ptr        the host copies the input to ptr
//   tokenize(ptr: i32, len: i32) -> i64   returns (outPtr << 32) | outLen
// Splits UTF-8 text into lowercase word tokens (runs of ASCII letters, digits, apostrophes inside
// words, and any non-ASCII character) and returns them as a JSON array of strings.

export function alloc(len: i32): usize {
  return heap.alloc(<usize>max(len, 1));
}

function isWordByte(c: u32): bool {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c >= 0x80;
}

export function tokenize(ptr: usize, len: i32): i64 {
  // Worst case: every byte is a one-byte token: ["a","b",...] is 4 bytes per token plus brackets.
  const cap = <usize>len * 4 + 2;
  const out = heap.alloc(cap);
  let o: usize = 0;
  store<u8>(out + o++, 0x5b);
  let first = true;
  let i: i32 = 0;
  while (i < len) {
    let c = <u32>load<u8>(ptr + i);
    if (!isWordByte(c)) {
      i++;
      continue;
    }
    if (!first) store<u8>(out + o++, 0x2c);
    first = false;
    store<u8>(out + o++, 0x22);
    while (i < len) {
      c = <u32>load<u8>(ptr + i);
      const apostrophe = c == 0x27 && i + 1 < len && isWordByte(<u32>load<u8>(ptr + i + 1));
      if (!isWordByte(c) && !apostrophe) break;
      if (c >= 0x41 && c <= 0x5a) c += 0x20;
      store<u8>(out + o++, <u8>c);
      i++;
    }
    store<u8>(out + o++, 0x22);
  }
  store<u8>(out + o++, 0x5d);
  return ((<i64>out) << 32) | <i64>o;
}
