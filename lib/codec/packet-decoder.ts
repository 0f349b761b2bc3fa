import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransProtocolError } from '../errors/msgtrans-protocol-error.js';
import {
  HEADER_SIZE,
  PROTOCOL_VERSION,
  PacketFlag,
  type Compression,
  type MsgTransPacket,
  type PacketLimits,
  type PacketType,
} from './packet.js';

/**
 * The header fields plus the lengths that follow it. It is also the packet
 * itself once {@link packetAt} has set `extHeader` and `payload`: one object
 * per received packet, not a header and then a packet.
 */
export interface PacketHeader extends MsgTransPacket {
  extHeaderLength: number;
  payloadLength: number;
  /** HEADER_SIZE + extHeaderLength + payloadLength. */
  totalLength: number;
}

/**
 * Reads and validates the 16-byte header at `offset`. Everything that makes a
 * packet unacceptable and is knowable from the header is rejected here, so a
 * caller never allocates for a packet it would refuse.
 */
export function readHeader(buf: Buffer, offset: number, limits: PacketLimits): PacketHeader {
  const version = buf[offset];
  if (version !== PROTOCOL_VERSION) {
    throw new MsgTransProtocolError(MsgTransErrorCode.BAD_VERSION, `Unsupported msgtrans version ${version}`);
  }
  const compression = buf[offset + 1];
  if (compression > 2) {
    throw new MsgTransProtocolError(MsgTransErrorCode.BAD_COMPRESSION, `Unknown compression ${compression}`);
  }
  const packetType = buf[offset + 2];
  if (packetType > 2) {
    throw new MsgTransProtocolError(MsgTransErrorCode.BAD_PACKET_TYPE, `Unknown packet type ${packetType}`);
  }
  const flags = buf.readUInt16BE(offset + 14);
  if (flags & PacketFlag.FRAGMENTED) {
    throw new MsgTransProtocolError(MsgTransErrorCode.FRAGMENTED, 'FRAGMENTED packets are not part of msgtrans v1');
  }
  const extHeaderLength = buf.readUInt16BE(offset + 8);
  if (extHeaderLength > limits.maxExtHeaderSize) {
    throw new MsgTransProtocolError(
      MsgTransErrorCode.EXT_HEADER_TOO_LARGE,
      `Extension header of ${extHeaderLength} bytes exceeds the limit of ${limits.maxExtHeaderSize}`,
    );
  }
  const payloadLength = buf.readUInt32BE(offset + 10);
  const totalLength = HEADER_SIZE + extHeaderLength + payloadLength;
  if (totalLength > limits.maxPacketSize) {
    throw new MsgTransProtocolError(
      MsgTransErrorCode.PACKET_TOO_LARGE,
      `Packet of ${totalLength} bytes exceeds the limit of ${limits.maxPacketSize}`,
    );
  }
  return {
    compression: compression as Compression,
    packetType: packetType as PacketType,
    bizType: buf[offset + 3],
    messageId: buf.readUInt32BE(offset + 4),
    flags,
    // set by packetAt once the bytes are there; present from the start so every packet has one shape
    extHeader: EMPTY,
    payload: EMPTY,
    extHeaderLength,
    payloadLength,
    totalLength,
  };
}

/**
 * Builds the packet whose header was read at `offset`; extension header and
 * payload are views into `buf`, not copies.
 */
const EMPTY = Buffer.alloc(0);

export function packetAt(buf: Buffer, offset: number, header: PacketHeader): MsgTransPacket {
  const extStart = offset + HEADER_SIZE;
  const payloadStart = extStart + header.extHeaderLength;
  return {
    compression: header.compression,
    packetType: header.packetType,
    bizType: header.bizType,
    messageId: header.messageId,
    flags: header.flags,
    // most packets have no extension header: share one empty buffer instead of a view
    extHeader: header.extHeaderLength === 0 ? EMPTY : buf.subarray(extStart, payloadStart),
    payload: buf.subarray(payloadStart, payloadStart + header.payloadLength),
  };
}

/**
 * Decodes a buffer that must hold exactly one packet, as WebSocket messages
 * and QUIC frames do.
 */
export function decodePacket(buf: Buffer, limits: PacketLimits): MsgTransPacket {
  if (buf.length < HEADER_SIZE) {
    throw new MsgTransProtocolError(MsgTransErrorCode.BAD_LENGTH, `Packet of ${buf.length} bytes is shorter than the header`);
  }
  const header = readHeader(buf, 0, limits);
  if (header.totalLength !== buf.length) {
    throw new MsgTransProtocolError(
      MsgTransErrorCode.BAD_LENGTH,
      `Header declares ${header.totalLength} bytes but the message holds ${buf.length}`,
    );
  }
  return packetAt(buf, 0, header);
}
