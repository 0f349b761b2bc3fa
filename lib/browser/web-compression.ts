/**
 * zlib (RFC 1950) through the runtime's `CompressionStream('deflate')` /
 * `DecompressionStream('deflate')`: what browsers, Deno and Node >= 18 have.
 * zstd has no web API, so a browser can neither send nor read it.
 */
import { Compression } from '../codec/packet.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransWebError } from './msgtrans-web-error.js';

interface TransformLike {
  readonly writable: { getWriter(): { write(chunk: Uint8Array): Promise<void>; close(): Promise<void> } };
  readonly readable: {
    getReader(): { read(): Promise<{ done: boolean; value?: Uint8Array }>; cancel(): Promise<void> };
  };
}
type TransformConstructor = new (format: 'deflate') => TransformLike;

const streams = globalThis as unknown as { CompressionStream?: TransformConstructor; DecompressionStream?: TransformConstructor };

/** True where this runtime can compress (sending compressed payloads is optional). */
export const canCompress = (): boolean => typeof streams.CompressionStream === 'function';

const ignore = (): void => undefined;

async function pipeThrough(transform: TransformLike, data: Uint8Array, maxSize: number): Promise<Uint8Array> {
  const writer = transform.writable.getWriter();
  // failures surface on the reading side; these promises must not go unhandled
  writer.write(data).catch(ignore);
  writer.close().catch(ignore);
  const reader = transform.readable.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done || !value) break;
    total += value.length;
    if (total > maxSize) {
      reader.cancel().catch(ignore);
      throw new MsgTransWebError(MsgTransErrorCode.DECOMPRESSED_TOO_LARGE, `Payload inflates past the limit of ${maxSize} bytes`);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** zlib-compresses a payload. */
export function deflate(data: Uint8Array): Promise<Uint8Array> {
  return pipeThrough(new streams.CompressionStream!('deflate'), data, Infinity);
}

/**
 * Inflates a zlib payload, refusing to produce more than `maxSize` bytes (a
 * small packet must not inflate into gigabytes). Wire value 1 (zstd) is
 * refused with `ERR_MSGTRANS_ZSTD_UNAVAILABLE`.
 */
export async function inflate(compression: number, data: Uint8Array, maxSize: number): Promise<Uint8Array> {
  if (compression !== Compression.ZLIB) {
    throw new MsgTransWebError(
      MsgTransErrorCode.ZSTD_UNAVAILABLE,
      'zstd payloads are not supported by the web client: configure the server with zlib compression',
    );
  }
  const Decompression = streams.DecompressionStream;
  if (!Decompression) {
    throw new MsgTransWebError(MsgTransErrorCode.DECOMPRESSION_FAILED, 'This runtime has no DecompressionStream for zlib payloads');
  }
  try {
    return await pipeThrough(new Decompression('deflate'), data, maxSize);
  } catch (err) {
    if (err instanceof MsgTransWebError) throw err;
    throw new MsgTransWebError(MsgTransErrorCode.DECOMPRESSION_FAILED, `Corrupt compressed payload: ${(err as Error).message}`);
  }
}
