/**
 * msgtrans v1 bytes by hand, from PROTOCOL.md alone: nothing here uses
 * lib/codec, so the fuzzer's idea of a packet is independent of the code it
 * fuzzes.
 */
import * as zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { MsgTransErrorCode } from '../../lib/errors/error-codes.js';

export const HEADER = 16;

export const ONE_WAY = 0;
export const REQUEST = 1;
export const RESPONSE = 2;

export const NONE = 0;
export const ZSTD = 1;
export const ZLIB = 2;

export const FRAGMENTED = 0x0001;
export const HIGH_PRIORITY = 0x0002;
export const HAS_ROUTE_TAG = 0x0004;
export const ERROR = 0x0008;
export const MORE = 0x0010;
export const CODEC = 0x0020;
export const END = 0x0040;
export const CANCEL = 0x0080;

/** A QUIC frame may not declare more than this, whatever the packet limit (PROTOCOL.md). */
export const QUIC_MAX_FRAME = 16 * 1024 * 1024;

/** Error codes as the library reports them: its public API, used as they are. */
export const Code = MsgTransErrorCode;

export interface PacketSpec {
  version?: number;
  compression?: number;
  packetType: number;
  bizType?: number;
  messageId: number;
  flags?: number;
  ext?: string | Buffer;
  payload?: string | Buffer;
  /** Written as ext_header_len instead of the real length. */
  extLen?: number;
  /** Written as payload_len instead of the real length. */
  payloadLen?: number;
}

/** One packet: 16-byte big-endian header, extension header, payload. */
export function encode(p: PacketSpec): Buffer {
  const ext = typeof p.ext === 'string' ? Buffer.from(p.ext, 'utf8') : (p.ext ?? Buffer.alloc(0));
  const payload = typeof p.payload === 'string' ? Buffer.from(p.payload, 'utf8') : (p.payload ?? Buffer.alloc(0));
  const out = Buffer.allocUnsafe(HEADER + ext.length + payload.length);
  out[0] = p.version ?? 1;
  out[1] = p.compression ?? NONE;
  out[2] = p.packetType;
  out[3] = p.bizType ?? 0;
  out.writeUInt32BE(p.messageId >>> 0, 4);
  out.writeUInt16BE(p.extLen ?? ext.length, 8);
  out.writeUInt32BE((p.payloadLen ?? payload.length) >>> 0, 10);
  out.writeUInt16BE(p.flags ?? 0, 14);
  ext.copy(out, HEADER);
  payload.copy(out, HEADER + ext.length);
  return out;
}

/** One QUIC frame: u32 big-endian length (the real one unless `declared` is given), then the bytes. */
export function frame(bytes: Buffer, declared = bytes.length): Buffer {
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32BE(declared >>> 0, 0);
  bytes.copy(out, 4);
  return out;
}

/** A decoded packet as received. */
export interface InPacket {
  version: number;
  compression: number;
  packetType: number;
  bizType: number;
  messageId: number;
  flags: number;
  ext: Buffer;
  payload: Buffer;
}

export function parsePacket(p: Buffer): InPacket {
  const extLen = p.readUInt16BE(8);
  return {
    version: p[0],
    compression: p[1],
    packetType: p[2],
    bizType: p[3],
    messageId: p.readUInt32BE(4),
    flags: p.readUInt16BE(14),
    ext: p.subarray(HEADER, HEADER + extLen),
    payload: p.subarray(HEADER + extLen),
  };
}

/** Cuts a byte stream (TCP) into packets by their header lengths. */
export class StreamSplitter {
  private buffered: Buffer = Buffer.alloc(0);
  constructor(private readonly onPacket: (p: InPacket) => void) {}

  push(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    let offset = 0;
    const b = this.buffered;
    while (b.length - offset >= HEADER) {
      const total = HEADER + b.readUInt16BE(offset + 8) + b.readUInt32BE(offset + 10);
      if (b.length - offset < total) break;
      this.onPacket(parsePacket(b.subarray(offset, offset + total)));
      offset += total;
    }
    this.buffered = offset === b.length ? Buffer.alloc(0) : b.subarray(offset);
  }
}

/** Cuts a QUIC stream into u32-length-prefixed frames, each one packet. */
export class FrameSplitter {
  private buffered: Buffer = Buffer.alloc(0);
  constructor(private readonly onPacket: (p: InPacket) => void) {}

  push(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    let offset = 0;
    const b = this.buffered;
    while (b.length - offset >= 4) {
      const length = b.readUInt32BE(offset);
      if (b.length - offset - 4 < length) break;
      if (length >= HEADER) this.onPacket(parsePacket(b.subarray(offset + 4, offset + 4 + length)));
      offset += 4 + length;
    }
    this.buffered = offset === b.length ? Buffer.alloc(0) : b.subarray(offset);
  }
}

// ---------------------------------------------------------------------------
// WebSocket frames by hand (RFC 6455), for inputs below the message level
// ---------------------------------------------------------------------------

