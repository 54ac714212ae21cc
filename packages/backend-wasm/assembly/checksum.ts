// WASI command: CRC-32 (IEEE 802.3, the zlib/PNG polynomial) of stdin, printed as 8 lowercase hex digits.
// Used by the demo workload `checksum`. `echo -n 123456789 | checksum` prints `cbf43926`.
import { readStdin, writeString } from './lib/wasi';

const table = new StaticArray<u32>(256);
for (let n: u32 = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  table[n] = c;
}

const input = readStdin();
let crc: u32 = 0xffffffff;
for (let i = 0; i < input.length; i++) {
  crc = unchecked(table[(crc ^ unchecked(input[i])) & 0xff]) ^ (crc >>> 8);
}
crc ^= 0xffffffff;
writeString(crc.toString(16).padStart(8, '0'));
