// WASI command: a JSON transform. Reads one JSON document from stdin, validates it (RFC 8259) and
// writes it minified (insignificant whitespace removed) to stdout. Invalid JSON: a message with the
// byte offset on stderr and exit code 1.
import { exit, readStdin, writeBytes } from './lib/wasi';

let src: Uint8Array = new Uint8Array(0);
let pos: i32 = 0;
let out: Uint8Array = new Uint8Array(0);
let outLen: i32 = 0;
let depth: i32 = 0;
const MAX_DEPTH: i32 = 512;

function fail(what: string): void {
  exit(1, 'invalid JSON at byte ' + pos.toString() + ': ' + what);
}

function emit(b: u8): void {
  if (outLen == out.length) {
    const bigger = new Uint8Array(out.length * 2 + 64);
    bigger.set(out);
    out = bigger;
  }
  unchecked((out[outLen++] = b));
}

function peek(): i32 {
  return pos < src.length ? <i32>unchecked(src[pos]) : -1;
}

function skipWs(): void {
  while (pos < src.length) {
    const c = unchecked(src[pos]);
    if (c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d) pos++;
    else break;
  }
}

function isDigit(c: i32): bool {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: i32): bool {
  return isDigit(c) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
}

function literal(word: string): void {
  for (let i = 0; i < word.length; i++) {
    if (peek() != word.charCodeAt(i)) fail('expected ' + word);
    emit(<u8>word.charCodeAt(i));
    pos++;
  }
}

function str(): void {
  emit(<u8>peek()); // opening quote
  pos++;
  while (true) {
    const c = peek();
    if (c < 0) fail('unterminated string');
    if (c < 0x20) fail('control character in string');
    emit(<u8>c);
    pos++;
    if (c == 0x22) return;
    if (c == 0x5c) {
      const e = peek();
      if (e == 0x75) {
        emit(<u8>e);
        pos++;
        for (let i = 0; i < 4; i++) {
          if (!isHex(peek())) fail('bad \\u escape');
          emit(<u8>peek());
          pos++;
        }
      } else if (e == 0x22 || e == 0x5c || e == 0x2f || e == 0x62 || e == 0x66 || e == 0x6e || e == 0x72 || e == 0x74) {
        emit(<u8>e);
        pos++;
      } else fail('bad escape');
    }
  }
}

function digits(): void {
  if (!isDigit(peek())) fail('expected digit');
  while (isDigit(peek())) {
    emit(<u8>peek());
    pos++;
  }
}

function num(): void {
  if (peek() == 0x2d) {
    emit(0x2d);
    pos++;
  }
  if (peek() == 0x30) {
    emit(0x30);
    pos++;
  } else digits();
  if (peek() == 0x2e) {
    emit(0x2e);
    pos++;
    digits();
  }
  if (peek() == 0x65 || peek() == 0x45) {
    emit(<u8>peek());
    pos++;
    if (peek() == 0x2b || peek() == 0x2d) {
      emit(<u8>peek());
      pos++;
    }
    digits();
  }
}

function value(): void {
  skipWs();
  const c = peek();
  if (c == 0x7b) container(0x7b, 0x7d, true);
  else if (c == 0x5b) container(0x5b, 0x5d, false);
  else if (c == 0x22) str();
  else if (c == 0x74) literal('true');
  else if (c == 0x66) literal('false');
  else if (c == 0x6e) literal('null');
  else if (c == 0x2d || isDigit(c)) num();
  else fail(c < 0 ? 'unexpected end of input' : 'unexpected character');
}

function container(open: u8, close: u8, isObject: bool): void {
  if (++depth > MAX_DEPTH) fail('nesting too deep');
  emit(open);
  pos++;
  skipWs();
  if (peek() == close) {
    emit(close);
    pos++;
    depth--;
    return;
  }
  while (true) {
    if (isObject) {
      skipWs();
      if (peek() != 0x22) fail('expected string key');
      str();
      skipWs();
      if (peek() != 0x3a) fail("expected ':'");
      emit(0x3a);
      pos++;
    }
    value();
    skipWs();
    const c = peek();
    if (c == 0x2c) {
      emit(0x2c);
      pos++;
    } else if (c == close) {
      emit(close);
      pos++;
      depth--;
      return;
    } else fail(isObject ? "expected ',' or '}'" : "expected ',' or ']'");
  }
}

src = readStdin();
out = new Uint8Array(src.length + 16);
value();
skipWs();
if (pos != src.length) fail('trailing characters');
writeBytes(out.subarray(0, outLen));
