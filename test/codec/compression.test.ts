import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { COMPRESSION_BY_NAME, Compression, compress, decompress } from '../../lib/codec/index.js';
import { MsgTransErrorCode } from '../../lib/errors/error-codes.js';
import { MsgTransProtocolError } from '../../lib/errors/msgtrans-protocol-error.js';
import { prng } from '../support/seeded-random.js';

const MiB = 1024 * 1024;
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];


function randomBytes(seed: number, n: number): Buffer {
  const rand = prng(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

function isProtocolError(code: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof MsgTransProtocolError, `expected MsgTransProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

const INPUTS: [string, Buffer][] = [
  ['empty', Buffer.alloc(0)],
  ['one byte', Buffer.from([0x42])],
  ['short text', Buffer.from('hello world')],
  ['unicode JSON', Buffer.from(JSON.stringify({ name: '日本語 🎉', list: [1, 2, 3], nested: { ok: true } }))],
  ['every byte value', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
  ['100 KB random (incompressible)', randomBytes(1, 100 * 1024)],
  ['1 MiB repetitive text', Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(Math.ceil(MiB / 44))).subarray(0, MiB)],
];

const ALGORITHMS: [string, typeof Compression.ZLIB | typeof Compression.ZSTD][] = [
  ['ZLIB', Compression.ZLIB],
  ['ZSTD', Compression.ZSTD],
];

/**
 * A zstd frame built by hand from RFC 8878: no content size, window 128 KiB,
 * `blocks` RLE blocks of `blockSize` copies of `byte`. 4 bytes per block, so
 * 8192 blocks (32 KiB) inflate to 1 GiB.
 */
function zstdRleFrame(blocks: number, blockSize: number, byte: number): Buffer {
  const parts = [Buffer.from([...ZSTD_MAGIC, 0x00 /* FHD: no FCS, no checksum */, 0x38 /* window 2^17 */])];
  for (let i = 0; i < blocks; i++) {
    const last = i === blocks - 1 ? 1 : 0;
    const h = last | (1 << 1) /* RLE */ | (blockSize << 3);
    parts.push(Buffer.from([h & 0xff, (h >>> 8) & 0xff, (h >>> 16) & 0xff, byte]));
  }
  return Buffer.concat(parts);
}

describe('compression: wire values', () => {
  test('zstd is 1 and zlib is 2 (not alphabetical), none is 0', () => {
    assert.equal(Compression.NONE, 0);
    assert.equal(Compression.ZSTD, 1);
    assert.equal(Compression.ZLIB, 2);
    assert.equal(COMPRESSION_BY_NAME.zstd, 1);
    assert.equal(COMPRESSION_BY_NAME.zlib, 2);
  });

  test('NONE passes bytes through both ways', () => {
    const data = Buffer.from('as is');
    assert.ok(compress(Compression.NONE, data).equals(data));
    assert.ok(decompress(Compression.NONE, data, 1024).equals(data));
  });
});

for (const [name, algorithm] of ALGORITHMS) {
  describe(`compression: ${name} (${algorithm})`, () => {
    test('round trip on several inputs', () => {
      for (const [label, input] of INPUTS) {
        const packed = compress(algorithm, input);
        assert.ok(Buffer.isBuffer(packed), `${label}: compress returns a Buffer`);
        const unpacked = decompress(algorithm, packed, Math.max(input.length, 1) * 2);
        assert.equal(unpacked.length, input.length, `${label}: length`);
        assert.ok(unpacked.equals(input), `${label}: bytes`);
      }
    });

    test('compresses compressible data', () => {
      const input = INPUTS[INPUTS.length - 1][1];
      assert.ok(compress(algorithm, input).length < input.length / 10);
    });

    test('a Uint8Array view into a larger buffer compresses only the view', () => {
      const big = Buffer.from('xxxxxHELLO-VIEWyyyyy');
      const view = new Uint8Array(big.buffer, big.byteOffset + 5, 10);
      const out = decompress(algorithm, compress(algorithm, view), 100);
      assert.equal(out.toString(), 'HELLO-VIEW');
    });

    test('maxSize is inclusive: exactly the size passes, one byte less throws', () => {
      const input = randomBytes(2, 200_000);
      const packed = compress(algorithm, input);
      assert.ok(decompress(algorithm, packed, input.length).equals(input));
      assert.throws(
        () => decompress(algorithm, packed, input.length - 1),
        isProtocolError(MsgTransErrorCode.DECOMPRESSED_TOO_LARGE),
      );
    });

    test('a 64 MiB bomb with maxSize 1 MiB throws ERR_MSGTRANS_DECOMPRESSED_TOO_LARGE', () => {
      const zeros = Buffer.alloc(64 * MiB);
      const bomb = algorithm === Compression.ZLIB ? zlib.deflateSync(zeros) : compress(algorithm, zeros);
      assert.ok(bomb.length < 256 * 1024, `the bomb is small (${bomb.length} bytes)`);
      // Timing is for benchmarks; here the refusal itself is the proof that inflation stopped at the bound.
      assert.throws(() => decompress(algorithm, bomb, MiB), isProtocolError(MsgTransErrorCode.DECOMPRESSED_TOO_LARGE));
      assert.equal(decompress(algorithm, bomb, 64 * MiB).length, 64 * MiB);
    });

    test('corrupt input throws ERR_MSGTRANS_DECOMPRESSION_FAILED', () => {
      const good = compress(algorithm, Buffer.from('some payload that compresses, some payload that compresses'));
      const flipped = Buffer.from(good);
      flipped[Math.floor(flipped.length / 2)] ^= 0xff;
      flipped[flipped.length - 1] ^= 0xff;
      const corrupt: [string, Buffer][] = [
        ['empty', Buffer.alloc(0)],
        ['text', Buffer.from('definitely not compressed')],
        ['random', randomBytes(3, 512)],
        ['truncated', good.subarray(0, good.length - 2)],
        ['only the first 4 bytes', good.subarray(0, 4)],
      ];
      if (algorithm === Compression.ZLIB) {
        // zlib's Adler-32 trailer catches any change; zstd frames carry no checksum by default
        corrupt.push(['bit flips', flipped]);
      } else {
        const reserved = zstdRleFrame(1, 4, 0x61);
        reserved[6] |= 0b110; // Block_Type 3 is reserved (RFC 8878 3.1.1.2)
        corrupt.push(['reserved block type', reserved]);
      }
      for (const [label, input] of corrupt) {
        assert.throws(
          () => decompress(algorithm, input, MiB),
          isProtocolError(MsgTransErrorCode.DECOMPRESSION_FAILED),
          label,
        );
      }
    });

    test('the other algorithm’s output is not accepted', () => {
      const other = algorithm === Compression.ZLIB ? Compression.ZSTD : Compression.ZLIB;
      const packed = compress(other, Buffer.from('cross-wired'));
      assert.throws(() => decompress(algorithm, packed, MiB), isProtocolError(MsgTransErrorCode.DECOMPRESSION_FAILED));
    });
  });
}

describe('compression: interop', () => {
  test('zlib: Node deflateSync (RFC 1950) output decompresses with the library', () => {
    for (const [label, input] of INPUTS) {
      for (const level of [0, 1, 9]) {
        const packed = zlib.deflateSync(input, { level });
        assert.ok(decompress(Compression.ZLIB, packed, Math.max(input.length, 1)).equals(input), `${label} level ${level}`);
      }
    }
  });

  test('zlib: the library writes RFC 1950 (zlib header, Adler-32 trailer) that Node inflateSync reads', () => {
    const input = Buffer.from('interop '.repeat(100));
    const packed = compress(Compression.ZLIB, input);
    assert.equal(packed[0] & 0x0f, 8, 'CM = 8 (deflate)');
    assert.ok(packed[0] >> 4 <= 7, 'CINFO <= 7');
    assert.equal((packed[0] * 256 + packed[1]) % 31, 0, 'FCHECK');
    assert.ok(zlib.inflateSync(packed).equals(input));
    assert.equal(packed.readUInt32BE(packed.length - 4), adler32(input), 'Adler-32 trailer');
  });

  test('zlib: raw deflate and gzip are not the zlib format', () => {
    const input = Buffer.from('format matters, format matters');
    assert.throws(
      () => decompress(Compression.ZLIB, zlib.deflateRawSync(input), MiB),
      isProtocolError(MsgTransErrorCode.DECOMPRESSION_FAILED),
    );
    assert.throws(
      () => decompress(Compression.ZLIB, zlib.gzipSync(input), MiB),
      isProtocolError(MsgTransErrorCode.DECOMPRESSION_FAILED),
    );
  });

  test('zstd: the library output begins with the zstd magic 28 B5 2F FD', () => {
    for (const [label, input] of INPUTS) {
      const packed = compress(Compression.ZSTD, input);
      assert.deepEqual([...packed.subarray(0, 4)], ZSTD_MAGIC, label);
    }
  });

  test('zstd: a frame built by hand from the format spec decompresses', () => {
    const frame = zstdRleFrame(3, 5, 0x61);
    assert.equal(decompress(Compression.ZSTD, frame, 100).toString(), 'a'.repeat(15));
    // Two frames back to back are one payload (RFC 8878: concatenated frames)
    const two = Buffer.concat([zstdRleFrame(1, 2, 0x62), zstdRleFrame(1, 3, 0x63)]);
    assert.equal(decompress(Compression.ZSTD, two, 100).toString(), 'bbccc');
  });

  test('zstd: a 32 KiB frame that inflates to 1 GiB is refused at maxSize 1 MiB', () => {
    const bomb = zstdRleFrame(8192, 128 * 1024, 0);
    assert.ok(bomb.length < 40 * 1024);
    assert.throws(() => decompress(Compression.ZSTD, bomb, MiB), isProtocolError(MsgTransErrorCode.DECOMPRESSED_TOO_LARGE));
  });

  test('zstd: concatenated frames are bounded as a whole', () => {
    const frame = compress(Compression.ZSTD, Buffer.alloc(600 * 1024, 1));
    assert.equal(decompress(Compression.ZSTD, frame, MiB).length, 600 * 1024);
    assert.throws(
      () => decompress(Compression.ZSTD, Buffer.concat([frame, frame]), MiB),
      isProtocolError(MsgTransErrorCode.DECOMPRESSED_TOO_LARGE),
    );
  });
});

function adler32(data: Uint8Array): number {
  let a = 1;
  let b = 0;
  for (const byte of data) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}
