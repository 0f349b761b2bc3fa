import { HEADER_SIZE, PROTOCOL_VERSION, type MsgTransPacket } from './packet.js';

const EMPTY = Buffer.alloc(0);

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
  target[offset] = PROTOCOL_VERSION;
  target[offset + 1] = packet.compression;
  target[offset + 2] = packet.packetType;
  target[offset + 3] = packet.bizType;
  target.writeUInt32BE(packet.messageId >>> 0, offset + 4);
  target.writeUInt16BE(extHeaderLength, offset + 8);
  target.writeUInt32BE(payloadLength, offset + 10);
  target.writeUInt16BE(packet.flags, offset + 14);
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
export function encodePacketWithText(
  packet: Omit<MsgTransPacket, 'payload'>,
  text: string,
): Buffer {
  const ext = packet.extHeader;
  const textLength = Buffer.byteLength(text);
  const out = Buffer.allocUnsafe(HEADER_SIZE + ext.length + textLength);
  writeHeader(out, 0, packet, ext.length, textLength);
  ext.copy(out, HEADER_SIZE);
  out.write(text, HEADER_SIZE + ext.length, 'utf8');
  return out;
}
