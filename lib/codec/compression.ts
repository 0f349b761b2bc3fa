import { createRequire } from 'node:module';
import * as zlib from 'node:zlib';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransError } from '../errors/msgtrans-error.js';
import { MsgTransProtocolError } from '../errors/msgtrans-protocol-error.js';
import { Compression } from './packet.js';

/** Name of a compression algorithm as used in options. */
export type CompressionAlgorithm = 'zlib' | 'zstd';

/** Wire value for each algorithm name. */
export const COMPRESSION_BY_NAME: Readonly<Record<CompressionAlgorithm, Compression>> = {
  zlib: Compression.ZLIB,
  zstd: Compression.ZSTD,
};

// Node 22.15+ ships zstd in zlib; Node 20 does not, so fall back to the binding.
interface NodeZstd {
  zstdCompressSync(buf: Uint8Array): Buffer;
  zstdDecompressSync(buf: Uint8Array, options: { maxOutputLength: number }): Buffer;
}
const nodeZstd: NodeZstd | undefined =
  typeof (zlib as unknown as Partial<NodeZstd>).zstdDecompressSync === 'function'
    ? (zlib as unknown as NodeZstd)
    : undefined;

interface ZstdBinding {
  compress(dst: Uint8Array, src: Uint8Array, level: number): number;
  compressBound(size: number): number;
  DCtx: new () => { decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number] };
}
let zstdBinding: ZstdBinding | null | undefined;

function loadZstdBinding(): ZstdBinding {
  if (zstdBinding === undefined) {
    try {
      // The native addon is loaded on first use only, so peers that never see zstd never load it.
      zstdBinding = createRequire(import.meta.url)('zstd-napi/binding.js') as ZstdBinding;
    } catch {
      zstdBinding = null;
    }
  }
  if (zstdBinding === null) {
    throw new MsgTransError(
      MsgTransErrorCode.ZSTD_UNAVAILABLE,
      'zstd needs Node >= 22.15 or the optional zstd-napi package (npm install zstd-napi)',
    );
  }
  return zstdBinding;
}

/** Whether zstd works in this process: Node's zlib has it, or the optional `zstd-napi` package is installed. */
export function isZstdAvailable(): boolean {
  if (nodeZstd) return true;
  try {
    loadZstdBinding();
    return true;
  } catch {
    return false;
  }
}

const ZSTD_LEVEL = 3;

/** Compresses a payload with the given wire algorithm. */
export function compress(algorithm: Compression, data: Uint8Array): Buffer {
  if (algorithm === Compression.ZLIB) return zlib.deflateSync(data);
  if (algorithm === Compression.ZSTD) {
    if (nodeZstd) return nodeZstd.zstdCompressSync(data);
    const z = loadZstdBinding();
    const out = Buffer.allocUnsafe(z.compressBound(data.length));
    return out.subarray(0, z.compress(out, data, ZSTD_LEVEL));
  }
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Decompresses a payload, refusing to produce more than `maxSize` bytes: a
 * small packet must not inflate into gigabytes. Errors are
 * {@link MsgTransProtocolError}s because they are the peer's fault.
 */
export function decompress(algorithm: Compression, data: Buffer, maxSize: number): Buffer {
  if (algorithm === Compression.NONE) return data;
  try {
    if (algorithm === Compression.ZLIB) return zlib.inflateSync(data, { maxOutputLength: maxSize });
    if (nodeZstd) return nodeZstd.zstdDecompressSync(data, { maxOutputLength: maxSize });
    return zstdDecompressBounded(data, maxSize);
  } catch (err) {
    if (err instanceof MsgTransError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
      throw new MsgTransProtocolError(
        MsgTransErrorCode.DECOMPRESSED_TOO_LARGE,
        `Payload inflates past the limit of ${maxSize} bytes`,
      );
    }
    throw new MsgTransProtocolError(MsgTransErrorCode.DECOMPRESSION_FAILED, `Corrupt compressed payload: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

const ZSTD_CHUNK = 64 * 1024;

function zstdDecompressBounded(data: Buffer, maxSize: number): Buffer {
  const z = loadZstdBinding();
  const dctx = new z.DCtx();
  const chunks: Buffer[] = [];
  let total = 0;
  let input = data.subarray(0);
  // Bounded loop: every round either consumes input, produces output or stops.
  for (;;) {
    const out = Buffer.allocUnsafe(Math.min(ZSTD_CHUNK, maxSize - total + 1));
    const [remaining, produced, consumed] = dctx.decompressStream(out, input);
    total += produced;
    if (total > maxSize) {
      throw new MsgTransProtocolError(
        MsgTransErrorCode.DECOMPRESSED_TOO_LARGE,
        `Payload inflates past the limit of ${maxSize} bytes`,
      );
    }
    if (produced > 0) chunks.push(out.subarray(0, produced));
    input = input.subarray(consumed);
    if (remaining === 0 && input.length === 0) break;
    if (produced === 0 && consumed === 0) {
      throw new MsgTransProtocolError(MsgTransErrorCode.DECOMPRESSION_FAILED, 'Truncated zstd payload');
    }
  }
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total);
}
