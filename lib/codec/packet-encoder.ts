import { HEADER_SIZE, PROTOCOL_VERSION, type MsgTransPacket } from './packet.js';

const EMPTY = Buffer.alloc(0);

// Small packets are written into a shared slab, the way Buffer.allocUnsafe
// uses its pool, but without its 8-byte alignment: consecutive packets sit
// back to back, and the text is written once, straight into place, with no
// byteLength pass to size it first. The slab is small so that one queued
// packet pins little memory; it is never reused, only replaced when full.
const SLAB_SIZE = 16 * 1024;
// text this long (in UTF-16 units) at most uses the slab: 3 bytes each at worst
const SLAB_TEXT_LIMIT = 1024;
let slab = Buffer.allocUnsafe(SLAB_SIZE);
let slabUsed = 0;

/**
 * Writes the 16-byte header at `offset`. Every multi-byte field is big-endian.
 * Lengths come from the caller so a payload can be written after the header
 * without being copied first (see {@link encodePacketWithText}).
 */
export function writeHeader(
  target: Buffer,
  offset: number,
  packet: Pick<MsgTransPacket, 'compression' | 'packetType' | 'bizType' | 'messageId' | 'flags'>,
  extHeaderLength: number,
  payloadLength: number,
): void {
  writeFields(target, offset, packet.compression, packet.packetType, packet.bizType, packet.messageId, packet.flags, extHeaderLength, payloadLength);
}

// Byte by byte: the checked writeUInt*BE helpers cost more than the whole header on small packets.
function writeFields(
  target: Buffer,
  offset: number,
  compression: number,
  packetType: number,
  bizType: number,
  messageId: number,
  flags: number,
  extHeaderLength: number,
  payloadLength: number,
): void {
  target[offset] = PROTOCOL_VERSION;
  target[offset + 1] = compression;
  target[offset + 2] = packetType;
  target[offset + 3] = bizType;
  target[offset + 4] = messageId >>> 24;
  target[offset + 5] = messageId >>> 16;
  target[offset + 6] = messageId >>> 8;
  target[offset + 7] = messageId;
  target[offset + 8] = extHeaderLength >>> 8;
  target[offset + 9] = extHeaderLength;
  target[offset + 10] = payloadLength >>> 24;
  target[offset + 11] = payloadLength >>> 16;
  target[offset + 12] = payloadLength >>> 8;
  target[offset + 13] = payloadLength;
  target[offset + 14] = flags >>> 8;
  target[offset + 15] = flags;
}

/** Encodes one packet into a single freshly allocated buffer. */
export function encodePacket(packet: MsgTransPacket): Buffer {
  const ext = packet.extHeader ?? EMPTY;
  const payload = packet.payload ?? EMPTY;
  const out = Buffer.allocUnsafe(HEADER_SIZE + ext.length + payload.length);
  writeHeader(out, 0, packet, ext.length, payload.length);
  ext.copy(out, HEADER_SIZE);
  payload.copy(out, HEADER_SIZE + ext.length);
  return out;
}

/**
 * Encodes a packet whose payload is UTF-8 text straight into the packet
 * buffer, saving the intermediate payload buffer on the JSON hot path.
 */
export function encodePacketWithText(packet: Omit<MsgTransPacket, 'payload'>, text: string): Buffer {
  return encodeTextPacket(packet.compression, packet.packetType, packet.bizType, packet.messageId, packet.flags, packet.extHeader, text);
}

/** {@link encodePacketWithText} with the header fields as arguments: no object per packet. */
export function encodeTextPacket(
  compression: number,
  packetType: number,
  bizType: number,
  messageId: number,
  flags: number,
  ext: Buffer,
  text: string,
): Buffer {
  const extLength = ext.length;
  if (text.length <= SLAB_TEXT_LIMIT && extLength <= SLAB_SIZE / 4) {
    const worst = HEADER_SIZE + extLength + text.length * 3;
    if (SLAB_SIZE - slabUsed < worst) {
      slab = Buffer.allocUnsafe(SLAB_SIZE);
      slabUsed = 0;
    }
    const start = slabUsed;
    const textAt = start + HEADER_SIZE + extLength;
    if (extLength > 0) ext.copy(slab, start + HEADER_SIZE);
    const textLength = text.length === 0 ? 0 : slab.write(text, textAt, 'utf8');
    writeFields(slab, start, compression, packetType, bizType, messageId, flags, extLength, textLength);
    slabUsed = textAt + textLength;
    return slab.subarray(start, slabUsed);
  }
  // Large text: sized for ASCII (one byte per unit), the common case for JSON, which saves the
  // byteLength pass over the whole text (as long as the write itself on a 1 MiB string).
  const textAt = HEADER_SIZE + extLength;
  let out = Buffer.allocUnsafe(textAt + text.length);
  let { read, written } = UTF8.encodeInto(text, out.subarray(textAt));
  if (read < text.length) {
    // not ASCII: what is written is kept, the rest goes into a buffer of the exact size
    const rest = text.slice(read);
    const exact = Buffer.allocUnsafe(textAt + written + Buffer.byteLength(rest));
    out.copy(exact, textAt, textAt, textAt + written);
    written += exact.write(rest, textAt + written, 'utf8');
    out = exact;
  }
  writeFields(out, 0, compression, packetType, bizType, messageId, flags, extLength, written);
  ext.copy(out, HEADER_SIZE);
  return out;
}

const UTF8 = new TextEncoder();
