import { MsgTransErrorCode } from '../../errors/error-codes.js';
import { MsgTransProtocolError } from '../../errors/msgtrans-protocol-error.js';

/** Largest frame the QUIC mapping allows, whatever the packet limit (PROTOCOL.md). */
export const QUIC_MAX_FRAME = 16 * 1024 * 1024;
const PREFIX = 4;

/**
 * Splits a QUIC stream into frames, each a u32 big-endian length followed by
 * that many bytes (one msgtrans packet). Frames wholly inside one chunk are
 * views; a split frame is copied once into a buffer allocated only after its
 * length passed the limit.
 */
export class QuicFrameDecoder {
  private readonly prefix = Buffer.allocUnsafe(PREFIX);
  private prefixFill = 0;
  private frame: Buffer | null = null;
  private frameFill = 0;
  private stopped = false;
  private readonly limit: number;

  constructor(
    maxPacketSize: number,
    private readonly onFrame: (frame: Buffer) => void,
  ) {
    this.limit = Math.min(maxPacketSize, QUIC_MAX_FRAME);
  }

  /** Bytes held of a frame (or its length prefix) that has not fully arrived. */
  get pendingBytes(): number {
    return this.frame !== null ? PREFIX + this.frameFill : this.prefixFill;
  }

  stop(): void {
    this.stopped = true;
    this.frame = null;
    this.prefixFill = 0;
  }

  push(chunk: Buffer): void {
    let offset = 0;
    const end = chunk.length;
    while (!this.stopped && offset < end) {
      if (this.frame !== null) {
        const take = Math.min(this.frame.length - this.frameFill, end - offset);
        chunk.copy(this.frame, this.frameFill, offset, offset + take);
        this.frameFill += take;
        offset += take;
        if (this.frameFill === this.frame.length) {
          const frame = this.frame;
          this.frame = null;
          this.onFrame(frame);
        }
        continue;
      }
      let length: number;
      if (this.prefixFill === 0 && end - offset >= PREFIX) {
        length = chunk.readUInt32BE(offset);
        offset += PREFIX;
      } else {
        const take = Math.min(PREFIX - this.prefixFill, end - offset);
        chunk.copy(this.prefix, this.prefixFill, offset, offset + take);
        this.prefixFill += take;
        offset += take;
        if (this.prefixFill < PREFIX) return;
        this.prefixFill = 0;
        length = this.prefix.readUInt32BE(0);
      }
      if (length > this.limit) {
        throw new MsgTransProtocolError(
          MsgTransErrorCode.PACKET_TOO_LARGE,
          `QUIC frame of ${length} bytes exceeds the limit of ${this.limit}`,
        );
      }
      if (end - offset >= length) {
        const frame = chunk.subarray(offset, offset + length);
        offset += length;
        this.onFrame(frame);
      } else {
        this.frame = Buffer.allocUnsafe(length);
        this.frameFill = 0;
      }
    }
  }
}

/** Writes packets as one buffer of length-prefixed frames: one stream write for a whole batch. */
export function encodeFrames(packets: Buffer[], bytes: number): Buffer {
  const out = Buffer.allocUnsafe(bytes + PREFIX * packets.length);
  let offset = 0;
  for (const packet of packets) {
    out.writeUInt32BE(packet.length, offset);
    packet.copy(out, offset + PREFIX);
    offset += PREFIX + packet.length;
  }
  return out;
}
