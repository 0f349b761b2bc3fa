import { HEADER_SIZE, type MsgTransPacket, type PacketLimits } from './packet.js';
import { packetAt, readHeader, type PacketHeader } from './packet-decoder.js';

/**
 * Splits a byte stream (TCP, TLS) into packets.
 *
 * Packets that arrive whole inside one chunk are handed up as views into that
 * chunk (no copy). A packet split across chunks is copied exactly once, into a
 * buffer of its declared size, allocated only after the header has been
 * validated against the limits. Throws {@link MsgTransProtocolError} on the
 * first bad header; the decoder is unusable afterwards and the connection
 * must be closed.
 */
export class PacketStreamDecoder {
  // made on the first header split across reads; an idle connection never needs it
  private head: Buffer | null = null;
  private headFill = 0;
  private body: Buffer | null = null;
  private bodyFill = 0;
  private header: PacketHeader | null = null;
  private stopped = false;

  constructor(
    private readonly limits: PacketLimits,
    private readonly onPacket: (packet: MsgTransPacket) => void,
  ) {}

  /** Bytes held of a packet that has not fully arrived yet. */
  get pendingBytes(): number {
    return this.body ? this.bodyFill : this.headFill;
  }

  /** Stops delivery, including for the rest of a chunk being processed. */
  stop(): void {
    this.stopped = true;
    this.headFill = 0;
    this.body = null;
    this.header = null;
  }

  push(chunk: Buffer): void {
    if (this.stopped) return;
    let offset = 0;
    if (this.headFill > 0 || this.body !== null) {
      offset = this.continuePartial(chunk);
      if (offset < 0) return;
    }
    const end = chunk.length;
    while (!this.stopped && end - offset >= HEADER_SIZE) {
      const header = readHeader(chunk, offset, this.limits);
      if (end - offset < header.totalLength) {
        this.startBody(header, chunk, offset);
        return;
      }
      this.onPacket(packetAt(chunk, offset, header));
      offset += header.totalLength;
    }
    if (!this.stopped && offset < end) {
      chunk.copy((this.head ??= Buffer.allocUnsafe(HEADER_SIZE)), 0, offset, end);
      this.headFill = end - offset;
    }
  }

  /** Returns the offset in `chunk` after the completed packet, or -1 if all of it was consumed. */
  private continuePartial(chunk: Buffer): number {
    let offset = 0;
    if (this.body === null) {
      const head = this.head as Buffer;
      const take = Math.min(HEADER_SIZE - this.headFill, chunk.length);
      chunk.copy(head, this.headFill, 0, take);
      this.headFill += take;
      offset = take;
      if (this.headFill < HEADER_SIZE) return -1;
      this.headFill = 0;
      this.startBody(readHeader(head, 0, this.limits), head, 0);
      // startBody copied the 16 header bytes in; continue with the rest of the chunk
    }
    const body = this.body as Buffer;
    const take = Math.min(body.length - this.bodyFill, chunk.length - offset);
    chunk.copy(body, this.bodyFill, offset, offset + take);
    this.bodyFill += take;
    offset += take;
    if (this.bodyFill < body.length) return -1;
    const header = this.header as PacketHeader;
    this.body = null;
    this.header = null;
    this.bodyFill = 0;
    this.onPacket(packetAt(body, 0, header));
    return offset;
  }

  private startBody(header: PacketHeader, source: Buffer, offset: number): void {
    const available = Math.min(source.length - offset, header.totalLength);
    // allocUnsafe: every byte is overwritten before the packet is handed up
    const body = Buffer.allocUnsafe(header.totalLength);
    source.copy(body, 0, offset, offset + available);
    this.body = body;
    this.bodyFill = available;
    this.header = header;
  }
}