export interface WsFrameSpec {
  fin?: boolean;
  /** RSV1..3 as a 3-bit number. */
  rsv?: number;
  opcode: number;
  payload: Buffer;
  /** Clients must mask; false sends an unmasked frame. Default true. */
  masked?: boolean;
  /** Declared length instead of the real one (the bytes sent stay `payload`). */
  declaredLength?: number | bigint;
  /** Force the 64-bit length form even for short payloads. */
  longForm?: boolean;
  maskKey?: Buffer;
}

export function wsFrame(f: WsFrameSpec): Buffer {
  const masked = f.masked ?? true;
  const len = f.declaredLength ?? f.payload.length;
  const b0 = ((f.fin ?? true) ? 0x80 : 0) | (((f.rsv ?? 0) & 7) << 4) | (f.opcode & 0x0f);
  let head: Buffer;
  const big = typeof len === 'bigint' ? len : BigInt(len);
  if (!f.longForm && big < 126n) {
    head = Buffer.from([b0, (masked ? 0x80 : 0) | Number(big)]);
  } else if (!f.longForm && big < 65536n) {
    head = Buffer.alloc(4);
    head[0] = b0;
    head[1] = (masked ? 0x80 : 0) | 126;
    head.writeUInt16BE(Number(big), 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = (masked ? 0x80 : 0) | 127;
    head.writeBigUInt64BE(big & 0xffffffffffffffffn, 2);
  }
  if (!masked) return Buffer.concat([head, f.payload]);
  const key = f.maskKey ?? Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const body = Buffer.allocUnsafe(f.payload.length);
  for (let i = 0; i < body.length; i++) body[i] = f.payload[i] ^ key[i & 3];
  return Buffer.concat([head, key, body]);
}

// ---------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------

interface ZstdApi {
  compress(data: Uint8Array): Buffer;
  decompress(data: Uint8Array): Buffer;
}

let zstdApi: ZstdApi | undefined;

function zstd(): ZstdApi {
  if (zstdApi) return zstdApi;
  const z = zlib as unknown as { zstdCompressSync?: (b: Uint8Array) => Buffer; zstdDecompressSync?: (b: Uint8Array) => Buffer };
  if (typeof z.zstdCompressSync === 'function' && typeof z.zstdDecompressSync === 'function') {
    zstdApi = { compress: (b) => z.zstdCompressSync!(b), decompress: (b) => z.zstdDecompressSync!(b) };
  } else {
    // Node 20 has no zstd in zlib; the zstd-napi package does
    zstdApi = createRequire(import.meta.url)('zstd-napi') as ZstdApi;
  }
  return zstdApi;
}

export function zstdCompress(data: Buffer): Buffer {
  return zstd().compress(data);
}

export function zlibCompress(data: Buffer): Buffer {
  return zlib.deflateSync(data);
}

/**
 * A zstd frame made by hand of RLE blocks (RFC 8878 §3.1.1.2): each 4-byte
 * block regenerates up to 128 KiB, and the frame header declares no content
 * size, so nothing short of decoding reveals how large it gets. 1 GiB costs
 * 32 KiB on the wire.
 */
export function zstdRleBomb(totalBytes: number, byte = 0): Buffer {
  const BLOCK = 128 * 1024;
  const blocks = Math.ceil(totalBytes / BLOCK);
  // magic, frame header descriptor 0 (no content size, no checksum, not single segment),
  // window descriptor: exponent 7, mantissa 0 -> window 2^(10+7) = 128 KiB
  const out = Buffer.alloc(4 + 1 + 1 + blocks * 4);
  out.writeUInt32LE(0xfd2fb528, 0);
  out[4] = 0x00;
  out[5] = 7 << 3;
  let left = totalBytes;
  for (let i = 0; i < blocks; i++) {
    const size = Math.min(BLOCK, left);
    left -= size;
    const last = i === blocks - 1 ? 1 : 0;
    // Block_Header: bit 0 last, bits 1-2 type (1 = RLE), bits 3-23 size; little-endian 3 bytes
    const header = last | (1 << 1) | (size << 3);
    const at = 6 + i * 4;
    out[at] = header & 0xff;
    out[at + 1] = (header >>> 8) & 0xff;
    out[at + 2] = (header >>> 16) & 0xff;
    out[at + 3] = byte;
  }
  return out;
}

/**
 * Decompresses like a receiver bounded at `max` bytes would, for the
 * fuzzer's oracle. zlib is exact (Node's inflate with maxOutputLength);
 * zstd returns undefined when it cannot tell cheaply.
 */
export function boundedInflate(data: Buffer, max: number): { ok: true; data: Buffer } | { ok: false; code: string } {
  try {
    return { ok: true, data: zlib.inflateSync(data, { maxOutputLength: max }) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) return { ok: false, code: Code.DECOMPRESSED_TOO_LARGE };
    return { ok: false, code: Code.DECOMPRESSION_FAILED };
  }
}

export function zstdDecompress(data: Buffer): Buffer {
  return zstd().decompress(data);
}
